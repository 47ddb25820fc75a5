"""One table per split: every WIDER FACE test protocol, for each variant of one checkpoint.

    python tools/protocol_report.py ../shared/models/mnet.25/mnet.25 0 \\
        --dataset-path ../shared/data/dlib_faces --image-set val --out ./protocol_report

For each protocol of rcnn/evaluation/protocols.py (``--protocols``, default all) and each
variant (``--variants``: ``mxnet`` the checkpoint as is, ``onnxruntime`` its ONNX export,
``int8`` its MKLDNN INT8 quantization), the split's images are detected (prediction files
with landmarks and a ``manifest.json`` naming the protocol, under
``<out>/predictions/<variant>/<protocol>/``) and evaluated by the same code as
evaluate_widerface.py: AP Easy / Medium / Hard, AP by face size, the landmark NME when the
split's label.txt (or ``--gt-labels``) has landmarks, and images/s of the detection loop
(image decoding + detection + writing, after the model is loaded). The table goes to
``<out>/protocol_report.md`` and ``<out>/protocol_report.csv``.

The split is ``<dataset-path>/<image-set>/label.txt`` with its images under ``images/``; the AP
ground truth is ``--gt`` (a folder of the official .mat files or a label.txt), by default the
split's ``gt/`` folder when it has the .mat files, else its label.txt. ``--max-images K`` takes
the first K images of the label file (and evaluates on those only).

A variant whose extras are missing (onnx / onnxruntime, an MXNet build without MKLDNN) is
skipped with a logged reason. Errors (missing checkpoint or split, bad labels) are one line
on stderr and exit status 1.
"""
import argparse
import importlib.util
import json
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rcnn.dataset.label_file import read_label_file  # noqa: E402
from rcnn.evaluation.landmarks import (NME_MIN_SCORE, NME_THRESHOLD,  # noqa: E402
                                       LandmarkGroundTruth, load_landmark_ground_truth)
from rcnn.evaluation.protocols import PROTOCOLS, get_protocol  # noqa: E402
from rcnn.evaluation.size_bands import (BAND_SETTING, SIZE_BANDS, band_masks,  # noqa: E402
                                         box_sizes)
from rcnn.evaluation.summary import (SUMMARY_COLUMNS, band_column, evaluate_folder,  # noqa: E402
                                     format_value, write_summary_csv)
from rcnn.evaluation.widerface import (SETTINGS, load_ground_truth,  # noqa: E402
                                       write_prediction_file)
from rcnn.utils import cli  # noqa: E402
from rcnn.checkpoint.files import params_path, symbol_path  # noqa: E402
from rcnn.utils.fileio import atomic_write_text  # noqa: E402

logger = logging.getLogger('protocol_report')

VARIANTS = ('mxnet', 'onnxruntime', 'int8')
REPORT_COLUMNS = (['protocol', 'variant'] + [c for c in SUMMARY_COLUMNS if c != 'protocol']
                  + ['images_per_s', 'detect_seconds'])


class ReportError(Exception):
    """A problem with the inputs, reported as one line."""


# ----------------------------------------------------------------------------- the split

def split_images(dataset_path, image_set, max_images=None):
    """[(image path, ``event/name.jpg``)] of ``<dataset_path>/<image_set>/label.txt``, in file
    order, the first ``max_images`` when given."""
    label = os.path.join(dataset_path, image_set, 'label.txt')
    if not os.path.isfile(label):
        raise ReportError('--dataset-path %s --image-set %s: no label file %s'
                          % (dataset_path, image_set, label))
    names = read_label_file(label, boxes_only=True).image_names[:max_images]
    images_dir = os.path.join(dataset_path, image_set, 'images')
    return [(os.path.join(images_dir, name), name) for name in names]


def _key(name_line):
    stem = os.path.splitext(name_line)[0]
    return os.path.dirname(stem), os.path.basename(stem)


def restrict(gt, images):
    """The ground truth of ``images`` only (a WiderGroundTruth or LandmarkGroundTruth)."""
    boxes = gt.boxes if isinstance(gt, LandmarkGroundTruth) else gt
    index = {key: i for i, key in enumerate(zip(boxes.events, boxes.names))}
    wanted = [_key(name) for _, name in images]
    absent = [name for (_, name), key in zip(images, wanted) if key not in index]
    if absent:
        raise ReportError('%s has no ground truth for %d of the %d images (e.g. %s)'
                          % (boxes.source, len(absent), len(images), absent[0]))
    chosen = [index[key] for key in wanted]
    if isinstance(gt, LandmarkGroundTruth):
        return LandmarkGroundTruth(boxes.select(chosen), [gt.points[i] for i in chosen])
    return gt.select(chosen)


