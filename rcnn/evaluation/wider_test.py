"""The WIDER FACE test procedure: detect a split under a named protocol, write the submission files.

:func:`run_wider_test` takes a :class:`WiderTestOptions` and returns a summary dict;
``test_widerface.py`` parses its flags into the options and calls it, and validation during
training (:mod:`rcnn.core.validation`) calls it directly.

A run:

1. lists the split (``<dataset_path>/<image_set>/label.txt``), its first ``max_images``
   images, every ``parts``-th from ``part`` (:func:`list_split`; an image whose size cannot be
   read stays listed, to be skipped when it is detected);
2. claims the output folder (:func:`claim_output`: ``manifest.json`` says what produces the
   files; a rerun with the same settings resumes, another run's folder is refused unless
   ``overwrite``, which removes every prediction file the new run does not own);
3. detects every image without a file yet, under the protocol
   (:mod:`rcnn.evaluation.protocols`: scales, flips, NMS or voting, threshold), in this process
   or in image worker processes (:mod:`rcnn.inference.image_workers`), with the passes
   scheduled by :class:`rcnn.inference.pipeline.Schedule` (the files do not depend on it);
4. writes ``<output>/<event>/<image>.txt`` atomically (line 1 ``event/image.jpg``, line 2 the
   number of boxes, then ``x y w h score`` per box, ``%d %d %d %d %g``; with ``landmarks``
   10 more ``%.1f`` columns, the 5 points' x y) and counts the recall at IoU >= 0.5 on a split
   whose labels have boxes.

An image that is missing, empty, truncated or not decodable is skipped with a warning naming it
(no file is written: the evaluator counts it as having no detections) and listed in the
summary's ``unreadable``.
"""
import logging
import os
import time
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
from tqdm import tqdm

from rcnn.dataset import RetinaFaceDataset
from rcnn.dataset.image_header import ImageReadError, read_image_size
from rcnn.dataset.label_file import ParsedLabels, read_label_file
from rcnn.dataset.retinaface_dataset import build_roidb
from rcnn.evaluation.protocols import DEFAULT_PROTOCOL, MODE_PROTOCOLS, PROTOCOLS, get_protocol
from rcnn.evaluation.widerface import (PredictionFormatError, count_recalled,
                                       read_prediction_file, write_prediction_file)
from rcnn.inference import BACKENDS
from rcnn.inference.image_workers import ImageWorkerPool, plan_image_workers
from rcnn.inference.pipeline import Schedule
from rcnn.utils.machine import available_memory, usable_cores
from rcnn.utils.run_manifest import ManifestMismatch, claim_output_dir, file_sha1

__all__ = ['WiderTestOptions', 'run_wider_test', 'format_summary', 'protocol_of_mode',
           'prediction_target', 'list_split', 'claim_output', 'detect_outcome', 'DATASETS',
           'RECALL_IOU']

logger = logging.getLogger('test_widerface')

DATASETS = {'retinaface': RetinaFaceDataset}
RECALL_IOU = 0.5


def protocol_of_mode(mode):
    """The protocol name of the original's ``--mode`` (0, 1, 2)."""
    try:
        return MODE_PROTOCOLS[int(mode)]
    except (KeyError, TypeError, ValueError):
        raise ValueError('--mode must be one of %s, got %r'
                         % (', '.join(str(m) for m in sorted(MODE_PROTOCOLS)), mode)) from None


