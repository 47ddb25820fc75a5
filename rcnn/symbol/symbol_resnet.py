"""RetinaFace-ResNet (``--network resnet``): parameter-compatible with the released ``R50``.

Backbone: the MXNet model-zoo pre-activation ResNet (``bn_data`` with fixed gamma,
``conv0`` 7x7/2, ``bn0``, ``relu0``, 3x3/2 max pool, ``stage1..4`` of bottleneck units --
3/4/6/3 for ``RESNET_DEPTH`` 50, 3/4/23/3 for 101, 3/8/36/3 for 152 -- final ``bn1`` +
``relu1``; BatchNorm ``eps=2e-5``). A unit is
``bn1 -> relu1 -> conv1 (1x1, F/4) -> bn2 -> relu2 -> conv2 (3x3, stride) -> bn3 -> relu3 ->
conv3 (1x1, F)`` plus the shortcut (the input, or a strided 1x1 ``sc`` conv of ``relu1`` in a
unit's first block). Features, where the released graph takes them (the last map of each
stride): ``relu1`` (stride 32, 2048 ch), ``stage4_unit1_relu2`` (stride 16, 512 ch),
``stage3_unit1_relu2`` (stride 8, 256 ch) and, for ``RAC_SSH3`` / ``RAC_RETINA``,
``stage2_unit1_relu2`` (stride 4, 128 ch): the ReLU just before the strided 3x3 conv of the
first unit of stages 4, 3 and 2.

Neck (``ssh_*`` names, as released for 32/16/8; stride 4 ``ssh_m0_red_conv``,
``ssh_m1_red_up``, ``ssh_c0_aggr``, ``ssh_m0_det`` and stride 64 ``ssh_c4``, ``ssh_m4_det``
in the same scheme): ``cfg.HEAD_FILTER_NUM`` (256) channels; the SSH modules are twice as
wide relative to the neck as mnet's: a 256-channel 3x3 branch and two 128-channel context
branches, so 512 channels reach the heads (x ``CONTEXT_FILTER_RATIO``).
"""
import mxnet as mx

from rcnn.model_layout import DATA_NAME
from rcnn.symbol.symbol_common import (NeckNames, build_deploy_graph, build_train_graph,
                                       graph_config, pyramid_features)

__all__ = ['RESNET_NECK_NAMES', 'RESNET50_UNITS', 'RESNET_UNITS', 'resnet_units',
           'resnet_backbone', 'resnet_pyramid', 'resnet_features', 'get_resnet_train',
           'get_resnet_test']

