"""The hooks train.py's :class:`~rcnn.core.trainer.Trainer` runs with.

=====================  =====================================================================
hook                   what it does (events)
=====================  =====================================================================
:class:`InterruptStop`  Ctrl-C (SIGINT) stops training before the next batch, with a
                       checkpoint (before_train installs the handler; before_step /
                       after_step / after_epoch stop; after_train / on_error restore it)
:class:`StopRule`       stop at the last lr step, ``--max_iters`` or ``--end_epoch``
:class:`NonFiniteGuard` a NaN / Inf probability or loss stops training before the update
:class:`SpeedLogger`    the lr changes, the ``--frequent`` log line (speed, time split,
                       metrics) and the epoch line; publishes ``trainer.log_window``
``MetricsLog``         ``<prefix>-metrics.csv``, one row per logged window
                       (rcnn/core/metrics_log.py)
:class:`Checkpointer`   every ``--checkpoint_iters`` iterations, at every epoch end and when
                       training stops inside an epoch; after a loader failure the batches
                       done; names the last good checkpoint on a NaN stop
``Validator``          WIDER AP of the epoch and final checkpoints, the best one kept
                       (rcnn/core/validation.py)
:class:`TimeBudget`     ``--max_minutes``: stop once this run has trained that long
:class:`RunSummary`     ``<prefix>-train-summary.json`` (rank 0)
=====================  =====================================================================

:func:`standard_hooks` lists them in this order, which matters: the stop rule runs before the
checkpoints (a periodic checkpoint is not written when the final one follows at the same
iteration), the time budget after them (the time of writing a checkpoint counts as training,
validation time does not) and the summary last (it reports the final checkpoint).
"""
import json
import logging
import signal
import threading
import time

import numpy as np

from rcnn.checkpoint.commit import CheckpointWriteError, write_module_checkpoint
from rcnn.core.callback import (NonFiniteLossError, Speedometer, check_finite_outputs,
                                format_metric, non_finite_params)
from rcnn.core.loader import LoaderError
from rcnn.core.metric import loss_output_indices
from rcnn.core.trainer import INTERRUPTED, HookBase, LogWindow, SavedCheckpoint, \
    checkpoint_number
from rcnn.utils.fileio import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ['InterruptStop', 'StopRule', 'NonFiniteGuard', 'SpeedLogger', 'Checkpointer',
           'TimeBudget', 'RunSummary', 'summary_path', 'standard_hooks']


def summary_path(prefix):
    """``<prefix>-train-summary.json``."""
    return '%s-train-summary.json' % prefix


