"""The training loop behind ``train.py``: a step loop and the hooks around it.

:class:`Trainer` runs one step per batch::

    before_step hooks
    wait for the loader's next batch                       (data time)
    forward + backward
    after_backward hooks                                   (the NaN guard: before the update)
    update (SGD; the lr comes from the schedule inside the optimizer)
    update the window and epoch metrics                    (step time ends here)
    advance the position; after_step hooks

and, around the steps, ``before_train``, ``before_epoch``, ``after_epoch`` (the position is
then the next epoch's first batch), ``after_train`` (a normal end) and ``on_error`` (an
exception leaves the loop). Logging, the metrics table, checkpoints, the stop rule and the
time budget, validation, the summary and Ctrl-C are hooks (rcnn/core/hooks.py,
rcnn/core/metrics_log.py, rcnn/core/validation.py); each event calls the hooks in the order
they were registered. A hook stops training by setting :attr:`Trainer.stop_reason`: the loop
ends before the next batch.

Position: one value, :attr:`Trainer.position`, replaced by the loop only. ``epoch`` counts from
the run's ``begin_epoch`` (absolute, as the checkpoint numbers), ``iteration`` counts batches
from the start of the schedule (iteration 0 = the first batch of ``begin_epoch`` of the first
run), ``batch_in_epoch`` the batches done in the current epoch. An epoch is
``iters_per_epoch = int(num_images / batch_size)`` batches (at least 1), the original's
count. Checkpoint ``N`` belongs to epoch ``N - 1`` (0-based), i.e. it is the state after, or
during, the N-th epoch.
"""
import contextlib
import dataclasses
import logging
import time

logger = logging.getLogger(__name__)

__all__ = ['Position', 'StepRecord', 'LogWindow', 'SavedCheckpoint', 'HookBase', 'Trainer',
           'TrainingInterrupted', 'INTERRUPTED', 'checkpoint_number']

#: the stop reason of a run stopped by Ctrl-C (SIGINT)
INTERRUPTED = 'interrupt'


@dataclasses.dataclass(frozen=True)
class Position(object):
    """Where training stands: epoch in progress, batches done in it, global iteration."""
    epoch: int
    batch_in_epoch: int = 0
    iteration: int = 0

    def __post_init__(self):
        for name in ('epoch', 'batch_in_epoch', 'iteration'):
            object.__setattr__(self, name, int(getattr(self, name)))

    def after_batch(self):
        """The position once one more batch of this epoch is done."""
        return Position(self.epoch, self.batch_in_epoch + 1, self.iteration + 1)

    def next_epoch(self):
        """The first batch of the next epoch."""
        return Position(self.epoch + 1, 0, self.iteration)


def checkpoint_number(position):
    """The number of the checkpoint holding ``position``: the epoch in progress counts once a
    batch of it is done (checkpoint N = the state after, or during, the N-th epoch)."""
    return position.epoch + (0 if position.batch_in_epoch == 0 else 1)


@dataclasses.dataclass(frozen=True)
class StepRecord(object):
    """The step just done: ``lr`` its update used, seconds waiting for the batch
    (``data_time``) and computing it (``step_time``: forward, backward, update, metrics)."""
    lr: float
    data_time: float
    step_time: float


@dataclasses.dataclass(frozen=True)
class LogWindow(object):
    """A logged window of steps: ``lr`` of its last update, ``stats`` (samples_per_s, data_s,
    step_s per batch) and ``values`` (metric name -> value; NaN when nothing was counted)."""
    lr: float
    stats: dict
    values: dict


@dataclasses.dataclass(frozen=True)
class SavedCheckpoint(object):
    """A complete checkpoint: ``<prefix>-%04d`` % ``number``, holding ``iteration``."""
    prefix: str
    number: int
    iteration: int

    def __str__(self):
        return '%s-%04d' % (self.prefix, self.number)


class TrainingInterrupted(Exception):
    """Training was stopped by Ctrl-C; the batches done are in the named checkpoint."""


class HookBase(object):
    """A hook: override the events you need; each gets the :class:`Trainer`.

    What a hook may read: ``trainer.position``, ``trainer.last_step`` (after a step),
    ``trainer.log_window`` (set when the step's window was logged), ``trainer.window_metrics``
    / ``trainer.epoch_metrics``, ``trainer.mod``, ``trainer.schedule``,
    ``trainer.last_checkpoint``, ``trainer.stop_reason``, ``trainer.training_seconds()``.
    Work that is not training (validation) goes inside ``with trainer.excluded_time():`` so
    the speed, the time budget and the summary leave it out.
    """

    def before_train(self, trainer):
        """Before the first batch of this run."""

    def before_epoch(self, trainer):
        """Before the first batch this run trains in an epoch (a resume starts mid-epoch)."""

    def before_step(self, trainer):
        """Before the loop waits for the next batch."""

    def after_backward(self, trainer):
        """After forward + backward, before the update: the outputs are final, the weights
        are still the previous step's."""

    def after_step(self, trainer):
        """After the update and the metrics; ``trainer.position`` counts this batch."""

    def after_epoch(self, trainer):
        """After an epoch's last batch; ``trainer.position`` is the next epoch's start."""

    def after_train(self, trainer):
        """After the loop ended by a stop reason (not by an exception)."""

    def on_error(self, trainer, error):
        """The loop is left by ``error`` (re-raised after every hook's ``on_error``)."""


