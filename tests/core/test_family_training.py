"""Every model switch of the original trains and detects; the paper configuration end to end.

Each switch set trains a few iterations on the real dlib photos in ../shared (in-process,
:func:`rcnn.core.training_setup.run_training`, a small crop, batch 1). The run must keep its
losses finite, log the metrics of the layout's heads, record the switch in the checkpoint's
recipe, and RetinaFace must decode the checkpoint with the shapes the layout implies.

The expected layouts are written out from the original's tables, not computed by the code
under test: ``RAC_SSH`` strides 32, 16, 8 with two scales (2 anchors); ``RAC_SSH2`` ratios 1
and 1.5 (4 anchors), doubled by ``DENSE_ANCHOR``; ``RAC_SSH3`` adds stride 4;
``RAC_RETINA`` strides 64..4 with three scales; ``USE_BLUR`` a fifth box value (faces
``(N, 6)``), ``USE_OCCLUSION`` a visibility value per point (landmarks ``(N, 5, 3)``),
``FACE_LANDMARK=False`` no landmark head (landmarks ``None``).

The paper configuration (``--network resnet --set USE_DCN=2 RPN_ANCHOR_CFG=RAC_RETINA``)
goes through train.py: an uninterrupted run equals a run stopped and resumed, bit for bit;
validation writes its row; the checkpoint detects.
"""
import csv
import json
import math
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from test_train import final_digest, run_train

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / 'train.py'
NET3 = ((32, 16, 8), 2)

#: name -> (network, the original's switches, (strides coarse to fine, anchors per position),
#: face columns, landmark shape per face (None: no landmarks))
SWITCH_SETS = {
    'boxes_only': ('mnet', {'FACE_LANDMARK': False}, NET3, 5, None),
    'blur_occlusion': ('mnet', {'USE_BLUR': True, 'USE_OCCLUSION': True}, NET3, 6, (5, 3)),
    'ssh2_dense': ('mnet', {'RPN_ANCHOR_CFG': 'RAC_SSH2', 'DENSE_ANCHOR': True},
                   ((32, 16, 8), 8), 5, (5, 2)),
    'ssh3': ('mnet', {'RPN_ANCHOR_CFG': 'RAC_SSH3'}, ((32, 16, 8, 4), 4), 5, (5, 2)),
    'retina': ('mnet', {'RPN_ANCHOR_CFG': 'RAC_RETINA'}, ((64, 32, 16, 8, 4), 3), 5, (5, 2)),
    'dcn1': ('mnet', {'USE_DCN': 1}, NET3, 5, (5, 2)),
    'dcn2': ('mnet', {'USE_DCN': 2}, NET3, 5, (5, 2)),
    'maxout1': ('mnet', {'USE_MAXOUT': 1}, NET3, 5, (5, 2)),
    'maxout2': ('mnet', {'USE_MAXOUT': 2}, NET3, 5, (5, 2)),
    'shared_heads': ('mnet', {'SHARE_WEIGHT_BBOX': True, 'SHARE_WEIGHT_LANDMARK': True}, NET3,
                     5, (5, 2)),
    'rf_head_lr_mode': ('mnet', {'LR_MODE': 1, 'HEAD_MODULE': 'RF', 'CONTEXT_FILTER_RATIO': 2},
                        NET3, 5, (5, 2)),
    'random_feat_stride': ('mnet', {'RANDOM_FEAT_STRIDE': True}, NET3, 5, (5, 2)),
    'resnet101': ('resnet', {'RESNET_DEPTH': 101}, NET3, 5, (5, 2)),
    'cascade': ('mnet', {'CASCADE': 1}, NET3, 5, (5, 2)),
    'cascade_mode3': ('mnet', {'CASCADE': 2, 'CASCADE_MODE': 3}, NET3, 5, (5, 2)),
}
#: the deploy graph's operator each deformable switch must put in (MXNet's contrib names)
DEFORMABLE_OPS = {'dcn1': '_contrib_DeformableConvolution',
                  'dcn2': '_contrib_ModulatedDeformableConvolution'}
CROP = {'mnet': 160, 'resnet': 64}
ITERATIONS = 2


def train_in_process(prefix, network, switches, dataset_path, crop, iterations=ITERATIONS):
    from rcnn.core.train_options import short_run_options
    from rcnn.core.training_setup import run_training
    return run_training(short_run_options(network, switches, dataset_path, prefix, crop,
                                          iterations))


def metric_rows(prefix):
    """Rows of ``<prefix>-metrics.csv`` as {column: text}."""
    with open('%s-metrics.csv' % prefix, newline='') as handle:
        return list(csv.DictReader(handle))


