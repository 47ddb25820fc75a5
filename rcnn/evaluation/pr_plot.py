"""PR-curve figures of WIDER FACE results (:class:`rcnn.evaluation.widerface.SettingResult`).

* :func:`plot_pr_curves`: one method, its easy / medium / hard curves on one figure
  (``evaluate_widerface.py --curves DIR`` -> ``DIR/pr_curves.png``);
* :func:`plot_pr_comparison`: several methods on one figure per setting, ranked by AP in the
  legend as the WIDER FACE leaderboard figures are (``--compare`` / several ``--pred`` ->
  ``DIR/pr_compare_<setting>.png``).
"""
from rcnn.evaluation.widerface import SETTINGS
from rcnn.utils.figures import new_figure, save_figure

__all__ = ['plot_pr_curves', 'plot_pr_comparison', 'PR_FIGURE_SIZE']

PR_FIGURE_SIZE = (700, 600)   # pixels


def _pr_axes(ax, title):
    ax.set_xlabel('Recall')
    ax.set_ylabel('Precision')
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(True, alpha=0.4)
    ax.set_title(title)
    ax.legend(loc='lower left')


def plot_pr_curves(results, path, title='WIDER FACE PR curves', size=PR_FIGURE_SIZE):
    """The three settings of one evaluation (setting -> SettingResult) into ``path`` (PNG)."""
    fig, ax = new_figure(size)
    for setting in SETTINGS:
        result = results[setting]
        ax.plot(result.recall, result.precision, linewidth=2,
                label='%s (AP %.4f)' % (setting.capitalize(), result.ap))
    _pr_axes(ax, title)
    return save_figure(fig, path)


def plot_pr_comparison(methods, setting, path, size=PR_FIGURE_SIZE):
    """Several methods' curves of one setting into ``path`` (PNG).

    Args:
        methods: list of (name, setting -> SettingResult); drawn best AP first, the legend
            reading ``0.912 name`` as on the leaderboard.
    """
    fig, ax = new_figure(size)
    ranked = sorted(methods, key=lambda m: -_ap_or_minus(m[1][setting].ap))
    for name, results in ranked:
        result = results[setting]
        ax.plot(result.recall, result.precision, linewidth=2,
                label='%.3f %s' % (result.ap, name))
    _pr_axes(ax, '%s set' % setting.capitalize())
    return save_figure(fig, path)


def _ap_or_minus(ap):
    return -1.0 if ap != ap else ap
