"""Deformable convolutions of ``cfg.USE_DCN`` (MXNet's contrib operators).

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

MXNet 1.9.1 runs ``ModulatedDeformableConvolution`` forward on the CPU but its backward only
on the GPU ("only implemented in GPU"). Training graphs therefore compute DCN v2 as
:func:`sampled_modulated_conv`: per tap a ``GridGenerator('warp')`` + ``BilinearSampler`` of
the zero-padded input at the offset position, times the mask, then the 3x3 weights as a
stride-3 convolution over the samples laid out in 3x3 blocks. It is the same function (tests
compare it with the operator) with the same parameters (``{name}_conv2_weight`` (F, C, 3, 3)),
differentiable on every device. Deploy graphs use the operator itself (:class:`DeformableMode`).
"""
from collections import namedtuple

import mxnet as mx

__all__ = ['DCN_OFF', 'DCN_AFTER_MODULE', 'DCN_CONTEXT', 'OFFSET_LR_MULT', 'DeformableMode',
           'deformable_mode', 'deformable_conv_bn', 'modulated_conv_bn', 'sampled_modulated_conv',
           'module_output_dcn']

#: ``cfg.USE_DCN`` values
DCN_OFF, DCN_AFTER_MODULE, DCN_CONTEXT = 0, 1, 2
#: learning-rate multiplier of the DCN v2 offset / mask convolution
OFFSET_LR_MULT = 0.1
_TAPS = 9                      # a 3x3 kernel
_OFFSETS = 2 * _TAPS           # dy, dx per tap
_BN_EPS = 2e-5
_BN_MOMENTUM = 0.9
_PAD_HW = (0, 0, 0, 0, 1, 1, 1, 1)     # one pixel around H and W

#: how a graph builds its deformable layers: ``version`` is ``cfg.USE_DCN`` (0, 1, 2);
#: ``sampled`` computes DCN v2 with :func:`sampled_modulated_conv` (training graphs, unless
#: they run on a GPU, where the operator has its backward)
DeformableMode = namedtuple('DeformableMode', ['version', 'sampled'])


def deformable_mode(cfg, sampled_dcn):
    """:class:`DeformableMode` of ``cfg.USE_DCN``; ``sampled_dcn``: DCN v2 as sampling."""
    return DeformableMode(int(cfg.USE_DCN), bool(sampled_dcn))


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


def sampled_modulated_conv(data, offset, mask, weight, num_filter, name):
    """``ModulatedDeformableConvolution`` (3x3, pad 1, stride 1, one deformable group, no
    bias) from differentiable sampling operators.

    Args:
        data: (B, C, H, W).
        offset: (B, 18, H, W); channels 2k, 2k+1 the (dy, dx) of tap k = 3i + j.
        mask: (B, 9, H, W).
        weight: (num_filter, C, 3, 3) variable.
    Returns:
        (B, num_filter, H, W). A tap sampled outside the map reads zeros, as the operator.
    """
    # zero padding: a tap in (-1, 0) blends the border with 0 and one at <= -1 reads 0, as the
    # operator's bilinear sampling; the warp grid is normalised by the padded size, so a
    # 1-pixel map still has a non-zero (W - 1)
    padded = mx.sym.pad(data, mode='constant', constant_value=0, pad_width=_PAD_HW,
                        name=name + '_pad')
    samples = []
    for tap in range(_TAPS):
        row, col = divmod(tap, 3)
        dy = mx.sym.slice_axis(offset, axis=1, begin=2 * tap, end=2 * tap + 1) + float(row - 1)
        dx = mx.sym.slice_axis(offset, axis=1, begin=2 * tap + 1, end=2 * tap + 2) + \
            float(col - 1)
        flow = mx.sym.pad(mx.sym.concat(dx, dy, dim=1), mode='edge', pad_width=_PAD_HW)
        grid = mx.sym.GridGenerator(flow, transform_type='warp')
        grid = mx.sym.slice(grid, begin=(None, None, 1, 1), end=(None, None, -1, -1))
        sample = mx.sym.BilinearSampler(padded, grid, name='%s_tap%d' % (name, tap))
        samples.append(mx.sym.broadcast_mul(
            sample, mx.sym.slice_axis(mask, axis=1, begin=tap, end=tap + 1)))
    # (B, C, 9, H, W) -> (B, C, 3H, 3W) with the 9 samples of position (h, w) in the block
    # rows 3h..3h+2, cols 3w..3w+2: a 3x3 stride-3 convolution then applies the (F, C, 3, 3)
    # weight as the operator does, and the weight's shape is still inferred from the graph
    taps = mx.sym.Reshape(mx.sym.stack(*samples, axis=2), shape=(0, 0, -4, 3, 3, -2))
    blocks = mx.sym.Reshape(mx.sym.transpose(taps, axes=(0, 1, 4, 2, 5, 3)),
                            shape=(0, 0, -3, -3))
    return mx.sym.Convolution(blocks, weight=weight, kernel=(3, 3), stride=(3, 3),
                              num_filter=num_filter, no_bias=True, name=name)


def modulated_conv_bn(data, name, num_filter, relu=True, sampled=False):
    """DCN v2: ``{name}_conv2_offset`` (27 ch, zero-initialised, lr x0.1) -> offsets (0-17)
    and ``2 * sigmoid`` masks (18-26) -> ``{name}_conv2`` ModulatedDeformableConvolution (3x3,
    no bias; :func:`sampled_modulated_conv` when ``sampled``) -> ``{name}_bn`` [-> ReLU].
    (B, C, H, W) -> (B, num_filter, H, W)."""
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
    if sampled:
        out = sampled_modulated_conv(data, offset, mask, mx.sym.Variable(name + '_conv2_weight'),
                                     num_filter, name + '_conv2')
    else:
        out = mx.contrib.sym.ModulatedDeformableConvolution(
            data=data, offset=offset, mask=mask, num_filter=num_filter, kernel=(3, 3),
            pad=(1, 1), stride=(1, 1), num_deformable_group=1, no_bias=True,
            name=name + '_conv2')
    return _finish(out, name, relu)


def module_output_dcn(data, name, num_filter, mode):
    """The ``{name}`` layer after a detection module (``mode``: :class:`DeformableMode` or
    None): v1 for version 1, v2 for 2 (with ReLU); ``data`` unchanged for 0 / None."""
    if mode is None or mode.version == DCN_OFF:
        return data
    if mode.version == DCN_AFTER_MODULE:
        return deformable_conv_bn(data, name, num_filter)
    return modulated_conv_bn(data, name, num_filter, sampled=mode.sampled)
