"""Small deploy checkpoints of any model layout, built with mx.sym for the export tests.

Per stride of the layout: an average pool of a stem convolution down to the stride, a 3x3
convolution (a deformable one with ``USE_DCN`` 1 / 2: offsets, and for v2 a sigmoid mask, from
a convolution of the same input, as the original's context modules compute them), then the
three heads under the names the detector reads (``face_rpn_cls_prob_reshape_stride{s}`` after
the released graphs' Reshape / SoftmaxActivation(channel) / Reshape, ``face_rpn_bbox_pred_
stride{s}``, ``face_rpn_landmark_pred_stride{s}``) with ``A x length`` channels of the layout.
Saved with the recipe training writes (``write_recipe``: the training config included), so the
exporters find the layout from the files alone.
"""
import mxnet as mx
import numpy as np

from rcnn.config import generate_config
from rcnn.model_layout import ModelLayout
from rcnn.recipe import write_recipe
from rcnn.checkpoint.params import save_checkpoint

#: name -> the original's config switches of that layout
LAYOUT_OVERRIDES = {
    'five_strides': {'RPN_ANCHOR_CFG': 'RAC_RETINA'},
    'four_anchors': {'RPN_ANCHOR_CFG': 'RAC_SSH2'},
    'boxes_only': {'FACE_LANDMARK': False},
    'blur_occlusion': {'USE_BLUR': True, 'USE_OCCLUSION': True},
    'dense_anchor': {'DENSE_ANCHOR': True},
    'dcn_v1': {'USE_DCN': 1},
    'dcn_v2': {'USE_DCN': 2},
    # the insightface package's other layout: strides 8..128, one anchor per position
    'strides_8_to_128': {'RPN_ANCHOR_CFG': {
        str(stride): {'SCALES': (stride / 8.0,), 'BASE_SIZE': 16, 'RATIOS': (1.0,),
                      'ALLOWED_BORDER': 9999} for stride in (8, 16, 32, 64, 128)}},
}
STEM_CHANNELS = 8
FEATURE_CHANNELS = 8
KERNEL = 3


def config_of(name):
    cfg, _ = generate_config('mnet', 'retinaface', overrides=LAYOUT_OVERRIDES[name])
    return cfg


def _feature(stem, stride, use_dcn):
    """(B, FEATURE_CHANNELS, H/s, W/s) feature of one stride."""
    name = 'feat_stride%d' % stride
    pooled = mx.sym.Pooling(stem, kernel=(stride, stride), stride=(stride, stride),
                            pool_type='avg', name='pool_stride%d' % stride)
    taps = KERNEL * KERNEL
    # the original's forms: v1 with a bias; v2 without, its mask 2 * sigmoid of the offset
    # convolution's last 9 channels (slice_axis to end=None); BatchNorm after either
    if use_dcn == 1:
        offset = mx.sym.Convolution(pooled, num_filter=2 * taps, kernel=(3, 3), pad=(1, 1),
                                    name=name + '_offset')
        conv = mx.sym.contrib.DeformableConvolution(
            pooled, offset, num_filter=FEATURE_CHANNELS, kernel=(3, 3), pad=(1, 1),
            num_deformable_group=1, no_bias=False, name=name)
    elif use_dcn == 2:
        offset_mask = mx.sym.Convolution(pooled, num_filter=3 * taps, kernel=(3, 3), pad=(1, 1),
                                         name=name + '_offset')
        offset = mx.sym.slice_axis(offset_mask, axis=1, begin=0, end=2 * taps)
        mask = 2 * mx.sym.Activation(mx.sym.slice_axis(offset_mask, axis=1, begin=2 * taps,
                                                       end=None), act_type='sigmoid')
        conv = mx.sym.contrib.ModulatedDeformableConvolution(
            pooled, offset, mask, num_filter=FEATURE_CHANNELS, kernel=(3, 3), pad=(1, 1),
            num_deformable_group=1, no_bias=True, name=name)
    else:
        conv = mx.sym.Convolution(pooled, num_filter=FEATURE_CHANNELS, kernel=(3, 3),
                                  pad=(1, 1), name=name)
    if use_dcn:
        conv = mx.sym.BatchNorm(conv, fix_gamma=False, eps=2e-5, name=name + '_bn')
    return mx.sym.Activation(conv, act_type='relu', name=name + '_relu')


