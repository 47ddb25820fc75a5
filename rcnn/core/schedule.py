"""Learning-rate schedule of the original RetinaFace training, from ``--lr_step``.

``--lr_step`` lists epochs. Epochs after ``begin_epoch`` become *iterations*
(batches) at ``int((epoch - begin_epoch) * num_images / batch_size)``, as the
original did, and each gets a factor depending on how many steps there are:

* 8 steps: the first five multiply the lr by 1.5849 (10 ** 0.2: a x10 warm-up
  over five epochs), the last three by 0.1 (the ``resnet`` preset
  ``1,2,3,4,5,55,68,80``);
* 5 steps: 0.5, 0.5, 0.4, 0.1, 0.1;
* any other count: 0.1 each (the ``mnet`` preset ``55,68,80``).

Iteration ``t`` (0-based, counted from ``begin_epoch``) runs at
``base_lr * prod(factor_i for step_i <= t)``: the original multiplied the lr
right after its ``step_i``-th batch. Training ends once the last step is
reached (the original saved and exited there), so the last factor is never
used for an update.

:class:`StepFactorScheduler` is the same rule as an MXNet ``LRScheduler``
(``num_update`` = 1-based update count), so the optimizer, wherever it runs
(locally or on a kvstore), applies it; :class:`LRSchedule` holds the steps and
answers "what lr at iteration t", "where does it change", "where does it end".
"""
import logging

# the submodule, not ``mx.lr_scheduler``: a dist_async kvstore server unpickles the scheduler
# while ``mxnet`` itself is still being imported (the server loop runs inside that import)
from mxnet.lr_scheduler import LRScheduler

logger = logging.getLogger(__name__)

__all__ = ['WARMUP_FACTOR', 'step_factors', 'parse_lr_step', 'epochs_to_iterations',
           'rebase_steps', 'LRSchedule', 'StepFactorScheduler']

WARMUP_FACTOR = 1.5849
FIVE_STEP_FACTORS = (0.5, 0.5, 0.4, 0.1, 0.1)
DECAY_FACTOR = 0.1


def step_factors(num_steps):
    """Factors of ``num_steps`` lr steps, in order (see the module docstring).

    Returns:
        list of ``num_steps`` floats.
    """
    if num_steps == 8:
        return [WARMUP_FACTOR] * 5 + [DECAY_FACTOR] * 3
    if num_steps == 5:
        return list(FIVE_STEP_FACTORS)
    return [DECAY_FACTOR] * num_steps


def parse_lr_step(lr_step):
    """``'55,68,80'`` -> ``[55, 68, 80]``; raises ValueError naming the argument when malformed.

    Steps must be non-negative integers in increasing order.
    """
    text = str(lr_step).strip()
    if not text:
        return []
    try:
        epochs = [int(tok) for tok in text.split(',')]
    except ValueError:
        raise ValueError('--lr_step %r: expected comma-separated integer epochs, e.g. 55,68,80'
                         % lr_step) from None
    if any(e < 0 for e in epochs) or any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise ValueError('--lr_step %r: epochs must be non-negative and strictly increasing'
                         % lr_step)
    return epochs


def epochs_to_iterations(step_epochs, begin_epoch, num_images, batch_size):
    """Epoch steps after ``begin_epoch`` -> iteration steps counted from ``begin_epoch``.

    Args:
        step_epochs: increasing epochs (``parse_lr_step``).
        begin_epoch: the epoch training (re)starts from; steps at or before it are dropped.
        num_images: roidb entries one worker sees per epoch (flipped ones included).
        batch_size: images per iteration on this worker (all its devices).
    Returns:
        list of int, ``int((epoch - begin_epoch) * num_images / batch_size)`` per kept step.
    """
    if batch_size <= 0:
        raise ValueError('batch_size must be positive, got %r' % batch_size)
    return [int((epoch - begin_epoch) * num_images / batch_size)
            for epoch in step_epochs if epoch > begin_epoch]


