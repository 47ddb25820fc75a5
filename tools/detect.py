"""Detect faces in images with a RetinaFace checkpoint; draw them and/or list them in JSON.

    python tools/detect.py --prefix ../shared/models/mnet.25/mnet.25 --epoch 0 \\
        ../shared/images/ --out out/ --json

Each input is an image file or a folder (searched recursively for .jpg/.jpeg/.png/.bmp/.webp/
.tif/.tiff files). For every image, a copy with the boxes, scores and the 5 landmarks drawn
(left eye red, right eye green, nose blue, left mouth corner yellow, right mouth corner
magenta) is written under --out (a folder input keeps its sub-folders), unless --no-draw.
--json writes <out>/detections.json: a list with, per image, ``image`` (the input path),
``drawn`` (the written copy or null), ``width``, ``height`` and ``faces``, each face
``{"box": [x1, y1, x2, y2], "score": s, "landmarks": [[x, y] x 5]}`` in input pixels, by
descending score. An unreadable image is reported (and listed with an ``error``) and the exit
status is then 1.
"""
import argparse
import json
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
from tqdm import tqdm  # noqa: E402

from rcnn.utils.fileio import atomic_write  # noqa: E402

logger = logging.getLogger('detect')

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
#: BGR colours of the 5 landmarks: left eye, right eye, nose, left and right mouth corners
LANDMARK_COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255)]
BOX_COLOUR = (0, 255, 0)
JSON_NAME = 'detections.json'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', nargs='+', metavar='image_or_dir',
                        help='image files and/or folders of images')
    parser.add_argument('--prefix', required=True,
                        help='checkpoint prefix: <prefix>-symbol.json, <prefix>-%%04d.params')
    parser.add_argument('--epoch', type=int, default=0, help='checkpoint epoch')
    parser.add_argument('--out', required=True, help='output folder (created when needed)')
    parser.add_argument('--thresh', type=float, default=0.5, help='minimum face score')
    parser.add_argument('--scales', type=float, nargs='+', default=[1.0],
                        help='image scales to run, results merged (default 1.0)')
    parser.add_argument('--flip', action='store_true', help='also run each scale mirrored')
    parser.add_argument('--nms', type=float, default=0.4, help='NMS IoU threshold')
    parser.add_argument('--json', action='store_true',
                        help='write <out>/%s with the faces of every image' % JSON_NAME)
    parser.add_argument('--no-draw', action='store_true',
                        help='do not write annotated images (use with --json)')
    parser.add_argument('--gpu', type=int, default=-1, help='GPU id, or -1 for the CPU')
    parser.add_argument('--network', default='net3', help='anchor layout (net3)')
    args = parser.parse_args(argv)
    if args.no_draw and not args.json:
        parser.error('--no-draw without --json would produce nothing')
    if any(s <= 0 for s in args.scales):
        parser.error('--scales must be positive, got %s' % args.scales)
    return args


def _is_image(path):
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def collect_images(inputs):
    """[(image path, output-relative path)] for files and folders (recursive, sorted).

    Raises:
        FileNotFoundError for a missing input; ValueError when two images would be written to
        the same output path.
    """
    pairs = []
    for item in inputs:
        if os.path.isdir(item):
            for folder, subfolders, files in os.walk(item):
                subfolders.sort()
                for name in sorted(files):
                    if _is_image(name):
                        path = os.path.join(folder, name)
                        pairs.append((path, os.path.relpath(path, item)))
        elif os.path.isfile(item):
            pairs.append((item, os.path.basename(item)))
        else:
            raise FileNotFoundError('input not found: %s' % item)
    seen = {}
    for path, relative in pairs:
        if relative in seen:
            raise ValueError('%s and %s would both be written to <out>/%s; pass them in '
                             'separate runs or folders' % (seen[relative], path, relative))
        seen[relative] = path
    return pairs


def draw_faces(image, faces, landmarks):
    """A copy of ``image`` (H, W, 3) BGR with boxes, scores and landmarks drawn."""
    canvas = image.copy()
    thickness = max(1, int(round(max(image.shape[:2]) / 500.0)))
    for face, points in zip(faces, landmarks):
        x1, y1, x2, y2 = [int(round(v)) for v in face[:4]]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), BOX_COLOUR, thickness)
        cv2.putText(canvas, '%.3f' % face[4], (x1, max(y1 - 4 * thickness, 10)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, BOX_COLOUR, thickness)
        for (x, y), colour in zip(points, LANDMARK_COLOURS):
            cv2.circle(canvas, (int(round(x)), int(round(y))), thickness + 1, colour, -1)
    return canvas


def faces_to_json(faces, landmarks):
    return [{'box': [round(float(v), 2) for v in face[:4]], 'score': round(float(face[4]), 5),
             'landmarks': [[round(float(x), 2), round(float(y), 2)] for x, y in points]}
            for face, points in zip(faces, landmarks)]


def _write_image(path, image):
    def write(tmp):
        if not cv2.imwrite(tmp, image):
            raise OSError('cannot write image %s' % path)
    atomic_write(path, write, suffix=os.path.splitext(path)[1])


def _write_json(path, records):
    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(records, f, indent=1)
            f.write('\n')
    atomic_write(path, write, suffix=os.path.splitext(path)[1])


def run(args):
    """Detect on every input; returns the per-image records (see the module docstring)."""
    from retinaface import RetinaFace
    pairs = collect_images(args.inputs)
    if not pairs:
        raise FileNotFoundError('no image (%s) found in %s' % ('/'.join(IMAGE_EXTENSIONS),
                                                              ', '.join(args.inputs)))
    detector = RetinaFace(args.prefix, args.epoch, ctx_id=args.gpu, network=args.network,
                          nms=args.nms)
    records = []
    for path, relative in tqdm(pairs, desc='detect', unit='img', disable=len(pairs) < 5):
        image = cv2.imread(path)
        if image is None:
            logger.error('cannot read image %s (not an image or unsupported format); skipped',
                         path)
            records.append({'image': path, 'error': 'unreadable image'})
            continue
        faces, landmarks = detector.detect(image, threshold=args.thresh, scales=args.scales,
                                           do_flip=args.flip)
        drawn = None
        if not args.no_draw:
            drawn = os.path.join(args.out, relative)
            _write_image(drawn, draw_faces(image, faces, landmarks))
        logger.info('%s: %d face(s)', path, len(faces))
        records.append({'image': path, 'drawn': drawn, 'width': int(image.shape[1]),
                        'height': int(image.shape[0]), 'faces': faces_to_json(faces, landmarks)})
    if args.json:
        _write_json(os.path.join(args.out, JSON_NAME), records)
    return records


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        records = run(args)
    except (FileNotFoundError, ValueError) as err:
        logger.error('%s', err)
        return 2
    failed = [r['image'] for r in records if 'error' in r]
    num_faces = sum(len(r.get('faces', ())) for r in records)
    print('%d image(s), %d face(s) at threshold %g; output in %s%s' % (
        len(records) - len(failed), num_faces, args.thresh, args.out,
        '; %d unreadable: %s' % (len(failed), ', '.join(failed)) if failed else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
