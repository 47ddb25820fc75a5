"""The training loop behind ``train.py``: devices, module set-up, batches, checkpoints, resume.

One iteration (batch) of :meth:`Trainer.fit`::

    wait for the loader's next batch                       (data time)
    forward + backward                                     (step time)
    stop on a NaN / Inf probability or loss                (callback.check_finite_outputs)
    update (SGD; the lr comes from the schedule inside the optimizer)
    update the metrics, log every --frequent iterations    (callback.Speedometer)
    checkpoint every --checkpoint_iters iterations and at every epoch end

Training stops at the last lr step, ``--max_iters``, ``--end_epoch`` or, with
``--max_minutes``, once this run has trained that long (checked before each batch), always
with a checkpoint; rank 0 then writes ``<prefix>-train-summary.json`` (see
:meth:`Trainer.summary`).

Positions: ``epoch`` counts from the run's ``begin_epoch`` (absolute, as the
checkpoint numbers), ``iteration`` counts batches from the start of the schedule
(iteration 0 = the first batch of ``begin_epoch`` of the first run),
``batch_in_epoch`` the batches done in the current epoch. An epoch is
``iters_per_epoch = int(num_images / batch_size)`` batches (at least 1), the
original's count. Checkpoint ``N`` belongs to epoch ``N - 1`` (0-based), i.e. it is
the state after, or during, the N-th epoch.
"""
import json
import logging
import os
import time

import mxnet as mx
import numpy as np

from rcnn.core import train_state
from rcnn.core.callback import (NonFiniteLossError, Speedometer, check_finite_outputs,
                                format_metric, non_finite_params)
from rcnn.core.loader import LoaderError
from rcnn.core.metric import build_train_metrics, loss_output_indices
from rcnn.model_layout import FEATURE_STRIDES
from rcnn.utils.fileio import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ['DeviceError', 'resolve_contexts', 'shard_roidb', 'layer_fix_candidates',
           'frozen_param_names',
           'split_missing_params', 'select_params', 'params_digest', 'Position', 'Trainer',
           'XAVIER']

# Xavier for every parameter the pretrained model does not provide (variables that carry
# their own __init__ attribute, e.g. the heads' Normal(0.01), keep it). The original used
# MXNet's default Xavier: uniform, averaged fan-in/fan-out, magnitude 3.
XAVIER = dict(rnd_type='uniform', factor_type='avg', magnitude=3)
# cfg.LAYER_FIX (mnet): the first six parameter arrays of a loaded backbone stay fixed
LAYER_FIX_COUNT = 6


class DeviceError(RuntimeError):
    """The requested devices cannot be used by this MXNet build."""


def resolve_contexts(gpus='', cpus=0, environ=None):
    """Training contexts, as the original: GPUs from CUDA_VISIBLE_DEVICES, else the CPU.

    Args:
        gpus: ``--gpus`` (``'0,1'``); when set it wins over CUDA_VISIBLE_DEVICES and names
            device ids as MXNet sees them.
        cpus: ``--cpus N`` > 0 forces N CPU contexts (data-parallel on one CPU; testing).
        environ: environment mapping (default ``os.environ``).
    Returns:
        list of mx.Context.
    Raises:
        DeviceError: GPUs requested but this MXNet has no CUDA support / too few GPUs.
    """
    environ = os.environ if environ is None else environ
    if cpus:
        if gpus:
            raise DeviceError('--cpus and --gpus are exclusive')
        return [mx.cpu(i) for i in range(int(cpus))]
    if gpus:
        source = '--gpus %s' % gpus
        ids = [int(tok) for tok in str(gpus).split(',') if tok.strip()]
    else:
        visible = environ.get('CUDA_VISIBLE_DEVICES', '').strip()
        if not visible:
            return [mx.cpu()]
        source = 'CUDA_VISIBLE_DEVICES=%s' % visible
        ids = list(range(len([tok for tok in visible.split(',') if tok.strip()])))
    if not mx.runtime.Features().is_enabled('CUDA'):
        raise DeviceError(
            '%s asks for GPU training but this MXNet build (%s) has no CUDA support. Install '
            'the CUDA build matching your driver (e.g. pip install mxnet-cu112==1.9.1, see the '
            'README), or train on the CPU with CUDA_VISIBLE_DEVICES unset/empty and no --gpus.'
            % (source, mx.__version__))
    available = mx.context.num_gpus()
    if not ids or max(ids) >= available:
        raise DeviceError('%s asks for GPU ids %s but only %d GPU(s) are visible'
                          % (source, ids, available))
    return [mx.gpu(i) for i in ids]


