"""Generate the WIDER-format sample data set (drawn faces with exact labels).

    python tools/make_sample_data.py --out data/sample --train 400 --val 100 --seed 0

writes ``<out>/train/images/<event>/*.jpg`` + ``train/label.txt`` (boxes, 5 landmarks with
visibility flags, blur), ``<out>/val/images/<event>/*.jpg`` + ``val/label.txt`` (boxes only) and
``<out>/val/gt/wider_{face,easy,medium,hard}_val.mat`` in the official evaluation format.
The drawing and labelling rules are documented in :mod:`tools.sample_data`; the Python
API is :func:`make_sample_dataset` (re-exported here).
"""
import argparse
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rcnn.utils import cli  # noqa: E402
from tools.sample_data import (LANDMARK_MIN_HEIGHT, make_sample_dataset,  # noqa: E402
                                settings_description)
from rcnn.utils.cli import non_negative_int, positive_int  # noqa: E402
from tools.sample_data.dataset import add_drawing_arguments  # noqa: E402

__all__ = ['make_sample_dataset', 'parse_args', 'main']


def _jpeg_quality(text):
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError('must be in 1..100, got %d' % value)
    return value


def parse_args(argv=None):
    epilog = '\n'.join(
        ['label formats:',
         '  train/label.txt: "# <event>/<name>.jpg", then per face "x y w h" + 5 x "lx ly flag" +'
         ' "blur";',
         '    points: left eye, right eye, nose tip, left and right mouth corner (image left',
         '    first); flag 0.0 visible, 1.0 occluded; "-1 -1 -1" x 5 and blur -1 for faces under',
         '    %g px or with a point outside the image.' % LANDMARK_MIN_HEIGHT,
         '  val/label.txt: "# <event>/<name>.jpg", then "x y w h" per face.',
         '  val/gt/*.mat: the official WIDER FACE evaluation files; settings (nested, computed',
         '    on the clipped label box and the drawn geometry):']
        + ['    ' + line for line in settings_description()]
        + ['',
           'The same --seed gives byte-identical files whatever --workers is. An existing --out is',
           'replaced only when it holds a previously generated sample set (sample_set.json).'])
    parser = cli.ArgumentParser(
        description='Draw a WIDER-format face data set with exact boxes, landmarks and '
                    'evaluation ground truth.',
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='data/sample',
                        help='output directory (created; default: %(default)s)')
    parser.add_argument('--train', type=non_negative_int, default=400,
                        help='number of training images (default: %(default)s)')
    parser.add_argument('--val', type=non_negative_int, default=100,
                        help='number of validation images (default: %(default)s)')
    parser.add_argument('--seed', type=non_negative_int, default=0,
                        help='random seed; image i of a split is drawn from (seed, split, i) '
                             '(default: %(default)s)')
    parser.add_argument('--workers', type=positive_int, default=min(2, os.cpu_count() or 1),
                        help='processes drawing images in parallel; does not change the output '
                             '(default: %(default)s)')
    parser.add_argument('--jpeg-quality', type=_jpeg_quality, default=90,
                        help='JPEG quality of the written images, 1..100 (default: %(default)s)')
    add_drawing_arguments(parser)
    parser.add_argument('--quiet', action='store_true',
                        help='no progress bar and no log lines, only the final summary')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    summary = make_sample_dataset(args.out, n_train=args.train, n_val=args.val, seed=args.seed,
                                  workers=args.workers, jpeg_quality=args.jpeg_quality,
                                  progress=not args.quiet, face_blur=args.face_blur,
                                  occlusion=args.occlusion)
    print('sample set written to %s' % summary['out_dir'])
    print('  train: %d images, %d faces' % (summary['images']['train'], summary['faces']['train']))
    print('  val:   %d images, %d faces (easy %d / medium %d / hard %d)'
          % (summary['images']['val'], summary['faces']['val'],
             summary['faces_per_setting']['easy'], summary['faces_per_setting']['medium'],
             summary['faces_per_setting']['hard']))
    print('  %.1f s, %.0f images/s' % (summary['seconds'], summary['images_per_s']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