class Trainer(object):
    """Runs the step loop on a bound, initialised Module (optimizer installed).

    Args:
        mod: the Module of the training graph.
        feed: object with ``batches(epoch, skip)`` yielding the batches of an epoch from
            batch ``skip`` on (see training_setup.LoaderFeed).
        schedule: LRSchedule (for logging and the records; the optimizer applies its twin).
        batch_size: images per iteration on this worker.
        iters_per_epoch: batches per epoch (at least 1 is used).
        strides: feature strides, for the metric names.
        hooks: :class:`HookBase` objects, called in this order (see :meth:`register_hooks`).
        metrics: callable returning a fresh ``CompositeEvalMetric`` of the training outputs
            (default: ``rcnn.core.metric.build_train_metrics(strides)``, the net3 outputs).
    """

    def __init__(self, mod, feed, schedule, batch_size, iters_per_epoch, strides, hooks=(),
                 metrics=None):
        self.mod = mod
        self.feed = feed
        self.schedule = schedule
        self.batch_size = int(batch_size)
        self.iters_per_epoch = max(1, int(iters_per_epoch))
        self.strides = tuple(strides)
        if metrics is None:
            # imported here: rcnn.core.metric imports MXNet, HookBase's importers need not
            from rcnn.core.metric import build_train_metrics

            def metrics():
                return build_train_metrics(self.strides)
        self.window_metrics = metrics()
        self.epoch_metrics = metrics()
        self.hooks = []
        self.position = None
        self.start_iteration = None
        self.stop_reason = None
        self.last_step = None
        self.log_window = None
        #: SavedCheckpoint of the last complete one (set by the checkpoint hook), or None
        self.last_checkpoint = None
        self.excluded_seconds = 0.0
        self._train_start = None
        self.register_hooks(hooks)

    def register_hooks(self, hooks):
        """Append ``hooks`` (called after the ones registered before)."""
        for hook in hooks:
            if not isinstance(hook, HookBase):
                raise TypeError('%r is not a HookBase' % (hook,))
            self.hooks.append(hook)

    # ------------------------------------------------------------------ clock
    def training_seconds(self):
        """Seconds of this run's :meth:`fit` so far, without :meth:`excluded_time`."""
        if self._train_start is None:
            return 0.0
        return time.perf_counter() - self._train_start - self.excluded_seconds

    @contextlib.contextmanager
    def excluded_time(self):
        """Count the time of the ``with`` block as not training (validation)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.excluded_seconds += time.perf_counter() - start

    # ------------------------------------------------------------------ loop
    def _call(self, event, *args):
        for hook in self.hooks:
            getattr(hook, event)(self, *args)

    def fit(self, start):
        """Train from Position ``start`` until a hook sets a stop reason; returns the final
        Position.

        Raises:
            TrainingInterrupted: stopped by Ctrl-C, after the hooks' ``after_train`` (the
            batches done are checkpointed).
            Any error of a step or a hook, after the hooks' ``on_error``.
        """
        self.position = start
        self.start_iteration = start.iteration
        self.stop_reason = None
        self.excluded_seconds = 0.0
        self._train_start = time.perf_counter()
        try:
            self._call('before_train')
            while self.stop_reason is None:
                self._run_epoch()
            self._call('after_train')
        except BaseException as error:
            self._call('on_error', error)
            raise
        if self.stop_reason == INTERRUPTED:
            raise TrainingInterrupted(self._interrupted_message())
        logger.info('training finished at %s (stopped by %s); %s', self.position,
                    self.stop_reason, self._final_checkpoint_text())
        return self.position

    def _run_epoch(self):
        """Steps of the current epoch until it ends or a hook stops training."""
        if self.position.batch_in_epoch == 0:
            self.epoch_metrics.reset()
        self._call('before_epoch')
        batches = self.feed.batches(self.position.epoch, self.position.batch_in_epoch)
        try:
            while self.position.batch_in_epoch < self.iters_per_epoch and \
                    self.stop_reason is None:
                self._call('before_step')
                if self.stop_reason is not None:
                    break
                self.run_step(batches)
                self._call('after_step')
        finally:
            batches.close()
        if self.position.batch_in_epoch >= self.iters_per_epoch:
            self.position = self.position.next_epoch()
            self._call('after_epoch')

    def run_step(self, batches):
        """Data -> forward/backward -> update for one batch of ``batches``."""
        self.log_window = None
        t0 = time.perf_counter()
        batch = next(batches)
        data_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.mod.forward_backward(batch)
        self._call('after_backward')
        self.mod.update()
        self.mod.update_metric(self.window_metrics, batch.label)
        self.mod.update_metric(self.epoch_metrics, batch.label)
        step_time = time.perf_counter() - t0
        self.last_step = StepRecord(self.schedule.lr_at(self.position.iteration), data_time,
                                    step_time)
        self.position = self.position.after_batch()

    # ------------------------------------------------------------------ messages
    def _final_checkpoint_text(self):
        if self.last_checkpoint is None:
            return 'no checkpoint written'
        return 'final checkpoint %s' % self.last_checkpoint

    def _interrupted_message(self):
        done = self.position.iteration - self.start_iteration
        saved = self.last_checkpoint
        if saved is not None and saved.iteration == self.position.iteration:
            where = 'checkpoint %s holds them; continue with --resume' % saved
        elif saved is not None:
            where = 'they are not saved; the last complete checkpoint is %s (iteration %d)' % (
                saved, saved.iteration)
        else:
            where = 'no checkpoint was written'
        return 'interrupted (Ctrl-C) at epoch %d, batch %d (iteration %d) after %d batch(es) ' \
               'of this run: %s' % (self.position.epoch, self.position.batch_in_epoch,
                                   self.position.iteration, done, where)