def metric_columns(strides, landmarks, cascade=0):
    """The training metrics of a layout, written out from the original's metric names (the
    cascade stages' ``RPNAccCAS{k}`` / ``RPNL1LossCAS{k}`` after the first stage's)."""
    columns = []
    for stride in strides:
        columns += ['RPNAcc_s%d' % stride, 'RPNL1Loss_s%d' % stride]
        if landmarks:
            columns.append('RPNLandMarkL1Loss_s%d' % stride)
    for stride in strides:
        for stage in range(cascade):
            columns += ['RPNAccCAS%d_s%d' % (stage, stride), 'RPNL1LossCAS%d_s%d' % (stage, stride)]
    return columns


def val_image(dlib_faces):
    return cv2.imread(str(Path(dlib_faces) / 'val' / 'images' / '0--dlib' / '2008_002506.jpg'))


def assert_detects(prefix, epoch, strides, num_anchors, face_columns, landmark_shape, image):
    from retinaface import RetinaFace
    detector = RetinaFace(str(prefix), epoch, ctx_id=-1)
    assert list(detector._feat_stride_fpn) == list(strides)
    assert detector.fpn_keys == ['stride%d' % s for s in strides]
    assert all(anchors.shape == (num_anchors, 4) for anchors in detector._anchors_fpn.values())
    assert detector.use_landmarks == (landmark_shape is not None)
    # threshold 0: every anchor passes, so the decoding of every head runs
    faces, landmarks = detector.detect(image, threshold=0.0, scales=(0.5,))
    assert faces.ndim == 2 and faces.shape[1] == face_columns and len(faces) > 0
    assert np.isfinite(faces).all()
    if landmark_shape is None:
        assert landmarks is None
    else:
        assert landmarks.shape == (len(faces),) + landmark_shape
        assert np.isfinite(landmarks).all()
    return faces, landmarks


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(SWITCH_SETS))
def test_switch_trains_records_itself_and_detects(tmp_path, dlib_faces, name):
    network, switches, (strides, anchors), face_columns, landmark_shape = SWITCH_SETS[name]
    prefix = tmp_path / 'm'
    position = train_in_process(prefix, network, switches, dlib_faces, CROP[network])
    assert position.iteration == ITERATIONS

    # finite losses, the metrics of exactly the layout's heads
    rows = metric_rows(prefix)
    assert len(rows) == ITERATIONS
    columns = metric_columns(strides, landmark_shape is not None, switches.get('CASCADE', 0))
    assert [c for c in rows[0] if c.startswith('RPN')] == columns
    values = [float(row[c]) for row in rows for c in columns if row[c] != '']
    assert values and all(math.isfinite(v) for v in values)
    if switches.get('RANDOM_FEAT_STRIDE'):
        # the original labels one randomly chosen stride per batch: the other strides' anchors
        # are all ignored, so their accuracy is undefined
        for row in rows:
            assert sum(row['RPNAcc_s%d' % s] != '' for s in strides) == 1, row

    # the recipe beside the checkpoint records the switch and the layout it implies
    recipe = json.loads(Path('%s-recipe.json' % prefix).read_text())
    overrides = dict((key, value) for key, value in recipe['config_overrides'])
    for key, value in switches.items():
        assert overrides[key] == value, key
        if key != 'RPN_ANCHOR_CFG':
            assert recipe['training_config'][key] == value, key
    assert recipe['network'] == network
    assert recipe['layout']['strides'] == list(strides)
    assert recipe['layout']['num_anchors'] == anchors
    assert recipe['layout']['box_len'] == face_columns - 1
    assert recipe['layout']['landmark_len'] == (0 if landmark_shape is None
                                                else 5 * landmark_shape[1])
    assert recipe['layout']['cascade'] == switches.get('CASCADE', 0)
    if name in DEFORMABLE_OPS:
        graph = json.loads(Path('%s-symbol.json' % prefix).read_text())
        assert any(node['op'] == DEFORMABLE_OPS[name] for node in graph['nodes'])

    assert_detects(prefix, 1, strides, anchors, face_columns, landmark_shape,
                   val_image(dlib_faces))


# ------------------------------------------------------------------------------ the paper
PAPER = ['--network', 'resnet', '--set', 'USE_DCN=2', 'RPN_ANCHOR_CFG=RAC_RETINA',
         'SCALES=[(64, 64)]']
PAPER_STRIDES = (64, 32, 16, 8, 4)
#: protocol 'single' (validation mode 0) scales an image to short side 1600 unless its long
#: side would pass 2150; a band of faces repeated along a 4300-pixel row is scaled by 0.5
STRIP_WIDTH = 4300


