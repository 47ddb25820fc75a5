"""Validation during training: WIDER AP of the checkpoints, the best one kept.

``train.py --val_set val [--val_every N] [--val_images K] [--val_mode M] [--val_metric S]``:
after every N-th epoch-end checkpoint, and after the final checkpoint of the run, rank 0

1. runs ``test_widerface.py``'s procedure (:func:`rcnn.evaluation.wider_test.run_wider_test`,
   mode ``M``, the first ``K`` images of ``<dataset_path>/<val_set>/label.txt``) on the
   checkpoint just written, into ``<prefix>-val-pred/`` (replaced each time: the latest
   predictions);
2. scores those files with the WIDER evaluator (:mod:`rcnn.evaluation.widerface`, as
   ``evaluate_widerface.py`` does) against ``<dataset_path>/<val_set>/gt/`` when it holds the
   official ``wider_face_val.mat`` files, else against the split's ``label.txt`` (faces split
   by height, ``evaluate_widerface.py --label-split size``); with ``K`` images the ground
   truth is restricted to those images;
3. logs one line (``epoch 7  val AP easy 0.912 medium 0.887 hard 0.701  (300 images, 41 s)``),
   appends a row to ``<prefix>-val.csv`` (:data:`VAL_COLUMNS`) and stores the result under
   ``validation`` in the checkpoint's ``.train.json``;
4. when the AP of setting ``S`` (default hard) beats every earlier one (ties keep the
   earlier checkpoint), copies the checkpoint to ``<prefix>-best-symbol.json`` /
   ``<prefix>-best-0000.params`` (atomically) and then writes ``<prefix>-best.json``
   (checkpoint, iteration, metric, value, the three APs).

"epoch N" is checkpoint N (the state after N epochs; the final checkpoint of a run stopped
inside an epoch is N = the epoch in progress, told apart by its ``iteration``).

Validation never changes training: it loads the checkpoint from disk into its own detector,
and the Python / NumPy random states are restored after it. Its time is left out of the
training speed and of ``--max_minutes`` (:meth:`rcnn.core.trainer.Trainer.excluded_time`). A
failure (an image deleted during the run, a full disk, ...) is logged with its traceback and
training goes on. The validation split and its ground truth are read at start-up, so a split without
labels or a missing image stops train.py before the first batch.

``--resume`` from checkpoint N (iteration I) keeps the rows of ``<prefix>-val.csv`` up to
iteration I (later rows belong to an abandoned continuation) and the best-so-far among them;
the best files are re-copied when the best of those rows is not the one they hold.
"""
import csv
import json
import logging
import math
import os
import random
import shutil
import time

import numpy as np

from rcnn.checkpoint.files import checkpoint_files, params_path, recipe_path, symbol_path
from rcnn.checkpoint.record import sha256_file
from rcnn.core.metrics_log import csv_cell, keep_rows_until, read_csv_table
from rcnn.core.trainer import INTERRUPTED, HookBase
from rcnn.evaluation.widerface import (SETTINGS, evaluate_predictions, load_label_ground_truth,
                                       load_mat_ground_truth, read_predictions)
from rcnn.utils.fileio import atomic_write, atomic_write_text

__all__ = ['VAL_COLUMNS', 'VAL_MODES', 'val_csv_path', 'best_prefix', 'best_record_path',
           'ValidationSet',
           'open_validation_set', 'is_better', 'select_best', 'read_val_rows', 'Validator']

logger = logging.getLogger(__name__)

VAL_COLUMNS = ('epoch', 'iteration', 'easy', 'medium', 'hard', 'images', 'seconds')
#: test_widerface.py modes (its --mode): 0 fast, 1 accurate, 2 pyramid + NMS
VAL_MODES = (0, 1, 2)
MAT_FILE = 'wider_face_val.mat'


def val_csv_path(prefix):
    """``<prefix>-val.csv``."""
    return '%s-val.csv' % prefix


def best_prefix(prefix):
    """``<prefix>-best``: the best checkpoint's ``-symbol.json`` + ``-0000.params`` prefix."""
    return '%s-best' % prefix


