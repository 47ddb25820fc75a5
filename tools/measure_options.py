"""Recall and time of the detection options on data with known faces (docs/detection-options.md).

    python tools/measure_options.py rotation --prefix ../shared/models/mnet.25/mnet.25
    python tools/measure_options.py scale --prefix ../shared/models/mnet.25/mnet.25

``rotation``: generated val images (the sample set's scenes, seed 0; faces at least
``--min-height`` pixels tall, since the generated faces below ~24 px are missed at any angle;
a detection matching no labelled face at all is counted as extra)
and the real dlib photos of ../shared (train and val labels), each turned counterclockwise by
0, 90, 180 and 270 degrees: recall (IoU >= 0.5) of plain ``detect()`` and of
``detect(rotations=(0, 90, 180, 270))``, the share of found faces whose reported upright angle
is right, and the seconds per image of both.

``scale``: generated 3840x2160 scenes crowded with faces under 16 px
(:func:`tools.sample_data.big_scenes.render_tiny_face_scene`) and 1920x1080 frames filled by one
face (60-95% of the height): recall and seconds per image of plain ``detect()`` and of each
scale option.

Threshold 0.5, scale 1.0, CPU. Prints Markdown tables; ``--json PATH`` also writes the rows.
"""
import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from rcnn.evaluation.widerface import pairwise_iou  # noqa: E402
from rcnn.inference.tiling import ScaleOptions  # noqa: E402
from tools.sample_data.big_scenes import (label_boxes, render_large_face_scene,  # noqa: E402
                                          render_tiny_face_scene, rotate_scene)

logger = logging.getLogger('measure_options')

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PREFIX = str(ROOT.parent / 'shared' / 'models' / 'mnet.25' / 'mnet.25')
DEFAULT_DLIB = str(ROOT.parent / 'shared' / 'data' / 'dlib_faces')
ANGLES = (0, 90, 180, 270)
IOU = 0.5


def matches(found, truth):
    """(G,) index of the best-overlapping found face of each true box, -1 below IoU 0.5."""
    if len(truth) == 0:
        return np.zeros(0, dtype=np.int64)
    if len(found) == 0:
        return np.full(len(truth), -1, dtype=np.int64)
    iou = pairwise_iou(np.asarray(truth, np.float64)[:, :4], np.asarray(found, np.float64)[:, :4])
    best = iou.argmax(axis=1)
    return np.where(iou.max(axis=1) >= IOU, best, -1)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


# ---------------------------------------------------------------------------- data

def generated_val(count, min_height):
    """[(name, image, boxes, all boxes)] of the sample set's first ``count`` val scenes (seed
    0): the boxes of the faces at least ``min_height`` px tall (the recall counts them) and of
    every face (a detection matching none of them is an extra one)."""
    from tools.sample_data import image_rng, render_scene
    items = []
    for index in range(count):
        scene = render_scene(image_rng(0, 'val', index))
        every = label_boxes(scene.faces)
        boxes = every[(every[:, 3] - every[:, 1]) >= min_height]
        items.append(('val_%d' % index, scene.image, boxes, every))
    return items


def dlib_photos(root):
    """[(name, image, boxes, boxes)] of the real dlib photos (train and val labels)."""
    from rcnn.dataset.label_file import read_label_file
    items = []
    for split in ('train', 'val'):
        labels = read_label_file(os.path.join(root, split, 'label.txt'))
        for index, name in enumerate(labels.image_names):
            image = cv2.imread(os.path.join(root, split, 'images', name))
            if image is None:
                raise FileNotFoundError('cannot read %s' % os.path.join(root, split, 'images',
                                                                         name))
            rows = labels.face_rows[labels.face_image == index, :4]
            boxes = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:]], axis=1)
            items.append((name, image, boxes, boxes))
    return items


# ---------------------------------------------------------------------------- rotation

def extra_detections(found, every):
    """Detections overlapping no labelled face by IoU 0.5."""
    if len(found) == 0:
        return 0
    if len(every) == 0:
        return len(found)
    iou = pairwise_iou(np.asarray(found, np.float64)[:, :4], np.asarray(every, np.float64))
    return int((iou.max(axis=1) < IOU).sum())


def measure_rotation(detector, items, label):
    """Rows, one per angle: recall plain / with rotations, right angles, extra detections,
    seconds per image."""
    rows = []
    for angle in ANGLES:
        total = plain_hits = rot_hits = right = plain_extra = rot_extra = 0
        plain_time = rot_time = 0.0
        for _, image, boxes, every in items:
            turned, turned_boxes = rotate_scene(image, boxes, angle)
            turned_every = rotate_scene(image, every, angle)[1]
            (plain, _), seconds = timed(lambda: detector.detect(turned, threshold=0.5))
            plain_time += seconds
            (faces, _, angles), seconds = timed(lambda: detector.detect(
                turned, threshold=0.5, rotations=ANGLES))
            rot_time += seconds
            total += len(turned_boxes)
            plain_hits += int((matches(plain, turned_boxes) >= 0).sum())
            found = matches(faces, turned_boxes)
            rot_hits += int((found >= 0).sum())
            right += int((angles[found[found >= 0]] == (360 - angle) % 360).sum())
            plain_extra += extra_detections(plain, turned_every)
            rot_extra += extra_detections(faces, turned_every)
        rows.append({'data': label, 'angle': angle, 'images': len(items), 'faces': total,
                     'extra_plain': plain_extra, 'extra_rotations': rot_extra,
                     'recall_plain': plain_hits / max(total, 1),
                     'recall_rotations': rot_hits / max(total, 1),
                     'angle_right': right / max(rot_hits, 1),
                     'seconds_plain': plain_time / len(items),
                     'seconds_rotations': rot_time / len(items)})
        logger.info('%s %d: %s', label, angle, rows[-1])
    return rows


