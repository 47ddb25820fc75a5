"""Score WIDER FACE submission files: Easy / Medium / Hard AP of the standard protocol.

Examples:
    python evaluate_widerface.py --pred ./wout --gt ../shared/widerface_eval/ground_truth
    # PR curves: pr_<setting>.csv and pr_curves.png in ./curves
    python evaluate_widerface.py --pred ./wout --gt <gt> --curves ./curves
    # several methods on one figure per setting (pr_compare_<setting>.png), as the WIDER FACE
    # leaderboard draws them
    python evaluate_widerface.py --gt <gt> --compare ./wout_mnet ./wout_r50 --names mnet R50 \
        --curves ./curves

``--pred`` holds ``<event>/<image>.txt`` files (as written by test_widerface.py): line 1 the
image name, line 2 the number of boxes, then ``x y w h score`` lines. ``--gt`` is a directory
with the official ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat``, or a
RetinaFace ``label.txt`` (or a directory holding one) for sets without ``.mat`` files.
See rcnn/evaluation/widerface.py for the protocol, rcnn/evaluation/pr_plot.py for the figures.
"""
import argparse
import csv
import logging
import os
import sys
import time

from rcnn.evaluation.pr_plot import plot_pr_comparison, plot_pr_curves
from rcnn.evaluation.widerface import (LABEL_MIN_HEIGHT, SETTINGS, evaluate_predictions,
                                       load_ground_truth, read_predictions)

logger = logging.getLogger('evaluate_widerface')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--pred', nargs='+', action='extend', default=[], metavar='DIR',
                        help='folder of prediction files <event>/<image>.txt; several folders '
                             'are compared (as --compare)')
    parser.add_argument('--compare', nargs='+', action='extend', default=[], metavar='DIR',
                        dest='pred', help='several methods\' prediction folders: their APs, and '
                                          'with --curves one PR figure per setting with all of '
                                          'them (pr_compare_<setting>.png)')
    parser.add_argument('--names', nargs='+', default=None, metavar='NAME',
                        help='legend names of the prediction folders, in their order (default: '
                             'the folder names)')
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
                        help='also write the PR curves to DIR: pr_<setting>.csv and '
                             'pr_curves.png (several methods: DIR/<name>/ each, plus '
                             'pr_compare_<setting>.png)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    args = parser.parse_args(argv)
    if not 0.0 < args.iou <= 1.0:
        parser.error('--iou must be in (0, 1], got %g' % args.iou)
    if not args.pred:
        parser.error('give the predictions: --pred DIR (or --compare DIR1 DIR2 ...)')
    if args.names is not None and len(args.names) != len(args.pred):
        parser.error('--names gives %d names for %d prediction folders'
                     % (len(args.names), len(args.pred)))
    args.names = method_names(args.pred) if args.names is None else args.names
    if len(set(args.names)) != len(args.names):
        parser.error('--names must differ from each other, got %s' % ' '.join(args.names))
    return args


def method_names(folders):
    """Legend names of prediction folders: their base names, made unique by ``-2``, ``-3``."""
    names = []
    for folder in folders:
        base = os.path.basename(os.path.normpath(folder)) or folder
        name, k = base, 1
        while name in names:
            k += 1
            name = '%s-%d' % (base, k)
        names.append(name)
    return names


def write_curves(results, out_dir, title='WIDER FACE PR curves'):
    """pr_<setting>.csv per setting and pr_curves.png in ``out_dir``."""
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
    plot_pr_curves(results, os.path.join(out_dir, 'pr_curves.png'), title=title)


def write_comparison(methods, out_dir):
    """pr_compare_<setting>.png in ``out_dir``: every method's curve of that setting.

    Args:
        methods: list of (name, setting -> SettingResult).
    Returns:
        the paths written.
    """
    os.makedirs(out_dir, exist_ok=True)
    return [plot_pr_comparison(methods, setting,
                               os.path.join(out_dir, 'pr_compare_%s.png' % setting))
            for setting in SETTINGS]


def print_results(results, gt, predictions, elapsed, iou, name=None):
    title = 'Results (IoU %g)' % iou if name is None else '%s: results (IoU %g)' % (name, iou)
    print('%s %s %s' % ('=' * 20, title, '=' * max(1, 36 - len(title))))
    for setting in SETTINGS:
        print('%-6s Val AP: %.4f  (%d faces)' % (setting.capitalize(), results[setting].ap,
                                                   results[setting].num_faces))
    print('%d images, %d predictions, evaluated in %.2f s' % (
        gt.num_images, sum(len(p) for p in predictions), elapsed))
    print('=' * 58)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    several = len(args.pred) > 1
    try:
        gt = load_ground_truth(args.gt, label_split=args.label_split)
        methods = []
        for name, pred_dir in zip(args.names, args.pred):
            start = time.perf_counter()
            predictions = read_predictions(pred_dir, gt, strict=args.strict,
                                           progress=not args.quiet)
            results = evaluate_predictions(predictions, gt, iou_thresh=args.iou)
            print_results(results, gt, predictions, time.perf_counter() - start, args.iou,
                          name if several else None)
            methods.append((name, results))
    except (OSError, ValueError) as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    if args.curves:
        if several:
            for name, results in methods:
                write_curves(results, os.path.join(args.curves, name), title=name)
            written = write_comparison(methods, args.curves)
            print('PR curves of %d methods: %s' % (len(methods), ', '.join(written)))
        else:
            write_curves(methods[0][1], args.curves)
            print('PR curves: %s' % os.path.join(args.curves, 'pr_curves.png'))
    elif several:
        print('(add --curves DIR for the figures comparing them)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