# ---------------------------------------------------------------------------- stopping
class InterruptStop(HookBase):
    """Ctrl-C (SIGINT) ends training cleanly: the batch in progress finishes, the batches done
    are checkpointed (:class:`Checkpointer`), the summary says ``stopped_by: interrupt`` and
    :meth:`Trainer.fit` raises :class:`~rcnn.core.trainer.TrainingInterrupted`.

    A step is never cut in half: the handler only sets a flag that the next event reads,
    because a KeyboardInterrupt inside ``mod.update()`` would leave some weights updated and
    others not. A second Ctrl-C raises KeyboardInterrupt at once (nothing more is saved; the
    atomic commit never leaves a half-written checkpoint). The handler is installed only in
    the main thread (Python delivers signals there).
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True      # logged by the next event: a handler must not block

    def before_train(self, trainer):
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _stop_if_requested(self, trainer):
        if self.requested and trainer.stop_reason is None:
            trainer.stop_reason = INTERRUPTED
            logger.warning('Ctrl-C: training stops at %s with a checkpoint of the batches done '
                           '(Ctrl-C again stops at once, without one)', trainer.position)

    def before_step(self, trainer):
        self._stop_if_requested(trainer)

    def after_step(self, trainer):
        self._stop_if_requested(trainer)

    def after_epoch(self, trainer):
        self._stop_if_requested(trainer)

    def _restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def after_train(self, trainer):
        self._restore()

    def on_error(self, trainer, error):
        self._restore()


class StopRule(HookBase):
    """Stop at the last lr step (``'schedule'``), at ``max_iters`` global iterations
    (``'max_iters'``) or at the start of epoch ``end_epoch`` (``'end_epoch'``).

    Args:
        end_epoch: stop before this epoch (absolute).
        max_iters: stop once the global iteration reaches this (None: no limit).
    """

    def __init__(self, end_epoch, max_iters=None):
        self.end_epoch = int(end_epoch)
        self.max_iters = max_iters

    def stop_iteration(self, schedule):
        """Global iteration at which training ends (last lr step / max_iters), or None."""
        candidates = [v for v in (schedule.end_iteration, self.max_iters) if v is not None]
        return min(candidates) if candidates else None

    def reason(self, schedule, position):
        """Why training stops at ``position`` ('schedule', 'max_iters', 'end_epoch'), or None."""
        end = schedule.end_iteration
        if end is not None and position.iteration >= end:
            return 'schedule'
        if self.max_iters is not None and position.iteration >= self.max_iters:
            return 'max_iters'
        if position.epoch >= self.end_epoch:
            return 'end_epoch'
        return None

    def _check(self, trainer):
        if trainer.stop_reason is None:
            trainer.stop_reason = self.reason(trainer.schedule, trainer.position)

    def before_train(self, trainer):
        stop = self.stop_iteration(trainer.schedule)
        logger.info('training from %s to %s (end_epoch %d, %d iterations per epoch, batch %d)',
                    trainer.position,
                    'iteration %d' % stop if stop is not None else 'no iteration limit',
                    self.end_epoch, trainer.iters_per_epoch, trainer.batch_size)
        self._check(trainer)

    def after_step(self, trainer):
        self._check(trainer)

    def after_epoch(self, trainer):
        self._check(trainer)


class TimeBudget(HookBase):
    """``--max_minutes``: stop (``'max_minutes'``) before the first batch that would start
    after ``max_seconds`` of this run's training (validation left out)."""

    def __init__(self, max_seconds):
        self.max_seconds = float(max_seconds)

    def before_train(self, trainer):
        logger.info('time budget: training stops with a checkpoint after %.1f minutes',
                    self.max_seconds / 60.0)

    def _check(self, trainer):
        if trainer.stop_reason is None and trainer.training_seconds() >= self.max_seconds:
            trainer.stop_reason = 'max_minutes'

    def after_step(self, trainer):
        self._check(trainer)

    def after_epoch(self, trainer):
        self._check(trainer)


class NonFiniteGuard(HookBase):
    """Stop on a NaN or infinite class probability or loss, before the update applies it
    (:class:`~rcnn.core.callback.NonFiniteLossError` naming the epoch, batch and output).

    Args:
        layout: the training graph's :class:`~rcnn.model_layout.ModelLayout` (or the strides
            of a net3 layout, or their count).
    """

    def __init__(self, layout):
        self.watched = loss_output_indices(layout)

    def after_backward(self, trainer):
        position = trainer.position
        outputs = trainer.mod.get_outputs(merge_multi_context=False)
        check_finite_outputs(outputs, self.watched, trainer.mod.output_names, position.epoch,
                             position.batch_in_epoch + 1, position.iteration)


