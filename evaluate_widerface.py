"""Score WIDER FACE submission files: Easy / Medium / Hard AP of the standard protocol.

Example:
    python evaluate_widerface.py --pred ./wout --gt ../shared/widerface_eval/ground_truth

``--pred`` holds ``<event>/<image>.txt`` files (as written by test_widerface.py): line 1 the
image name, line 2 the number of boxes, then ``x y w h score`` lines. ``--gt`` is a directory
with the official ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat``, or a
RetinaFace ``label.txt`` (or a directory holding one) for sets without ``.mat`` files.
See rcnn/evaluation/widerface.py for the protocol.
"""
import argparse
import csv
import logging
import os
import sys
import time

from rcnn.utils import cli
from rcnn.evaluation.widerface import (LABEL_MIN_HEIGHT, SETTINGS, evaluate_predictions,
                                       load_ground_truth, read_predictions)

logger = logging.getLogger('evaluate_widerface')


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--pred', required=True,
                        help='folder of prediction files <event>/<image>.txt')
    parser.add_argument('--gt', required=True,
                        help='folder with wider_face_val.mat + wider_{easy,medium,hard}_val.mat, '
                             'or a label.txt (or a folder with one) in the val format')
    parser.add_argument('--iou', type=float, default=0.5,
                        help='IoU needed for a prediction to match a face (default 0.5)')
    parser.add_argument('--strict', action='store_true',
                        help='a missing prediction file is an error (default: the image counts '
                             'as having no detections and one warning lists them)')
    parser.add_argument('--label-split', choices=('size', 'all'), default='size',
                        help='label.txt ground truth only: "size" keeps a face in easy / medium / '
                             'hard when its box height is at least %s px (smaller faces are '
                             'ignored there); "all" counts every face in every setting'
                             % ' / '.join('%g' % LABEL_MIN_HEIGHT[s] for s in SETTINGS))
    parser.add_argument('--curves', metavar='DIR', default=None,
                        help='also write the PR curves to DIR: pr_<setting>.csv, and '
                             'pr_curves.png when matplotlib is installed')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    args = parser.parse_args(argv)
    if not 0.0 < args.iou <= 1.0:
        parser.error('--iou must be in (0, 1], got %g' % args.iou)
    return args


def write_curves(results, out_dir):
    """pr_<setting>.csv per setting (+ pr_curves.png when matplotlib is importable)."""
    os.makedirs(out_dir, exist_ok=True)
    for setting in SETTINGS:
        result = results[setting]
        path = os.path.join(out_dir, 'pr_%s.csv' % setting)
        with open(path, 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(['threshold', 'precision', 'recall', 'proposals', 'recalled'])
            for row in zip(result.thresholds, result.precision, result.recall,
                           result.proposals, result.recalled):
                writer.writerow(['%.3f' % row[0], '%.6f' % row[1], '%.6f' % row[2],
                                 int(row[3]), int(row[4])])
    try:
        import matplotlib
    except ImportError:
        logger.info('matplotlib not installed: PR curves written as CSV only')
        return
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 5))
    for setting in SETTINGS:
        result = results[setting]
        ax.plot(result.recall, result.precision,
                label='%s (AP %.4f)' % (setting.capitalize(), result.ap))
    ax.set_xlabel('recall')
    ax.set_ylabel('precision')
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(True)
    ax.legend(loc='lower left')
    fig.savefig(os.path.join(out_dir, 'pr_curves.png'), dpi=100, bbox_inches='tight')
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    start = time.perf_counter()
    try:
        gt = load_ground_truth(args.gt, label_split=args.label_split)
        predictions = read_predictions(args.pred, gt, strict=args.strict,
                                       progress=not args.quiet)
    except (OSError, ValueError) as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    results = evaluate_predictions(predictions, gt, iou_thresh=args.iou)
    elapsed = time.perf_counter() - start
    if args.curves:
        write_curves(results, args.curves)
    print('==================== Results (IoU %g) ====================' % args.iou)
    for setting in SETTINGS:
        print('%-6s Val AP: %.4f  (%d faces)' % (setting.capitalize(), results[setting].ap,
                                                   results[setting].num_faces))
    print('%d images, %d predictions, evaluated in %.2f s' % (
        gt.num_images, sum(len(p) for p in predictions), elapsed))
    print('=' * 58)
    return 0


if __name__ == '__main__':
    sys.exit(main())
