"""The feature pyramid over the strides of a layout, as the original builds it.

The backbone gives maps at strides 4, 8, 16 and 32 (:data:`BACKBONE_STRIDES`). The top-down
pyramid starts at stride 32 with a 1x1 lateral conv; each finer level of the layout (16, 8 and,
for ``RAC_SSH3`` / ``RAC_RETINA``, 4) adds its own 1x1 lateral conv to the coarser level
upsampled x2 (nearest) and cropped to the lateral's size, then applies a 3x3 aggregation conv.
Coarser levels than 32 (``RAC_RETINA``'s 64) are a 3x3 stride-2 conv of the next finer
level's pyramid map (stride 64 from the stride-32 lateral). Every conv is conv + bias +
BatchNorm + ReLU, bias weight decay x1 (as released); with ``USE_DCN = 2`` the aggregation
convs are modulated-deformable (the original turns every 3x3 stride-1 conv of this code into
one), the laterals and the stride-2 convs stay plain.
"""
from collections import namedtuple

import mxnet as mx

from rcnn.symbol.layers import conv_bn

__all__ = ['BACKBONE_STRIDES', 'TOP_DOWN_START', 'NeckNames', 'check_pyramid_strides',
           'fpn_neck']

#: strides at which both backbones provide a feature map
BACKBONE_STRIDES = (32, 16, 8, 4)
#: the top-down pathway starts at this stride (the original's ``c3``)
TOP_DOWN_START = 32
_MAX_STRIDE = 128

#: per-stride layer names of a neck: ``lateral`` (1x1 conv of a backbone map), ``upsample``
#: (keyed by the stride upsampled into the next finer one), ``aggr`` (3x3 conv after the sum,
#: every stride finer than 32), ``ssh`` (the detection module), ``downsample`` (3x3 stride-2
#: conv of strides coarser than 32)
NeckNames = namedtuple('NeckNames', ['lateral', 'upsample', 'aggr', 'ssh', 'downsample'])


def check_pyramid_strides(strides):
    """Raise ValueError unless ``strides`` (coarse to fine) is a chain of factor-2 strides
    containing 32, within 4..128 (the levels the original's pyramid can make)."""
    strides = tuple(int(s) for s in strides)
    chain = all(coarse == 2 * fine for coarse, fine in zip(strides, strides[1:]))
    if not chain or TOP_DOWN_START not in strides or strides[-1] < min(BACKBONE_STRIDES) \
            or strides[0] > _MAX_STRIDE:
        raise ValueError('cfg.RPN_FEAT_STRIDE must be consecutive factor-2 strides containing '
                         '%d, between %d and %d (the anchor tables RAC_SSH, RAC_SSH2, RAC_SSH3, '
                         'RAC_RETINA), got %s' % (TOP_DOWN_START, min(BACKBONE_STRIDES),
                                                  _MAX_STRIDE, list(strides)))
    return strides


def fpn_neck(backbone_features, num_filter, names, strides, dcn=None):
    """Pyramid maps of ``strides``.

    Args:
        backbone_features: stride -> backbone symbol (at least the strides 32 and finer of
            ``strides``).
        num_filter: neck channels.
        names: :class:`NeckNames`.
        strides: the layout's strides, coarse to fine (:func:`check_pyramid_strides`).
        dcn: the graph's :class:`rcnn.symbol.deformable.DeformableMode` (``cfg.USE_DCN``).
    Returns:
        stride -> neck symbol (``num_filter`` channels) for every stride of ``strides``.
    """
    strides = check_pyramid_strides(strides)
    neck = {}
    coarser = None
    for stride in (s for s in strides if s <= TOP_DOWN_START):
        lateral = conv_bn(backbone_features[stride], names.lateral[stride], num_filter, (1, 1),
                          bias_wd_mult=1.0)
        if coarser is None:
            neck[stride] = lateral
        else:
            up_name = names.upsample[2 * stride]
            upsampled = mx.sym.UpSampling(coarser, scale=2, sample_type='nearest', num_args=1,
                                          workspace=512, name=up_name)
            cropped = mx.sym.Crop(upsampled, lateral, num_args=2, name=up_name + '_crop')
            merged = mx.sym.elemwise_add(lateral, cropped, name=names.aggr[stride] + '_sum')
            neck[stride] = conv_bn(merged, names.aggr[stride], num_filter, (3, 3),
                                   bias_wd_mult=1.0, dcn=dcn)
        coarser = neck[stride]
    for stride in sorted(s for s in strides if s > TOP_DOWN_START):
        neck[stride] = conv_bn(neck[stride // 2], names.downsample[stride], num_filter, (3, 3),
                               stride=2, bias_wd_mult=1.0)
    return neck