def default_gt(dataset_path, image_set):
    """The split's ``gt/`` folder when it holds the .mat files, else its label.txt."""
    split = os.path.join(dataset_path, image_set)
    gt_dir = os.path.join(split, 'gt')
    if os.path.isfile(os.path.join(gt_dir, 'wider_face_val.mat')):
        return gt_dir
    return os.path.join(split, 'label.txt')


def landmark_truth(args, images):
    """(LandmarkGroundTruth of ``images`` or None, note)."""
    label = args.gt_labels or os.path.join(args.dataset_path, args.image_set, 'label.txt')
    try:
        truth = load_landmark_ground_truth(label)
    except ValueError as err:
        if args.gt_labels:
            raise
        logger.info('no landmark error: %s', err)
        return None, 'no landmarks in %s' % label
    return restrict(truth, images), ''


# ----------------------------------------------------------------------------- detection

def detect_split(detector_factory, protocol, images, out_dir):
    """Detect ``images`` with ``protocol`` and write their prediction files (with landmarks).

    Args:
        detector_factory: ``protocol -> detector`` with the ``RetinaFace`` API
            (``detect(img, threshold, scales, do_flip)``), built with the protocol's NMS
            threshold and merge (``nms=protocol.nms, vote=protocol.vote``).
        protocol: :class:`rcnn.evaluation.protocols.Protocol`.
        images: [(image path, ``event/name.jpg``)].
        out_dir: prediction folder; ``<out_dir>/<event>/<name>.txt`` per image and
            ``manifest.json`` with the protocol's settings.
    Returns:
        dict: images (detected), skipped (unreadable paths), seconds (the detection loop:
        decoding, detection, writing), images_per_s.
    """
    from rcnn.io.decode import imread_checked
    from rcnn.dataset.image_header import ImageReadError
    detector = detector_factory(protocol)
    os.makedirs(out_dir, exist_ok=True)
    skipped = []
    start = time.perf_counter()
    for path, name in images:
        try:
            image = imread_checked(path)
        except ImageReadError as err:
            logger.warning('skipped (no prediction file written): %s', err)
            skipped.append(path)
            continue
        scales = protocol.scales(image.shape[0], image.shape[1])
        faces, landmarks = detector.detect(image, threshold=protocol.threshold, scales=scales,
                                           do_flip=protocol.flip)
        write_prediction_file(os.path.join(out_dir, os.path.splitext(name)[0] + '.txt'), name,
                              faces, landmarks)
    seconds = time.perf_counter() - start
    done = len(images) - len(skipped)
    return {'images': done, 'skipped': skipped, 'seconds': seconds,
            'images_per_s': done / seconds if seconds > 0 and done else 0.0}


def write_manifest(out_dir, protocol, variant, model_prefix, epoch):
    """``manifest.json`` of a prediction folder: the protocol's settings and the model."""
    settings = dict(protocol.settings(), variant=variant, prefix=os.path.abspath(model_prefix),
                    epoch=epoch, landmarks=True)
    atomic_write_text(os.path.join(out_dir, 'manifest.json'),
                      json.dumps(settings, indent=1, sort_keys=True) + '\n')


def variant_model(variant, args, images):
    """(backend, prefix, epoch) of a variant, or (None, reason) when it cannot run here."""
    if variant == 'mxnet':
        return ('mxnet', args.prefix, args.epoch), None
    if variant == 'onnxruntime':
        missing = [m for m in ('onnx', 'onnxruntime') if importlib.util.find_spec(m) is None]
        if missing:
            return None, ('%s not installed (pip install -r requirements-deploy.txt)'
                          % ' and '.join(missing))
        return ('onnxruntime', args.prefix, args.epoch), None
    from rcnn.deploy import quantize
    try:
        quantize.check_mkldnn()
    except RuntimeError as err:
        return None, str(err)
    if args.int8_prefix:
        return ('mxnet', args.int8_prefix, 0), None
    out_prefix = os.path.join(args.out, 'models', os.path.basename(args.prefix) + '-int8')
    calib = args.calib or sorted({os.path.dirname(path) for path, _ in images})
    logger.info('quantizing %s to %s, calibrated on %s', args.prefix, out_prefix,
                ', '.join(calib))
    try:
        quantize.quantize_prefix(args.prefix, args.epoch, out_prefix, calib,
                                 max_images=args.calib_images)
    except (RuntimeError, ValueError, OSError) as err:
        return None, 'quantization failed: %s' % err
    return ('mxnet', out_prefix, 0), None


def detector_factory(backend, prefix, epoch):
    """``protocol -> RetinaFace`` on the CPU with the protocol's NMS threshold and merge."""
    def build(protocol):
        from rcnn.inference.detector import RetinaFace
        return RetinaFace(prefix, epoch, ctx_id=-1, nms=protocol.nms, vote=protocol.vote,
                          backend=backend)
    return build


