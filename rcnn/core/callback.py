"""Per-batch training callbacks: progress logging, the non-finite loss guard.

* :class:`Speedometer` logs, every ``frequent`` iterations, the samples/s of the
  window, the lr, the time split (loader wait / forward+backward+update) and every
  metric accumulated over the window, then starts a new window.
* :func:`check_finite_outputs` stops training on a NaN or infinite loss
  (:class:`NonFiniteLossError` naming the epoch, batch and output);
  :func:`non_finite_params` lists parameters that overflowed (checked before every
  checkpoint, so a checkpoint never holds them).
"""
import logging
import time

import mxnet as mx
import numpy as np

logger = logging.getLogger(__name__)

__all__ = ['Speedometer', 'NonFiniteLossError', 'check_finite_outputs', 'non_finite_params',
           'format_metric']


class Speedometer(object):
    """Log throughput and metrics every ``frequent`` iterations.

    Args:
        batch_size: images per iteration (all devices of this worker).
        frequent: iterations between two log lines.
    """

    def __init__(self, batch_size, frequent=20):
        self.batch_size = batch_size
        self.frequent = max(1, int(frequent))
        self._window_start = None
        self._window_batches = 0
        self._data_time = 0.0
        self._step_time = 0.0
        #: figures of the last logged window: samples_per_s, data_s, step_s (per batch)
        self.last_stats = None

    def start(self):
        """Start a window (call once before the first batch, and after a pause)."""
        self._window_start = time.perf_counter()
        self._window_batches = 0
        self._data_time = 0.0
        self._step_time = 0.0

    def pause(self, seconds):
        """Leave ``seconds`` spent outside training (validation) out of the window's speed."""
        if self._window_start is not None:
            self._window_start += seconds

    def __call__(self, epoch, batch_in_epoch, iteration, metrics, lr, data_time, step_time):
        """Account one finished batch; log and reset ``metrics`` (locally) at window ends.

        Args:
            epoch: 0-based epoch of the batch; batch_in_epoch: batches done in it (1-based).
            iteration: global iterations done, this batch included.
            metrics: an EvalMetric accumulated since the last log line.
            lr: lr this batch's update used.
            data_time / step_time: seconds spent waiting for it / computing it.
        Returns:
            the logged line, or None.
        """
        if self._window_start is None:
            self.start()
        self._window_batches += 1
        self._data_time += data_time
        self._step_time += step_time
        if iteration % self.frequent != 0:
            return None
        elapsed = max(time.perf_counter() - self._window_start, 1e-9)
        speed = self._window_batches * self.batch_size / elapsed
        values = ' '.join(format_metric(name, value) for name, value in metrics.get_name_value())
        line = ('Epoch[%d] Batch[%d] Iter[%d] Speed: %.2f samples/sec lr=%.8g '
                'data=%.3fs step=%.3fs per batch  %s' % (
                    epoch, batch_in_epoch, iteration, speed, lr,
                    self._data_time / self._window_batches, self._step_time / self._window_batches,
                    values))
        logger.info(line)
        self.last_stats = {'samples_per_s': speed,
                           'data_s': self._data_time / self._window_batches,
                           'step_s': self._step_time / self._window_batches}
        metrics.reset_local()
        self.start()
        return line


def format_metric(name, value):
    """``name=value``; a metric with nothing counted in the window (no positive anchor for a
    loss) shows ``n/a`` rather than MXNet's NaN, which would read like a diverged loss."""
    if value != value:  # NaN: num_inst == 0
        return '%s=n/a' % name
    return '%s=%.6f' % (name, value)


class NonFiniteLossError(RuntimeError):
    """A training output became NaN or infinite."""

    def __init__(self, message, epoch, batch_in_epoch, iteration):
        super(NonFiniteLossError, self).__init__(message)
        self.epoch = epoch
        self.batch_in_epoch = batch_in_epoch
        self.iteration = iteration


def check_finite_outputs(outputs, indices, names, epoch, batch_in_epoch, iteration):
    """Raise NonFiniteLossError when a watched output holds a NaN or an infinity.

    Args:
        outputs: ``mod.get_outputs(merge_multi_context=False)``, per output a list of
            per-device NDArrays.
        indices: output indices to watch (probabilities and losses).
        names: names of all outputs (for the message).
        epoch, batch_in_epoch, iteration: position of the batch (0-based epoch,
            1-based batch number in it, global 0-based iteration).
    """
    sums = mx.nd.stack(*[mx.nd.sum(arr).as_in_context(mx.cpu())
                         for idx in indices for arr in outputs[idx]]).asnumpy()
    if np.all(np.isfinite(sums)):
        return
    per_device = len(outputs[indices[0]])
    bad = sorted({names[indices[k // per_device]] for k in np.flatnonzero(~np.isfinite(sums))})
    raise NonFiniteLossError(
        'non-finite loss at epoch %d, batch %d (iteration %d): %s hold NaN or Inf; '
        'training stopped before applying this update' % (epoch, batch_in_epoch, iteration,
                                                           ', '.join(bad)),
        epoch, batch_in_epoch, iteration)


def non_finite_params(params):
    """Sorted names of the arrays of a name -> NDArray dict holding a NaN or an infinity."""
    names = sorted(params)
    if not names:
        return []
    sums = mx.nd.stack(*[mx.nd.sum(params[n]).as_in_context(mx.cpu()) for n in names]).asnumpy()
    return [names[i] for i in np.flatnonzero(~np.isfinite(sums))]
