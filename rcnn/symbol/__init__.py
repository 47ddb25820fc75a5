"""RetinaFace graphs: ``get_symbol_train(network, cfg)`` / ``get_symbol_test(network, cfg)``.

Networks: ``mnet`` (:mod:`rcnn.symbol.symbol_mnet`) and ``resnet``
(:mod:`rcnn.symbol.symbol_resnet`), each for every layout of the model family
(``ModelLayout.from_config(cfg)``; the switches: docs/model-family.md). Inputs, outputs and
their order are documented in :mod:`rcnn.symbol.heads`; the shared assembly in
:mod:`rcnn.symbol.symbol_common`; the OHEM operator in :mod:`rcnn.symbol.ohem`.
"""
from rcnn.symbol.symbol_common import (deploy_output_names, feature_shapes, label_names,
                                       label_shapes)
from rcnn.symbol.symbol_mnet import get_mnet_test, get_mnet_train
from rcnn.symbol.symbol_resnet import get_resnet_test, get_resnet_train

__all__ = ['NETWORKS', 'get_symbol_train', 'get_symbol_test', 'deploy_output_names',
           'label_names', 'feature_shapes', 'label_shapes']

_BUILDERS = {'mnet': (get_mnet_train, get_mnet_test),
             'resnet': (get_resnet_train, get_resnet_test)}
NETWORKS = tuple(sorted(_BUILDERS))


def _builders(network):
    if network not in _BUILDERS:
        raise ValueError('unknown network %r; choose from %s' % (network, list(NETWORKS)))
    return _BUILDERS[network]


def get_symbol_train(network, cfg=None, native_dcn=False):
    """Training graph of ``network`` ('mnet' or 'resnet'); ``cfg`` defaults to its preset.

    ``native_dcn``: ``USE_DCN = 2`` layers as MXNet's ``ModulatedDeformableConvolution``,
    whose backward runs on the GPU only (faster there); by default they are computed with
    sampling operators that train on the CPU too (:mod:`rcnn.symbol.deformable`).
    """
    return _builders(network)[0](cfg, native_dcn)


def get_symbol_test(network, cfg=None):
    """Deploy graph of ``network`` ('mnet' or 'resnet'); ``cfg`` defaults to its preset."""
    return _builders(network)[1](cfg)