def make_strip_split(dlib_faces, root, images=2):
    """A dataset folder: ``train`` the dlib training photos, ``val`` ``images`` strips, each a
    band around one row of faces of a dlib val photo repeated side by side, with its labels.

    Validation runs the detector at WIDER mode 0 (short side 1600); on these strips the
    paper's ResNet-50 with DCN v2 sees about 32 x 2150 pixels instead of 1600 x 2150, which
    is what a CPU test can afford."""
    from rcnn.dataset import RetinaFaceDataset
    from rcnn.config import generate_config
    root.mkdir()
    (root / 'train').symlink_to(Path(dlib_faces) / 'train', target_is_directory=True)
    (root / 'val' / 'images' / '0--dlib').mkdir(parents=True)
    cfg, _ = generate_config('mnet', 'retinaface')
    val = RetinaFaceDataset('val', None, str(dlib_faces), cfg).gt_roidb()
    lines = []
    for index, entry in enumerate(val[:images]):
        photo = cv2.imread(entry['image'])
        boxes = entry['boxes']
        first = boxes[np.argmin(boxes[:, 1])]
        top, bottom = max(0, int(first[1]) - 4), min(photo.shape[0], int(first[3]) + 5)
        band = photo[top:bottom]
        inside = boxes[(boxes[:, 1] >= top) & (boxes[:, 3] < bottom)]
        copies = -(-STRIP_WIDTH // band.shape[1])
        name = '0--dlib/strip%d.jpg' % index
        cv2.imwrite(str(root / 'val' / 'images' / name), np.concatenate([band] * copies, 1))
        lines.append('# %s' % name)
        for copy in range(copies):
            for x1, y1, x2, y2 in inside[:, :4]:
                lines.append('%g %g %g %g' % (x1 + copy * band.shape[1], y1 - top,
                                              x2 - x1, y2 - y1))
    (root / 'val' / 'label.txt').write_text('\n'.join(lines) + '\n')
    return root


def paper_cmd(prefix, data, *extra):
    return [sys.executable, str(TRAIN), *PAPER, '--prefix', str(prefix),
            '--batch_images', '1', '--workers', '0', '--frequent', '1', '--seed', '5',
            '--dataset_path', str(data), '--root_path', str(data.parent), *extra]


@pytest.mark.slow
def test_paper_configuration_trains_resumes_exactly_validates_and_detects(tmp_path, dlib_faces):
    from rcnn.checkpoint.record import latest_checkpoint, read_train_record
    data = make_strip_split(dlib_faces, tmp_path / 'data')

    reference = run_train(paper_cmd(tmp_path / 'ref', data, '--max_iters', '4',
                                    '--val_set', 'val', '--val_images', '2'), timeout=900)
    assert reference.returncode == 0, reference.stdout[-3000:] + reference.stderr[-3000:]
    stopped = run_train(paper_cmd(tmp_path / 'run', data, '--max_iters', '2'), timeout=600)
    assert stopped.returncode == 0, stopped.stdout[-3000:] + stopped.stderr[-3000:]
    resumed = run_train(paper_cmd(tmp_path / 'run', data, '--max_iters', '4', '--resume'),
                        timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert re.search(r'resuming from checkpoint \S+run-0001 at Position\(epoch=0, '
                     r'batch_in_epoch=2, iteration=2\)', resumed.stdout), resumed.stdout[-3000:]
    assert 'optimizer state restored' in resumed.stdout
    assert final_digest(resumed.stdout) == final_digest(reference.stdout)

    # trained: the five strides' metrics, finite
    rows = metric_rows(tmp_path / 'ref')
    columns = metric_columns(PAPER_STRIDES, True)
    assert len(rows) == 4 and [c for c in rows[0] if c.startswith('RPN')] == columns
    values = [float(row[c]) for row in rows for c in columns if row[c] != '']
    assert values and all(math.isfinite(v) for v in values)
    recipe = json.loads((tmp_path / 'ref-recipe.json').read_text())
    assert recipe['training_config']['USE_DCN'] == 2
    assert recipe['layout']['strides'] == list(PAPER_STRIDES)

    # validated: one row for the final checkpoint, no failure in the log
    log = (tmp_path / 'ref-train.log').read_text()
    assert 'validation of checkpoint' not in log and ' ERROR ' not in log
    with open(tmp_path / 'ref-val.csv', newline='') as handle:
        val_rows = list(csv.DictReader(handle))
    assert len(val_rows) == 1 and int(val_rows[0]['iteration']) == 4
    assert int(val_rows[0]['images']) == 2
    assert all(0.0 <= float(val_rows[0][s]) <= 1.0 for s in ('easy', 'medium', 'hard'))
    checkpoint = latest_checkpoint(str(tmp_path / 'ref'))
    assert read_train_record(str(tmp_path / 'ref'), checkpoint)['validation'] is not None

    graph = json.loads((tmp_path / 'ref-symbol.json').read_text())
    assert any(n['op'] == '_contrib_ModulatedDeformableConvolution' for n in graph['nodes'])
    assert_detects(tmp_path / 'ref', checkpoint, PAPER_STRIDES, 3, 5, (5, 2),
                   cv2.resize(val_image(dlib_faces), (200, 150)))
