"""RetinaFace-MobileNet0.25 (``--network mnet``): parameter-compatible with ``mnet.25``.

Backbone: MobileNet-v1 with width multiplier 0.25, named as the Gluon model-zoo export in the
released graph (``mobilenet0_conv{i}``, ``mobilenet0_batchnorm{i}``, ``mobilenet0_relu{i}``):
a 3x3 stride-2 conv with 8 filters, then 13 depthwise-3x3 + pointwise-1x1 pairs, every conv
without bias and followed by BatchNorm (``eps=1e-5``) + ReLU. The features are the last ReLU at
each stride (the original takes the last map of each stride): ``mobilenet0_relu6`` (stride 4,
32 ch; ``RAC_SSH3`` / ``RAC_RETINA``), ``mobilenet0_relu10`` (stride 8, 64 ch),
``mobilenet0_relu22`` (stride 16, 128 ch) and ``mobilenet0_relu26`` (stride 32, 256 ch).

Neck (``rf_*`` names, as released for 32/16/8; the original's ``rf_c0_*`` at stride 4 and
``rf_c4`` at stride 64): ``cfg.HEAD_FILTER_NUM`` (64) channels; SSH modules with a
``HEAD_FILTER_NUM / 2`` (32) 3x3 branch and two 16-channel context branches (64 channels reach
the heads; x ``CONTEXT_FILTER_RATIO``). Input: raw RGB pixels (``cfg.PIXEL_MEANS`` 0, stds 1).
"""
import mxnet as mx

from rcnn.model_layout import DATA_NAME
from rcnn.symbol.neck import BACKBONE_STRIDES
from rcnn.symbol.symbol_common import (NeckNames, build_deploy_graph, build_train_graph,
                                       graph_config, pyramid_features)

__all__ = ['MNET_NECK_NAMES', 'WIDTH_MULTIPLIER', 'mobilenet_backbone', 'mnet_pyramid',
           'mnet_features', 'get_mnet_train', 'get_mnet_test']

WIDTH_MULTIPLIER = 0.25
_PREFIX = 'mobilenet0_'
_BN_EPS = 1e-5
_FIRST_CONV_FILTERS = 32
#: (pointwise output channels at width 1, depthwise stride) of the 13 separable pairs
_SEPARABLE_PAIRS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))

#: detection-module channels / HEAD_FILTER_NUM (before CONTEXT_FILTER_RATIO)
_MODULE_RELATIVE_WIDTH = 1

MNET_NECK_NAMES = NeckNames(
    lateral={32: 'rf_c3_lateral', 16: 'rf_c2_lateral', 8: 'rf_c1_red_conv', 4: 'rf_c0_lateral'},
    upsample={32: 'rf_c3_upsampling', 16: 'rf_c2_upsampling', 8: 'rf_c1_upsampling'},
    aggr={16: 'rf_c2_aggr', 8: 'rf_c1_aggr', 4: 'rf_c0_aggr'},
    ssh={128: 'rf_c5_det', 64: 'rf_c4_det', 32: 'rf_c3_det', 16: 'rf_c2_det', 8: 'rf_c1_det',
         4: 'rf_c0_det'},
    downsample={64: 'rf_c4', 128: 'rf_c5'})


def _conv_bn_relu(data, index, num_filter, kernel, stride, num_group=1):
    pad = (kernel[0] // 2, kernel[1] // 2)
    conv = mx.sym.Convolution(data=data, num_filter=num_filter, kernel=kernel, stride=stride,
                              pad=pad, num_group=num_group, no_bias=True,
                              name='%sconv%d' % (_PREFIX, index))
    norm = mx.sym.BatchNorm(data=conv, eps=_BN_EPS, momentum=0.9, fix_gamma=False,
                            name='%sbatchnorm%d' % (_PREFIX, index))
    return mx.sym.Activation(data=norm, act_type='relu', name='%srelu%d' % (_PREFIX, index))


def mobilenet_backbone(data, multiplier=WIDTH_MULTIPLIER):
    """MobileNet-v1 body -> stride -> last ReLU at that stride (strides 4, 8, 16, 32)."""
    out = _conv_bn_relu(data, 0, int(_FIRST_CONV_FILTERS * multiplier), (3, 3), (2, 2))
    channels = int(_FIRST_CONV_FILTERS * multiplier)
    stride = 2
    last_at_stride = {}
    for pair, (pointwise, dw_stride) in enumerate(_SEPARABLE_PAIRS):
        out = _conv_bn_relu(out, 2 * pair + 1, channels, (3, 3), (dw_stride, dw_stride),
                            num_group=channels)
        stride *= dw_stride
        channels = int(pointwise * multiplier)
        out = _conv_bn_relu(out, 2 * pair + 2, channels, (1, 1), (1, 1))
        last_at_stride[stride] = out
    return {s: last_at_stride[s] for s in BACKBONE_STRIDES}


def mnet_pyramid(cfg, sampled_dcn=False):
    """``(neck, features)`` of the mnet graph: stride -> pyramid map, stride ->
    detection-module output, for the strides of ``cfg``'s layout (``sampled_dcn``: see
    :func:`rcnn.symbol.symbol_common.pyramid_features`)."""
    data = mx.sym.Variable(DATA_NAME)
    return pyramid_features(mobilenet_backbone(data), cfg, MNET_NECK_NAMES,
                            _MODULE_RELATIVE_WIDTH,
                            sampled_dcn)


def mnet_features(cfg, sampled_dcn=False):
    """stride -> detection-module feature of the mnet graph."""
    return mnet_pyramid(cfg, sampled_dcn)[1]


def get_mnet_train(cfg=None, native_dcn=False):
    """Training graph (outputs: :mod:`rcnn.symbol.heads`); ``cfg`` defaults to the mnet
    preset. ``native_dcn``: DCN v2 as MXNet's operator (GPU only; the default
    computes it with sampling operators that train on every device)."""
    return build_train_graph(mnet_pyramid, _MODULE_RELATIVE_WIDTH, graph_config('mnet', cfg),
                             native_dcn)


def get_mnet_test(cfg=None):
    """Deploy graph (outputs: :mod:`rcnn.symbol.heads`); ``cfg`` defaults to the mnet
    preset."""
    return build_deploy_graph(mnet_pyramid, _MODULE_RELATIVE_WIDTH, graph_config('mnet', cfg))
