"""The WIDER-format sample set on disk: images, ``label.txt`` files (written by
:mod:`rcnn.dataset.label_file`) and the official evaluation ``.mat`` files, drawn by
:mod:`tools.sample_data.scene`. Layout, settings and determinism: see :mod:`tools.sample_data`.
"""
import io
import json
import logging
import multiprocessing
import os
import shutil
import time

import cv2
import numpy as np
import scipy.io as sio
from tqdm import tqdm

from rcnn.dataset.label_file import format_face_line, write_label_file
from tools.sample_data.face import SETTING_RULES, SETTINGS
from tools.sample_data.scene import OCCLUSION, render_scene

__all__ = ['EVENTS', 'SPLIT_CODES', 'MARKER_NAME', 'GENERATOR_NAME', 'image_rng', 'image_name',
           'add_drawing_arguments', 'read_marker', 'STANDARD_DRAWING',
           'make_sample_dataset', 'format_train_line', 'format_val_line', 'write_wider_mat_files']

logger = logging.getLogger(__name__)

EVENTS = ('0--Parade', '1--Handshaking', '2--Demonstration', '3--Riot', '4--Dancing',
          '5--Car_Accident')
SPLIT_CODES = {'train': 0, 'val': 1}

# ---------------------------------------------------------------------------------------------
# the data set on disk
# ---------------------------------------------------------------------------------------------
MARKER_NAME = 'sample_set.json'
# the generator's name written into sample_set.json and the .mat headers: its module's former
# name, kept so that a seed still gives the same bytes as before the move out of rcnn/
GENERATOR_NAME = 'rcnn.dataset.synthetic'


