"""Draw a training run's curves from its CSV files.

    python tools/plot_training.py model/mnet                  # -> model/mnet-curves.png
    python tools/plot_training.py model/mnet --out curves.png --size 1600x1000 --smooth 10

Reads ``<prefix>-metrics.csv`` (train.py writes a row every ``--frequent`` iterations, see
rcnn/core/metrics_log.py) and, when present, ``<prefix>-val.csv`` / ``<prefix>-best.json``
(train.py ``--val_set``, see rcnn/core/validation.py). One PNG of exactly ``--size`` pixels
with four panels:

* anchor accuracy, box regression loss and landmark loss per stride (RPNAcc_s*,
  RPNL1Loss_s*, RPNLandMarkL1Loss_s*) against the iteration: the logged windows faint, a
  moving average over ``--smooth`` windows bold; the lr on a second (right) axis, log scale
  when it changes more than tenfold, from zero when it is constant;
* the validation AP (easy / medium / hard) per epoch, the best checkpoint ringed.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rcnn.core.metrics_log import FIXED_COLUMNS, metrics_csv_path, read_csv_table  # noqa: E402
from rcnn.core.validation import best_record_path, read_val_rows, val_csv_path  # noqa: E402
from rcnn.evaluation.widerface import SETTINGS  # noqa: E402
from rcnn.utils import cli  # noqa: E402
from rcnn.utils.figures import new_figure, parse_size, save_figure  # noqa: E402

__all__ = ['load_metrics', 'moving_average', 'metric_groups', 'default_title', 'draw_training',
           'main']

DEFAULT_SIZE = '1500x1000'
#: panels of the training metrics: (column stem, title, y label)
PANELS = (('RPNAcc', 'anchor classification accuracy', 'accuracy'),
          ('RPNL1Loss', 'box regression loss (smooth L1)', 'loss'),
          ('RPNLandMarkL1Loss', 'landmark loss (smooth L1)', 'loss'))


def load_metrics(path):
    """Columns of a metrics CSV: name -> (rows,) float64 (an empty cell is NaN).

    Raises ValueError naming the file and line of a cell that is not a number.
    """
    header, rows = read_csv_table(path)
    rows = [r for r in rows if r]
    values = np.full((len(rows), len(header)), np.nan)
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError('%s:%d: %d cells for %d columns' % (path, i + 2, len(row),
                                                                len(header)))
        for j, cell in enumerate(row):
            if cell != '':
                try:
                    values[i, j] = float(cell)
                except ValueError:
                    raise ValueError('%s:%d: %r is not a number (column %s)'
                                     % (path, i + 2, cell, header[j])) from None
    return {name: values[:, j] for j, name in enumerate(header)}


def moving_average(values, window):
    """Trailing mean over the last ``window`` finite values' positions (NaN-aware).

    Args:
        values: (N,) float, NaN where a window had nothing to count.
        window: positions averaged (1: the values themselves).
    Returns:
        (N,) float64; NaN where the window holds no finite value.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    upper = np.arange(1, len(values) + 1)
    lower = np.maximum(upper - int(window), 0)
    n = counts[upper] - counts[lower]
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(n > 0, (sums[upper] - sums[lower]) / np.maximum(n, 1), np.nan)


def metric_groups(columns):
    """stem -> [(column, stride)] of the metric columns (``RPNAcc_s32`` -> stem RPNAcc, 32),
    strides in file order."""
    groups = {}
    for name in columns:
        if name in FIXED_COLUMNS:
            continue
        stem, sep, stride = name.rpartition('_s')
        if sep and stride.isdigit():
            groups.setdefault(stem, []).append((name, int(stride)))
    return groups


def _lr_axis(ax, iterations, lr):
    twin = ax.twinx()
    twin.step(iterations, lr, where='post', color='0.45', linestyle='--', linewidth=1,
              label='lr')
    finite = lr[np.isfinite(lr) & (lr > 0)]
    if len(finite) and finite.max() > 10 * finite.min():
        twin.set_yscale('log')
    elif len(finite) and finite.max() == finite.min():
        # a constant lr: matplotlib would zoom into +-1e-5 around it and print an offset; from
        # zero, the line reads as what it is, a flat 2/3 of the way up
        twin.set_ylim(0.0, 1.5 * finite.max())
    twin.set_ylabel('lr', color='0.45')
    twin.tick_params(axis='y', colors='0.45')
    return twin


def _draw_metric_panel(ax, metrics, columns, title, ylabel, window):
    iterations = metrics['iteration']
    for name, stride in columns:
        line, = ax.plot(iterations, metrics[name], linewidth=0.8, alpha=0.3)
        ax.plot(iterations, moving_average(metrics[name], window), linewidth=2,
                color=line.get_color(), label='stride %d' % stride)
    ax.set_title(title)
    ax.set_xlabel('iteration')
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.4)
    handles, labels = ax.get_legend_handles_labels()
    twin = _lr_axis(ax, iterations, metrics['lr'])
    more, more_labels = twin.get_legend_handles_labels()
    ax.legend(handles + more, labels + more_labels, loc='best', fontsize='small')


