"""The hook-driven step loop (rcnn/core/trainer.py) and train.py's hooks (rcnn/core/hooks.py),
run on a stand-in Module that records what the loop asks of it (no MXNet computation)."""
import os
import signal
import time

import pytest

from rcnn.core.hooks import InterruptStop, StopRule, TimeBudget
from rcnn.core.schedule import LRSchedule
from rcnn.core.trainer import (INTERRUPTED, HookBase, Position, Trainer, TrainingInterrupted,
                               checkpoint_number)

STRIDES = (32, 16, 8)


class RecordingModule(object):
    """Module stand-in: logs forward_backward / update calls; metrics see nothing."""

    def __init__(self, on_update=None):
        self.calls = []
        self.on_update = on_update

    def forward_backward(self, batch):
        self.calls.append(('forward_backward', batch))

    def update(self):
        if self.on_update is not None:
            self.on_update(len([c for c in self.calls if c[0] == 'update']))
        self.calls.append(('update', None))

    def update_metric(self, metric, labels):
        pass


class Batch(object):
    label = None

    def __init__(self, epoch, index):
        self.epoch, self.index = epoch, index

    def __repr__(self):
        return 'Batch(%d, %d)' % (self.epoch, self.index)


class Feed(object):
    """``batches(epoch, skip)`` as LoaderFeed: the epoch's batches from ``skip`` on."""

    def __init__(self, per_epoch):
        self.per_epoch = per_epoch
        self.opened = []

    def batches(self, epoch, skip=0):
        self.opened.append((epoch, skip))
        for index in range(skip, self.per_epoch):
            yield Batch(epoch, index)


class Recorder(HookBase):
    """Logs (event, position) of every event."""

    def __init__(self):
        self.events = []

    def _log(self, name, trainer):
        self.events.append((name, trainer.position))

    def before_train(self, trainer):
        self._log('before_train', trainer)

    def before_epoch(self, trainer):
        self._log('before_epoch', trainer)

    def before_step(self, trainer):
        self._log('before_step', trainer)

    def after_backward(self, trainer):
        self._log('after_backward', trainer)

    def after_step(self, trainer):
        self._log('after_step', trainer)

    def after_epoch(self, trainer):
        self._log('after_epoch', trainer)

    def after_train(self, trainer):
        self._log('after_train', trainer)

    def on_error(self, trainer, error):
        self.events.append(('on_error', type(error).__name__))


def _trainer(hooks, per_epoch=3, mod=None, steps=(100,)):
    mod = mod or RecordingModule()
    return Trainer(mod, Feed(per_epoch), LRSchedule(0.01, list(steps)), batch_size=2,
                   iters_per_epoch=per_epoch, strides=STRIDES, hooks=hooks), mod


def test_events_come_in_loop_order_with_one_position():
    recorder = Recorder()
    trainer, mod = _trainer([StopRule(end_epoch=2), recorder])
    final = trainer.fit(Position(0))
    assert final == Position(2, 0, 6) and trainer.stop_reason == 'end_epoch'
    names = [name for name, _ in recorder.events]
    epoch = ['before_epoch'] + ['before_step', 'after_backward', 'after_step'] * 3 + \
        ['after_epoch']
    assert names == ['before_train'] + epoch * 2 + ['after_train']
    steps = [pos for name, pos in recorder.events if name == 'after_step']
    assert steps == [Position(e, b, 3 * e + b) for e in (0, 1) for b in (1, 2, 3)]
    # after_backward sees the position before the batch; after_epoch the next epoch's start
    assert [pos for name, pos in recorder.events if name == 'after_backward'][0] == Position(0)
    assert [pos for name, pos in recorder.events if name == 'after_epoch'] == [
        Position(1, 0, 3), Position(2, 0, 6)]
    # forward/backward, then the update, once per batch, in order
    assert [c[0] for c in mod.calls] == ['forward_backward', 'update'] * 6
    assert [repr(c[1]) for c in mod.calls[::2]] == ['Batch(%d, %d)' % (e, b)
                                                    for e in (0, 1) for b in range(3)]
    assert trainer.last_step.lr == pytest.approx(0.01)


def test_a_resume_inside_an_epoch_skips_the_batches_done_and_stops_at_max_iters():
    recorder = Recorder()
    trainer, mod = _trainer([StopRule(end_epoch=9, max_iters=5), recorder])
    assert trainer.fit(Position(0, 2, 2)) == Position(1, 2, 5)
    assert trainer.feed.opened == [(0, 2), (1, 0)]
    assert trainer.stop_reason == 'max_iters' and trainer.start_iteration == 2
    assert [repr(c[1]) for c in mod.calls[::2]] == ['Batch(0, 2)', 'Batch(1, 0)', 'Batch(1, 1)']


