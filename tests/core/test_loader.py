"""CropLoader: shapes, a training step on its batches, determinism, bad input, shutdown."""
import gc
import logging
import os
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

from conftest import ROOT
from rcnn.config import generate_config
from rcnn.core.loader import CropLoader, feature_symbols

BATCH = 2
NUM_IMAGES = 6


def _cfg():
    cfg, _ = generate_config('mnet', 'retinaface')
    return cfg


def _feat_syms(cfg, with_heads=False):
    """Stand-in for the training graph: average pooling by the stride gives the 20/40/80 maps of
    a 640 input, a 1x1 convolution gives 2A score channels (and 4A / 10A head channels)."""
    data = mx.sym.Variable('data')
    scores, heads = [], []
    for stride in cfg.RPN_FEAT_STRIDE:
        feat = mx.sym.Pooling(data, kernel=(stride, stride), stride=(stride, stride),
                              pool_type='avg')
        name = 'face_rpn_%%s_stride%d' % stride
        score = mx.sym.Convolution(feat, num_filter=2 * cfg.NUM_ANCHORS, kernel=(1, 1),
                                   name=name % 'cls_score')
        bbox = mx.sym.Convolution(feat, num_filter=4 * cfg.NUM_ANCHORS, kernel=(1, 1),
                                  name=name % 'bbox_pred')
        landmark = mx.sym.Convolution(feat, num_filter=10 * cfg.NUM_ANCHORS, kernel=(1, 1),
                                      name=name % 'landmark_pred')
        scores.append(score)
        heads.append((stride, score, bbox, landmark))
    return (scores, heads) if with_heads else scores


def _mini_training_graph(cfg):
    """Losses wired as the original RetinaFace heads consume the labels."""
    _, heads = _feat_syms(cfg, with_heads=True)
    outputs = []
    for stride, score, bbox, landmark in heads:
        var = lambda kind: mx.sym.Variable('face_%s_stride%d' % (kind, stride))  # noqa: E731
        outputs.append(mx.sym.SoftmaxOutput(
            mx.sym.Reshape(score, shape=(0, 2, -1)), label=var('label'), multi_output=True,
            use_ignore=True, ignore_label=-1, normalization='valid'))
        for pred, kind in ((bbox, 'bbox'), (landmark, 'landmark')):
            diff = (mx.sym.Reshape(pred, shape=(0, 0, -1)) - var(kind + '_target')) * \
                var(kind + '_weight')
            outputs.append(mx.sym.MakeLoss(mx.sym.smooth_l1(diff, scalar=3.0)))
    return mx.sym.Group(outputs)


