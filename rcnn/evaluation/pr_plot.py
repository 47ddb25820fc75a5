"""Figures of WIDER FACE results (:class:`rcnn.evaluation.widerface.SettingResult`) and of the
landmark error (:class:`rcnn.evaluation.landmarks.LandmarkResult`).

* :func:`plot_pr_curves`: one method, its easy / medium / hard curves on one figure
  (``evaluate_widerface.py --curves DIR`` -> ``DIR/pr_curves.png``);
* :func:`plot_pr_comparison`: several methods on one figure per setting, ranked by AP in the
  legend as the WIDER FACE leaderboard figures are (``--compare`` / several ``--pred`` ->
  ``DIR/pr_compare_<setting>.png``);
* :func:`plot_ced`: the cumulative distribution of the landmark NME (``DIR/nme_ced.png``).

Layout: the legend sits below the axes, outside them, so it never hides a curve (PR curves
start at the top left and end at the bottom right, leaving no corner that is always free).
Curves are drawn without markers, thin enough that 1,000-point curves of several methods stay
apart, in distinct colours and, beyond the colour cycle, distinct dash patterns.
"""
from rcnn.evaluation.widerface import SETTINGS
from rcnn.utils.figures import new_figure, save_figure

__all__ = ['plot_pr_curves', 'plot_pr_comparison', 'plot_ced', 'PR_FIGURE_SIZE']

PR_FIGURE_SIZE = (700, 600)   # pixels
_LINE_WIDTH = 1.4
_DASHES = ('-', '--', '-.', ':')
_COLOURS = 10                 # matplotlib's default cycle (tab10)
_LEGEND_COLUMNS = 3


def _line_style(index):
    """Colour from the default cycle, then a new dash pattern after each full cycle."""
    return {'color': 'C%d' % (index % _COLOURS), 'linestyle': _DASHES[(index // _COLOURS)
                                                                      % len(_DASHES)],
            'linewidth': _LINE_WIDTH}


def _finish_axes(fig, ax, title, entries, columns=_LEGEND_COLUMNS, xlabel='Recall',
                 ylabel='Precision', xlim=(0.0, 1.0)):
    # a little room past 1 on both axes: curves running along precision 1 or dropping at
    # recall 1 are not drawn on the frame
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(xlim[0], xlim[1] * 1.02)
    ax.set_ylim(0, 1.03)
    ax.grid(True, alpha=0.4)
    ax.set_title(title)
    columns = min(columns, max(1, entries))
    rows = -(-entries // columns)
    # room under the axes for the x label and ``rows`` legend rows (fractions of the height)
    bottom = min(0.5, 0.12 + 0.035 * rows)
    fig.subplots_adjust(left=0.1, right=0.97, top=0.93, bottom=bottom)
    ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.09), ncol=columns, frameon=False,
              fontsize='small')


def plot_pr_curves(results, path, title='WIDER FACE PR curves', size=PR_FIGURE_SIZE):
    """The three settings of one evaluation (setting -> SettingResult) into ``path`` (PNG)."""
    fig, ax = new_figure(size)
    for index, setting in enumerate(SETTINGS):
        result = results[setting]
        ax.plot(result.recall, result.precision, label='%s (AP %.4f)'
                % (setting.capitalize(), result.ap), **_line_style(index))
    _finish_axes(fig, ax, title, len(SETTINGS))
    return save_figure(fig, path)


def plot_pr_comparison(methods, setting, path, size=PR_FIGURE_SIZE):
    """Several methods' curves of one setting into ``path`` (PNG).

    Args:
        methods: list of (name, setting -> SettingResult); drawn best AP first, the legend
            reading ``0.912 name`` as on the leaderboard.
    """
    fig, ax = new_figure(size)
    ranked = sorted(methods, key=lambda m: -_ap_or_minus(m[1][setting].ap))
    for index, (name, results) in enumerate(ranked):
        result = results[setting]
        ax.plot(result.recall, result.precision, label='%.3f %s' % (result.ap, name),
                **_line_style(index))
    _finish_axes(fig, ax, '%s set' % setting.capitalize(), len(ranked))
    return save_figure(fig, path)


def plot_ced(curves, threshold, path, title='Landmark NME: cumulative error distribution',
             size=PR_FIGURE_SIZE):
    """Cumulative error distributions into ``path`` (PNG).

    Args:
        curves: list of (name, :class:`rcnn.evaluation.landmarks.LandmarkResult`).
        threshold: the x range ends there (the failure threshold).
    """
    from rcnn.evaluation.landmarks import ced_curve
    fig, ax = new_figure(size)
    for index, (name, result) in enumerate(curves):
        x, fraction = ced_curve(result.errors, threshold)
        ax.plot(x, fraction, label='%s: NME %.4f, AUC@%g %.3f (%d faces)'
                % (name, result.mean_nme, threshold, result.auc, result.matched),
                **_line_style(index))
    _finish_axes(fig, ax, title, len(curves), columns=1,
                 xlabel='NME (landmark error / sqrt(w*h) of the box)',
                 ylabel='Fraction of matched faces', xlim=(0.0, threshold))
    return save_figure(fig, path)


def _ap_or_minus(ap):
    return -1.0 if ap != ap else ap
