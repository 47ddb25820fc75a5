"""The training SGD and its per-parameter learning-rate / weight-decay multipliers.

The original (insightface ``RetinaFace/train.py``) builds ``mx.optimizer.SGD(learning_rate,
momentum=0.9, wd, rescale_grad=1/devices)`` as an *instance*, without ``sym`` or
``param_idx2name``, and passes it to ``Module.fit``. In MXNet 1.x (``optimizer.py``
``Optimizer.__init__`` -> ``set_lr_mult({})`` / ``set_wd_mult({})``; ``module.py``
``init_optimizer`` only fills ``idx2name`` afterwards) such an instance reads no
``__lr_mult__`` / ``__wd_mult__`` attribute and never applies the "no weight decay except on
``*_weight`` / ``*_gamma``" rule, so **every trainable parameter gets lr x1 and weight decay
wd** (biases and BatchNorm betas included). This is the default here
(``cfg.TRAIN.GRAPH_LR_WD_MULT = False``).

Opt-in (``cfg.TRAIN.GRAPH_LR_WD_MULT = True``, ``train.py --graph_lr_wd_mult``): SGD created by
name with the graph, as MXNet does for ``optimizer='sgd'``: the graph's multipliers (neck and
head biases lr x2; SSH / head biases wd 0, lateral / aggregation biases wd 1) and wd 0 for every
parameter whose name does not end in ``_weight`` / ``_gamma`` (BatchNorm betas), i.e.
Caffe-style bias handling.
"""
import logging
import warnings

import mxnet as mx

__all__ = ['sgd_for_module', 'init_module_optimizer', 'effective_multipliers',
           'describe_multipliers']

logger = logging.getLogger(__name__)


def sgd_for_module(optimizer_params, graph_multipliers):
    """``(optimizer, optimizer_params)`` to pass to ``Module.init_optimizer``.

    Args:
        optimizer_params: dict of SGD arguments (learning_rate, momentum, wd, rescale_grad,
            lr_scheduler, begin_num_update).
        graph_multipliers: False -> an SGD instance (the original's semantics);
            True -> ``'sgd'`` by name (the graph's multipliers).
    """
    if graph_multipliers:
        return 'sgd', dict(optimizer_params)
    return mx.optimizer.SGD(**optimizer_params), ()


def init_module_optimizer(mod, kvstore, optimizer_params, graph_multipliers):
    """``mod.init_optimizer`` with the SGD of :func:`sgd_for_module`.

    MXNet warns that an instance's ``rescale_grad`` (1 / devices, as the original) is not
    1 / batch size; that is intended (the losses are normalised in the graph), so the warning
    is silenced here.
    """
    optimizer, params = sgd_for_module(optimizer_params, graph_multipliers)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Optimizer created manually outside Module')
        mod.init_optimizer(kvstore=kvstore, optimizer=optimizer, optimizer_params=params)


def effective_multipliers(optimizer, param_names):
    """name -> (lr multiplier, wd multiplier) that ``optimizer`` applies to each parameter."""
    return {name: (float(optimizer.lr_mult.get(name, 1.0)), float(optimizer.wd_mult.get(name, 1.0)))
            for name in param_names}


def describe_multipliers(multipliers):
    """One log line summarising :func:`effective_multipliers` (counts per (lr, wd) pair)."""
    counts = {}
    for pair in multipliers.values():
        counts[pair] = counts.get(pair, 0) + 1
    parts = ['%d at lr x%g, wd x%g' % (count, lr, wd)
             for (lr, wd), count in sorted(counts.items(), key=lambda item: -item[1])]
    return '%d trainable parameters: %s' % (len(multipliers), '; '.join(parts))
