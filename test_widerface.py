"""Run a RetinaFace checkpoint over a WIDER FACE split and write the submission files.

Example (the released MobileNet-0.25 on the CPU, fast mode, then the evaluation)::

    python test_widerface.py --prefix ../shared/models/mnet.25/mnet.25 --epoch 0 --gpu -1 \\
        --dataset-path ./data/retinaface --image-set val --mode 0 --output ./wout
    python evaluate_widerface.py --pred ./wout --gt <folder with the wider_*_val.mat files>

Modes (as the original):
  0  fast: one scale, short side 1600 px, long side at most 2150 px; NMS.
  1  accurate (default): an image pyramid of short sides [500, 800, 1100, 1400, 1700] relative
     to a base scale (short side 800, long side at most 1200), each also flipped; box voting.
  2  the pyramid and flips of mode 1, with NMS instead of box voting.

Output: ``<output>/<event>/<image>.txt``, line 1 ``event/image.jpg``, line 2 the number of
boxes, then ``x y w h score`` per box (``%d %d %d %d %g``, w = x2 - x1). Files are written
atomically. ``<output>/manifest.json`` records what produces the files (checkpoint prefix,
epoch, sha1 of its params and symbol files, network, mode, threshold, scales, nocrop, backend,
data set). A rerun into the same --output resumes (an existing readable file is kept and its
image skipped) only when the manifest matches; otherwise it stops and names the differing
settings (``--overwrite`` recomputes this run's images and replaces the manifest).
``--part K --parts N`` processes images K, K+N, K+2N, ... of the label file (run N processes
in parallel into one --output); ``--max-images K`` only its first K images (train.py's
validation during training runs this same code). On a split whose labels have boxes (val)
the recall at IoU >= 0.5 is logged, as the original did.

An image that is missing, truncated or not decodable is skipped with a warning naming it (no
prediction file is written, so the evaluator counts it as having no detections) and the exit
status is 1. Errors (output folder not writable, a file where the folder should be, a
manifest mismatch, a bad label file, an image worker process that died) are one line on
stderr with exit status 2; ``--debug`` shows the traceback. Ctrl-C stops the run (and its
image workers) with exit status 130; the files written so far are kept and a rerun resumes.

Speed (see README, Performance): images are detected by ``--image-workers`` processes at
once, each with its own detector and ``--threads`` CPU threads (default ``auto``: on the CPU
one process per core, at most 4, with cores / workers threads each; 1 on a GPU); the files
are the same as with one process. ``--backend onnxruntime`` runs the exported graph (needs
the extras of requirements-deploy.txt; boxes agree with MXNet to ~1e-4 px). In modes 1 and 2
``--flip-batch on`` runs each scale's unflipped and flipped inputs in one forward pass (a
batch of 2; the default ``auto`` does so on a GPU only: on the CPU the batch of 2 measured
slower than two passes), and ``--scale-workers K`` runs K scales at once where the backend
allows it (onnxruntime). ``--engine naive`` (the default on the CPU) runs MXNet's operators in
the calling thread. ``--serial`` is the plain one-pass-at-a-time ``detect()`` path. A given
backend writes the same files with every schedule.
"""
import argparse
import logging
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from rcnn.core.cpu_share import usable_cores
from rcnn.dataset import RetinaFaceDataset
from rcnn.dataset.image_header import ImageReadError
from rcnn.utils import cli
from rcnn.evaluation.widerface import (PredictionFormatError, count_recalled,
                                       read_prediction_file, write_prediction_file)
from rcnn.inference import BACKENDS
from rcnn.inference.image_workers import (MAX_AUTO_WORKERS, ImageWorkerError, ImageWorkerPool,
                                          available_memory, plan_image_workers)
from rcnn.inference.pyramid import detect_pyramid
from rcnn.io.decode import imread_checked
from rcnn.utils.run_manifest import ManifestMismatch, claim_output_dir, file_sha1
from retinaface import RetinaFace

