"""Deformable convolutions of ``cfg.USE_DCN`` (MXNet's contrib operators, CPU and GPU).

``USE_DCN = 1``: :func:`deformable_conv_bn` after each detection module (``{module}_concat_dcn``)
-- a 3x3 ``DeformableConvolution`` (with bias) whose 18 offsets (dy, dx of the 9 taps) come from
a plain 3x3 convolution ``{name}_conv_offset``; both keep MXNet's default initialisation, as
the original.

``USE_DCN = 2``: :func:`modulated_conv_bn` for every 3x3 stride-1 convolution of the neck's
aggregation and the detection modules, and for the ``_concat_dcn`` layer -- a 3x3
``ModulatedDeformableConvolution`` ``{name}_conv2`` (no bias) whose offsets and masks come
from one 3x3 convolution ``{name}_conv2_offset`` with 27 outputs: channels 0-17 the offsets,
18-26 the masks through ``2 * sigmoid``. That convolution starts at zero (weights and bias) and
learns at lr x0.1, so a fresh layer samples the regular 3x3 grid with mask 2 * sigmoid(0) = 1:
it starts as the plain convolution it replaces.

Both end in BatchNorm ``{name}_bn`` and, where the layer has one, a ReLU ``{name}_act``
(the original's names).
"""
import mxnet as mx

__all__ = ['DCN_OFF', 'DCN_AFTER_MODULE', 'DCN_CONTEXT', 'OFFSET_LR_MULT',
           'deformable_conv_bn', 'modulated_conv_bn', 'module_output_dcn']

#: ``cfg.USE_DCN`` values
DCN_OFF, DCN_AFTER_MODULE, DCN_CONTEXT = 0, 1, 2
#: learning-rate multiplier of the DCN v2 offset / mask convolution
OFFSET_LR_MULT = 0.1
_TAPS = 9                      # a 3x3 kernel
_OFFSETS = 2 * _TAPS           # dy, dx per tap
_BN_EPS = 2e-5
_BN_MOMENTUM = 0.9


def _finish(data, name, relu):
    out = mx.sym.BatchNorm(data=data, fix_gamma=False, eps=_BN_EPS, momentum=_BN_MOMENTUM,
                           name=name + '_bn')
    if relu:
        out = mx.sym.Activation(data=out, act_type='relu', name=name + '_act')
    return out


def deformable_conv_bn(data, name, num_filter, relu=True):
    """DCN v1: ``{name}_conv_offset`` (18 ch) -> ``{name}_conv`` DeformableConvolution (3x3,
    bias) -> ``{name}_bn`` [-> ReLU]. (B, C, H, W) -> (B, num_filter, H, W)."""
    offset = mx.sym.Convolution(data=data, num_filter=_OFFSETS, kernel=(3, 3), pad=(1, 1),
                                stride=(1, 1), name=name + '_conv_offset')
    out = mx.contrib.sym.DeformableConvolution(data=data, offset=offset, num_filter=num_filter,
                                               kernel=(3, 3), pad=(1, 1), stride=(1, 1),
                                               num_deformable_group=1, no_bias=False,
                                               name=name + '_conv')
    return _finish(out, name, relu)


def modulated_conv_bn(data, name, num_filter, relu=True):
    """DCN v2: ``{name}_conv2_offset`` (27 ch, zero-initialised, lr x0.1) -> offsets (0-17)
    and ``2 * sigmoid`` masks (18-26) -> ``{name}_conv2`` ModulatedDeformableConvolution (3x3,
    no bias) -> ``{name}_bn`` [-> ReLU]. (B, C, H, W) -> (B, num_filter, H, W)."""
    offset_name = name + '_conv2_offset'
    weight = mx.sym.Variable(offset_name + '_weight', init=mx.init.Zero(),
                             lr_mult=OFFSET_LR_MULT)
    bias = mx.sym.Variable(offset_name + '_bias', init=mx.init.Zero(), lr_mult=OFFSET_LR_MULT)
    offset_mask = mx.sym.Convolution(data=data, weight=weight, bias=bias,
                                     num_filter=_OFFSETS + _TAPS, kernel=(3, 3), pad=(1, 1),
                                     stride=(1, 1), name=offset_name)
    offset = mx.sym.slice_axis(offset_mask, axis=1, begin=0, end=_OFFSETS,
                               name=offset_name + '_offset')
    mask = mx.sym.slice_axis(offset_mask, axis=1, begin=_OFFSETS, end=None,
                             name=offset_name + '_mask_logit')
    # x2 so that a zero logit (the fresh layer) gives mask 1, the plain convolution
    mask = 2.0 * mx.sym.Activation(mask, act_type='sigmoid', name=offset_name + '_mask')
    out = mx.contrib.sym.ModulatedDeformableConvolution(
        data=data, offset=offset, mask=mask, num_filter=num_filter, kernel=(3, 3), pad=(1, 1),
        stride=(1, 1), num_deformable_group=1, no_bias=True, name=name + '_conv2')
    return _finish(out, name, relu)


def module_output_dcn(data, name, num_filter, dcn):
    """The ``{name}`` layer after a detection module: v1 for ``dcn`` 1, v2 for 2 (with ReLU);
    ``data`` unchanged for 0."""
    if dcn == DCN_AFTER_MODULE:
        return deformable_conv_bn(data, name, num_filter)
    if dcn >= DCN_CONTEXT:
        return modulated_conv_bn(data, name, num_filter)
    return data