# ----------------------------------------------------------------------------- the table

_MARKDOWN_HEADER = (['protocol', 'variant', 'AP easy', 'AP medium', 'AP hard'] +
                    ['AP %s' % band for band in SIZE_BANDS] +
                    ['NME', 'NME AUC@{t:g}', 'failure@{t:g}', 'images/s'])


def markdown_table(rows, threshold=NME_THRESHOLD):
    """The report's rows (dicts with :data:`REPORT_COLUMNS`) as a Markdown table."""
    header = [h.format(t=threshold) for h in _MARKDOWN_HEADER]
    lines = ['| %s |' % ' | '.join(header), '|%s|' % '|'.join(['---'] * 2 +
                                                              ['---:'] * (len(header) - 2))]
    for row in rows:
        cells = ([row['protocol'], row['variant']] +
                 [format_value(row['ap_%s' % s]) for s in SETTINGS] +
                 [format_value(row[band_column(b)]) for b in SIZE_BANDS] +
                 [format_value(row['nme']), format_value(row['nme_auc'], 3),
                  format_value(row['nme_failure_rate'], 3),
                  format_value(row['images_per_s'], 2)])
        lines.append('| %s |' % ' | '.join(cells))
    return '\n'.join(lines)


def band_faces(gt):
    """size band -> number of faces of the hard setting in it."""
    boxes = np.concatenate([np.zeros((0, 4))] + [b[:, :4] for b in gt.boxes])
    counted = gt.keep[BAND_SETTING]
    return {band: int(np.count_nonzero(mask & counted))
            for band, mask in band_masks(box_sizes(boxes)).items()}


def report_text(rows, args, images, gt, truth, note, skipped_variants, command):
    faces = gt.num_faces('hard')
    lines = ['# WIDER FACE protocol report', '',
             '- checkpoint: `%s`, epoch %d' % (args.prefix, args.epoch),
             '- split: `%s` (%d images, %d faces counted in hard; AP ground truth `%s`)'
             % (os.path.join(args.dataset_path, args.image_set), len(images), faces, gt.source),
             '- landmark NME: %s' % (
                 'normalised by sqrt(w*h) of the ground-truth box, faces matched one to one at '
                 'IoU >= 0.5 by predictions of score >= %g; AUC and failure rate at %g; %d faces '
                 'with landmarks' % (args.nme_min_score, args.nme_threshold,
                                     truth.num_faces_with_points())
                 if truth is not None else 'not computed (%s)' % note),
             '- AP by face size: sqrt(w*h) of the box in px, faces of the hard setting (%s)'
             % ', '.join('%s: %d' % (band, faces) for band, faces in band_faces(gt).items()),
             '- images/s: the detection loop (decode, detect, write) after loading the model, '
             'one process, OMP_NUM_THREADS=%s, %s, %d CPU cores'
             % (os.environ.get('OMP_NUM_THREADS', 'unset'), platform.machine(),
                os.cpu_count() or 0),
             '- command: `%s`' % command, '']
    for variant, reason in skipped_variants:
        lines.append('- variant %s skipped: %s' % (variant, reason))
    if skipped_variants:
        lines.append('')
    lines += [markdown_table(rows, args.nme_threshold), '']
    return '\n'.join(lines)


# ----------------------------------------------------------------------------- the command