def image_rng(seed, split, index):
    """The numpy Generator that draws image ``index`` of ``split`` ('train' | 'val')."""
    entropy = [int(seed), SPLIT_CODES[split], int(index)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def image_name(split, index):
    """(event, file name without .jpg) of image ``index`` of ``split`` (events round-robin)."""
    event = EVENTS[index % len(EVENTS)]
    number, title = event.split('--', 1)
    return event, '%s_%s_%s_%d' % (number, title, split, index)


def _generate_image(task):
    """Worker: draw, encode and write one image; return its label record (a dict)."""
    out_dir, split, index, seed, jpeg_quality, face_blur, occlusion = task
    scene = render_scene(image_rng(seed, split, index), face_blur=face_blur, occlusion=occlusion)
    event, name = image_name(split, index)
    ok, encoded = cv2.imencode('.jpg', scene.image, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise RuntimeError('JPEG encoding failed for %s/%s' % (event, name))
    path = os.path.join(out_dir, split, 'images', event, name + '.jpg')
    with open(path, 'wb') as handle:
        handle.write(encoded.tobytes())
    return {'split': split, 'index': index, 'event': event, 'name': name,
            'height': scene.image.shape[0], 'width': scene.image.shape[1], 'faces': scene.faces}


def format_train_line(face):
    """``x y w h`` + 5 x (``x y flag``) + ``blur`` for one :class:`FaceLabel` (integer box)."""
    return format_face_line(face.box, face.landmarks, face.blur)


def format_val_line(face):
    """``x y w h`` for one :class:`FaceLabel` (integer box)."""
    return format_face_line(face.box)


def _write_label_file(path, records, line_format):
    write_label_file(path, [('%s/%s.jpg' % (record['event'], record['name']),
                             [line_format(face) for face in record['faces']])
                            for record in records])


def _cell_column(items):
    """(N, 1) object array (a MATLAB cell column) holding ``items``."""
    cells = np.empty((len(items), 1), dtype=object)
    for k, item in enumerate(items):
        cells[k, 0] = item
    return cells


def _uint_column(values):
    """(N, 1) uint8 column, uint16 when a value exceeds 255 (as in the official files)."""
    values = np.asarray(values, np.int64).reshape(-1, 1)
    dtype = np.uint16 if values.size and values.max() > 255 else np.uint8
    return values.astype(dtype)


def _attribute_codes(face):
    """Official per-face attribute codes (uint8 values) derived from the drawn quantities."""
    if face.blur < 0:
        blur = 0
    else:
        blur = 0 if face.blur < 0.35 else (1 if face.blur < 0.6 else 2)
    if face.occluded_points >= 3 or face.inside_fraction < 0.5:
        occlusion = 2
    elif face.occluded_points >= 1 or face.inside_fraction < 0.95:
        occlusion = 1
    else:
        occlusion = 0
    return {'blur_label_list': blur, 'expression_label_list': 0, 'illumination_label_list': 0,
            'invalid_label_list': 0 if face.in_setting('hard') else 1,
            'occlusion_label_list': occlusion, 'pose_label_list': int(abs(face.yaw) > 0.45)}


_ATTRIBUTE_KEYS = ('blur_label_list', 'expression_label_list', 'illumination_label_list',
                   'invalid_label_list', 'occlusion_label_list', 'pose_label_list')
_MAT_HEADER = b'MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by: ' + GENERATOR_NAME.encode()


def _save_mat(path, variables):
    """scipy savemat with a fixed header text (no creation time), so the bytes are stable."""
    buffer = io.BytesIO()
    sio.savemat(buffer, {key: variables[key] for key in sorted(variables)})
    data = buffer.getvalue()
    with open(path, 'wb') as handle:
        handle.write(_MAT_HEADER.ljust(116, b' ') + data[116:])


def write_wider_mat_files(gt_dir, records):
    """Write ``wider_{face,easy,medium,hard}_val.mat`` for the val ``records`` (event order as
    given; only events with images are listed)."""
    os.makedirs(gt_dir, exist_ok=True)
    events = [event for event in EVENTS if any(r['event'] == event for r in records)]
    per_event = [[r for r in records if r['event'] == event] for event in events]

    common = {
        'event_list': _cell_column(events),
        'file_list': _cell_column([_cell_column([r['name'] for r in recs]) for recs in per_event]),
        'face_bbx_list': _cell_column([_cell_column(
            [np.array([f.box for f in r['faces']], np.int32).reshape(-1, 4) for r in recs])
            for recs in per_event]),
    }
    for key in _ATTRIBUTE_KEYS:
        common[key] = _cell_column([_cell_column(
            [_uint_column([_attribute_codes(f)[key] for f in r['faces']]) for r in recs])
            for recs in per_event])
    _save_mat(os.path.join(gt_dir, 'wider_face_val.mat'), common)
    for setting in SETTINGS:
        gt_list = _cell_column([_cell_column(
            [_uint_column([k + 1 for k, f in enumerate(r['faces']) if f.in_setting(setting)])
             for r in recs]) for recs in per_event])
        _save_mat(os.path.join(gt_dir, 'wider_%s_val.mat' % setting), dict(common, gt_list=gt_list))


def _prepare_output(out_dir):
    """Create ``out_dir``; clear a previous sample set there, refuse to clobber anything else."""
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not os.path.isfile(os.path.join(out_dir, MARKER_NAME)):
            raise FileExistsError('output directory %s is not empty and holds no %s (not a '
                                  'generated sample set): choose another --out or empty it'
                                  % (out_dir, MARKER_NAME))
        for split in SPLIT_CODES:
            shutil.rmtree(os.path.join(out_dir, split), ignore_errors=True)
    for split in SPLIT_CODES:
        for event in EVENTS:
            os.makedirs(os.path.join(out_dir, split, 'images', event), exist_ok=True)


#: the drawing shares of the standard set, also those of a marker that does not record them
STANDARD_DRAWING = {'face_blur': 0.0, 'occlusion': OCCLUSION}


def read_marker(folder):
    """The generator settings of the sample set in ``folder`` (its marker file as a dict, the
    :data:`STANDARD_DRAWING` shares filled in where it has none), or None without a marker.

    Raises:
        ValueError naming the file when the marker is not JSON.
    """
    path = os.path.join(folder, MARKER_NAME)
    try:
        with open(path) as handle:
            recorded = json.load(handle)
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise ValueError('%s: not a sample-set marker (%s)' % (path, err))
    return dict(STANDARD_DRAWING, **recorded)


def add_drawing_arguments(parser, face_blur=0.0, occlusion=OCCLUSION):
    """``--face-blur`` and ``--occlusion``, the drawing shares of :func:`make_sample_dataset`,
    on an argparse ``parser`` with these defaults."""
    from rcnn.utils.cli import share
    parser.add_argument('--face-blur', type=share, default=face_blur, metavar='SHARE',
                        help='share of faces blurred on their own at a known level (labels '
                             '0.3..0.9), for training and measuring a blur head; 0 draws the '
                             'standard set (default: %(default)s)')
    parser.add_argument('--occlusion', type=share, default=occlusion, metavar='SHARE',
                        help='share of faces with an occluder drawn over them; the standard '
                             'set has %s (default: %%(default)s)' % OCCLUSION)


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError('%s must be a non-negative integer, got %r' % (name, value))


def make_sample_dataset(out_dir, n_train=400, n_val=100, seed=0, workers=1, jpeg_quality=90,
                        progress=True, face_blur=0.0, occlusion=OCCLUSION):
    """Generate the WIDER-format sample set under ``out_dir`` (see the module docstring).

    ``workers`` > 1 draws images in that many processes (same bytes as 1). ``face_blur`` in
    [0, 1] is the share of faces blurred on their own at a known level (for training and
    measuring a blur head; 0, the default, draws the standard set); ``occlusion`` the share of
    faces with an occluder over them (0.15 in the standard set). Returns a summary
    dict: ``out_dir``, ``images``/``faces`` per split, ``faces_per_setting`` (val),
    ``seconds`` and ``images_per_s``.
    """
    _check_count('n_train', n_train)
    _check_count('n_val', n_val)
    _check_count('seed', seed)
    _check_count('workers', workers)
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError('jpeg_quality must be in 1..100, got %r' % (jpeg_quality,))
    for name, share in (('face_blur', face_blur), ('occlusion', occlusion)):
        if isinstance(share, bool) or not isinstance(share, (int, float, np.floating)) \
                or not 0.0 <= float(share) <= 1.0:
            raise ValueError('%s must be a share in [0, 1], got %r' % (name, share))
    face_blur, occlusion = float(face_blur), float(occlusion)
    out_dir = os.fspath(out_dir)
    start = time.perf_counter()
    _prepare_output(out_dir)

    drawing = (face_blur, occlusion)
    tasks = ([(out_dir, 'train', i, seed, jpeg_quality) + drawing for i in range(n_train)]
             + [(out_dir, 'val', i, seed, jpeg_quality) + drawing for i in range(n_val)])
    bar = tqdm(total=len(tasks), desc='sample set', unit='img', disable=not progress)
    records = []
    if workers > 1 and len(tasks) > 1:
        # 'spawn', never 'fork': a forked child inherits locks held by the parent's threads
        # (OpenCV / MXNet / OpenMP pools) and can deadlock on its first parallel call
        context = multiprocessing.get_context('spawn')
        with context.Pool(min(workers, len(tasks)), initializer=cv2.setNumThreads,
                          initargs=(1,)) as pool:
            for record in pool.imap_unordered(_generate_image, tasks, chunksize=4):
                records.append(record)
                bar.update(1)
    else:
        for task in tasks:
            records.append(_generate_image(task))
            bar.update(1)
    bar.close()

    def split_records(split):
        chosen = [r for r in records if r['split'] == split]
        return sorted(chosen, key=lambda r: (EVENTS.index(r['event']), r['index']))

    train, val = split_records('train'), split_records('val')
    _write_label_file(os.path.join(out_dir, 'train', 'label.txt'), train, format_train_line)
    _write_label_file(os.path.join(out_dir, 'val', 'label.txt'), val, format_val_line)
    write_wider_mat_files(os.path.join(out_dir, 'val', 'gt'), val)
    with open(os.path.join(out_dir, MARKER_NAME), 'w') as handle:
        json.dump({'generator': GENERATOR_NAME, 'seed': int(seed), 'train': int(n_train),
                   'val': int(n_val), 'jpeg_quality': int(jpeg_quality), 'face_blur': face_blur,
                   'occlusion': occlusion,
                   'settings': SETTING_RULES}, handle, indent=1, sort_keys=True)

    seconds = time.perf_counter() - start
    summary = {
        'out_dir': out_dir,
        'images': {'train': len(train), 'val': len(val)},
        'faces': {'train': sum(len(r['faces']) for r in train),
                  'val': sum(len(r['faces']) for r in val)},
        'faces_per_setting': {s: sum(f.in_setting(s) for r in val for f in r['faces'])
                              for s in SETTINGS},
        'seconds': seconds,
        'images_per_s': len(tasks) / seconds if seconds > 0 else float('inf'),
    }
    logger.info('sample set in %s: %d train / %d val images, %d / %d faces, %.1f s (%.0f img/s)',
                out_dir, len(train), len(val), summary['faces']['train'], summary['faces']['val'],
                seconds, summary['images_per_s'])
    return summary