def print_rotation(rows):
    print('| data | image turned by | faces | recall plain | recall rotations=(0, 90, 180, 270) '
          '| upright angle right | extra detections plain / rotations '
          '| s/image plain | s/image rotations |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for r in rows:
        print('| %s | %d | %d | %.3f | %.3f | %.3f | %d / %d | %.2f | %.2f |' % (
            r['data'], r['angle'], r['faces'], r['recall_plain'], r['recall_rotations'],
            r['angle_right'], r['extra_plain'], r['extra_rotations'], r['seconds_plain'],
            r['seconds_rotations']))


# ---------------------------------------------------------------------------- scale

TINY_OPTIONS = [('plain', None), ('tiles, tile_scale 2', ScaleOptions(tiles=True, tile_scale=2.0)),
                ('tiles (default, tile_scale 3)', 'tiles'), ('auto', 'auto')]
LARGE_OPTIONS = [('plain', None), ('low-res', 'low-res'), ('auto', 'auto')]


def measure_scale(detector, tiny_scenes, large_frames):
    rows = []
    scenes = [render_tiny_face_scene(np.random.default_rng(seed)) for seed in range(tiny_scenes)]
    for name, option in TINY_OPTIONS:
        tiny = tiny_hits = other = other_hits = found = 0
        seconds = 0.0
        for scene in scenes:
            (faces, _), spent = timed(lambda: detector.detect(scene.image, threshold=0.5,
                                                              tiles=option))
            seconds += spent
            hit = matches(faces, scene.boxes) >= 0
            tiny += int(scene.tiny.sum())
            tiny_hits += int(hit[scene.tiny].sum())
            other += int((~scene.tiny).sum())
            other_hits += int(hit[~scene.tiny].sum())
            found += len(faces)
        rows.append({'data': '3840x2160, faces 9-15.5 px', 'option': name, 'images': len(scenes),
                     'faces': tiny, 'recall': tiny_hits / max(tiny, 1),
                     'other_faces': other, 'other_recall': other_hits / max(other, 1),
                     'detections': found, 'seconds': seconds / len(scenes)})
        logger.info('%s', rows[-1])
    frames = [render_large_face_scene(np.random.default_rng(100 + k)) for k in range(large_frames)]
    for name, option in LARGE_OPTIONS:
        hits = found = 0
        seconds = 0.0
        for scene in frames:
            (faces, _), spent = timed(lambda: detector.detect(scene.image, threshold=0.5,
                                                              tiles=option))
            seconds += spent
            hits += int((matches(faces, scene.boxes) >= 0).sum())
            found += len(faces)
        rows.append({'data': '1920x1080, one face 60-95% of the height', 'option': name,
                     'images': len(frames), 'faces': len(frames), 'recall': hits / len(frames),
                     'detections': found, 'seconds': seconds / len(frames)})
        logger.info('%s', rows[-1])
    return rows


def print_scale(rows):
    print('| data | option | images | faces | recall | detections | s/image |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    for r in rows:
        extra = ''
        if 'other_faces' in r:
            extra = ' (larger faces: %.2f of %d)' % (r['other_recall'], r['other_faces'])
        print('| %s | %s | %d | %d | %.3f%s | %d | %.2f |' % (
            r['data'], r['option'], r['images'], r['faces'], r['recall'], extra,
            r['detections'], r['seconds']))


# ---------------------------------------------------------------------------- main

def build_parser():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('what', choices=('rotation', 'scale'))
    parser.add_argument('--prefix', default=DEFAULT_PREFIX,
                        help='checkpoint prefix, epoch 0 (default: the released mnet.25)')
    parser.add_argument('--dlib', default=DEFAULT_DLIB,
                        help='the real dlib photos in the RetinaFace layout (default %(default)s)')
    parser.add_argument('--val-images', type=int, default=12,
                        help='rotation: generated val images (default %(default)s)')
    parser.add_argument('--min-height', type=float, default=24.0,
                        help='rotation: generated faces counted from this height (default '
                             '%(default)s px)')
    parser.add_argument('--tiny-scenes', type=int, default=1,
                        help='scale: 4K scenes of tiny faces (default %(default)s)')
    parser.add_argument('--large-frames', type=int, default=6,
                        help='scale: frames filled by one face (default %(default)s)')
    parser.add_argument('--json', default=None, help='also write the rows to this file')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    from retinaface import RetinaFace
    detector = RetinaFace(args.prefix, 0, ctx_id=-1)
    if args.what == 'rotation':
        rows = measure_rotation(detector, generated_val(args.val_images, args.min_height),
                                'generated val')
        if os.path.isdir(args.dlib):
            rows += measure_rotation(detector, dlib_photos(args.dlib), 'real dlib photos')
        else:
            logger.warning('%s not found: real photos skipped', args.dlib)
        print_rotation(rows)
    else:
        rows = measure_scale(detector, args.tiny_scenes, args.large_frames)
        print_scale(rows)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
