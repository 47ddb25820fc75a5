"""The two spellings of BatchNorm statistics, and fitting a params file's names to a graph.

MXNet names a BatchNorm's statistics ``<bn>_moving_mean`` / ``<bn>_moving_var`` when the layer
is built with the symbol API, and ``<bn>_running_mean`` / ``<bn>_running_var`` when it comes
from a Gluon block (``HybridBlock.export``). Both spellings occur in real checkpoints:

* the released mnet.25: its graph asks for ``mobilenet0_batchnormK_moving_*``, its params file
  stores the backbone's statistics as ``mobilenet0_batchnormK_running_*``;
* a checkpoint the original ``train.py`` writes from a Gluon-exported backbone: graph and
  params both say ``_running_`` (the head's BatchNorms, built with the symbol API, say
  ``_moving_`` in both).

The rule (:func:`fit_names`): the graph decides. An array is renamed to its other spelling
only when the graph asks for that spelling, the file lacks it, the file holds the other
spelling, and the graph does not ask for the other spelling too. Names the graph asks for
that are still absent afterwards are reported, never invented.
"""
__all__ = ['BN_STAT_SPELLINGS', 'other_spelling', 'fit_names', 'fit_to_graph']

#: (Gluon spelling, symbol-API spelling) of each BatchNorm statistic
BN_STAT_SPELLINGS = (('_running_mean', '_moving_mean'), ('_running_var', '_moving_var'))


def other_spelling(name):
    """``x_running_mean`` <-> ``x_moving_mean`` (same for ``_var``); None for other names."""
    for gluon, symbolic in BN_STAT_SPELLINGS:
        if name.endswith(gluon):
            return name[:-len(gluon)] + symbolic
        if name.endswith(symbolic):
            return name[:-len(symbolic)] + gluon
    return None


def fit_names(wanted, given):
    """Rename arrays of ``given`` to the spelling the graph asks for (see the module rule).

    Args:
        wanted: names the graph needs (any iterable of str).
        given: name -> array, as read from the params file.
    Returns:
        ``(fitted, renamed, missing)``: a new dict (renamed arrays under their new name, every
        other array unchanged), the ``(old, new)`` pairs renamed, and the wanted names still
        absent, sorted.
    """
    wanted = set(wanted)
    fitted = dict(given)
    renamed = []
    for name in sorted(wanted - set(given)):
        source = other_spelling(name)
        if source is not None and source in given and source not in wanted:
            fitted[name] = fitted.pop(source)
            renamed.append((source, name))
    missing = sorted(wanted - set(fitted))
    return fitted, renamed, missing


def fit_to_graph(sym, arg_params, aux_params):
    """``(arg_params, aux_params)`` with names renamed to the spelling ``sym`` asks for, by
    :func:`fit_names` (new dicts; nothing is checked: the caller reports what is missing)."""
    return (fit_names(sym.list_arguments(), arg_params or {})[0],
            fit_names(sym.list_auxiliary_states(), aux_params or {})[0])