def deploy_symbol(cfg):
    """The deploy graph of ``cfg``'s layout; outputs in the layout's deploy order."""
    layout = ModelLayout.from_config(cfg)
    anchors = layout.num_anchors
    data = mx.sym.Variable('data')
    stem = mx.sym.Activation(mx.sym.Convolution(data, num_filter=STEM_CHANNELS, kernel=(3, 3),
                                                pad=(1, 1), name='stem'),
                             act_type='relu', name='stem_relu')
    outputs = []
    for stride in layout.strides:
        feature = _feature(stem, stride, cfg.USE_DCN)
        cls_name, box_name, landmark_name = ('face_rpn_%s_stride%d' % (kind, stride) for kind in
                                             ('cls_score', 'bbox_pred', 'landmark_pred'))
        score = mx.sym.Convolution(feature, num_filter=2 * anchors, kernel=(1, 1), name=cls_name)
        pairs = mx.sym.Reshape(score, shape=(0, 2, -1, 0),
                               name='face_rpn_cls_score_reshape_stride%d' % stride)
        prob = mx.sym.SoftmaxActivation(pairs, mode='channel',
                                        name='face_rpn_cls_prob_stride%d' % stride)
        outputs.append(mx.sym.Reshape(prob, shape=(0, 2 * anchors, -1, 0),
                                      name='face_rpn_cls_prob_reshape_stride%d' % stride))
        outputs.append(mx.sym.Convolution(feature, num_filter=layout.box_len * anchors,
                                          kernel=(1, 1), name=box_name))
        if layout.landmarks:
            outputs.append(mx.sym.Convolution(feature, num_filter=layout.landmark_len * anchors,
                                              kernel=(1, 1), name=landmark_name))
    return mx.sym.Group(outputs)


def random_params(sym, seed=0, offset_px=1.5):
    """Fan-in scaled weights; the stem divided by 128 so raw pixels (0..255) give activations
    of order 1; offset convolutions giving offsets of about ``offset_px`` pixels; BatchNorm
    gammas in [0.5, 1.5], statistics of order 1. Returns ``(arg_params, aux_params)``."""
    rng = np.random.RandomState(seed)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=(1, 3, 128, 128))
    params = {}
    for name, shape in zip(sym.list_arguments(), arg_shapes):
        if name == 'data':
            continue
        if name.endswith('_weight'):
            value = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
            if name == 'stem_weight':
                value /= 128.0
            if name.endswith('_offset_weight'):
                value *= offset_px
        elif name.endswith('_gamma'):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0, 0.1, shape)
        params[name] = mx.nd.array(value.astype(np.float32))
    aux = {name: mx.nd.array((rng.uniform(0.5, 1.5, shape) if name.endswith('_var')
                              else rng.normal(0, 0.1, shape)).astype(np.float32))
           for name, shape in zip(sym.list_auxiliary_states(), aux_shapes)}
    return params, aux


def save_layout_checkpoint(prefix, name, seed=0):
    """Write the ``name`` layout's checkpoint (epoch 0) and recipe under ``prefix``; returns
    ``(cfg, sym, arg_params, aux_params)``."""
    cfg = config_of(name)
    sym = deploy_symbol(cfg)
    arg_params, aux_params = random_params(sym, seed)
    save_checkpoint(prefix, 0, sym, arg_params, aux_params)
    write_recipe(prefix, cfg, 'mnet', LAYOUT_OVERRIDES[name])
    return cfg, sym, arg_params, aux_params