logger = logging.getLogger('test_widerface')

DATASETS = {'retinaface': RetinaFaceDataset}
#: mode 0: one scale
SINGLE_TARGET_SIZE, SINGLE_MAX_SIZE = 1600, 2150
#: modes 1 and 2: pyramid short sides relative to a base scale
PYRAMID_SIZES = (500, 800, 1100, 1400, 1700)
PYRAMID_TARGET_SIZE, PYRAMID_MAX_SIZE = 800, 1200
MODES = {0: 'fast: one scale, NMS', 1: 'accurate: pyramid + flip + box voting',
         2: 'pyramid + flip, NMS'}
RECALL_IOU = 0.5


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--network', default='net3',
                        help='anchor layout of the checkpoint (only net3: strides 32/16/8)')
    parser.add_argument('--dataset', default='retinaface', choices=sorted(DATASETS),
                        help='dataset reader (the RetinaFace label.txt format)')
    parser.add_argument('--image-set', default='val',
                        help='sub-folder of --dataset-path to test: val, test, ...')
    parser.add_argument('--root-path', default='./data',
                        help='the label cache goes to <root-path>/cache')
    parser.add_argument('--dataset-path', default='./data/retinaface',
                        help='folder holding <image-set>/label.txt and <image-set>/images/')
    parser.add_argument('--gpu', type=int, default=0,
                        help='GPU id, or -1 for the CPU (a CPU-only MXNet needs -1)')
    parser.add_argument('--prefix', required=True,
                        help='checkpoint prefix: <prefix>-symbol.json, <prefix>-%%04d.params')
    parser.add_argument('--epoch', type=int, default=0, help='checkpoint epoch')
    parser.add_argument('--output', default='./wout',
                        help='folder for the <event>/<image>.txt prediction files')
    parser.add_argument('--nocrop', action='store_true',
                        help='zero-pad every network input up to a multiple of 32')
    parser.add_argument('--thresh', type=float, default=0.02,
                        help='minimum face score written (low, so the evaluation sees the '
                             'whole precision/recall curve)')
    parser.add_argument('--mode', type=int, default=1, choices=sorted(MODES),
                        help='; '.join('%d %s' % kv for kv in sorted(MODES.items())))
    parser.add_argument('--max-images', type=int, default=None, metavar='K',
                        help='only the first K images of the label file (a fixed subset, as '
                             'train.py --val_images validates on; default: all)')
    parser.add_argument('--part', type=int, default=0,
                        help='this process handles the images i with i %% parts == part')
    parser.add_argument('--parts', type=int, default=1, help='number of shards')
    parser.add_argument('--overwrite', action='store_true',
                        help='recompute images whose output file already exists, also when '
                             '--output holds another run\'s predictions (its manifest.json '
                             'is replaced)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    speed = parser.add_argument_group(
        'speed (the files depend on the backend only: onnxruntime agrees with MXNet to ~1e-4 px)')
    speed.add_argument('--backend', default='mxnet', choices=sorted(BACKENDS),
                       help='network runtime: mxnet, or onnxruntime (CPU, --gpu -1; the '
                            'checkpoint is exported and cached once) (default %(default)s)')
    speed.add_argument('--image-workers', default='auto', type=_image_workers,
                       help='processes detecting images at once, each with its own detector and '
                            '--threads threads; auto: 1 on a GPU, on the CPU one per core (at '
                            'most %d, at most one per 2 GB of free memory) '
                            '(default %%(default)s)' % MAX_AUTO_WORKERS)
    speed.add_argument('--threads', type=int, default=None,
                       help='CPU threads of the backend in each image worker (MXNet: '
                            'OMP_NUM_THREADS, set before mxnet is imported; onnxruntime: '
                            'intra-op threads); default: cores / image workers')
    speed.add_argument('--engine', default='auto', choices=('auto', 'threaded', 'naive'),
                       help='MXNet backend: naive runs each operator in the calling thread '
                            '(faster CPU inference); auto: naive on the CPU unless '
                            'MXNET_ENGINE_TYPE is set, MXNet\'s default (threaded) on a GPU '
                            '(default %(default)s)')
    speed.add_argument('--flip-batch', default='auto', choices=('auto', 'on', 'off'),
                       help='modes 1/2: run the unflipped and flipped input of a scale as one '
                            'batch of 2; auto: on with --gpu >= 0, off on the CPU (where it '
                            'measured slower) (default %(default)s)')
    speed.add_argument('--scale-workers', type=int, default=1,
                       help='modes 1/2: scales processed at once (only onnxruntime runs '
                            'forwards concurrently; mxnet ignores it) (default %(default)s)')
    speed.add_argument('--serial', action='store_true',
                       help='the one-pass-at-a-time detect() path (reference for the speed-ups)')
    parser.add_argument('--debug', action='store_true',
                        help='show the traceback of an error instead of one line')
    args = parser.parse_args(argv)
    if args.parts < 1 or not 0 <= args.part < args.parts:
        parser.error('--part must be in [0, --parts), got --part %d --parts %d'
                     % (args.part, args.parts))
    if args.max_images is not None and args.max_images < 1:
        parser.error('--max-images must be positive, got %d' % args.max_images)
    if not 0.0 <= args.thresh <= 1.0:
        parser.error('--thresh must be in [0, 1], got %g' % args.thresh)
    if args.threads is not None and args.threads < 1:
        parser.error('--threads must be >= 1, got %d' % args.threads)
    if args.scale_workers < 1:
        parser.error('--scale-workers must be >= 1, got %d' % args.scale_workers)
    if args.backend == 'onnxruntime' and args.gpu >= 0:
        parser.error('--backend onnxruntime runs on the CPU only: pass --gpu -1')
    args.flip_batch = args.gpu >= 0 if args.flip_batch == 'auto' else args.flip_batch == 'on'
    return args