# ---------------------------------------------------------------------------- logging
class SpeedLogger(HookBase):
    """The lr changes, one line every ``frequent`` iterations (rcnn.core.callback.Speedometer:
    samples/s, data / step seconds, the window's metrics) and one line per epoch.

    When a window is logged it sets ``trainer.log_window`` (:class:`LogWindow`) for the hooks
    after it (the metrics table, the summary).
    """

    def __init__(self, batch_size, frequent=20):
        self.speedometer = Speedometer(batch_size, frequent)
        self._excluded_seen = 0.0
        self._epoch_start = None

    def before_train(self, trainer):
        self._excluded_seen = trainer.excluded_seconds
        self.speedometer.start()

    def before_epoch(self, trainer):
        self._epoch_start = time.perf_counter()

    def before_step(self, trainer):
        position = trainer.position
        if trainer.stop_reason is not None:
            return
        if position.iteration == 0 or trainer.schedule.changes_at(position.iteration):
            logger.info('lr %s %.8g at iteration %d (epoch %d, batch %d)',
                        'starts at' if position.iteration == 0 else 'changes to',
                        trainer.schedule.lr_at(position.iteration), position.iteration,
                        position.epoch, position.batch_in_epoch)

    def after_step(self, trainer):
        excluded = trainer.excluded_seconds - self._excluded_seen
        if excluded:                   # validation since the last step: not in the speed
            self.speedometer.pause(excluded)
            self._excluded_seen = trainer.excluded_seconds
        position, step = trainer.position, trainer.last_step
        values = dict(trainer.window_metrics.get_name_value())
        if self.speedometer(position.epoch, position.batch_in_epoch, position.iteration,
                            trainer.window_metrics, step.lr, step.data_time, step.step_time):
            trainer.log_window = LogWindow(step.lr, dict(self.speedometer.last_stats), values)

    def after_epoch(self, trainer):
        logger.info('Epoch[%d] done in %.1fs: %s', trainer.position.epoch - 1,
                    time.perf_counter() - self._epoch_start,
                    ' '.join(format_metric(*nv) for nv in trainer.epoch_metrics.get_name_value()))