def test_the_last_lr_step_stops_and_a_finished_run_trains_nothing():
    trainer, mod = _trainer([StopRule(end_epoch=9)], steps=(4,))
    assert trainer.fit(Position(0)) == Position(1, 1, 4) and trainer.stop_reason == 'schedule'
    again, mod = _trainer([StopRule(end_epoch=1)])
    assert again.fit(Position(1, 0, 3)) == Position(1, 0, 3) and mod.calls == []


class StopAfter(HookBase):
    """A user hook: stop once ``count`` batches of this run are done."""

    def __init__(self, count):
        self.count = count

    def after_step(self, trainer):
        if trainer.position.iteration - trainer.start_iteration >= self.count:
            trainer.stop_reason = 'enough'


def test_a_user_hook_stops_training_before_the_next_batch():
    recorder = Recorder()
    trainer, mod = _trainer([StopRule(end_epoch=9), recorder])
    trainer.register_hooks([StopAfter(4)])
    assert trainer.fit(Position(0)) == Position(1, 1, 4) and trainer.stop_reason == 'enough'
    assert len(mod.calls) == 8 and recorder.events[-1][0] == 'after_train'
    with pytest.raises(TypeError, match='is not a HookBase'):
        trainer.register_hooks([object()])


class SlowValidation(HookBase):
    def __init__(self, seconds):
        self.seconds = seconds

    def after_epoch(self, trainer):
        with trainer.excluded_time():
            time.sleep(self.seconds)


def test_excluded_time_is_left_out_of_the_training_clock_and_the_budget():
    trainer, mod = _trainer([StopRule(end_epoch=3), SlowValidation(0.3), TimeBudget(0.25)])
    trainer.fit(Position(0))
    # 0.6 s of "validation" would have exhausted the 0.25 s budget after epoch 0
    assert trainer.stop_reason == 'end_epoch' and trainer.position == Position(3, 0, 9)
    assert trainer.excluded_seconds >= 0.6 and trainer.training_seconds() < 0.25
    budget, _ = _trainer([StopRule(end_epoch=99), TimeBudget(0.0)])
    assert budget.fit(Position(0)) == Position(0, 1, 1) and budget.stop_reason == 'max_minutes'


class Explode(HookBase):
    def after_step(self, trainer):
        if trainer.position.iteration == 2:
            raise RuntimeError('boom')


def test_an_error_reaches_every_hook_then_the_caller():
    recorder = Recorder()
    trainer, _ = _trainer([StopRule(end_epoch=9), Explode(), recorder])
    with pytest.raises(RuntimeError, match='boom'):
        trainer.fit(Position(0))
    assert recorder.events[-1] == ('on_error', 'RuntimeError')
    assert 'after_train' not in [event[0] for event in recorder.events]


def test_checkpoint_numbers_follow_the_epoch_in_progress():
    assert checkpoint_number(Position(0, 3, 3)) == 1       # inside epoch 0 -> checkpoint 1
    assert checkpoint_number(Position(1, 0, 8)) == 1       # end of epoch 0 -> checkpoint 1
    assert checkpoint_number(Position(1, 2, 10)) == 2


def test_ctrl_c_in_the_middle_of_an_update_finishes_the_step_then_stops():
    """SIGINT arrives while the second update runs: that update completes, no further batch
    starts, after_train hooks run (a checkpoint would be written there), then fit raises."""
    def interrupt(done):
        if done == 1:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)                 # the handler runs here, inside the update

    recorder = Recorder()
    mod = RecordingModule(on_update=interrupt)
    before = signal.getsignal(signal.SIGINT)
    trainer, _ = _trainer([InterruptStop(), StopRule(end_epoch=9), recorder], mod=mod)
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit(Position(0))
    assert trainer.stop_reason == INTERRUPTED and trainer.position == Position(0, 2, 2)
    assert [c[0] for c in mod.calls] == ['forward_backward', 'update'] * 2
    assert recorder.events[-1] == ('after_train', Position(0, 2, 2))
    assert 'interrupted (Ctrl-C) at epoch 0, batch 2 (iteration 2) after 2 batch(es)' in \
        str(info.value) and 'no checkpoint was written' in str(info.value)
    assert signal.getsignal(signal.SIGINT) is before        # the handler is put back
