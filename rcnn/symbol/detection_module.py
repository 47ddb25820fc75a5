"""Detection modules between the neck and the heads (``cfg.HEAD_MODULE``).

``width`` is a module's output channels: mnet ``HEAD_FILTER_NUM * CONTEXT_FILTER_RATIO``
(64), resnet twice that (512, the released R50's SSH modules are twice as wide relative to its
neck). ``dcn`` is the graph's :class:`rcnn.symbol.deformable.DeformableMode` (``cfg.USE_DCN``):
2 makes every 3x3 convolution here modulated-deformable, 1 and 2 add ``{name}_concat_dcn``
after the module.
"""
import mxnet as mx

from rcnn.symbol.deformable import module_output_dcn
from rcnn.symbol.layers import conv_bn

__all__ = ['HEAD_MODULES', 'ssh_detection_module', 'retina_detection_module',
           'detection_module', 'module_width']

#: ``cfg.HEAD_MODULE`` values
HEAD_MODULES = ('SSH', 'RF')


def _check_width(width, name):
    if width < 4 or width % 4:
        raise ValueError('%s: detection module width must be a positive multiple of 4 '
                         '(HEAD_FILTER_NUM x CONTEXT_FILTER_RATIO), got %r' % (name, width))


def ssh_detection_module(data, name, width, dcn=None):
    """SSH module (``HEAD_MODULE = 'SSH'``, the released models): ``width`` channels.

    A 3x3 branch to ``width/2`` (``{name}_conv1``, no ReLU) and a context branch: a shared 3x3
    to ``width/4`` (``{name}_context_conv1``, ReLU) feeding a 3x3 (``_context_conv2``, no ReLU)
    and a 3x3 (``_context_conv3_1``, ReLU) -> 3x3 (``_context_conv3_2``, no ReLU) chain; the
    three are concatenated, then ReLU.
    """
    _check_width(width, name)
    half, quarter = width // 2, width // 4
    branch = conv_bn(data, name + '_conv1', half, (3, 3), relu=False, dcn=dcn)
    context = conv_bn(data, name + '_context_conv1', quarter, (3, 3), dcn=dcn)
    context_a = conv_bn(context, name + '_context_conv2', quarter, (3, 3), relu=False, dcn=dcn)
    context_b = conv_bn(context, name + '_context_conv3_1', quarter, (3, 3), dcn=dcn)
    context_b = conv_bn(context_b, name + '_context_conv3_2', quarter, (3, 3), relu=False,
                        dcn=dcn)
    concat = mx.sym.Concat(branch, context_a, context_b, dim=1, name=name + '_concat')
    out = mx.sym.Activation(data=concat, act_type='relu', name=name + '_concat_relu')
    return module_output_dcn(out, name + '_concat_dcn', width, dcn)


def retina_detection_module(data, name, width, dcn=None):
    """The original's 'RF' module (``HEAD_MODULE = 'RF'``): ``width`` channels.

    Three chained 3x3 convolutions to ``width/2`` (``{name}_conv1..3``, each with ReLU); the
    output concatenates ``conv1`` with ``conv2 + conv3`` (no ReLU after the concatenation).
    """
    _check_width(width, name)
    half = width // 2
    conv1 = conv_bn(data, name + '_conv1', half, (3, 3), dcn=dcn)
    conv2 = conv_bn(conv1, name + '_conv2', half, (3, 3), dcn=dcn)
    conv3 = conv_bn(conv2, name + '_conv3', half, (3, 3), dcn=dcn)
    residual = mx.sym.elemwise_add(conv2, conv3, name=name + '_sum')
    out = mx.sym.Concat(conv1, residual, dim=1, name=name + '_concat')
    return module_output_dcn(out, name + '_concat_dcn', width, dcn)


def detection_module(data, name, width, cfg, dcn=None):
    """The ``cfg.HEAD_MODULE`` module; ``dcn`` the graph's ``DeformableMode``."""
    kind = cfg.HEAD_MODULE
    if kind not in HEAD_MODULES:
        raise ValueError('cfg.HEAD_MODULE must be one of %s, got %r' % (list(HEAD_MODULES), kind))
    build = ssh_detection_module if kind == 'SSH' else retina_detection_module
    return build(data, name, width, dcn)


def module_width(cfg, relative_width):
    """Module channels: ``HEAD_FILTER_NUM * relative_width * CONTEXT_FILTER_RATIO``."""
    width = float(cfg.HEAD_FILTER_NUM) * relative_width * float(cfg.CONTEXT_FILTER_RATIO)
    if width != int(width):
        raise ValueError('HEAD_FILTER_NUM x CONTEXT_FILTER_RATIO must be a whole number of '
                         'channels, got %r' % width)
    return int(width)