def _write_image(path, boxes, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(60, 120, size=(360, 480, 3), dtype=np.uint8)
    for x1, y1, x2, y2 in boxes.astype(int):
        cv2.rectangle(image, (x1, y1), (x2, y2), (30, 160, 220), thickness=-1)
    cv2.imwrite(str(path), image)


@pytest.fixture
def roidb(tmp_path):
    """NUM_IMAGES drawn images (360 x 480) with 1..3 faces each; the last one has none."""
    records = []
    for i in range(NUM_IMAGES):
        rng = np.random.default_rng(i)
        count = 0 if i == NUM_IMAGES - 1 else 1 + i % 3
        xy = rng.uniform(20, 300, size=(count, 2))
        side = rng.uniform(30, 90, size=(count, 1))
        boxes = np.hstack([xy, xy + side]).astype(np.float32)
        landmarks = np.zeros((count, 5, 3), np.float32)
        landmarks[:, :, :2] = (xy + side / 2)[:, None, :]
        landmarks[:, :, 2] = 1
        path = tmp_path / ('img%d.jpg' % i)
        _write_image(path, boxes, i)
        records.append({'image': str(path), 'height': 360, 'width': 480, 'boxes': boxes,
                        'landmarks': landmarks, 'blur': np.zeros(count, np.float32),
                        'gt_classes': np.ones(count, np.int32), 'flipped': bool(i % 2)})
    return records


def _arrays(batch):
    return [batch.data[0].asnumpy()] + [label.asnumpy() for label in batch.label] + \
        [np.asarray(batch.index)]


def _epochs(loader, epochs):
    out = []
    for _ in range(epochs):
        out.append([_arrays(batch) for batch in loader])
        loader.reset()
    return out


def _assert_same_stream(a, b):
    assert len(a) == len(b)
    for epoch_a, epoch_b in zip(a, b):
        assert len(epoch_a) == len(epoch_b)
        for batch_a, batch_b in zip(epoch_a, epoch_b):
            for array_a, array_b in zip(batch_a, batch_b):
                np.testing.assert_array_equal(array_a, array_b)


# ---------------------------------------------------------------- shapes and a training step

def test_provide_data_and_label_follow_the_feature_maps(roidb):
    cfg = _cfg()
    with CropLoader(_feat_syms(cfg), roidb, BATCH, cfg=cfg, num_workers=0, seed=0) as loader:
        assert [(d.name, d.shape) for d in loader.provide_data] == [('data', (2, 3, 640, 640))]
        expected = []
        for stride, cells in ((32, 20), (16, 40), (8, 80)):
            hw = cells * cells
            expected += [('face_label_stride%d' % stride, (2, 2 * hw)),
                         ('face_bbox_target_stride%d' % stride, (2, 8, hw)),
                         ('face_bbox_weight_stride%d' % stride, (2, 8, hw)),
                         ('face_landmark_target_stride%d' % stride, (2, 20, hw)),
                         ('face_landmark_weight_stride%d' % stride, (2, 20, hw))]
        assert [(d.name, d.shape) for d in loader.provide_label] == expected
        max_data, label_shapes = loader.infer_shape([('data', (1, 3, 640, 640))])
        assert max_data == [('data', (1, 3, 640, 640))]
        assert label_shapes == [(name, (1,) + shape[1:]) for name, shape in expected]
        batch = next(loader)
        assert batch.data[0].shape == (2, 3, 640, 640)
        for desc, array in zip(loader.provide_label, batch.label):
            assert array.shape == desc.shape and array.dtype == np.float32
        assert loader.num_batches == NUM_IMAGES // BATCH


def test_a_training_step_of_an_original_style_graph_runs_on_loader_batches(roidb):
    cfg = _cfg()
    sym = _mini_training_graph(cfg)
    with CropLoader(feature_symbols(sym, cfg), roidb, BATCH, cfg=cfg, num_workers=0,
                    seed=1) as loader:
        module = mx.mod.Module(sym, data_names=['data'], label_names=loader.label_name,
                               context=[mx.cpu()])
        module.bind(data_shapes=loader.provide_data, label_shapes=loader.provide_label)
        module.init_params(mx.init.Normal(0.01))
        module.init_optimizer(optimizer='sgd', optimizer_params={'learning_rate': 0.001})
        positives = 0
        for batch in loader:
            module.forward_backward(batch)
            module.update()
            outputs = module.get_outputs()
            assert outputs[0].shape == (BATCH, 2, 2 * 20 * 20)
            assert all(np.isfinite(o.asnumpy()).all() for o in outputs)
            positives += sum(int((label.asnumpy() == 1).sum()) for label in batch.label[0::5])
        assert positives > 0


def test_forward_of_the_real_training_graph_on_a_loader_batch(roidb):
    symbol = pytest.importorskip('rcnn.symbol')
    if not hasattr(symbol, 'get_symbol_train'):
        pytest.skip('rcnn.symbol.get_symbol_train is not available yet')
    cfg = _cfg()
    train_sym = symbol.get_symbol_train('mnet', cfg)
    with CropLoader(feature_symbols(train_sym, cfg), roidb, 1, cfg=cfg, num_workers=0,
                    seed=2) as loader:
        if hasattr(symbol, 'label_shapes'):   # the graph module's own statement of the shapes
            assert [(d.name, d.shape) for d in loader.provide_label] == \
                [(n, tuple(s)) for n, s in symbol.label_shapes(train_sym, (1, 3, 640, 640), cfg)]
        assert_forward_finite(train_sym, loader)


def test_a_crop_without_faces_gives_a_valid_batch(roidb):
    cfg = _cfg()
    empty = [roidb[-1]] * BATCH                   # the image without faces
    with CropLoader(_feat_syms(cfg), empty, BATCH, cfg=cfg, num_workers=0, seed=0) as loader:
        batch = next(loader)
    for name, label in zip(loader.label_name, batch.label):
        assert np.all(label.asnumpy() == 0), name


# ---------------------------------------------------------------- stream and determinism

def test_same_seed_same_batches_with_workers_and_inline(roidb):
    cfg = _cfg()
    with CropLoader(_feat_syms(cfg), roidb, BATCH, cfg=cfg, num_workers=2, seed=11,
                    prefetch=2) as loader:
        with_workers = _epochs(loader, 2)
        workers = loader.workers
        assert len(workers) == 2 and all(p.is_alive() for p in workers)
    assert not any(p.is_alive() for p in workers)        # closed by the context manager
    with CropLoader(_feat_syms(cfg), roidb, BATCH, cfg=cfg, num_workers=0, seed=11) as loader:
        inline = _epochs(loader, 2)
    _assert_same_stream(with_workers, inline)
    with CropLoader(_feat_syms(cfg), roidb, BATCH, cfg=cfg, num_workers=0, seed=12) as loader:
        other = _epochs(loader, 1)
    assert not np.array_equal(other[0][0][0], inline[0][0][0])


def test_first_epoch_continues_the_stream_of_a_loader_started_at_epoch_0(roidb):
    """A resumed run builds its loader at its epoch: it must see that epoch's batches."""
    cfg = _cfg()
    with CropLoader(_feat_syms(cfg), roidb, BATCH, cfg=cfg, num_workers=0, seed=5) as loader:
        from_zero = _epochs(loader, 3)
    with CropLoader(_feat_syms(cfg), roidb, BATCH, cfg=cfg, num_workers=2, seed=5,
                    first_epoch=1) as loader:
        assert loader.epoch == 1
        from_one = _epochs(loader, 2)
    _assert_same_stream(from_one, from_zero[1:])
    with pytest.raises(ValueError, match='first_epoch'):
        CropLoader(_feat_syms(cfg), roidb, BATCH, cfg=cfg, num_workers=0, first_epoch=-1)


def test_epochs_reshuffle_and_reset_before_the_first_batch_is_a_no_op(roidb):
    cfg = _cfg()
    with CropLoader(_feat_syms(cfg), roidb, BATCH, cfg=cfg, num_workers=0, seed=3) as loader:
        loader.reset()
        assert loader.epoch == 0
        orders = []
        for _ in range(4):
            indices = np.concatenate([batch.index for batch in loader])
            assert sorted(indices) == list(range(NUM_IMAGES))   # every record once per epoch
            orders.append(tuple(indices))
            loader.reset()
        assert loader.epoch == 4
        assert len(set(orders)) > 1
    with CropLoader(_feat_syms(cfg), roidb, BATCH, shuffle=False, cfg=cfg, num_workers=0,
                    seed=3) as loader:
        assert np.concatenate([batch.index for batch in loader]).tolist() == \
            list(range(NUM_IMAGES))


def test_a_partial_epoch_then_reset_starts_the_next_epoch(roidb):
    cfg = _cfg()
    with CropLoader(_feat_syms(cfg), roidb, BATCH, cfg=cfg, num_workers=0, seed=5) as loader:
        full = _epochs(loader, 2)
    with CropLoader(_feat_syms(cfg), roidb, BATCH, cfg=cfg, num_workers=1, seed=5,
                    prefetch=3) as loader:
        next(loader)                                   # one batch of epoch 0 only
        loader.reset()
        second = [_arrays(batch) for batch in loader]
    _assert_same_stream([full[1]], [second])


# ---------------------------------------------------------------- bad input and shutdown

def test_missing_image_is_logged_and_replaced(roidb, caplog):
    cfg = _cfg()
    broken = list(roidb)
    broken[2] = dict(roidb[2], image=roidb[2]['image'].replace('img2', 'missing'))
    with caplog.at_level(logging.WARNING, logger='rcnn.core.loader'):
        with CropLoader(_feat_syms(cfg), broken, BATCH, shuffle=False, cfg=cfg, num_workers=1,
                        seed=4) as loader:
            batches = [_arrays(batch) for batch in loader]
    indices = np.concatenate([b[-1] for b in batches])
    assert 2 not in indices.tolist() and len(indices) == NUM_IMAGES
    messages = [r.getMessage() for r in caplog.records]
    assert any('missing.jpg' in m and 'replaced' in m for m in messages)
    # deterministic: the inline loader picks the same replacement
    with CropLoader(_feat_syms(cfg), broken, BATCH, shuffle=False, cfg=cfg, num_workers=0,
                    seed=4) as loader:
        again = [_arrays(batch) for batch in loader]
    _assert_same_stream([batches], [again])


def test_close_stops_the_workers_and_garbage_collection_too(roidb):
    cfg = _cfg()
    loader = CropLoader(_feat_syms(cfg), roidb, BATCH, cfg=cfg, num_workers=2, seed=0)
    next(loader)
    workers = loader.workers
    loader.close()
    loader.close()                                     # idempotent
    assert not any(p.is_alive() for p in workers)
    loader = CropLoader(_feat_syms(cfg), roidb, BATCH, cfg=cfg, num_workers=1, seed=0)
    workers = loader.workers
    del loader
    gc.collect()
    for process in workers:
        process.join(timeout=10)
    assert not any(p.is_alive() for p in workers)


_CLOSE_SCRIPT = """
import logging, sys
import mxnet  # noqa: F401 -- a training script imports MXNet, so every spawned worker does too
from rcnn.config import generate_config
from rcnn.core import loader as loader_module
from rcnn.core.loader import CropLoader
from rcnn.dataset.retinaface_dataset import RetinaFaceDataset
from test_loader import _feat_syms

if __name__ == '__main__':
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    loader_module._JOIN_TIMEOUT_S = 2.0
    cfg, _ = generate_config('mnet', 'retinaface')
    records = RetinaFaceDataset('train', None, sys.argv[1], cfg).gt_roidb() * 2
    with CropLoader(_feat_syms(cfg), records, 2, cfg=cfg, num_workers=2, seed=0) as loader:
        for _ in range(3):
            next(loader)
        workers = loader.workers
    print('exit codes', [p.exitcode for p in workers])
"""


def test_a_normal_close_stops_every_worker_without_terminating_it(dlib_faces, tmp_path):
    """Workers leave on STOP by themselves, quickly, also when the main script imports MXNet
    (its teardown in a worker took 2.5 to 4 s here): a join of 2 s (the loader allows 5) is
    enough, nothing is terminated and nothing is logged."""
    script = tmp_path / 'close_loader.py'
    script.write_text(_CLOSE_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(ROOT / 'tests'), os.path.dirname(os.path.abspath(__file__))]),
               OMP_NUM_THREADS='1')
    done = subprocess.run([sys.executable, str(script), str(dlib_faces)], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'exit codes [0, 0]' in done.stdout, done.stdout + done.stderr[-2000:]
    assert 'did not stop' not in done.stdout + done.stderr


def test_worker_failure_is_raised_in_the_parent(roidb):
    cfg = _cfg()
    bad = [dict(r, boxes=np.zeros((3, 7), np.float32)) for r in roidb]    # malformed boxes
    with CropLoader(_feat_syms(cfg), bad, BATCH, cfg=cfg, num_workers=1, seed=0) as loader:
        with pytest.raises(RuntimeError, match='img'):
            next(loader)


def test_a_killed_worker_is_an_error_not_a_hang(roidb):
    cfg = _cfg()
    with CropLoader(_feat_syms(cfg), roidb, BATCH, cfg=cfg, num_workers=1, seed=0,
                    prefetch=1) as loader:
        next(loader)
        loader.workers[0].kill()
        with pytest.raises(RuntimeError, match='died'):
            for _ in range(10):
                try:
                    next(loader)
                except StopIteration:
                    loader.reset()


def test_worker_module_does_not_import_mxnet():
    code = ('import sys, rcnn.core.loader_worker, rcnn.io.rpn; '
            'assert "mxnet" not in sys.modules, "mxnet imported"')
    subprocess.run([sys.executable, '-c', code], cwd=str(ROOT), check=True)


# ---------------------------------------------------------------- arguments

def test_bad_arguments_are_clear_errors(roidb):
    cfg = _cfg()
    with pytest.raises(ValueError, match='batch_size'):
        CropLoader(_feat_syms(cfg), roidb[:1], 2, cfg=cfg, num_workers=0)
    with pytest.raises(ValueError, match='work_load_list'):
        CropLoader(_feat_syms(cfg), roidb, 2, ctx=[mx.cpu(0), mx.cpu(1)], work_load_list=[1],
                   cfg=cfg, num_workers=0)
    with pytest.raises(ValueError, match='feat_sym'):
        CropLoader(_feat_syms(cfg)[:2], roidb, 2, cfg=cfg, num_workers=0)
    data = mx.sym.Variable('data')
    wrong = [mx.sym.Convolution(mx.sym.Pooling(data, kernel=(s, s), stride=(s, s),
                                               pool_type='avg'), num_filter=3, kernel=(1, 1))
             for s in cfg.RPN_FEAT_STRIDE]
    with pytest.raises(ValueError, match='channels'):
        CropLoader(wrong, roidb, 2, cfg=cfg, num_workers=0)


def test_work_load_list_slices_the_batch_like_the_module(roidb):
    cfg = _cfg()
    with CropLoader(_feat_syms(cfg), roidb, 4, ctx=[mx.cpu(0), mx.cpu(1)], work_load_list=[1, 3],
                    cfg=cfg, num_workers=0) as loader:
        assert loader.slices == [slice(0, 1), slice(1, 4)]


def test_real_dlib_photos_give_positive_anchors(dlib_faces):
    from rcnn.dataset.retinaface_dataset import RetinaFaceDataset, append_flipped_images
    cfg = _cfg()
    records = append_flipped_images(RetinaFaceDataset('train', None, str(dlib_faces),
                                                      cfg).gt_roidb())
    with CropLoader(_feat_syms(cfg), records, 4, cfg=cfg, num_workers=0, seed=0) as loader:
        batches = list(loader)
    positives = sum(int((label.asnumpy() == 1).sum()) for b in batches for label in b.label[0::5])
    assert positives > 0
    assert all(np.isfinite(b.data[0].asnumpy()).all() for b in batches)


def assert_forward_finite(train_sym, loader):
    """Bind ``train_sym`` to the loader's shapes, run one training forward on its next batch
    and check every output is finite."""
    module = mx.mod.Module(train_sym, data_names=['data'], label_names=loader.label_name,
                           context=[mx.cpu()])
    module.bind(data_shapes=loader.provide_data, label_shapes=loader.provide_label)
    module.init_params(mx.init.Normal(0.01))
    module.forward(next(loader), is_train=True)
    outputs = module.get_outputs()
    assert outputs and all(np.isfinite(o.asnumpy()).all() for o in outputs)