def best_record_path(prefix):
    """``<prefix>-best.json``, the sidecar naming the best checkpoint."""
    return '%s-best.json' % prefix


def pred_dir_path(prefix):
    """``<prefix>-val-pred``: the latest validation's prediction files."""
    return '%s-val-pred' % prefix


# ---------------------------------------------------------------------------- the split
class ValidationSet(object):
    """The images validated and their ground truth, resolved at start-up.

    Attributes:
        dataset_path, image_set, root_path: as train.py's flags.
        max_images: K of ``--val_images`` (None: all).
        num_images: images validated.
        gt: WiderGroundTruth the predictions are scored against.
        gt_source: the ``gt/`` folder or the ``label.txt`` it came from.
    """

    def __init__(self, dataset_path, image_set, root_path, max_images, num_images, gt,
                 gt_source):
        self.dataset_path = dataset_path
        self.image_set = image_set
        self.root_path = root_path
        self.max_images = max_images
        self.num_images = num_images
        self.gt = gt
        self.gt_source = gt_source

    def __repr__(self):
        return '%d images of %s, ground truth %s' % (
            self.num_images, os.path.join(self.dataset_path, self.image_set, 'label.txt'),
            self.gt_source)


def open_validation_set(dataset_path, image_set, root_path=None, max_images=None):
    """Read and check the validation split at start-up.

    Raises:
        ValueError / OSError: naming the file -- no label file, labels without a face box (a
        test split), a missing image, an image the ``.mat`` ground truth does not list.
    """
    from rcnn.dataset import RetinaFaceDataset
    from rcnn.evaluation.wider_test import prediction_target
    flag = '--val_set %s' % image_set
    # as test_widerface.py reads it (no training recipe, default options): the same image list
    imdb = RetinaFaceDataset(image_set, root_path, dataset_path, cfg=None)
    roidb = imdb.gt_roidb()
    if not any(len(entry['boxes']) for entry in roidb):
        raise ValueError('%s: %s lists no face box (%d images); validation needs a labelled '
                         'split such as val' % (flag, imdb.label_file, len(roidb)))
    if max_images is not None and max_images > len(roidb):
        logger.warning('--val_images %d: %s has only %d images, all are validated', max_images,
                       imdb.label_file, len(roidb))
        max_images = None
    if max_images == len(roidb):
        max_images = None
    entries = roidb if max_images is None else roidb[:max_images]

    gt_dir = os.path.join(dataset_path, image_set, 'gt')
    if os.path.isfile(os.path.join(gt_dir, MAT_FILE)):
        gt, source = load_mat_ground_truth(gt_dir), gt_dir
    else:
        gt, source = load_label_ground_truth(imdb.label_file), imdb.label_file
    index = {(event, name): i for i, (event, name) in enumerate(zip(gt.events, gt.names))}
    chosen = []
    for entry in entries:
        relative, _ = prediction_target(entry['image'], imdb.images_dir, '')
        event, name = os.path.dirname(relative), os.path.splitext(os.path.basename(relative))[0]
        if (event, name) not in index:
            raise ValueError('%s: image %s of %s is not in the ground truth %s'
                             % (flag, relative, imdb.label_file, source))
        chosen.append(index[(event, name)])
    if max_images is not None:
        gt = gt.select(chosen)
    if gt.num_faces('hard') == 0:
        raise ValueError('%s: the ground truth %s has no face among the %d images validated'
                         % (flag, source, len(entries)))
    return ValidationSet(dataset_path, image_set, root_path, max_images, len(entries), gt,
                         source)


# ---------------------------------------------------------------------------- best checkpoint
def is_better(value, best_value):
    """True when AP ``value`` beats ``best_value`` (None: no best yet). NaN never wins; a tie
    keeps the earlier checkpoint."""
    if value is None or math.isnan(value):
        return False
    return best_value is None or value > best_value


def select_best(rows, metric):
    """The row (dict) of the first checkpoint with the highest ``metric`` AP, or None."""
    best = None
    for row in rows:
        if is_better(row[metric], None if best is None else best[metric]):
            best = row
    return best