def _image_workers(text):
    """``--image-workers``: ``auto`` or an int >= 1."""
    if text == 'auto':
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError('expected auto or an integer >= 1, got %r' % text)
    return value


def _base_scale(height, width, target_size, max_size):
    """Scale bringing the short side to ``target_size`` unless the long side would exceed
    ``max_size`` (after rounding), in which case the long side is brought to ``max_size``."""
    scale = float(target_size) / min(height, width)
    if np.round(scale * max(height, width)) > max_size:
        scale = float(max_size) / max(height, width)
    return scale


def scales_for_image(height, width, mode):
    """Scales and flip of a test mode for an image of ``height x width``.

    Returns:
        (list of float scales, do_flip)
    """
    if mode == 0:
        return [_base_scale(height, width, SINGLE_TARGET_SIZE, SINGLE_MAX_SIZE)], False
    base = _base_scale(height, width, PYRAMID_TARGET_SIZE, PYRAMID_MAX_SIZE)
    return [float(size) / PYRAMID_TARGET_SIZE * base for size in PYRAMID_SIZES], True


def prediction_target(image_path, images_dir, output_dir):
    """``('event/image.jpg', '<output>/event/image.txt')`` for an image of the split."""
    relative = os.path.relpath(image_path, images_dir).replace(os.sep, '/')
    if relative.startswith('../'):        # not under images/: keep the last two components
        relative = '/'.join(image_path.replace(os.sep, '/').split('/')[-2:])
    stem = os.path.splitext(relative)[0]
    return relative, os.path.join(output_dir, *stem.split('/')) + '.txt'


