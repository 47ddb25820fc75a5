"""Score WIDER FACE submission files: Easy / Medium / Hard AP of the standard protocol, AP by
face size and, when the ground truth has landmarks, the 5-point landmark error.

Examples:

    python evaluate_widerface.py --pred ./wout --gt ../shared/widerface_eval/ground_truth
    # PR curves: pr_<setting>.csv and pr_curves.png in ./curves
    python evaluate_widerface.py --pred ./wout --gt ../shared/widerface_eval/ground_truth \\
        --curves ./curves
    # several methods on one figure per setting (pr_compare_<setting>.png), as the WIDER FACE
    # leaderboard draws them
    python evaluate_widerface.py --gt ../shared/widerface_eval/ground_truth \\
        --compare ./wout_mnet ./wout_r50 --names mnet R50 --curves ./curves
    # landmark error against a train-style label.txt, figures also as JSON and CSV
    python evaluate_widerface.py --pred ./wout --gt ../shared/data/dlib_faces/train/label.txt \\
        --json results.json --csv results.csv

``--pred`` holds ``<event>/<image>.txt`` files (as written by test_widerface.py): line 1 the
image name, line 2 the number of boxes, then ``x y w h score`` lines, optionally followed on
each line by the 10 landmark values ``x1 y1 ... x5 y5``. ``--gt`` is a directory with the
official ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat``, or a RetinaFace
``label.txt`` (or a directory holding one) for sets without ``.mat`` files.

Reported beside the AP:
  * the protocol that produced the predictions, from ``<pred>/manifest.json`` (its
    ``protocol``, else the original's ``mode``), ``unknown`` without one;
  * AP per face-size band (sqrt(w*h) of the box: <16, 16-32, 32-64, 64-128, >=128 px) over the
    faces of the hard setting; see rcnn/evaluation/size_bands.py;
  * with landmark ground truth (``--gt-labels``, or a ``--gt`` label.txt / the split's
    label.txt beside a ``gt/`` folder when it has 20-number face lines) and prediction files
    carrying landmarks: the NME of the faces matched one to one at IoU >= --iou, normalised
    by sqrt(w*h) of the ground-truth box, its AUC and failure rate at --nme-threshold; see
    rcnn/evaluation/landmarks.py.
See rcnn/evaluation/widerface.py for the protocol, rcnn/evaluation/pr_plot.py for the figures.
"""
import argparse
import csv
import logging
import os
import sys

from rcnn.evaluation.landmarks import NME_MIN_SCORE, NME_THRESHOLD, load_landmark_ground_truth
from rcnn.evaluation.pr_plot import plot_ced, plot_pr_comparison, plot_pr_curves
from rcnn.evaluation.summary import (SUMMARY_COLUMNS, evaluate_folder, write_summary_csv,
                                     write_summary_json)
from rcnn.utils import cli
from rcnn.evaluation.widerface import LABEL_MIN_HEIGHT, SETTINGS, load_ground_truth

logger = logging.getLogger('evaluate_widerface')


def _fraction(text):
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError('must be in (0, 1], got %s' % text)
    return value


def _score(text):
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError('must be in [0, 1], got %s' % text)
    return value


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--pred', nargs='+', action='extend', default=[], metavar='DIR',
                        help='folder of prediction files <event>/<image>.txt; several folders '
                             'are compared (as --compare) (default: none, give --pred or '
                             '--compare)')
    parser.add_argument('--compare', nargs='+', action='extend', default=[], metavar='DIR',
                        dest='pred', help='several methods\' prediction folders: their APs, and '
                                          'with --curves one PR figure per setting with all of '
                                          'them (pr_compare_<setting>.png) (default: none)')
    parser.add_argument('--names', nargs='+', default=None, metavar='NAME',
                        help='legend names of the prediction folders, in their order (default: '
                             'the folder names)')
    parser.add_argument('--gt', required=True,
                        help='folder with wider_face_val.mat + wider_{easy,medium,hard}_val.mat, '
                             'or a label.txt (or a folder with one) in the val format (required)')
    parser.add_argument('--gt-labels', metavar='LABEL_TXT', default=None,
                        help='train-style label.txt with the 5 landmarks of the same images, '
                             'for the landmark NME (default: the --gt label.txt, or the '
                             'label.txt beside a --gt gt/ folder, when it has landmarks)')
    parser.add_argument('--iou', type=float, default=0.5,
                        help='IoU needed for a prediction to match a face (default 0.5)')
    parser.add_argument('--nme-threshold', type=_fraction, default=NME_THRESHOLD,
                        help='failure threshold of the landmark NME (fraction of sqrt(w*h) of '
                             'the face box); AUC and failure rate are given at it (default %g)'
                             % NME_THRESHOLD)
    parser.add_argument('--nme-min-score', type=_score, default=NME_MIN_SCORE,
                        help='predictions below this score are not matched for the landmark '
                             'NME (default %g)' % NME_MIN_SCORE)
    parser.add_argument('--strict', action='store_true',
                        help='a missing prediction file is an error (default: the image counts '
                             'as having no detections and one warning lists them)')
    parser.add_argument('--label-split', choices=('size', 'all'), default='size',
                        help='label.txt ground truth only: "size" keeps a face in easy / medium / '
                             'hard when its box height is at least %s px (smaller faces are '
                             'ignored there); "all" counts every face in every setting '
                             '(default size)' % ' / '.join('%g' % LABEL_MIN_HEIGHT[s]
                                                           for s in SETTINGS))
    parser.add_argument('--curves', metavar='DIR', default=None,
                        help='also write the PR curves to DIR: pr_<setting>.csv and '
                             'pr_curves.png (several methods: DIR/<name>/ each, plus '
                             'pr_compare_<setting>.png), and with landmarks nme_ced.csv and '
                             'nme_ced.png (default: none)')
    parser.add_argument('--json', metavar='FILE', default=None,
                        help='also write the figures of every method (protocol, AP, AP by size, '
                             'NME) as a JSON list to FILE (default: none)')
    parser.add_argument('--csv', metavar='FILE', default=None,
                        help='also write them as CSV, one row per method (default: none)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars (default: shown)')
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