RESNET50_UNITS = (3, 4, 6, 3)
#: ``cfg.RESNET_DEPTH`` -> bottleneck units per stage (the MXNet model-zoo ResNets)
RESNET_UNITS = {50: RESNET50_UNITS, 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
#: detection-module channels / HEAD_FILTER_NUM (before CONTEXT_FILTER_RATIO)
_MODULE_RELATIVE_WIDTH = 2
_STAGE_FILTERS = (256, 512, 1024, 2048)
_STAGE_STRIDES = (1, 2, 2, 2)
_STEM_FILTERS = 64
_BN_EPS = 2e-5
_BN_MOMENTUM = 0.9

RESNET_NECK_NAMES = NeckNames(
    lateral={32: 'ssh_c3_lateral', 16: 'ssh_c2_lateral', 8: 'ssh_m1_red_conv',
             4: 'ssh_m0_red_conv'},
    upsample={32: 'ssh_c3_up', 16: 'ssh_m2_red_up', 8: 'ssh_m1_red_up'},
    aggr={16: 'ssh_c2_aggr', 8: 'ssh_c1_aggr', 4: 'ssh_c0_aggr'},
    ssh={128: 'ssh_m5_det', 64: 'ssh_m4_det', 32: 'ssh_m3_det', 16: 'ssh_m2_det',
         8: 'ssh_m1_det', 4: 'ssh_m0_det'},
    downsample={64: 'ssh_c4', 128: 'ssh_c5'})


def resnet_units(depth):
    """Units per stage of ``cfg.RESNET_DEPTH`` (50, 101 or 152)."""
    if int(depth) not in RESNET_UNITS:
        raise ValueError('cfg.RESNET_DEPTH must be one of %s, got %r'
                         % (sorted(RESNET_UNITS), depth))
    return RESNET_UNITS[int(depth)]


def _bn(data, name, fix_gamma=False):
    return mx.sym.BatchNorm(data=data, fix_gamma=fix_gamma, eps=_BN_EPS, momentum=_BN_MOMENTUM,
                            name=name)


def _relu(data, name):
    return mx.sym.Activation(data=data, act_type='relu', name=name)


def _conv(data, name, num_filter, kernel, stride):
    pad = (kernel[0] // 2, kernel[1] // 2)
    return mx.sym.Convolution(data=data, num_filter=num_filter, kernel=kernel, stride=stride,
                              pad=pad, no_bias=True, workspace=256, name=name)


def bottleneck_unit(data, name, num_filter, stride, project):
    """Pre-activation bottleneck -> ``(output, relu2)``; ``project`` adds the 1x1 ``sc`` conv."""
    relu1 = _relu(_bn(data, name + '_bn1'), name + '_relu1')
    conv1 = _conv(relu1, name + '_conv1', num_filter // 4, (1, 1), (1, 1))
    relu2 = _relu(_bn(conv1, name + '_bn2'), name + '_relu2')
    conv2 = _conv(relu2, name + '_conv2', num_filter // 4, (3, 3), (stride, stride))
    relu3 = _relu(_bn(conv2, name + '_bn3'), name + '_relu3')
    conv3 = _conv(relu3, name + '_conv3', num_filter, (1, 1), (1, 1))
    shortcut = _conv(relu1, name + '_sc', num_filter, (1, 1), (stride, stride)) if project \
        else data
    return mx.sym.elemwise_add(conv3, shortcut, name=name + '_plus'), relu2


def resnet_backbone(data, units=RESNET50_UNITS):
    """Pre-activation ResNet body -> {32: relu1, 16: stage4_unit1_relu2,
    8: stage3_unit1_relu2, 4: stage2_unit1_relu2}."""
    body = _bn(data, 'bn_data', fix_gamma=True)
    body = _conv(body, 'conv0', _STEM_FILTERS, (7, 7), (2, 2))
    body = _relu(_bn(body, 'bn0'), 'relu0')
    body = mx.sym.Pooling(data=body, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type='max',
                          name='pooling0')
    first_unit_relu2 = {}
    for stage, (count, filters, stride) in enumerate(zip(units, _STAGE_FILTERS, _STAGE_STRIDES)):
        for unit in range(count):
            name = 'stage%d_unit%d' % (stage + 1, unit + 1)
            body, relu2 = bottleneck_unit(body, name, filters, stride if unit == 0 else 1,
                                          project=unit == 0)
            if unit == 0:
                first_unit_relu2[stage + 1] = relu2
    body = _relu(_bn(body, 'bn1'), 'relu1')
    return {32: body, 16: first_unit_relu2[4], 8: first_unit_relu2[3], 4: first_unit_relu2[2]}


def resnet_pyramid(cfg, sampled_dcn=False):
    """``(neck, features)`` of the resnet graph: stride -> pyramid map, stride ->
    detection-module output, for the strides of ``cfg``'s layout (``sampled_dcn``: see
    :func:`rcnn.symbol.symbol_common.pyramid_features`)."""
    data = mx.sym.Variable(DATA_NAME)
    backbone = resnet_backbone(data, resnet_units(cfg.RESNET_DEPTH))
    return pyramid_features(backbone, cfg, RESNET_NECK_NAMES, _MODULE_RELATIVE_WIDTH,
                            sampled_dcn)


def resnet_features(cfg, sampled_dcn=False):
    """stride -> detection-module feature of the resnet graph."""
    return resnet_pyramid(cfg, sampled_dcn)[1]


def get_resnet_train(cfg=None, native_dcn=False):
    """Training graph (outputs: :mod:`rcnn.symbol.heads`); ``cfg`` defaults to the resnet
    preset. ``native_dcn``: DCN v2 as MXNet's operator (GPU only; the default
    computes it with sampling operators that train on every device)."""
    return build_train_graph(resnet_pyramid, _MODULE_RELATIVE_WIDTH, graph_config('resnet', cfg),
                             native_dcn)


def get_resnet_test(cfg=None):
    """Deploy graph (outputs: :mod:`rcnn.symbol.heads`); ``cfg`` defaults to the resnet
    preset."""
    return build_deploy_graph(resnet_pyramid, _MODULE_RELATIVE_WIDTH, graph_config('resnet', cfg))