def read_existing(path, name_line):
    """Boxes (N, 5) x1 y1 x2 y2 score of a complete earlier output, or None to recompute."""
    if not os.path.isfile(path):
        return None
    try:
        xywh = read_prediction_file(path, os.path.splitext(os.path.basename(name_line))[0])
    except (PredictionFormatError, OSError, UnicodeDecodeError) as err:
        logger.warning('recomputing %s: the existing file is unreadable (%s)', path, err)
        return None
    return np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:4], xywh[:, 4]])


def detect_image(detector, image_path, mode, thresh, serial=False, flip_batch=True,
                 scale_workers=1, executor=None):
    """Faces (N, 5) x1 y1 x2 y2 score of one image in a test mode.

    ``serial``: one forward per scale and flip (``detector.detect``); otherwise
    :func:`rcnn.inference.pyramid.detect_pyramid` with ``flip_batch`` / ``scale_workers``
    (same faces, fewer or concurrent forwards).

    Raises:
        ImageReadError: the image is missing, truncated or not decodable.
    """
    image = imread_checked(image_path)
    scales, do_flip = scales_for_image(image.shape[0], image.shape[1], mode)
    if serial:
        faces, _ = detector.detect(image, threshold=thresh, scales=scales, do_flip=do_flip)
    else:
        faces, _ = detect_pyramid(detector, image, threshold=thresh, scales=scales,
                                  do_flip=do_flip, flip_batch=flip_batch,
                                  scale_workers=scale_workers, executor=executor)
    return faces


def detect_outcome(detector, job):
    """``(boxes, None)`` of one image, or ``(None, message)`` when it cannot be read.

    ``job``: ``(image_path, mode, thresh, serial, flip_batch, scale_workers)``. Module-level, so
    the image workers (:mod:`rcnn.inference.image_workers`) run it in their processes.
    """
    try:
        return detect_image(detector, *job), None
    except ImageReadError as err:
        return None, str(err)


class RecallCounter(object):
    """Recall at IoU >= 0.5 over the images seen so far (faces found / faces annotated)."""

    def __init__(self):
        self.found = 0
        self.total = 0

    def add(self, boxes, gt_boxes):
        found = count_recalled(boxes, gt_boxes, RECALL_IOU)
        self.found += found
        self.total += len(gt_boxes)
        return found

    @property
    def recall(self):
        return self.found / float(self.total) if self.total else float('nan')


def run_settings(args):
    """What determines the prediction files (recorded in ``<output>/manifest.json``)."""
    from rcnn.checkpoint.files import params_path, symbol_path   # imports mxnet: after the engine
    return {
        'prefix': os.path.abspath(args.prefix), 'epoch': args.epoch,
        'params_sha1': file_sha1(params_path(args.prefix, args.epoch)),
        'symbol_sha1': file_sha1(symbol_path(args.prefix)),
        'network': args.network, 'mode': args.mode, 'thresh': args.thresh,
        'nocrop': args.nocrop, 'backend': getattr(args, 'backend', 'mxnet'),
        'scales': ({'target_size': SINGLE_TARGET_SIZE, 'max_size': SINGLE_MAX_SIZE}
                   if args.mode == 0 else
                   {'pyramid_sizes': list(PYRAMID_SIZES), 'target_size': PYRAMID_TARGET_SIZE,
                    'max_size': PYRAMID_MAX_SIZE, 'flip': True}),
        'dataset': args.dataset, 'image_set': args.image_set,
        'dataset_path': os.path.abspath(args.dataset_path)}


def check_output_folder(output):
    """Create --output, or raise OSError with one line when it cannot hold the files."""
    if os.path.exists(output) and not os.path.isdir(output):
        raise NotADirectoryError('--output %s exists and is not a folder' % output)
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as err:
        raise OSError('cannot create --output %s: %s' % (output, err.strerror or err)) from None
    if not os.access(output, os.W_OK | os.X_OK):
        raise PermissionError('--output %s is not writable' % output)