@dataclass(frozen=True)
class WiderTestOptions:
    """Everything a WIDER test run depends on (``test_widerface.py``'s flags).

    Attributes:
        prefix, epoch: checkpoint ``<prefix>-symbol.json`` + ``<prefix>-%04d.params``.
        ctx_id: GPU id, -1 for the CPU (``--gpu``).
        network: anchor layout of the checkpoint.
        protocol: a name of :data:`rcnn.evaluation.protocols.PROTOCOLS`.
        thresh: score threshold of the written boxes; None: the protocol's.
        dataset, image_set, root_path, dataset_path: the split
            (``<dataset_path>/<image_set>/label.txt``; the label cache under
            ``<root_path>/cache``, None for none).
        output: folder of the prediction files.
        nocrop: zero-pad every network input up to a multiple of 32.
        landmarks: write the 5 landmarks after each score.
        max_images: only the first K images of the label file (None: all).
        part, parts: this run handles the images i with ``i % parts == part``.
        overwrite: recompute existing files and take over another run's folder.
        quiet: no progress bar.
        backend: a name of :data:`rcnn.inference.BACKENDS`.
        image_workers: ``'auto'`` or the number of detecting processes.
        threads: CPU threads per image worker (None: cores / workers, or the
            ``OMP_NUM_THREADS`` mxnet takes).
        engine: MXNet engine, ``'auto'``, ``'threaded'`` or ``'naive'``.
        flip_batch: an image's two flips share a forward.
        scale_workers: scales processed at once (backends with concurrent forwards).
        serial: one forward per scale and flip (overrides ``flip_batch``/``scale_workers``).
    """
    prefix: str
    epoch: int = 0
    ctx_id: int = 0
    network: str = 'net3'
    protocol: str = DEFAULT_PROTOCOL
    thresh: Optional[float] = None
    dataset: str = 'retinaface'
    image_set: str = 'val'
    root_path: Optional[str] = './data'
    dataset_path: str = './data/retinaface'
    output: str = './wout'
    nocrop: bool = False
    landmarks: bool = False
    max_images: Optional[int] = None
    part: int = 0
    parts: int = 1
    overwrite: bool = False
    quiet: bool = False
    backend: str = 'mxnet'
    image_workers: Union[str, int] = 'auto'
    threads: Optional[int] = None
    engine: str = 'auto'
    flip_batch: bool = False
    scale_workers: int = 1
    serial: bool = False

    def __post_init__(self):
        get_protocol(self.protocol)
        if self.dataset not in DATASETS:
            raise ValueError('unknown dataset %r (known: %s)'
                             % (self.dataset, ', '.join(sorted(DATASETS))))
        if self.backend not in BACKENDS:
            raise ValueError('unknown backend %r (known: %s)'
                             % (self.backend, ', '.join(sorted(BACKENDS))))
        if self.parts < 1 or not 0 <= self.part < self.parts:
            raise ValueError('--part must be in [0, --parts), got --part %d --parts %d'
                             % (self.part, self.parts))
        if self.max_images is not None and self.max_images < 1:
            raise ValueError('--max-images must be positive, got %d' % self.max_images)
        if self.thresh is not None and not 0.0 <= self.thresh <= 1.0:
            raise ValueError('--thresh must be in [0, 1], got %g' % self.thresh)
        if self.threads is not None and self.threads < 1:
            raise ValueError('--threads must be >= 1, got %d' % self.threads)
        if self.scale_workers < 1:
            raise ValueError('--scale-workers must be >= 1, got %d' % self.scale_workers)
        if self.backend == 'onnxruntime' and self.ctx_id >= 0:
            raise ValueError('--backend onnxruntime runs on the CPU only: pass --gpu -1')

    @property
    def test_protocol(self):
        """The :class:`rcnn.evaluation.protocols.Protocol` of this run."""
        return PROTOCOLS[self.protocol]

    @property
    def threshold(self):
        """The score threshold in effect (``thresh`` or the protocol's)."""
        return self.test_protocol.threshold if self.thresh is None else float(self.thresh)

    @property
    def schedule(self):
        """The :class:`Schedule` of each image's passes."""
        if self.serial:
            return Schedule()
        return Schedule(flip_batch=self.flip_batch, scale_workers=self.scale_workers)


# ---------------------------------------------------------------------------- the split

def prediction_target(image_path, images_dir, output_dir):
    """``('event/image.jpg', '<output>/event/image.txt')`` for an image of the split."""
    relative = os.path.relpath(image_path, images_dir).replace(os.sep, '/')
    if relative.startswith('../'):        # not under images/: keep the last two components
        relative = '/'.join(image_path.replace(os.sep, '/').split('/')[-2:])
    stem = os.path.splitext(relative)[0]
    return relative, os.path.join(output_dir, *stem.split('/')) + '.txt'