def read_val_rows(path):
    """Rows of ``<prefix>-val.csv`` as dicts (epoch / iteration / images int, the rest float,
    an empty cell None); [] when the file is absent."""
    if not os.path.isfile(path):
        return []
    header, rows = read_csv_table(path)
    out = []
    for row in rows:
        if not row:
            continue
        item = dict(zip(header, row))
        parsed = {}
        for key, text in item.items():
            if key in ('epoch', 'iteration', 'images'):
                parsed[key] = int(text)
            else:
                parsed[key] = float(text) if text != '' else None
        out.append(parsed)
    return out


def _preserved_random_state(run):
    """Call ``run()`` and put back the Python and NumPy global random states after it."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        return run()
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


class Validator(HookBase):
    """Trainer hook validating checkpoints (rank 0 only): after every ``every``-th epoch-end
    checkpoint (``after_epoch``) and after the final checkpoint (``after_train``; not when
    training was stopped by Ctrl-C). Its time is :meth:`Trainer.excluded_time`.

    Args:
        prefix: checkpoint prefix of the run.
        val_set: :class:`ValidationSet`.
        every: validate every ``every``-th epoch checkpoint (the final one always).
        mode: test_widerface.py mode.
        metric: 'easy', 'medium' or 'hard': the AP picking the best checkpoint.
        ctx_id: test_widerface.py --gpu (-1: the CPU).
        network: test_widerface.py --network (anchor layout).
        resume: the resumed checkpoint's training record, or None for a new run.
    """

    def __init__(self, prefix, val_set, every=1, mode=0, metric='hard', ctx_id=-1,
                 network='net3', resume=None):
        if metric not in SETTINGS:
            raise ValueError('--val_metric must be one of %s, got %r' % (SETTINGS, metric))
        self.prefix = prefix
        self.val_set = val_set
        self.every = int(every)
        self.mode = int(mode)
        self.metric = metric
        self.ctx_id = int(ctx_id)
        self.network = network
        self.csv_path = val_csv_path(prefix)
        self.pred_dir = pred_dir_path(prefix)
        self.best = None          # the best row so far (dict of VAL_COLUMNS)
        self.seconds = 0.0        # spent validating in this run
        self._done = set()        # (checkpoint, iteration) validated in this run
        if resume is None:
            atomic_write_text(self.csv_path, ','.join(VAL_COLUMNS) + '\n')
        else:
            self._restore(resume['checkpoint'], resume['iteration'])
        logger.info('validation: %s; every %d epoch(s) and at the end, test mode %d, best by %s '
                    'AP -> %s-symbol.json / -0000.params, rows in %s', val_set, self.every,
                    self.mode, self.metric, best_prefix(prefix), self.csv_path)

    # ------------------------------------------------------------------ hook events
    def after_epoch(self, trainer):
        saved = trainer.last_checkpoint
        if saved is not None and saved.iteration == trainer.position.iteration:
            with trainer.excluded_time():
                self.validate_if_due(saved.number, saved.iteration, final=False)

    def after_train(self, trainer):
        saved = trainer.last_checkpoint
        if saved is None:
            return
        if trainer.stop_reason == INTERRUPTED:
            logger.info('validation of the final checkpoint %s skipped: training was '
                        'interrupted', saved)
            return
        with trainer.excluded_time():
            self.validate_if_due(saved.number, saved.iteration, final=True)

    def validate_if_due(self, number, iteration, final):
        """Validate checkpoint ``number`` (holding ``iteration``) when due; returns the seconds
        spent (never raises: a failed validation is logged and training goes on)."""
        key = (number, iteration)
        due = (final or number % self.every == 0) and key not in self._done
        if not due:
            return 0.0
        self._done.add(key)
        start = time.perf_counter()
        try:
            _preserved_random_state(lambda: self.validate(number, iteration))
        except Exception as exc:  # noqa: BLE001 -- a failed validation must not stop training
            logger.error('validation of checkpoint %s-%04d failed (training goes on): %s: %s',
                         self.prefix, number, type(exc).__name__, exc, exc_info=True)
        spent = time.perf_counter() - start
        self.seconds += spent
        return spent

    # ------------------------------------------------------------------ steps
    def test_options(self, number):
        """The WIDER test run validating checkpoint ``number``
        (:class:`rcnn.evaluation.wider_test.WiderTestOptions`)."""
        from rcnn.evaluation.wider_test import WiderTestOptions, protocol_of_mode
        # the label cache where test_widerface.py keeps it unless the run names a root path
        root = {} if self.val_set.root_path is None else {'root_path': self.val_set.root_path}
        return WiderTestOptions(
            prefix=self.prefix, epoch=number, ctx_id=self.ctx_id, network=self.network,
            protocol=protocol_of_mode(self.mode), dataset_path=self.val_set.dataset_path,
            image_set=self.val_set.image_set, max_images=self.val_set.max_images,
            output=self.pred_dir, overwrite=True, quiet=True,
            # the engine of this (training) process: the CPU default (naive) cannot apply once
            # mxnet is imported; the prediction files do not depend on the engine
            engine='auto' if os.environ.get('MXNET_ENGINE_TYPE') else 'threaded',
            # in this process (no image workers: the loader workers and the training keep the
            # cores), with the threads of the OMP_NUM_THREADS mxnet was imported with
            image_workers=1, **root)

    def detect_and_score(self, number):
        """The WIDER test procedure on checkpoint ``number``, then the WIDER evaluator.

        Returns:
            (setting -> AP, images tested).
        """
        from rcnn.evaluation.wider_test import run_wider_test
        if os.path.isdir(self.pred_dir):
            shutil.rmtree(self.pred_dir)
        summary = run_wider_test(self.test_options(number))
        gt = self.val_set.gt
        results = evaluate_predictions(read_predictions(self.pred_dir, gt), gt)
        return {s: results[s].ap for s in SETTINGS}, summary['images']

    def validate(self, number, iteration):
        """Detect, score and record checkpoint ``number``; returns the row (dict)."""
        start = time.perf_counter()
        ap, images = self.detect_and_score(number)
        return self.record(number, iteration, ap, images, time.perf_counter() - start)

    def record(self, number, iteration, ap, images, seconds):
        """Log, append to the CSV, keep the best and store in ``.train.json`` one result.

        Args:
            ap: setting -> AP.
        Returns:
            the row (dict of :data:`VAL_COLUMNS`).
        """
        row = {'epoch': int(number), 'iteration': int(iteration), 'images': int(images),
               'seconds': float(seconds)}
        row.update({s: float(ap[s]) for s in SETTINGS})
        logger.info('epoch %d  val AP easy %.3f medium %.3f hard %.3f  (%d images, %.0f s)',
                    number, row['easy'], row['medium'], row['hard'], images, seconds)
        with open(self.csv_path, 'a', newline='') as handle:
            csv.writer(handle, lineterminator='\n').writerow(
                [csv_cell(row[c]) for c in VAL_COLUMNS])
        improved = is_better(row[self.metric], None if self.best is None else
                             self.best[self.metric])
        if improved:
            self._install_best(row)
            self.best = row
            logger.info('new best %s AP %.4f at epoch %d: %s', self.metric, row[self.metric],
                        number, params_path(best_prefix(self.prefix), 0))
        self._store_in_train_record(number, iteration, row, improved)
        return row

    def _install_best(self, row):
        """Copy checkpoint ``row['epoch']`` to the best pair, then write the sidecar."""
        source = params_path(self.prefix, row['epoch'])
        target = best_prefix(self.prefix)
        atomic_write(params_path(target, 0), lambda tmp: shutil.copyfile(source, tmp))
        atomic_write(symbol_path(target), lambda tmp: shutil.copyfile(symbol_path(self.prefix),
                                                                      tmp))
        if os.path.isfile(recipe_path(self.prefix)):     # the detector decodes it as trained
            atomic_write(recipe_path(target),
                         lambda tmp: shutil.copyfile(recipe_path(self.prefix), tmp))
        sidecar = {'checkpoint': row['epoch'], 'epoch': row['epoch'],
                   'iteration': row['iteration'], 'metric': self.metric,
                   'value': row[self.metric], 'ap': {s: row[s] for s in SETTINGS},
                   'images': row['images'], 'mode': self.mode, 'source': source,
                   'params_sha256': sha256_file(params_path(target, 0)),
                   'saved_at': time.strftime('%Y-%m-%d %H:%M:%S')}
        atomic_write_text(best_record_path(self.prefix),
                          json.dumps(sidecar, indent=1, sort_keys=True) + '\n')

    def _store_in_train_record(self, number, iteration, row, improved):
        path = checkpoint_files(self.prefix, number)['record']
        try:
            with open(path) as handle:
                record = json.load(handle)
        except (OSError, ValueError) as exc:
            logger.warning('validation result not stored in %s: %s', path, exc)
            return
        if record.get('iteration') != iteration:
            logger.warning('validation result not stored in %s: it holds iteration %s, the '
                           'validated checkpoint iteration %d', path, record.get('iteration'),
                           iteration)
            return
        record['validation'] = {
            'ap': {s: row[s] for s in SETTINGS}, 'images': row['images'],
            'seconds': row['seconds'], 'mode': self.mode, 'metric': self.metric,
            'best': {'epoch': self.best['epoch'], 'iteration': self.best['iteration'],
                     'value': self.best[self.metric]} if self.best else None,
            'is_best': improved}
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True))

    # ------------------------------------------------------------------ resume
    def _restore(self, checkpoint, iteration):
        """Keep the CSV rows up to ``iteration`` and the best among them."""
        if not os.path.isfile(self.csv_path):
            atomic_write_text(self.csv_path, ','.join(VAL_COLUMNS) + '\n')
        else:
            dropped = keep_rows_until(self.csv_path, 'iteration', iteration)
            if dropped:
                logger.info('%s: dropped %d rows after the resumed iteration %d',
                            self.csv_path, dropped, iteration)
        rows = read_val_rows(self.csv_path)
        self._done.update((row['epoch'], row['iteration']) for row in rows)
        self.best = select_best(rows, self.metric)
        sidecar = self._read_sidecar()
        if self.best is None:
            if sidecar is not None:
                logger.warning('%s names epoch %s but %s has no result up to iteration %d: the '
                               'next validation replaces it', best_record_path(self.prefix),
                               sidecar.get('epoch'), self.csv_path, iteration)
            return
        if sidecar is not None and (sidecar.get('epoch'), sidecar.get('iteration'),
                                    sidecar.get('metric')) == (
                self.best['epoch'], self.best['iteration'], self.metric):
            logger.info('best so far: %s AP %.4f at epoch %d (%s)', self.metric,
                        self.best[self.metric], self.best['epoch'],
                        params_path(best_prefix(self.prefix), 0))
            return
        self._reinstall_best(checkpoint)

    def _read_sidecar(self):
        path = best_record_path(self.prefix)
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as handle:
                return json.load(handle)
        except (OSError, ValueError) as exc:
            logger.warning('ignoring unreadable %s: %s', path, exc)
            return None

    def _reinstall_best(self, checkpoint):
        """The best files do not hold the best row: copy its checkpoint when it still exists."""
        number = self.best['epoch']
        record_path = checkpoint_files(self.prefix, number)['record']
        try:
            with open(record_path) as handle:
                saved_iteration = json.load(handle).get('iteration')
        except (OSError, ValueError):
            saved_iteration = None
        if saved_iteration != self.best['iteration'] or \
                not os.path.isfile(params_path(self.prefix, number)):
            logger.warning('best so far (%s AP %.4f) is epoch %d at iteration %d, whose '
                           'checkpoint files were replaced since: %s is left as it is until a '
                           'validation beats that AP', self.metric, self.best[self.metric],
                           number, self.best['iteration'], best_record_path(self.prefix))
            return
        self._install_best(self.best)
        logger.info('best so far: %s AP %.4f at epoch %d (re-copied for the resume from '
                    'checkpoint %d)', self.metric, self.best[self.metric], number, checkpoint)