# ---------------------------------------------------------------------------- checkpoints
class Checkpointer(HookBase):
    """Training checkpoints (rcnn/checkpoint/commit.py): deploy graph, params, optimizer
    states and the training record of the position.

    Written every ``checkpoint_iters`` iterations inside an epoch, at every epoch end, at the
    end of training when the batches since the last one are unsaved (stopped inside an epoch,
    Ctrl-C) and after a loader failure (the model state is intact). Sets
    ``trainer.last_checkpoint``. Parameters holding NaN / Inf are never saved
    (:class:`NonFiniteLossError`); a NaN stop logs which checkpoint is the last good one.

    Args:
        prefix: checkpoint prefix.
        deploy_sym: deploy graph saved with every checkpoint.
        record: fixed fields of every training record (network, seed, end_epoch, ...).
        checkpoint_iters: also checkpoint every this many iterations (0: epoch ends only).
        saver: this process writes checkpoints (rank 0); on other ranks saving is a no-op.
        optimizer_states: False when the optimizer state lives on kvstore servers
            (dist_async); the ``.states`` file is then empty and the record says so.
        resumed_from: ``(checkpoint number, iteration)`` a resumed run starts from (None for
            a new run): the last good checkpoint until this run saves one.
    """

    def __init__(self, prefix, deploy_sym, record, checkpoint_iters=0, saver=True,
                 optimizer_states=True, resumed_from=None):
        self.prefix = prefix
        self.deploy_sym = deploy_sym
        self.record = dict(record)
        self.checkpoint_iters = int(checkpoint_iters or 0)
        self.saver = saver
        self.optimizer_states = optimizer_states
        self.resumed_from = None if resumed_from is None else \
            SavedCheckpoint(prefix, int(resumed_from[0]), int(resumed_from[1]))

    def before_train(self, trainer):
        trainer.last_checkpoint = self.resumed_from

    def after_step(self, trainer):
        position = trainer.position
        if self.checkpoint_iters and position.iteration % self.checkpoint_iters == 0 \
                and position.batch_in_epoch < trainer.iters_per_epoch \
                and trainer.stop_reason is None:
            self.save(trainer)

    def after_epoch(self, trainer):
        self.save(trainer)

    def after_train(self, trainer):
        if trainer.position.iteration > trainer.start_iteration and not self._saved(trainer):
            self.save(trainer)     # stopped inside an epoch

    def on_error(self, trainer, error):
        if isinstance(error, NonFiniteLossError):
            logger.error('training stopped at epoch %d, batch %d (iteration %d): %s. Lower --lr '
                         'or check the data of this batch.', error.epoch, error.batch_in_epoch,
                         error.iteration, self._last_good(trainer))
        elif isinstance(error, LoaderError):
            self._save_before_stopping(trainer)

    def _saved(self, trainer):
        last = trainer.last_checkpoint
        return last is not None and last.iteration == trainer.position.iteration

    def _save_before_stopping(self, trainer):
        """Checkpoint the batches trained since the last checkpoint (the loader failed; the
        model state is intact)."""
        position = trainer.position
        if self._saved(trainer):
            return
        if position.iteration == 0 or (position.batch_in_epoch == 0 and
                                       trainer.last_checkpoint is None):
            return
        logger.error('the loader failed at %s; saving a checkpoint of the work done so far',
                     position)
        self.save(trainer)

    def save(self, trainer):
        """Checkpoint ``trainer.position`` (rank 0 only); returns its number."""
        position = trainer.position
        number = checkpoint_number(position)
        if not self.saver:
            return number
        arg_params, aux_params = trainer.mod.get_params()
        broken = non_finite_params(dict(arg_params, **aux_params))
        if broken:
            raise NonFiniteLossError(
                'non-finite parameters after the update of epoch %d, batch %d (iteration %d): '
                '%s; checkpoint %d not written' % (
                    position.epoch if position.batch_in_epoch else position.epoch - 1,
                    position.batch_in_epoch or trainer.iters_per_epoch, position.iteration - 1,
                    ', '.join(broken[:10]) + (' ...' if len(broken) > 10 else ''), number),
                position.epoch, position.batch_in_epoch, position.iteration - 1)
        schedule = trainer.schedule
        record = dict(self.record)
        record.update(epoch=position.epoch, batch_in_epoch=position.batch_in_epoch,
                      iteration=position.iteration, lr=schedule.lr_at(position.iteration),
                      base_lr=schedule.base_lr, lr_steps=schedule.steps,
                      lr_factors=schedule.factors, iters_per_epoch=trainer.iters_per_epoch,
                      batch_size=trainer.batch_size, saved_at=time.strftime('%Y-%m-%d %H:%M:%S'))
        try:
            write_module_checkpoint(self.prefix, number, trainer.mod, self.deploy_sym, record,
                                    self.optimizer_states)
        except CheckpointWriteError as exc:
            raise CheckpointWriteError('%s; %s' % (exc, self._last_good(trainer))) from exc
        trainer.last_checkpoint = SavedCheckpoint(self.prefix, number, position.iteration)
        logger.info('saved checkpoint %s-%04d (.params, .states, .train.json): epoch %d, '
                    'batch %d, iteration %d', self.prefix, number, position.epoch,
                    position.batch_in_epoch, position.iteration)
        return number

    @staticmethod
    def _last_good(trainer):
        last = trainer.last_checkpoint
        if last is not None:
            return 'the last good checkpoint is %s (iteration %d), untouched' % (
                last, last.iteration)
        return 'no checkpoint was written in this run'