def landmark_label_candidates(gt_path):
    """label.txt files that may hold the landmarks of a ``--gt``: the label.txt itself (or the
    one in a --gt folder), or the split's label.txt beside a ``gt/`` folder of .mat files."""
    if os.path.isfile(gt_path):
        if gt_path.endswith('.mat'):
            gt_path = os.path.dirname(gt_path) or '.'
        else:
            return [gt_path]
    candidates = [os.path.join(gt_path, 'label.txt'),
                  os.path.join(os.path.dirname(os.path.abspath(gt_path)), 'label.txt')]
    return [c for c in candidates if os.path.isfile(c)]


def load_landmark_truth(args):
    """(LandmarkGroundTruth or None, note saying why there is none)."""
    if args.gt_labels:
        return load_landmark_ground_truth(args.gt_labels), ''     # errors are the user's
    for label in landmark_label_candidates(args.gt):
        try:
            truth = load_landmark_ground_truth(label)
        except ValueError as err:        # also LabelFormatError: not train-style labels
            logger.debug('no landmark ground truth in %s: %s', label, err)
            continue
        logger.info('landmark ground truth: %s', label)
        return truth, ''
    return None, 'no landmark ground truth: give --gt-labels with a train-style label.txt'


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


def write_ced(methods, threshold, out_dir):
    """nme_ced.csv (NME of every matched face per method) and nme_ced.png; returns the PNG path,
    or None when no method has a landmark error."""
    curves = [(name, e.landmarks) for name, e in methods if e.landmarks is not None]
    if not curves:
        return None
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'nme_ced.csv'), 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['method', 'nme'])
        for name, result in curves:
            writer.writerows([name, '%.6f' % e] for e in sorted(result.errors))
    return plot_ced(curves, threshold, os.path.join(out_dir, 'nme_ced.png'))


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


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    several = len(args.pred) > 1
    try:
        gt = load_ground_truth(args.gt, label_split=args.label_split)
        landmark_truth, note = load_landmark_truth(args)
        methods = []
        for name, pred_dir in zip(args.names, args.pred):
            evaluation = evaluate_folder(pred_dir, gt, landmark_truth, iou_thresh=args.iou,
                                         strict=args.strict, nme_min_score=args.nme_min_score,
                                         nme_threshold=args.nme_threshold,
                                         progress=not args.quiet, landmark_note=note)
            print('\n'.join(evaluation.report_lines(name if several else None)))
            methods.append((name, evaluation))
        summaries = [dict(e.summary(), name=name) for name, e in methods]
        if args.json:
            write_summary_json(args.json, summaries)
            print('figures: %s' % args.json)
        if args.csv:
            write_summary_csv(args.csv, summaries, ['name'] + SUMMARY_COLUMNS)
            print('figures: %s' % args.csv)
    except (OSError, ValueError) as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    if args.curves:
        if several:
            for name, evaluation in methods:
                write_curves(evaluation.settings, os.path.join(args.curves, name), title=name)
            written = write_comparison([(n, e.settings) for n, e in methods], args.curves)
            print('PR curves of %d methods: %s' % (len(methods), ', '.join(written)))
        else:
            write_curves(methods[0][1].settings, args.curves)
            print('PR curves: %s' % os.path.join(args.curves, 'pr_curves.png'))
        ced = write_ced(methods, args.nme_threshold, args.curves)
        if ced:
            print('landmark error distribution: %s' % ced)
    elif several:
        print('(add --curves DIR for the figures comparing them)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