def shard_roidb(roidb, rank, num_workers):
    """Worker ``rank``'s shard: every ``num_workers``-th entry, all shards the same length.

    Equal lengths keep the synchronous workers at the same number of batches per epoch
    (a worker with one batch more would wait forever for the others' gradients).
    """
    if num_workers <= 1:
        return list(roidb)
    per_worker = len(roidb) // num_workers
    if per_worker == 0:
        raise ValueError('%d roidb entries cannot be shared by %d workers'
                         % (len(roidb), num_workers))
    return list(roidb[rank::num_workers][:per_worker])


def layer_fix_candidates(param_names):
    """The arrays ``cfg.LAYER_FIX`` freezes: the first six parameter arrays (after ``data``) and
    any upsampling weight, as the original's ``get_fixed_params`` did in effect.

    Args:
        param_names: the training graph's parameter arguments in graph order (no data, no
            labels). In mnet these start with the backbone's conv0 / conv1 weights and their
            BatchNorm gamma / beta. (Our graphs upsample by nearest neighbour: no weights.)
    """
    head = list(param_names[:LAYER_FIX_COUNT])
    return head + [n for n in param_names[LAYER_FIX_COUNT:] if 'upsampling' in n]


def frozen_param_names(layer_fix, param_names, loaded_names):
    """Parameters kept fixed: with ``layer_fix`` the :func:`layer_fix_candidates` that were
    loaded from ``--pretrained`` (a layer that was not loaded is never frozen); else none."""
    if not layer_fix:
        return []
    loaded = set(loaded_names)
    return [name for name in layer_fix_candidates(param_names) if name in loaded]


def split_missing_params(arg_shapes, aux_shapes, arg_params, aux_params):
    """Compare provided parameters with the graph's.

    Args:
        arg_shapes / aux_shapes: name -> shape of the graph's parameters / aux states.
        arg_params / aux_params: name -> NDArray provided (pretrained or checkpoint).
    Returns:
        (missing, unexpected, mismatched): sorted name lists; mismatched entries are
        ``'name: provided (..) vs graph (..)'``.
    """
    missing, mismatched = [], []
    for shapes, provided in ((arg_shapes, arg_params), (aux_shapes, aux_params)):
        for name, shape in shapes.items():
            if name not in provided:
                missing.append(name)
            elif tuple(provided[name].shape) != tuple(shape):
                mismatched.append('%s: provided %s vs graph %s'
                                  % (name, tuple(provided[name].shape), tuple(shape)))
    unexpected = [n for n in arg_params if n not in arg_shapes] + \
                 [n for n in aux_params if n not in aux_shapes]
    return sorted(missing), sorted(unexpected), sorted(mismatched)


def select_params(sym, arg_params, aux_params):
    """The subsets of ``arg_params`` / ``aux_params`` that ``sym`` uses (deploy graph)."""
    arg_names = set(sym.list_arguments())
    aux_names = set(sym.list_auxiliary_states())
    return ({k: v for k, v in arg_params.items() if k in arg_names},
            {k: v for k, v in aux_params.items() if k in aux_names})


def params_digest(params):
    """SHA-256 over the sorted names and bytes of a name -> NDArray dict."""
    import hashlib
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(params[name].asnumpy()).tobytes())
    return digest.hexdigest()


class Position(object):
    """Where training stands: epoch in progress, batches done in it, global iteration."""

    def __init__(self, epoch, batch_in_epoch=0, iteration=0):
        self.epoch = int(epoch)
        self.batch_in_epoch = int(batch_in_epoch)
        self.iteration = int(iteration)

    def __repr__(self):
        return 'Position(epoch=%d, batch_in_epoch=%d, iteration=%d)' % (
            self.epoch, self.batch_in_epoch, self.iteration)