def list_split(imdb):
    """The roidb of the split, one entry per listed image, in label-file order.

    Every box of the listed images is kept (no training recipe) for the recall figures. When
    an image's size cannot be read (missing, empty, not an image), the readable images get
    their entries as the dataset builds them and each unreadable one an entry with its path
    and its label boxes (x1 y1 x2 y2, unclipped): it is skipped when detected.
    """
    try:
        return imdb.gt_roidb()
    except ImageReadError as err:
        logger.info('listing %s image by image (%s)', imdb.label_file, err)
    parsed = read_label_file(imdb.label_file)
    paths = [os.path.join(imdb.images_dir, name) for name in parsed.image_names]
    readable = np.array([_size_readable(path, size)
                         for path, size in zip(paths, parsed.header_sizes)], dtype=bool)
    built = build_roidb(_select_images(parsed, readable), imdb.images_dir, imdb.min_box_size,
                        imdb.drop_empty_images, imdb.drop_outside_boxes)
    by_path = {entry['image']: entry for entry in built}
    roidb = []
    for index, path in enumerate(paths):
        if readable[index]:
            if path in by_path:
                roidb.append(by_path[path])
            continue
        rows = parsed.face_rows[parsed.face_image == index, :4]
        boxes = np.column_stack([rows[:, :2], rows[:, :2] + rows[:, 2:4]]).astype(np.float32)
        roidb.append({'image': path, 'boxes': boxes})
    return roidb


def _size_readable(path, header_size):
    if header_size is not None:
        return os.path.isfile(path)
    try:
        read_image_size(path)
    except ImageReadError:
        return False
    return True


def _select_images(parsed, keep):
    """The :class:`ParsedLabels` of the images where ``keep`` (M,) bool is true."""
    new_index = np.cumsum(keep) - 1
    faces = keep[parsed.face_image]
    return ParsedLabels([n for n, k in zip(parsed.image_names, keep) if k],
                        [s for s, k in zip(parsed.header_sizes, keep) if k],
                        parsed.face_rows[faces], new_index[parsed.face_image[faces]],
                        parsed.face_lines[faces], parsed.image_lines[keep], parsed.label_path)


# ---------------------------------------------------------------------------- files

def read_existing(path, name_line, landmarks=False):
    """Boxes (N, 5) x1 y1 x2 y2 score of a complete earlier output, or None to recompute
    (also when ``landmarks`` is asked for and the file has none)."""
    if not os.path.isfile(path):
        return None
    try:
        xywh, points = read_prediction_file(path, os.path.splitext(os.path.basename(name_line))[0],
                                            with_landmarks=True)
    except (PredictionFormatError, OSError, UnicodeDecodeError) as err:
        logger.warning('recomputing %s: the existing file is unreadable (%s)', path, err)
        return None
    if landmarks and points is None and len(xywh):
        logger.warning('recomputing %s: the existing file has no landmark columns', path)
        return None
    return np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:4], xywh[:, 4]])


def write_predictions(path, name_line, boxes, landmarks=None):
    """One image's file: the submission format, plus the landmark columns when given
    (:func:`rcnn.evaluation.widerface.write_prediction_file`).

    Args:
        boxes: (N, 5) x1 y1 x2 y2 score.
        landmarks: None, or (N, 5, 2) float: each line gets ``%.1f`` x y of the 5 points.
    """
    write_prediction_file(path, name_line, boxes, landmarks=landmarks)


def run_settings(options):
    """What determines the prediction files (recorded in ``<output>/manifest.json``)."""
    from rcnn.checkpoint.files import params_path, symbol_path
    return {
        'prefix': os.path.abspath(options.prefix), 'epoch': options.epoch,
        'params_sha1': file_sha1(params_path(options.prefix, options.epoch)),
        'symbol_sha1': file_sha1(symbol_path(options.prefix)),
        'network': options.network, 'protocol': options.test_protocol.settings(),
        'thresh': options.threshold, 'nocrop': options.nocrop, 'backend': options.backend,
        'landmarks': options.landmarks, 'dataset': options.dataset,
        'image_set': options.image_set, 'dataset_path': os.path.abspath(options.dataset_path)}


def check_output_folder(output):
    """Create the output folder, or raise OSError with one line when it cannot hold the files."""
    if os.path.exists(output) and not os.path.isdir(output):
        raise NotADirectoryError('--output %s exists and is not a folder' % output)
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as err:
        raise OSError('cannot create --output %s: %s' % (output, err.strerror or err)) from None
    if not os.access(output, os.W_OK | os.X_OK):
        raise PermissionError('--output %s is not writable' % output)


def prediction_files(output):
    """Paths of every prediction file (``<output>/<event>/.../<image>.txt``) in ``output``."""
    found = []
    for folder, _, names in os.walk(output):
        if os.path.samefile(folder, output):
            continue
        found.extend(os.path.join(folder, name) for name in names if name.endswith('.txt'))
    return sorted(found)


