"""How the training graph's parameters start: initialised or loaded, frozen or trained.

* :data:`XAVIER`: the initialiser of every parameter the pretrained model does not provide;
* :func:`layer_fix_candidates` / :func:`frozen_param_names`: the arrays ``cfg.LAYER_FIX``
  keeps fixed (the original's ``get_fixed_params`` in effect).
"""

__all__ = ['XAVIER', 'LAYER_FIX_COUNT', 'layer_fix_candidates', 'frozen_param_names']

# Xavier for every parameter the pretrained model does not provide (variables that carry
# their own __init__ attribute, e.g. the heads' Normal(0.01), keep it). The original used
# MXNet's default Xavier: uniform, averaged fan-in/fan-out, magnitude 3.
XAVIER = dict(rnd_type='uniform', factor_type='avg', magnitude=3)
# cfg.LAYER_FIX (mnet): the first six parameter arrays of a loaded backbone stay fixed
LAYER_FIX_COUNT = 6


def layer_fix_candidates(param_names):
    """The arrays ``cfg.LAYER_FIX`` freezes: the first six parameter arrays (after ``data``) and
    any upsampling weight, as the original's ``get_fixed_params`` did in effect.

    Args:
        param_names: the training graph's parameter arguments in graph order (no data, no
            labels). In mnet these start with the backbone's conv0 / conv1 weights and their
            BatchNorm gamma / beta. (Our graphs upsample by nearest neighbour: no weights.)
    """
    head = list(param_names[:LAYER_FIX_COUNT])
    return head + [n for n in param_names[LAYER_FIX_COUNT:] if 'upsampling' in n]


def frozen_param_names(layer_fix, param_names, loaded_names):
    """Parameters kept fixed: with ``layer_fix`` the :func:`layer_fix_candidates` that were
    loaded from ``--pretrained`` (a layer that was not loaded is never frozen); else none."""
    if not layer_fix:
        return []
    loaded = set(loaded_names)
    return [name for name in layer_fix_candidates(param_names) if name in loaded]