def _names(choices, what):
    def parse(text):
        names = [n.strip() for n in text.split(',') if n.strip()]
        unknown = [n for n in names if n not in choices]
        if not names or unknown:
            raise argparse.ArgumentTypeError('unknown %s %s (known: %s)' % (
                what, ', '.join(unknown) or repr(text), ', '.join(choices)))
        return names
    return parse


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('prefix', help='checkpoint prefix (<prefix>-symbol.json, '
                                       '<prefix>-EPOCH.params) (required)')
    parser.add_argument('epoch', type=cli.non_negative_int, help='checkpoint epoch (required)')
    parser.add_argument('--dataset-path', required=True,
                        help='folder holding <image-set>/label.txt and <image-set>/images/ '
                             '(required)')
    parser.add_argument('--image-set', default='val', help='split to test (default val)')
    parser.add_argument('--gt', default=None,
                        help='AP ground truth: folder of the official .mat files or a label.txt '
                             '(default: <split>/gt when it has the .mat files, else '
                             '<split>/label.txt)')
    parser.add_argument('--gt-labels', default=None, metavar='LABEL_TXT',
                        help='train-style label.txt with landmarks for the NME (default: the '
                             'split\'s label.txt when it has landmarks)')
    parser.add_argument('--label-split', choices=('size', 'all'), default='size',
                        help='label.txt AP ground truth only: easy / medium / hard by box '
                             'height, or every face everywhere (default size)')
    parser.add_argument('--protocols', type=_names(tuple(PROTOCOLS), 'protocol'),
                        default=list(PROTOCOLS),
                        help='comma-separated protocols (default %s)' % ','.join(PROTOCOLS))
    parser.add_argument('--variants', type=_names(VARIANTS, 'variant'), default=['mxnet'],
                        help='comma-separated variants of the checkpoint: %s (default mxnet)'
                             % ', '.join(VARIANTS))
    parser.add_argument('--max-images', type=cli.positive_int, default=None,
                        help='the first K images of the split only (default all)')
    parser.add_argument('--int8-prefix', default=None,
                        help='an INT8 checkpoint (epoch 0) made by tools/quantize.py for the int8 '
                             'variant (default: quantize into <out>/models/)')
    parser.add_argument('--calib', nargs='+', default=None, metavar='PATH',
                        help='calibration images of the int8 quantization (default: the split\'s '
                             'image folders)')
    parser.add_argument('--calib-images', type=cli.positive_int, default=20,
                        help='at most this many calibration images (default 20)')
    parser.add_argument('--nme-threshold', type=cli.positive_float, default=NME_THRESHOLD,
                        help='NME failure threshold (default %g)' % NME_THRESHOLD)
    parser.add_argument('--nme-min-score', type=float, default=NME_MIN_SCORE,
                        help='minimum score of a prediction matched for the NME (default %g)'
                             % NME_MIN_SCORE)
    parser.add_argument('--out', required=True,
                        help='output folder: protocol_report.md, protocol_report.csv, '
                             'predictions/<variant>/<protocol>/ (required)')
    parser.add_argument('--debug', action='store_true',
                        help='show the traceback of an error (default: one line)')
    return parser.parse_args(argv)


def run(args, command):
    """Detect and evaluate every (variant, protocol); returns the report's rows."""
    for path in (symbol_path(args.prefix), params_path(args.prefix, args.epoch)):
        if not os.path.isfile(path):
            raise ReportError('checkpoint file not found: %s' % path)
    images = split_images(args.dataset_path, args.image_set, args.max_images)
    if not images:
        raise ReportError('%s/%s/label.txt lists no image' % (args.dataset_path, args.image_set))
    gt = restrict(load_ground_truth(args.gt or default_gt(args.dataset_path, args.image_set),
                                    label_split=args.label_split), images)
    truth, note = landmark_truth(args, images)
    models, skipped_variants = [], []
    for variant in args.variants:
        model, reason = variant_model(variant, args, images)
        if model is None:
            logger.warning('variant %s skipped: %s', variant, reason)
            skipped_variants.append((variant, reason))
        else:
            models.append((variant, model))
    rows = []
    # protocol first, variant second: the rows of one protocol's variants are adjacent, so the
    # cost of an export or of quantization is read one row apart
    for name in args.protocols:
        protocol = get_protocol(name)
        for variant, (backend, prefix, epoch) in models:
            out_dir = os.path.join(args.out, 'predictions', variant, name)
            logger.info('%s / %s: detecting %d images', variant, name, len(images))
            timing = detect_split(detector_factory(backend, prefix, epoch), protocol, images,
                                  out_dir)
            write_manifest(out_dir, protocol, variant, prefix, epoch)
            evaluation = evaluate_folder(out_dir, gt, truth, nme_min_score=args.nme_min_score,
                                         nme_threshold=args.nme_threshold, landmark_note=note)
            row = dict(evaluation.summary(), variant=variant,
                       images_per_s=timing['images_per_s'], detect_seconds=timing['seconds'])
            logger.info('%s / %s: AP %s, %.2f images/s', variant, name, ' / '.join(
                format_value(row['ap_%s' % s]) for s in SETTINGS), timing['images_per_s'])
            rows.append(row)
    os.makedirs(args.out, exist_ok=True)
    write_summary_csv(os.path.join(args.out, 'protocol_report.csv'), rows, REPORT_COLUMNS)
    text = report_text(rows, args, images, gt, truth, note, skipped_variants, command)
    atomic_write_text(os.path.join(args.out, 'protocol_report.md'), text)
    return rows, text


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    command = shlex.join(['python', 'tools/protocol_report.py'] + argv)
    print('command: %s' % command)
    try:
        _, text = run(args, command)
    except (ReportError, OSError, ValueError, RuntimeError) as err:
        if args.debug:
            raise
        print('error: %s' % err, file=sys.stderr)
        return 1
    print(text)
    print('written: %s, %s' % (os.path.join(args.out, 'protocol_report.md'),
                               os.path.join(args.out, 'protocol_report.csv')))
    return 0


if __name__ == '__main__':
    sys.exit(main())
