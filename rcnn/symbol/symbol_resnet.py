"""RetinaFace-ResNet50 (``--network resnet``): parameter-compatible with the released ``R50``.

Backbone: the MXNet model-zoo pre-activation ResNet-50 (``bn_data`` with fixed gamma,
``conv0`` 7x7/2, ``bn0``, ``relu0``, 3x3/2 max pool, ``stage1..4`` of 3/4/6/3 bottleneck units,
final ``bn1`` + ``relu1``; BatchNorm ``eps=2e-5``). A unit is
``bn1 -> relu1 -> conv1 (1x1, F/4) -> bn2 -> relu2 -> conv2 (3x3, stride) -> bn3 -> relu3 ->
conv3 (1x1, F)`` plus the shortcut (the input, or a strided 1x1 ``sc`` conv of ``relu1`` in a
unit's first block). Features, where the released graph takes them: ``relu1`` (stride 32,
2048 ch), ``stage4_unit1_relu2`` (stride 16, 512 ch) and ``stage3_unit1_relu2`` (stride 8,
256 ch), i.e. the ReLU just before the strided 3x3 conv of the first unit of stages 4 and 3.

Neck (``ssh_*`` names, as released): ``cfg.HEAD_FILTER_NUM`` (256) channels; the SSH modules
are twice as wide relative to the neck as mnet's: a 256-channel 3x3 branch and two
128-channel context branches, so 512 channels reach the heads.
"""
import mxnet as mx

from rcnn.model_layout import DATA_NAME
from rcnn.symbol.symbol_common import (NeckNames, graph_config, deploy_outputs, fpn_neck,
                                       ssh_features, ssh_head_module, train_outputs)

__all__ = ['RESNET_NECK_NAMES', 'RESNET50_UNITS', 'resnet_backbone', 'resnet_features',
           'get_resnet_train', 'get_resnet_test']

RESNET50_UNITS = (3, 4, 6, 3)
_STAGE_FILTERS = (256, 512, 1024, 2048)
_STAGE_STRIDES = (1, 2, 2, 2)
_STEM_FILTERS = 64
_BN_EPS = 2e-5
_BN_MOMENTUM = 0.9

RESNET_NECK_NAMES = NeckNames(
    lateral={32: 'ssh_c3_lateral', 16: 'ssh_c2_lateral', 8: 'ssh_m1_red_conv'},
    upsample={32: 'ssh_c3_up', 16: 'ssh_m2_red_up'},
    aggr={16: 'ssh_c2_aggr', 8: 'ssh_c1_aggr'},
    ssh={32: 'ssh_m3_det', 16: 'ssh_m2_det', 8: 'ssh_m1_det'})


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
    """Pre-activation ResNet body -> {32: relu1, 16: stage4_unit1_relu2, 8: stage3_unit1_relu2}."""
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
    return {32: body, 16: first_unit_relu2[4], 8: first_unit_relu2[3]}


def resnet_pyramid(cfg):
    """``(stride -> neck level, stride -> SSH feature, the SSH module builder)`` of the resnet
    graph (the cascade stages read all three)."""
    data = mx.sym.Variable(DATA_NAME)
    neck_filters = int(cfg.HEAD_FILTER_NUM)
    neck = fpn_neck(resnet_backbone(data), neck_filters, RESNET_NECK_NAMES)
    ssh = ssh_features(neck, neck_filters, RESNET_NECK_NAMES)
    return neck, ssh, ssh_head_module(neck_filters)


def resnet_features(cfg):
    """stride -> SSH feature of the resnet graph."""
    return resnet_pyramid(cfg)[1]


def get_resnet_train(cfg=None):
    """Training graph (18 outputs, see :mod:`rcnn.symbol.symbol_common`); ``cfg`` defaults to
    the resnet preset."""
    cfg = graph_config('resnet', cfg)
    neck, features, head_module = resnet_pyramid(cfg)
    return train_outputs(features, cfg, necks=neck, head_module=head_module)


def get_resnet_test(cfg=None):
    """Deploy graph (9 outputs); ``cfg`` defaults to the resnet preset."""
    cfg = graph_config('resnet', cfg)
    neck, features, head_module = resnet_pyramid(cfg)
    return deploy_outputs(features, cfg, necks=neck, head_module=head_module)