def rebase_steps(steps, iteration, old_iters_per_epoch, new_iters_per_epoch):
    """Iteration steps of a run resumed at ``iteration`` on data of another size.

    A step already passed (``<= iteration``) stays; a step ahead keeps its distance in
    *epochs*: ``iteration + round((step - iteration) * new / old)``. With half the images
    (``new = old / 2``) the epochs 55 / 68 / 80 still change the lr, at the new iterations.

    Args:
        steps: increasing iterations of the resumed schedule.
        iteration: the resumed run's global iteration.
        old_iters_per_epoch, new_iters_per_epoch: iterations per epoch of the old and the
            new data (positive).
    Returns:
        list of int, non-decreasing.
    """
    if old_iters_per_epoch <= 0 or new_iters_per_epoch <= 0:
        raise ValueError('iterations per epoch must be positive, got %r and %r'
                         % (old_iters_per_epoch, new_iters_per_epoch))
    ratio = float(new_iters_per_epoch) / float(old_iters_per_epoch)
    return [int(step) if step <= iteration
            else int(iteration + round((step - iteration) * ratio)) for step in steps]


def _lr_of_iteration(base_lr, steps, factors, iteration):
    """``base_lr`` times the factors of every step at or before ``iteration``."""
    lr = base_lr
    for step, factor in zip(steps, factors):
        if step <= iteration:
            lr *= factor
    return lr


class LRSchedule(object):
    """Piecewise-constant lr over iterations.

    Args:
        base_lr: lr of iteration 0.
        steps: increasing iterations (counted from the run's ``begin_epoch``).
        factors: one factor per step (default: :func:`step_factors` of the count).
    """

    def __init__(self, base_lr, steps, factors=None):
        self.base_lr = float(base_lr)
        self.steps = [int(s) for s in steps]
        self.factors = list(step_factors(len(self.steps)) if factors is None else factors)
        if len(self.factors) != len(self.steps):
            raise ValueError('%d lr steps but %d factors' % (len(self.steps), len(self.factors)))
        if any(b < a for a, b in zip(self.steps, self.steps[1:])):
            raise ValueError('lr steps must be non-decreasing, got %s' % self.steps)

    @classmethod
    def from_epochs(cls, base_lr, lr_step, begin_epoch, num_images, batch_size):
        """Build from the ``--lr_step`` string (factors chosen by its number of epochs).

        The factor pattern is chosen from the steps still ahead of ``begin_epoch``,
        as the original did.
        """
        steps = epochs_to_iterations(parse_lr_step(lr_step), begin_epoch, num_images, batch_size)
        return cls(base_lr, steps)

    def lr_at(self, iteration):
        """lr used by the update of 0-based ``iteration``."""
        return _lr_of_iteration(self.base_lr, self.steps, self.factors, iteration)

    def changes_at(self, iteration):
        """True when the lr of ``iteration`` differs from the previous iteration's."""
        return iteration in self.steps

    @property
    def end_iteration(self):
        """Iteration at which training stops (the last step), or None without steps."""
        return self.steps[-1] if self.steps else None

    def scheduler(self):
        """The same schedule as an MXNet ``LRScheduler`` (picklable)."""
        return StepFactorScheduler(self.base_lr, self.steps, self.factors)

    def __repr__(self):
        return 'LRSchedule(base_lr=%g, steps=%s, factors=%s)' % (
            self.base_lr, self.steps, self.factors)


class StepFactorScheduler(LRScheduler):
    """MXNet scheduler: lr of the ``num_update``-th update (1-based) = lr of iteration num_update-1.

    The optimizer overwrites ``base_lr`` with its ``learning_rate``; pass the same value.
    """

    def __init__(self, base_lr, steps, factors):
        super(StepFactorScheduler, self).__init__(base_lr=base_lr)
        self.steps = [int(s) for s in steps]
        self.factors = [float(f) for f in factors]

    def __call__(self, num_update):
        return _lr_of_iteration(self.base_lr, self.steps, self.factors, int(num_update) - 1)
