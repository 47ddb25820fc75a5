"""``<prefix>-metrics.csv``: the training log as a table, one row per ``--frequent`` batches.

Columns (header line first)::

    iteration      global iterations done when the window was logged (as ``Iter[N]``)
    epoch          0-based epoch of the window's last batch (as ``Epoch[N]``)
    batch          batches done in that epoch (as ``Batch[N]``)
    lr             lr of the window's last update
    samples_per_s  images per second of the window (validation time left out)
    data_s         seconds per batch spent waiting for the loader
    step_s         seconds per batch of forward + backward + update
    <metric> ...   every training metric of the window (RPNAcc_s32, RPNL1Loss_s32, ...,
                   RPNLandMarkL1Loss_s8); empty when the window had nothing to count

These are the numbers of the ``Speedometer`` log line of the same window. Only rank 0 writes
the file. A new run starts it afresh; ``--resume`` keeps the rows up to the resumed
iteration (rows of an abandoned continuation are dropped) and appends.
"""
import csv
import io
import logging
import math
import os

import numpy as np

from rcnn.core.trainer import HookBase
from rcnn.utils.fileio import atomic_write_text

__all__ = ['FIXED_COLUMNS', 'metrics_csv_path', 'MetricsLog', 'read_csv_table', 'csv_cell',
           'keep_rows_until']

logger = logging.getLogger(__name__)

FIXED_COLUMNS = ('iteration', 'epoch', 'batch', 'lr', 'samples_per_s', 'data_s', 'step_s')


def metrics_csv_path(prefix):
    """``<prefix>-metrics.csv``."""
    return '%s-metrics.csv' % prefix


def csv_cell(value):
    """A CSV cell: ints as is, floats exactly (repr), None / NaN empty."""
    if value is None:
        return ''
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    return '' if math.isnan(value) else repr(value)


def read_csv_table(path):
    """(header list, rows as lists of str) of a CSV file."""
    with open(path, newline='') as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ValueError('%s is empty (no header line)' % path)
    return rows[0], rows[1:]


def keep_rows_until(path, column, limit):
    """Rewrite ``path`` without the rows whose ``column`` exceeds ``limit``; returns how many
    rows were dropped (0: the file is left untouched)."""
    header, rows = read_csv_table(path)
    index = header.index(column)
    kept = [row for row in rows if row and float(row[index]) <= limit]
    dropped = len(rows) - len(kept)
    if dropped:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator='\n')
        writer.writerow(header)
        writer.writerows(kept)
        atomic_write_text(path, text.getvalue())
    return dropped


class MetricsLog(HookBase):
    """Trainer hook appending one row per logged window to ``<prefix>-metrics.csv``.

    Args:
        prefix: checkpoint prefix of the run.
        metric_names: the training metrics in log order (``build_train_metrics`` names).
        resume_iteration: the resumed checkpoint's iteration, or None for a new run.
    """

    def __init__(self, prefix, metric_names, resume_iteration=None):
        self.path = metrics_csv_path(prefix)
        self.header = list(FIXED_COLUMNS) + list(metric_names)
        if resume_iteration is not None and os.path.isfile(self.path) and self._same_header():
            dropped = keep_rows_until(self.path, 'iteration', resume_iteration)
            if dropped:
                logger.info('%s: dropped %d rows after the resumed iteration %d', self.path,
                            dropped, resume_iteration)
        else:
            if resume_iteration is not None and os.path.isfile(self.path):
                logger.warning('%s has other columns than this run logs: it is started afresh',
                               self.path)
            atomic_write_text(self.path, ','.join(self.header) + '\n')
        logger.info('training metrics table: %s (one row per logged window)', self.path)

    def _same_header(self):
        try:
            header, _ = read_csv_table(self.path)
        except (OSError, ValueError):
            return False
        return header == self.header

    def after_step(self, trainer):
        """Append the row of the window the step closed, if it was logged."""
        window = trainer.log_window
        if window is not None:
            self.write_row(trainer.position, window.lr, window.stats, window.values)

    def write_row(self, position, lr, stats, values):
        """Append the row of a logged window.

        Args:
            position: Position after the window's last batch.
            lr: lr of that batch's update.
            stats: the window's samples_per_s, data_s, step_s.
            values: metric name -> value of the window.
        """
        cells = [position.iteration, position.epoch, position.batch_in_epoch, lr,
                 stats['samples_per_s'], stats['data_s'], stats['step_s']]
        cells += [values.get(name) for name in self.header[len(FIXED_COLUMNS):]]
        with open(self.path, 'a', newline='') as handle:
            csv.writer(handle, lineterminator='\n').writerow([csv_cell(v) for v in cells])