def claim_output(options, targets):
    """Make the output folder this run's (see :mod:`rcnn.utils.run_manifest`).

    Without ``overwrite``: a new folder is claimed, one with this run's manifest resumes, any
    other is refused (:class:`ManifestMismatch`). With ``overwrite``, the files the folder
    then holds are all this run's: a folder with this run's manifest (a shard of the same run
    already claimed it) loses only this shard's files, to be recomputed; any other folder loses
    every prediction file -- whatever checkpoint, protocol or image list wrote it -- before the
    manifest is replaced.

    Args:
        targets: ``(name line, path)`` of this shard's images.
    Returns:
        'new', 'resume' or 'overwrite'.
    """
    check_output_folder(options.output)
    own = [path for _, path in targets if os.path.isfile(path)]
    settings = run_settings(options)
    if not options.overwrite:
        state = claim_output_dir(options.output, settings, own, overwrite=False)
        if state == 'resume' and own:
            logger.info('resuming: %d of %d prediction files exist (manifest matches)',
                        len(own), len(targets))
        return state
    try:
        claim_output_dir(options.output, settings, own, overwrite=False)
        stale = own
    except ManifestMismatch:
        stale = prediction_files(options.output)
        claim_output_dir(options.output, settings, overwrite=True)
    for path in stale:
        os.remove(path)
    if stale:
        logger.info('--overwrite: removed %d earlier prediction file(s) from %s (%d of this '
                    'shard\'s images)', len(stale), options.output, len(own))
    return 'overwrite'


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


# ---------------------------------------------------------------------------- detection

def detect_image(detector, image_path, protocol_name, thresh, schedule):
    """Faces (N, 5) x1 y1 x2 y2 score and landmarks (N, 5, 2) (None for a model without
    landmarks) of one image under a protocol; a blur column and visibility values, which the
    prediction files do not hold, are left out.

    Raises:
        ImageReadError: the image is missing, empty, truncated or not decodable.
    """
    from rcnn.io.decode import imread_checked
    image = imread_checked(image_path)
    protocol = PROTOCOLS[protocol_name]
    scales = protocol.scales(image.shape[0], image.shape[1])
    faces, points = detector.detect_images([image], thresh, scales, protocol.flip, schedule)[0]
    return faces[:, :5], None if points is None else points[:, :, :2]


def detect_outcome(detector, job):
    """``((faces, landmarks), None)`` of one image, or ``(None, message)`` when it cannot be
    read.

    ``job``: ``(image_path, protocol name, thresh, schedule)``. Module-level, so the image
    workers (:mod:`rcnn.inference.image_workers`) run it in their processes.
    """
    try:
        return detect_image(detector, *job), None
    except ImageReadError as err:
        return None, str(err)


def plan_workers(options, environ=None):
    """(image workers, threads per worker); with the MXNet backend an ``OMP_NUM_THREADS`` in
    the environment stands for ``threads``."""
    environ = os.environ if environ is None else environ
    threads = options.threads
    omp = environ.get('OMP_NUM_THREADS', '')
    if threads is None and options.backend == 'mxnet' and omp.isdigit() and int(omp) > 0:
        threads = int(omp)
    return plan_image_workers(options.image_workers, threads, options.ctx_id >= 0,
                              usable_cores(), available_memory())


def detector_kwargs(options, threads):
    """Keyword arguments of the :class:`rcnn.inference.detector.RetinaFace` testing the split."""
    protocol = options.test_protocol
    return {'prefix': options.prefix, 'epoch': options.epoch, 'ctx_id': options.ctx_id,
            'network': options.network, 'nms': protocol.nms, 'nocrop': options.nocrop,
            'vote': protocol.vote, 'backend': options.backend, 'threads': threads}


class InProcessDetection(object):
    """Images detected one after the other in this process."""

    def __init__(self, kwargs):
        from rcnn.inference.detector import RetinaFace
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


def start_detection(options):
    """The detection of this run: in this process, or in image worker processes."""
    workers, threads = plan_workers(options)
    engine = None
    if options.backend == 'mxnet':
        from rcnn.inference.mxnet_backend import choose_engine
        engine = choose_engine(options.engine, on_gpu=options.ctx_id >= 0)
        logger.info('MXNet engine: %s', engine)
    logger.info('%d image worker process(es)%s, %s CPU thread(s) each',
                workers, '' if workers > 1 else ' (this one)',
                'backend default' if threads is None else threads)
    kwargs = detector_kwargs(options, threads)
    if workers == 1:
        return InProcessDetection(kwargs)
    environ = {'OMP_NUM_THREADS': str(threads)}
    if engine is not None:
        environ['MXNET_ENGINE_TYPE'] = engine
    return PooledDetection(workers, kwargs, environ)