class Trainer(object):
    """Runs the loop on a bound, initialised Module (optimizer installed).

    Args:
        mod: the Module of the training graph.
        deploy_sym: deploy graph saved with every checkpoint.
        feed: object with ``batches(epoch, skip)`` yielding the batches of an epoch from
            batch ``skip`` on (see train.py's LoaderFeed).
        schedule: LRSchedule (for logging; the optimizer applies its twin).
        prefix: checkpoint prefix; save_checkpoint is a no-op when ``saver`` is False.
        batch_size: images per iteration on this worker.
        iters_per_epoch: batches per epoch.
        end_epoch: stop before this epoch (absolute).
        max_iters: stop once the global iteration reaches this (None: no limit).
        checkpoint_iters: also checkpoint every this many iterations (0: epoch ends only).
        frequent: iterations between log lines.
        record: fixed fields of every training record (network, seed, ...).
        strides: feature strides, for the metric names.
        saver: this process writes checkpoints (rank 0).
        save_optimizer_states: False when the optimizer state lives on kvstore servers
            (dist_async); the ``.states`` file is then empty and the record says so.
        max_seconds: time budget of this run (None: none); training stops before the first
            batch that would start after it.
        watchers: objects told about the run (rank 0; MetricsLog, Validator):
            ``on_log(position, lr, stats, window)`` after each logged window and
            ``after_checkpoint(number, position, final)`` after each epoch-end checkpoint and
            once after the final one, returning the seconds it spent (validation), which are
            left out of the speed, the time budget and ``seconds`` of the summary.
    """

    def __init__(self, mod, deploy_sym, feed, schedule, prefix, batch_size, iters_per_epoch,
                 end_epoch, max_iters=None, checkpoint_iters=0, frequent=20, record=None,
                 strides=FEATURE_STRIDES, saver=True, save_optimizer_states=True, max_seconds=None,
                 watchers=()):
        self.mod = mod
        self.deploy_sym = deploy_sym
        self.feed = feed
        self.schedule = schedule
        self.prefix = prefix
        self.batch_size = batch_size
        self.iters_per_epoch = max(1, int(iters_per_epoch))
        self.end_epoch = end_epoch
        self.max_iters = max_iters
        self.checkpoint_iters = int(checkpoint_iters or 0)
        self.record = dict(record or {})
        self.saver = saver
        self.save_optimizer_states = save_optimizer_states
        self.metrics = build_train_metrics(strides)
        self.epoch_metrics = build_train_metrics(strides)
        self.speedometer = Speedometer(batch_size, frequent)
        self.watched = loss_output_indices(len(strides))
        self.last_checkpoint = None  # (number, iteration) of the last good checkpoint
        self.max_seconds = max_seconds
        self._fit_start = None       # perf_counter() when fit() began
        self._first_window = None    # metric name -> value of the first logged window
        self._last_window = None     # ... and of the last one
        self.watchers = list(watchers)
        self._watch_seconds = 0.0    # spent in the watchers (validation), not training

    # ------------------------------------------------------------------ stop rule
    def stop_iteration(self):
        """Global iteration at which training ends (last lr step / max_iters), or None."""
        candidates = [v for v in (self.schedule.end_iteration, self.max_iters) if v is not None]
        return min(candidates) if candidates else None

    def _training_seconds(self):
        """Seconds of this run's fit() so far, without the watchers' (validation) time."""
        return time.perf_counter() - self._fit_start - self._watch_seconds

    def _out_of_time(self):
        return self.max_seconds is not None and self._fit_start is not None and \
            self._training_seconds() >= self.max_seconds

    def _checkpoint_written(self, number, position, final):
        """Tell the watchers; their time is kept out of the training figures."""
        for watcher in self.watchers:
            spent = watcher.after_checkpoint(number, position, final) or 0.0
            self._watch_seconds += spent
            self.speedometer.pause(spent)

    def stop_reason(self, position):
        """Why training stops at ``position``: 'schedule' (last lr step), 'max_iters',
        'end_epoch', 'max_minutes' (time budget), or None when it goes on."""
        end = self.schedule.end_iteration
        if end is not None and position.iteration >= end:
            return 'schedule'
        if self.max_iters is not None and position.iteration >= self.max_iters:
            return 'max_iters'
        if position.epoch >= self.end_epoch:
            return 'end_epoch'
        if self._out_of_time():
            return 'max_minutes'
        return None

    def _finished(self, position):
        return self.stop_reason(position) is not None

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, position, number=None):
        """Deploy graph + params + optimizer states + record of ``position`` (rank 0 only).

        Returns:
            the checkpoint number written (or that would have been, on other ranks).
        """
        from rcnn.utils.checkpoint import params_payload
        if number is None:
            number = position.epoch + (0 if position.batch_in_epoch == 0 else 1)
        if not self.saver:
            return number
        arg_params, aux_params = self.mod.get_params()
        broken = non_finite_params(dict(arg_params, **aux_params))
        if broken:
            raise NonFiniteLossError(
                'non-finite parameters after the update of epoch %d, batch %d (iteration %d): '
                '%s; checkpoint %d not written' % (
                    position.epoch if position.batch_in_epoch else position.epoch - 1,
                    position.batch_in_epoch or self.iters_per_epoch, position.iteration - 1,
                    ', '.join(broken[:10]) + (' ...' if len(broken) > 10 else ''), number),
                position.epoch, position.batch_in_epoch, position.iteration - 1)
        deploy_args, deploy_aux = select_params(self.deploy_sym, arg_params, aux_params)
        payload = params_payload(deploy_args, deploy_aux)
        writers = {'params': lambda tmp: mx.nd.save(tmp, payload), 'symbol': self.deploy_sym.save,
                   'states': (self.mod.save_optimizer_states if self.save_optimizer_states
                              else lambda tmp: open(tmp, 'wb').close())}
        record = dict(self.record, optimizer_states=self.save_optimizer_states)
        record.update(epoch=position.epoch, batch_in_epoch=position.batch_in_epoch,
                      iteration=position.iteration, lr=self.schedule.lr_at(position.iteration),
                      base_lr=self.schedule.base_lr, lr_steps=self.schedule.steps,
                      lr_factors=self.schedule.factors, iters_per_epoch=self.iters_per_epoch,
                      batch_size=self.batch_size, end_epoch=self.end_epoch,
                      saved_at=time.strftime('%Y-%m-%d %H:%M:%S'))
        try:
            train_state.save_checkpoint_files(self.prefix, number, writers, record)
        except train_state.CheckpointWriteError as exc:
            raise train_state.CheckpointWriteError('%s; %s' % (exc, self._last_good())) from exc
        self.last_checkpoint = (number, position.iteration)
        logger.info('saved checkpoint %s-%04d (.params, .states, .train.json): epoch %d, '
                    'batch %d, iteration %d', self.prefix, number, position.epoch,
                    position.batch_in_epoch, position.iteration)
        return number

    # ------------------------------------------------------------------ loop
    def _log_lr_change(self, position):
        if position.iteration == 0 or self.schedule.changes_at(position.iteration):
            logger.info('lr %s %.8g at iteration %d (epoch %d, batch %d)',
                        'starts at' if position.iteration == 0 else 'changes to',
                        self.schedule.lr_at(position.iteration), position.iteration,
                        position.epoch, position.batch_in_epoch)

    def _step(self, batch, position):
        """One forward/backward/update; returns the step's wall time."""
        t0 = time.perf_counter()
        self.mod.forward_backward(batch)
        outputs = self.mod.get_outputs(merge_multi_context=False)
        check_finite_outputs(outputs, self.watched, self.mod.output_names, position.epoch,
                             position.batch_in_epoch + 1, position.iteration)
        self.mod.update()
        self.mod.update_metric(self.metrics, batch.label)
        self.mod.update_metric(self.epoch_metrics, batch.label)
        return time.perf_counter() - t0

    def fit(self, position):
        """Train from ``position`` until the stop rule; returns the final Position.

        Raises:
            NonFiniteLossError: after logging which batch went wrong and which checkpoint
            is the last good one (nothing is saved from the broken state).
        """
        stop = self.stop_iteration()
        logger.info('training from %s to %s (end_epoch %d, %d iterations per epoch, batch %d)',
                    position, 'iteration %d' % stop if stop is not None else 'no iteration limit',
                    self.end_epoch, self.iters_per_epoch, self.batch_size)
        if self.max_seconds is not None:
            logger.info('time budget: training stops with a checkpoint after %.1f minutes',
                        self.max_seconds / 60.0)
        self.speedometer.start()
        self._fit_start = time.perf_counter()
        start_iteration = position.iteration
        try:
            while not self._finished(position):
                position = self._run_epoch(position)
        except NonFiniteLossError as exc:
            self._report_failure(exc)
            raise
        except LoaderError:
            self._save_before_stopping(position)
            raise
        reason = self.stop_reason(position)
        if self.last_checkpoint:
            self._checkpoint_written(self.last_checkpoint[0], position, final=True)
        logger.info('training finished at %s (stopped by %s); final checkpoint %s-%04d', position,
                    reason, self.prefix, self.last_checkpoint[0] if self.last_checkpoint else -1)
        if self.saver:
            path = '%s-train-summary.json' % self.prefix
            atomic_write_text(path, json.dumps(
                self.summary(position, start_iteration, reason), indent=1, sort_keys=True) + '\n')
            logger.info('training summary: %s', path)
        return position

    def summary(self, position, start_iteration, reason):
        """The machine-readable summary of a finished run (``<prefix>-train-summary.json``).

        Returns a dict: ``iterations`` (global, as the checkpoints count them),
        ``iterations_this_run``, ``epoch`` / ``batch_in_epoch`` (the final position),
        ``iters_per_epoch``, ``batch_size``, ``checkpoint`` (the final checkpoint's number),
        ``lr`` (of the last update), ``stopped_by`` (:meth:`stop_reason`), ``seconds`` and
        ``images_per_s`` of this run's training (validation left out), ``validation_seconds`` (the
        time spent in the watchers, i.e. validation), ``window`` (iterations per log window) and
        ``first_metrics`` / ``last_metrics``: metric name -> value (None when the window had
        nothing to count) of the first and last logged windows; a run shorter than one
        window reports its unlogged batches as both.
        """
        seconds = self._training_seconds()
        done = position.iteration - start_iteration
        unlogged = dict(self.metrics.get_name_value())
        first, last = self._first_window or unlogged, self._last_window or unlogged

        def clean(values):
            return {k: (None if v is None or not np.isfinite(v) else float(v))
                    for k, v in values.items()}
        return {
            'iterations': position.iteration, 'iterations_this_run': done,
            'epoch': position.epoch, 'batch_in_epoch': position.batch_in_epoch,
            'iters_per_epoch': self.iters_per_epoch, 'batch_size': self.batch_size,
            'checkpoint': self.last_checkpoint[0] if self.last_checkpoint else None,
            'lr': self.schedule.lr_at(max(position.iteration - 1, 0)), 'stopped_by': reason,
            'seconds': seconds, 'images_per_s': done * self.batch_size / seconds if seconds else 0.0,
            'validation_seconds': self._watch_seconds,
            'window': self.speedometer.frequent,
            'first_metrics': clean(first), 'last_metrics': clean(last)}

    def _run_epoch(self, position):
        """Batches of ``position.epoch`` from ``position.batch_in_epoch`` until the epoch ends
        or training stops; checkpoints; returns the new Position."""
        if position.batch_in_epoch == 0:
            self.epoch_metrics.reset()
        epoch_start = time.perf_counter()
        batches = self.feed.batches(position.epoch, position.batch_in_epoch)
        try:
            while position.batch_in_epoch < self.iters_per_epoch and not self._finished(position):
                self._log_lr_change(position)
                t0 = time.perf_counter()
                batch = next(batches)
                data_time = time.perf_counter() - t0
                step_time = self._step(batch, position)
                lr = self.schedule.lr_at(position.iteration)
                position.iteration += 1
                position.batch_in_epoch += 1
                window = dict(self.metrics.get_name_value())
                if self.speedometer(position.epoch, position.batch_in_epoch, position.iteration,
                                    self.metrics, lr, data_time, step_time):
                    self._first_window = self._first_window or window
                    self._last_window = window
                    for watcher in self.watchers:
                        watcher.on_log(position, lr, self.speedometer.last_stats, window)
                if self.checkpoint_iters and position.iteration % self.checkpoint_iters == 0 \
                        and position.batch_in_epoch < self.iters_per_epoch \
                        and not self._finished(position):
                    self.save_checkpoint(position)
        finally:
            batches.close()
        if position.batch_in_epoch >= self.iters_per_epoch:
            logger.info('Epoch[%d] done in %.1fs: %s', position.epoch,
                        time.perf_counter() - epoch_start,
                        ' '.join(format_metric(*nv) for nv in self.epoch_metrics.get_name_value()))
            position = Position(position.epoch + 1, 0, position.iteration)
            self._checkpoint_written(self.save_checkpoint(position), position, final=False)
        else:
            self.save_checkpoint(position)  # stopped inside the epoch
        return position

    def _save_before_stopping(self, position):
        """Checkpoint the batches trained since the last checkpoint (the loader failed; the
        model state is intact). ``position`` is the one ``_run_epoch`` advanced in place."""
        if self.last_checkpoint is not None and self.last_checkpoint[1] == position.iteration:
            return
        if position.iteration == 0 or (position.batch_in_epoch == 0 and
                                       self.last_checkpoint is None):
            return
        logger.error('the loader failed at %s; saving a checkpoint of the work done so far',
                     position)
        self.save_checkpoint(position)

    def _last_good(self):
        if self.last_checkpoint:
            return 'the last good checkpoint is %s-%04d (iteration %d), untouched' % (
                self.prefix, self.last_checkpoint[0], self.last_checkpoint[1])
        return 'no checkpoint was written in this run'

    def _report_failure(self, exc):
        where = self._last_good()
        logger.error('training stopped at epoch %d, batch %d (iteration %d): %s. Lower --lr '
                     'or check the data of this batch.', exc.epoch, exc.batch_in_epoch,
                     exc.iteration, where)