def claim_output(args, targets):
    """Check --output against its manifest (see the module docstring); with --overwrite,
    remove this run's earlier prediction files so an interrupted rerun cannot adopt them."""
    check_output_folder(args.output)
    existing = [path for _, path in targets if os.path.isfile(path)]
    state = claim_output_dir(args.output, run_settings(args), existing, args.overwrite)
    if state == 'overwrite':
        for path in existing:
            os.remove(path)
        if existing:
            logger.info('--overwrite: removed %d earlier prediction file(s) of this run',
                        len(existing))
    elif state == 'resume' and existing:
        logger.info('resuming: %d of %d prediction files exist (manifest matches)',
                    len(existing), len(targets))
    return state


def plan_workers(args, environ=None):
    """(image workers, threads per worker) of this run, from --image-workers and --threads;
    with the MXNet backend an ``OMP_NUM_THREADS`` in the environment stands for --threads."""
    environ = os.environ if environ is None else environ
    threads = args.threads
    omp = environ.get('OMP_NUM_THREADS', '')
    if threads is None and args.backend == 'mxnet' and omp.isdigit() and int(omp) > 0:
        threads = int(omp)
    return plan_image_workers(args.image_workers, threads, args.gpu >= 0, usable_cores(),
                              available_memory())


def detector_kwargs(args, threads):
    """Keyword arguments of the detector that tests the split."""
    return {'prefix': args.prefix, 'epoch': args.epoch, 'ctx_id': args.gpu,
            'network': args.network, 'nocrop': args.nocrop, 'vote': args.mode == 1,
            'backend': args.backend, 'threads': threads}


class InProcessDetection(object):
    """Images detected one after the other in this process."""

    def __init__(self, kwargs):
        # the checkpoint first: a missing or broken one is reported by its loader
        self.detector = RetinaFace(**kwargs)

    def describe(self):
        return repr(self.detector)

    def outcomes(self, jobs):
        for job in jobs:
            yield detect_outcome(self.detector, job)

    def close(self):
        pass


class PooledDetection(object):
    """Images detected by worker processes (:class:`ImageWorkerPool`), results in order."""

    def __init__(self, workers, kwargs, environ):
        self.pool = ImageWorkerPool(workers, kwargs, environ)
        try:
            self.description = self.pool.describe_detector()   # loads the checkpoint once
        except BaseException:
            self.pool.close()
            raise

    def describe(self):
        return '%d image workers, each %s' % (self.pool.workers, self.description)

    def outcomes(self, jobs):
        return self.pool.imap(detect_outcome, jobs, name=lambda job: job[0])

    def close(self):
        self.pool.close()


def start_detection(args):
    """The detection of this run: in this process, or in --image-workers processes."""
    workers, threads = plan_workers(args)
    engine = None
    if args.backend == 'mxnet':
        from rcnn.inference.mxnet_backend import choose_engine
        engine = choose_engine(args.engine, on_gpu=args.gpu >= 0)
        logger.info('MXNet engine: %s', engine)
    logger.info('%d image worker process(es)%s, %s CPU thread(s) each',
                workers, '' if workers > 1 else ' (this one)',
                'backend default' if threads is None else threads)
    kwargs = detector_kwargs(args, threads)
    if workers == 1:
        return InProcessDetection(kwargs)
    environ = {'OMP_NUM_THREADS': str(threads)}
    if engine is not None:
        environ['MXNET_ENGINE_TYPE'] = engine
    return PooledDetection(workers, kwargs, environ)


def run(args):
    """Test the split; returns a summary dict (images, detected, resumed, unreadable,
    seconds, images_per_s, recall, found, faces)."""
    detection = start_detection(args)
    try:
        return test_split(args, detection)
    finally:
        detection.close()