# ---------------------------------------------------------------------------- the run

def run_wider_test(options):
    """Test the split (see the module notes).

    Returns:
        dict: images, detected, resumed, unreadable (list of paths), seconds, images_per_s,
        recall (None on a split without boxes), found, faces, output, protocol.
    Raises:
        OSError / ValueError / ManifestMismatch / ImageWorkerError: one line each (the output
        folder, the label file, another run's folder, a dead worker).
    """
    detection = start_detection(options)
    try:
        return _test_split(options, detection)
    finally:
        detection.close()


def _test_split(options, detection):
    """List, claim, detect, write and count (see :func:`run_wider_test`)."""
    imdb = DATASETS[options.dataset](options.image_set, options.root_path, options.dataset_path,
                                     cfg=None)
    roidb = list_split(imdb)[:options.max_images]
    entries = [entry for i, entry in enumerate(roidb) if i % options.parts == options.part]
    targets = [prediction_target(entry['image'], imdb.images_dir, options.output)
               for entry in entries]
    claim_output(options, targets)
    protocol, schedule = options.test_protocol, options.schedule
    logger.info('%s: %d of %d images (part %d/%d), protocol %s (%s), threshold %g, %s',
                imdb.name, len(entries), len(roidb), options.part, options.parts,
                protocol.name, protocol.description, options.threshold, detection.describe())
    logger.info('schedule: flip batch %s, %d scale worker(s)',
                'on' if schedule.flip_batch else 'off', schedule.scale_workers)
    existing = [None if options.overwrite else read_existing(path, name, options.landmarks)
                for name, path in targets]
    jobs = [(entry['image'], protocol.name, options.threshold, schedule)
            for entry, boxes in zip(entries, existing) if boxes is None]
    recall = RecallCounter() if any(len(entry['boxes']) for entry in roidb) else None
    start = time.perf_counter()
    counts = _write_outcomes(options, entries, targets, existing, detection.outcomes(jobs),
                             recall)
    seconds = time.perf_counter() - start
    counts.update(images=len(entries), seconds=seconds,
                  images_per_s=counts['detected'] / seconds if counts['detected'] else 0.0,
                  recall=None if recall is None else recall.recall,
                  found=0 if recall is None else recall.found,
                  faces=0 if recall is None else recall.total,
                  output=options.output, protocol=protocol.name)
    return counts


def _write_outcomes(options, entries, targets, existing, outcomes, recall):
    """Write the file of every detected image, in order, and count.

    Args:
        existing: per entry, the boxes of its earlier file, or None (then the next of
            ``outcomes`` is its detection).
        recall: a :class:`RecallCounter` (None on a split without boxes).
    Returns:
        dict: detected, resumed, unreadable (list of image paths).
    """
    detected = resumed = 0
    unreadable = []
    progress = tqdm(entries, desc='test_widerface', unit='img', disable=options.quiet)
    for entry, (name_line, out_path), boxes in zip(progress, targets, existing):
        if boxes is None:
            result, error = next(outcomes)
            if error is not None:
                logger.warning('skipped (no prediction file written): %s', error)
                unreadable.append(entry['image'])
                if recall is not None:            # its faces count as missed
                    recall.add(np.zeros((0, 5)), entry['boxes'])
                continue
            boxes, points = result
            write_predictions(out_path, name_line, boxes, points if options.landmarks else None)
            detected += 1
        else:
            resumed += 1
        if recall is not None:
            found = recall.add(boxes, entry['boxes'])
            logger.debug('%s: recall %d/%d with %d boxes; overall %.4f', name_line, found,
                         len(entry['boxes']), len(boxes), recall.recall)
            progress.set_postfix(recall='%.4f' % recall.recall, refresh=False)
        else:
            logger.debug('%s: %d faces', name_line, len(boxes))
    return {'detected': detected, 'resumed': resumed, 'unreadable': unreadable}


def format_summary(summary):
    """The one-line report of :func:`run_wider_test`'s summary."""
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