# ---------------------------------------------------------------------------- summary
class RunSummary(HookBase):
    """``<prefix>-train-summary.json``, the machine-readable summary of a finished run.

    Keys: ``iterations`` (global, as the checkpoints count them), ``iterations_this_run``,
    ``epoch`` / ``batch_in_epoch`` (the final position), ``iters_per_epoch``, ``batch_size``,
    ``checkpoint`` (the final checkpoint's number), ``lr`` (of the last update),
    ``stopped_by`` (the stop reason: schedule, max_iters, end_epoch, max_minutes, interrupt),
    ``seconds`` and ``images_per_s`` of this run's training (validation left out),
    ``validation_seconds``, ``window`` (iterations per log window) and ``first_metrics`` /
    ``last_metrics``: metric name -> value (None when the window had nothing to count) of
    the first and last logged windows; a run shorter than one window reports its unlogged
    batches as both.

    Args:
        prefix: checkpoint prefix.
        frequent: iterations per log window (as :class:`SpeedLogger`'s).
    """

    def __init__(self, prefix, frequent):
        self.path = summary_path(prefix)
        self.frequent = max(1, int(frequent))
        self._first_window = None
        self._last_window = None

    def before_train(self, trainer):
        self._first_window = self._last_window = None

    def after_step(self, trainer):
        if trainer.log_window is not None:
            self._first_window = self._first_window or trainer.log_window.values
            self._last_window = trainer.log_window.values

    def summary(self, trainer):
        """The summary dict of ``trainer``'s run so far."""
        position = trainer.position
        seconds = trainer.training_seconds()
        done = position.iteration - trainer.start_iteration
        unlogged = dict(trainer.window_metrics.get_name_value())
        first, last = self._first_window or unlogged, self._last_window or unlogged
        checkpoint = trainer.last_checkpoint

        def clean(values):
            return {k: (None if v is None or not np.isfinite(v) else float(v))
                    for k, v in values.items()}
        return {
            'iterations': position.iteration, 'iterations_this_run': done,
            'epoch': position.epoch, 'batch_in_epoch': position.batch_in_epoch,
            'iters_per_epoch': trainer.iters_per_epoch, 'batch_size': trainer.batch_size,
            'checkpoint': checkpoint.number if checkpoint is not None else None,
            'lr': trainer.schedule.lr_at(max(position.iteration - 1, 0)),
            'stopped_by': trainer.stop_reason, 'seconds': seconds,
            'images_per_s': done * trainer.batch_size / seconds if seconds else 0.0,
            'validation_seconds': trainer.excluded_seconds, 'window': self.frequent,
            'first_metrics': clean(first), 'last_metrics': clean(last)}

    def after_train(self, trainer):
        atomic_write_text(self.path, json.dumps(self.summary(trainer), indent=1,
                                                sort_keys=True) + '\n')
        logger.info('training summary: %s', self.path)


# ---------------------------------------------------------------------------- train.py's list
def standard_hooks(prefix, deploy_sym, record, end_epoch, batch_size, strides, frequent=20,
                   max_iters=None, checkpoint_iters=0, max_seconds=None, saver=True,
                   optimizer_states=True, resumed_from=None, metrics_table=None,
                   validator=None, interruptible=True):
    """train.py's hooks, in the order they must run (see the module docstring).

    Args:
        prefix, deploy_sym, record, checkpoint_iters, saver, optimizer_states, resumed_from:
            as :class:`Checkpointer`.
        end_epoch, max_iters: as :class:`StopRule`.
        batch_size, frequent: as :class:`SpeedLogger`.
        strides: the training graph's ``ModelLayout`` or its feature strides (the NaN guard
            watches their outputs).
        max_seconds: the time budget (None: none).
        metrics_table: the ``MetricsLog`` hook (rank 0), or None.
        validator: the ``Validator`` hook (rank 0 with ``--val_set``), or None.
        interruptible: Ctrl-C stops after the batch in progress (:class:`InterruptStop`).
            False for distributed workers: each would stop at the batch it is in, and one
            that went on would wait forever for the others' gradients; there Ctrl-C stops at
            once (KeyboardInterrupt) and the last complete checkpoint is kept.
    Returns:
        list of hooks.
    """
    hooks = [InterruptStop()] if interruptible else []
    hooks += [StopRule(end_epoch, max_iters), NonFiniteGuard(strides),
              SpeedLogger(batch_size, frequent)]
    if metrics_table is not None:
        hooks.append(metrics_table)
    hooks.append(Checkpointer(prefix, deploy_sym, dict(record, end_epoch=end_epoch),
                              checkpoint_iters, saver, optimizer_states, resumed_from))
    if validator is not None:
        hooks.append(validator)
    if max_seconds is not None:
        hooks.append(TimeBudget(max_seconds))
    if saver:
        hooks.append(RunSummary(prefix, frequent))
    return hooks