def _draw_validation_panel(ax, val_rows, best):
    from matplotlib.ticker import MaxNLocator
    ax.set_title('validation AP per epoch')
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('epoch (checkpoint)')
    ax.set_ylabel('AP')
    ax.grid(True, alpha=0.4)
    if not val_rows:
        ax.text(0.5, 0.5, 'no validation results\n(train.py --val_set val)', ha='center',
                va='center', transform=ax.transAxes, color='0.4')
        return
    epochs = [row['epoch'] for row in val_rows]
    if best is not None and best.get('metric') in SETTINGS:
        # a ring behind the point, not a filled marker over it: the best value stays readable
        ax.plot([best['epoch']], [best['value']], marker='o', markersize=16,
                markerfacecolor='none', markeredgecolor='goldenrod', markeredgewidth=2.5,
                linestyle='none', zorder=1,
                label='best %s %.3f (epoch %d)' % (best['metric'], best['value'], best['epoch']))
    for setting in SETTINGS:
        ax.plot(epochs, [row[setting] for row in val_rows], marker='o', linewidth=2,
                label=setting, zorder=2)
    # whole epochs, half an epoch of margin: one epoch reads "1", not 0.945 ... 1.050
    ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    first, last = min(epochs), max(epochs)
    ax.set_xticks(range(first, last + 1, (last - first) // 10 + 1))
    ax.set_ylim(0, 1.01)
    ax.legend(loc='best', fontsize='small')


def default_title(rows, window):
    """The figure title: the logged windows and the smoothing, when there is any."""
    if window <= 1:
        return 'training curves (%d logged windows, not smoothed)' % rows
    return 'training curves (%d logged windows, bold: moving average of %d)' % (rows, window)


def draw_training(metrics, val_rows, best, size, smooth=None, title=None):
    """The four-panel figure (see the module docstring); returns the matplotlib figure."""
    groups = metric_groups(metrics)
    rows = len(metrics['iteration'])
    window = smooth if smooth else max(1, rows // 25)
    fig, axes = new_figure(size, nrows=2, ncols=2)
    for ax, (stem, panel_title, ylabel) in zip(axes.flat, PANELS):
        if stem in groups:
            _draw_metric_panel(ax, metrics, groups[stem], panel_title, ylabel, window)
        else:
            ax.set_title('%s: no %s_s* column' % (panel_title, stem))
    _draw_validation_panel(axes.flat[3], val_rows, best)
    fig.suptitle(title or default_title(rows, window))
    fig.tight_layout()
    return fig


def _read_best(prefix):
    path = best_record_path(prefix)
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('prefix', help='train.py --prefix of the run (reads <prefix>-metrics.csv '
                                       'and <prefix>-val.csv)')
    parser.add_argument('--out', default=None,
                        help='PNG to write (default: <prefix>-curves.png)')
    parser.add_argument('--size', default=DEFAULT_SIZE,
                        help='WIDTHxHEIGHT of the PNG in pixels')
    parser.add_argument('--smooth', type=int, default=None,
                        help='moving average over this many logged windows (default: 1/25 of '
                             'the windows)')
    parser.add_argument('--title', default=None, help='figure title')
    args = parser.parse_args(argv)
    try:
        args.size = parse_size(args.size)
    except ValueError as exc:
        parser.error('--size: %s' % exc)
    if args.smooth is not None and args.smooth < 1:
        parser.error('--smooth must be positive, got %d' % args.smooth)
    return args


def main(argv=None):
    args = parse_args(argv)
    out = args.out or '%s-curves.png' % args.prefix
    path = metrics_csv_path(args.prefix)
    try:
        if not os.path.isfile(path):
            raise FileNotFoundError('%s not found (written by train.py --prefix %s)'
                                    % (path, args.prefix))
        metrics = load_metrics(path)
        missing = [c for c in ('iteration', 'lr') if c not in metrics]
        if missing:
            raise ValueError('%s lacks the column(s) %s' % (path, ', '.join(missing)))
        val_rows = read_val_rows(val_csv_path(args.prefix))
        best = _read_best(args.prefix)
        fig = draw_training(metrics, val_rows, best, args.size, args.smooth, args.title)
        save_figure(fig, out)
    except (OSError, ValueError) as exc:
        print('plot_training.py: error: %s' % exc, file=sys.stderr)
        return 2
    print('%s: %d logged windows, %d validation results -> %s (%dx%d px)'
          % (args.prefix, len(metrics['iteration']), len(val_rows), out, *args.size))
    return 0


if __name__ == '__main__':
    sys.exit(main())