def test_split(args, detection):
    """Detect the images of --image-set that have no output yet, write their files, count the
    recall; see :func:`run`."""
    # no training recipe here: every box of the listed images is kept for the recall figures
    imdb = DATASETS[args.dataset](args.image_set, args.root_path, args.dataset_path, cfg=None)
    roidb = imdb.gt_roidb()[:args.max_images]
    entries = [entry for i, entry in enumerate(roidb) if i % args.parts == args.part]
    targets = [prediction_target(entry['image'], imdb.images_dir, args.output)
               for entry in entries]
    claim_output(args, targets)
    has_boxes = any(len(entry['boxes']) for entry in roidb)
    logger.info('%s: %d of %d images (part %d/%d), mode %d (%s), threshold %g, %s',
                imdb.name, len(entries), len(roidb), args.part, args.parts, args.mode,
                MODES[args.mode], args.thresh, detection.describe())
    logger.info('schedule: %s', 'serial (one forward per scale and flip)' if args.serial else
                'flip batch %s, %d scale worker(s)' % ('on' if args.flip_batch else 'off',
                                                       args.scale_workers))
    existing = [None if args.overwrite else read_existing(out_path, name_line)
                for name_line, out_path in targets]
    jobs = [(entry['image'], args.mode, args.thresh, args.serial, args.flip_batch,
             args.scale_workers) for entry, boxes in zip(entries, existing) if boxes is None]
    outcomes = detection.outcomes(jobs)
    recall = RecallCounter()
    detected = resumed = 0
    unreadable = []
    start = time.perf_counter()
    progress = tqdm(entries, desc='test_widerface', unit='img', disable=args.quiet)
    for entry, (name_line, out_path), boxes in zip(progress, targets, existing):
        if boxes is None:
            boxes, error = next(outcomes)
            if error is not None:
                logger.warning('skipped (no prediction file written): %s', error)
                unreadable.append(entry['image'])
                if has_boxes:            # its faces count as missed
                    recall.add(np.zeros((0, 5)), entry['boxes'])
                continue
            write_prediction_file(out_path, name_line, boxes)
            detected += 1
        else:
            resumed += 1
        if has_boxes:
            found = recall.add(boxes, entry['boxes'])
            logger.debug('%s: recall %d/%d with %d boxes; overall %.4f', name_line, found,
                         len(entry['boxes']), len(boxes), recall.recall)
            progress.set_postfix(recall='%.4f' % recall.recall, refresh=False)
        else:
            logger.debug('%s: %d faces', name_line, len(boxes))
    seconds = time.perf_counter() - start
    return {'images': len(entries), 'detected': detected, 'resumed': resumed,
            'unreadable': unreadable, 'seconds': seconds,
            'images_per_s': detected / seconds if detected else 0.0,
            'recall': recall.recall if has_boxes else None, 'found': recall.found,
            'faces': recall.total, 'output': args.output}


def format_summary(summary):
    line = ('%d images (%d detected, %d resumed) in %.1f s: %.2f images/s'
            % (summary['images'], summary['detected'], summary['resumed'], summary['seconds'],
               summary['images_per_s']))
    if summary['recall'] is not None:
        line += '; recall at IoU %.1f: %.4f (%d / %d faces)' % (
            RECALL_IOU, summary['recall'], summary['found'], summary['faces'])
    line += '; predictions in %s' % summary['output']
    unreadable = summary.get('unreadable') or []
    if unreadable:
        line += '; %d image(s) skipped as unreadable: %s%s' % (
            len(unreadable), ', '.join(unreadable[:5]), ' ...' if len(unreadable) > 5 else '')
    return line


#: errors reported as one line (exit status 2); anything else keeps its traceback
USER_ERRORS = (OSError, ValueError, ManifestMismatch, ImageWorkerError)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    logger.info('called with %s', vars(args))
    try:
        summary = run(args)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print('error: %s' % err, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print('interrupted: the prediction files written so far are kept; rerun the same '
              'command to resume', file=sys.stderr)
        return 130
    print(format_summary(summary))
    return 1 if summary['unreadable'] else 0


if __name__ == '__main__':
    sys.exit(main())
