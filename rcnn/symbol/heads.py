"""The 1x1 heads of each stride, the training losses and the two output groups.

Everything here takes the layout from ``ModelLayout.from_config(cfg)``: strides, ``A``
anchors per position, ``V_box`` (4, or 5 with ``USE_BLUR``) and ``V_lmk`` (10, 15 with
``USE_OCCLUSION``, none without ``FACE_LANDMARK``) values per anchor.

Deploy group, per stride (coarse to fine): ``face_rpn_cls_prob_reshape_stride{s}``
(B, 2A, H, W; channels A..2A-1 are face probabilities), ``face_rpn_bbox_pred_stride{s}``
(B, V_box*A, H, W) [, ``face_rpn_landmark_pred_stride{s}`` (B, V_lmk*A, H, W)]. The class
softmax is ``softmax(axis=1)`` on the scores reshaped to ``(0, 2, -1, 0)``: the same function
as the released graph's ``SoftmaxActivation(mode='channel')``, exportable to ONNX as is.

Training inputs per stride (anchor-major labels, index ``a*H*W + p``; target channel
``a*V + k`` at position ``p``): ``face_label_stride{s}`` (B, A*H*W), ``face_bbox_target`` /
``face_bbox_weight_stride{s}`` (B, V_box*A, H*W) [, ``face_landmark_target`` /
``face_landmark_weight_stride{s}`` (B, V_lmk*A, H*W)], each behind ``BlockGrad``.

Training outputs per stride: ``face_rpn_cls_prob`` (SoftmaxOutput, ignore -1, 'valid'),
``face_rpn_label`` (OHEM-sampled, BlockGrad), ``face_rpn_bbox_loss`` (MakeLoss(smooth_l1)),
``face_rpn_bbox_weight`` (BlockGrad) [, ``face_rpn_landmark_loss``, ``face_rpn_landmark_weight``]:
6 per stride, 4 without landmarks. Loss grad scales: :mod:`rcnn.symbol.loss_scale`.

Class heads (``USE_MAXOUT``): at the finest stride with ``USE_MAXOUT >= 1`` each anchor's
background score is the max of 3 scores (``..._anchor{a}_bg``, 3 ch) and its face score one
(``..._anchor{a}_fg``); at the other strides with ``USE_MAXOUT = 2`` one background and the max
of 3 face scores. The per-anchor scores are concatenated background first
(``bg_0..bg_{A-1}, fg_0..fg_{A-1}``), the channel order the (0, 2, -1) reshape and the decoder
read. ``MAXOUT_ORIGINAL_ORDER`` concatenates them as the original does, per anchor
(``bg_0, fg_0, bg_1, fg_1, ...``): under that reshape the softmax of anchor ``j`` then compares
concatenated channels ``j`` and ``A + j``, i.e. scores of anchors ``j // 2`` and ``(A + j) // 2``
(for A = 2: ``bg_0`` against ``bg_1`` and ``fg_0`` against ``fg_1``).

Shared heads: ``SHARE_WEIGHT_BBOX`` gives every stride's class and box convolutions the
parameters ``face_rpn_cls_score_share_*`` / ``face_rpn_bbox_pred_share_*``,
``SHARE_WEIGHT_LANDMARK`` the landmark ones ``face_rpn_landmark_pred_share_*`` (the
convolutions keep their per-stride names).
"""
from collections import namedtuple

import mxnet as mx

from rcnn.config import OHEM_IN_GRAPH, OHEM_OFF
from rcnn.model_layout import (NUM_CLASSES, ModelLayout, label_name)
from rcnn.symbol.layers import bias_var, conv, weight_var
from rcnn.symbol.loss_scale import (COUNT_EPSILON, LR_MODE_COUNT_NORMALISED,
                                    count_normalised_grad_scales, loss_grad_scales)
from rcnn.symbol.ohem import ohem_symbol

__all__ = ['MAXOUT_OFF', 'MAXOUT_BACKGROUND', 'MAXOUT_FACE', 'MAXOUT_CANDIDATES',
           'SHARED_HEAD_NAMES', 'HeadParams', 'StrideTrainOutputs', 'maxout_form',
           'head_params', 'cls_score_head', 'stride_heads', 'smooth_l1_loss',
           'stride_train_outputs', 'train_outputs', 'deploy_outputs']

#: class-head forms of one stride: plain, max-out background, max-out face
MAXOUT_OFF, MAXOUT_BACKGROUND, MAXOUT_FACE = 0, 1, 2
#: scores whose max is taken in a max-out class head
MAXOUT_CANDIDATES = 3
#: parameter prefixes of the shared heads (class, box, landmark)
SHARED_HEAD_NAMES = ('face_rpn_cls_score_share', 'face_rpn_bbox_pred_share',
                     'face_rpn_landmark_pred_share')
_PREFIX = 'face'

#: (weight, bias) variables of the class, box and landmark heads shared by every stride;
#: None where each stride has its own
HeadParams = namedtuple('HeadParams', ['cls', 'bbox', 'landmark'])

#: what one stride's training heads produce. ``outputs``: the training outputs of the stride
#: (module docstring); ``feature``: the detection-module map the heads read; ``cls_score``
#: (B, 2, A*H*W), ``bbox_pred`` (B, V_box*A, H*W), ``landmark_pred`` (B, V_lmk*A, H*W) or None;
#: ``label_input``: the label input (B, A*H*W); ``label``: the sampled labels;
#: ``bbox_target``; ``anchor_weight`` (B, A*H*W) and ``positive_count`` (B, 1) of the OHEM op,
#: None without it
#: ``raw_heads``: the three 1x1 convolution outputs (B, 2A / V_box*A / V_lmk*A, H, W; the last
#: None without landmarks), what the cascade stages read
StrideTrainOutputs = namedtuple('StrideTrainOutputs', [
    'outputs', 'feature', 'cls_score', 'bbox_pred', 'landmark_pred', 'label_input', 'label',
    'bbox_target', 'anchor_weight', 'positive_count', 'raw_heads'])


def _stride_name(kind, stride):
    return '%s_%s_stride%d' % (_PREFIX, kind, stride)


def maxout_form(cfg, stride, layout):
    """The class-head form of ``stride``: MAXOUT_BACKGROUND at the finest stride with
    ``USE_MAXOUT >= 1``, MAXOUT_FACE at the others with ``USE_MAXOUT = 2``, else MAXOUT_OFF."""
    use_maxout = int(cfg.USE_MAXOUT)
    finest = stride == layout.strides[-1]
    if use_maxout >= 1 and finest:
        return MAXOUT_BACKGROUND
    if use_maxout >= 2 and not finest:
        return MAXOUT_FACE
    return MAXOUT_OFF


def _shared(name):
    return weight_var(name), bias_var(name, 0.0)


def head_params(cfg):
    """:class:`HeadParams` of ``cfg`` (``SHARE_WEIGHT_BBOX``, ``SHARE_WEIGHT_LANDMARK``)."""
    share_box = bool(cfg.SHARE_WEIGHT_BBOX)
    share_landmark = bool(cfg.SHARE_WEIGHT_LANDMARK)
    cls_name, bbox_name, landmark_name = SHARED_HEAD_NAMES
    return HeadParams(_shared(cls_name) if share_box else None,
                      _shared(bbox_name) if share_box else None,
                      _shared(landmark_name) if share_landmark else None)


def _head_conv(feature, name, num_filter, shared):
    weight, bias = shared if shared is not None else (None, None)
    return conv(feature, name, num_filter, (1, 1), weight=weight, bias=bias)


def cls_score_head(feature, stride, num_anchors, form=MAXOUT_OFF, shared=None,
                   original_order=False):
    """Class scores of one stride (B, 2A, H, W): channel a background, A + a face of anchor a.

    ``form`` is :func:`maxout_form`'s; ``shared`` a (weight, bias) pair for the plain form.
    ``original_order`` (max-out forms only): channel 2a background, 2a + 1 face of anchor a,
    the original's concatenation (module docstring).
    """
    name = _stride_name('rpn_cls_score', stride)
    if form == MAXOUT_OFF:
        return _head_conv(feature, name, NUM_CLASSES * num_anchors, shared)
    background, face = [], []
    for anchor in range(num_anchors):
        bg_count = MAXOUT_CANDIDATES if form == MAXOUT_BACKGROUND else 1
        fg_count = 1 if form == MAXOUT_BACKGROUND else MAXOUT_CANDIDATES
        bg = _head_conv(feature, '%s_anchor%d_bg' % (name, anchor), bg_count, None)
        fg = _head_conv(feature, '%s_anchor%d_fg' % (name, anchor), fg_count, None)
        if bg_count > 1:
            bg = mx.sym.max(bg, axis=1, keepdims=True, name='%s_anchor%d_bg_max' % (name, anchor))
        if fg_count > 1:
            fg = mx.sym.max(fg, axis=1, keepdims=True, name='%s_anchor%d_fg_max' % (name, anchor))
        background.append(bg)
        face.append(fg)
    if original_order:
        scores = [score for pair in zip(background, face) for score in pair]
    else:
        scores = background + face
    return mx.sym.Concat(*scores, dim=1, name=name)


def stride_heads(feature, stride, cfg, layout, params):
    """``(cls_score (B, 2A, H, W), bbox_pred (B, V_box*A, H, W), landmark_pred
    (B, V_lmk*A, H, W) or None)`` of one stride."""
    num_anchors = layout.num_anchors
    cls_score = cls_score_head(feature, stride, num_anchors, maxout_form(cfg, stride, layout),
                               params.cls, bool(cfg.MAXOUT_ORIGINAL_ORDER))
    bbox_pred = _head_conv(feature, _stride_name('rpn_bbox_pred', stride),
                           layout.box_len * num_anchors, params.bbox)
    landmark_pred = None
    if layout.landmarks:
        landmark_pred = _head_conv(feature, _stride_name('rpn_landmark_pred', stride),
                                   layout.landmark_len * num_anchors, params.landmark)
    return cls_score, bbox_pred, landmark_pred


def _cascade_stages(cfg, layout, necks, head_module):
    """``(necks, head_module)`` the cascade stages need (:mod:`rcnn.symbol.cascade`), or None
    without ``CASCADE``."""
    if not layout.cascade:
        return None
    if necks is None or head_module is None:
        raise ValueError('cfg.CASCADE=%d needs the neck levels and the detection module of '
                         'the network (necks=, head_module=)' % layout.cascade)
    return necks, head_module


def deploy_outputs(features, cfg, layout=None, necks=None, head_module=None):
    """The deploy group (module docstring) from stride -> detection-module feature; with
    ``cfg.CASCADE`` each stride's cascade outputs follow its own (``necks``: stride -> neck
    level, ``head_module``: ``f(data, name)`` the detection module, see
    :mod:`rcnn.symbol.cascade`)."""
    from rcnn.symbol.cascade import FirstStage, cascade_deploy_outputs
    layout = layout or ModelLayout.from_config(cfg)
    cascade = _cascade_stages(cfg, layout, necks, head_module)
    params = head_params(cfg)
    outputs = []
    for stride in layout.strides:
        raw_heads = stride_heads(features[stride], stride, cfg, layout, params)
        cls_score, bbox_pred, landmark_pred = raw_heads
        pairs = mx.sym.Reshape(cls_score, shape=(0, 2, -1, 0),
                               name=_stride_name('rpn_cls_score_reshape', stride))
        prob = mx.sym.softmax(pairs, axis=1, name=_stride_name('rpn_cls_prob', stride))
        prob = mx.sym.Reshape(prob, shape=(0, 2 * layout.num_anchors, -1, 0),
                              name=_stride_name('rpn_cls_prob_reshape', stride))
        outputs.extend([prob, bbox_pred] + ([landmark_pred] if layout.landmarks else []))
        if cascade is not None:
            first = FirstStage(cascade[0][stride], features[stride], *raw_heads,
                               head_module=cascade[1])
            outputs += cascade_deploy_outputs(first, stride, cfg)
    return mx.sym.Group(outputs)


def _label_inputs(stride, layout):
    """kind -> label variable of one stride, each behind BlockGrad."""
    return {kind: mx.sym.BlockGrad(mx.sym.Variable(label_name(kind, stride)),
                                   name=label_name(kind, stride) + '_nograd')
            for kind in layout.label_kinds}


def _apply_anchor_weight(weight, anchor_weight, num_anchors, values, name):
    """(B, A*V, HW) weights times the (B, A*HW) anchor-major anchor weight of their anchor."""
    per_anchor = mx.sym.Reshape(weight, shape=(0, num_anchors, values, -1))
    anchor = mx.sym.Reshape(anchor_weight, shape=(0, num_anchors, 1, -1))
    return mx.sym.Reshape(mx.sym.broadcast_mul(per_anchor, anchor),
                          shape=(0, num_anchors * values, -1), name=name)


def smooth_l1_loss(pred, target, weight, grad_scale, name, normaliser=None):
    """``MakeLoss(smooth_l1((pred - target) * weight, scalar=3) [/ normaliser])``.

    Per element, ``x = (pred - target) * weight``: ``4.5 x^2`` if ``|x| < 1/9`` else
    ``|x| - 1/18``; the gradient reaching ``pred`` is ``grad_scale * weight * d/dx``, divided
    by ``normaliser`` (a (1,) symbol, no gradient) when one is given (``LR_MODE = 1``).
    """
    diff = (pred - target) * weight
    loss = mx.sym.smooth_l1(data=diff, scalar=3.0, name=name + '_')
    if normaliser is not None:
        loss = mx.sym.broadcast_div(loss, normaliser, name=name + '_normalised')
    return mx.sym.MakeLoss(data=loss, grad_scale=grad_scale, name=name)


def _positive_count(label, count, name):
    """(1,) sum over the batch of the kept positives + COUNT_EPSILON, no gradient: the OHEM
    op's per-image count, or the positive labels when OHEM is off."""
    total = mx.sym.sum(count) if count is not None else mx.sym.sum(label > 0)
    return mx.sym.BlockGrad(total + COUNT_EPSILON, name=name)


def stride_train_outputs(feature, stride, cfg, lr_mult=1.0, layout=None, params=None):
    """The training heads and losses of one stride -> :class:`StrideTrainOutputs`.

    Args:
        feature: the stride's detection-module map (B, C, H, W).
        stride: the feature stride.
        cfg: the (derived) config.
        lr_mult: loss weight of these heads (1 for the face heads).
        layout: ``ModelLayout.from_config(cfg)`` (computed when None).
        params: :func:`head_params` of the graph (shared heads; computed when None).
    """
    layout = layout or ModelLayout.from_config(cfg)
    params = params or head_params(cfg)
    num_anchors = layout.num_anchors
    labels = _label_inputs(stride, layout)
    raw_heads = stride_heads(feature, stride, cfg, layout, params)
    cls_score, bbox_pred, landmark_pred = raw_heads
    cls_score = mx.sym.Reshape(cls_score, shape=(0, 2, -1),
                               name=_stride_name('rpn_cls_score_reshape', stride))
    bbox_pred = mx.sym.Reshape(bbox_pred, shape=(0, 0, -1),
                               name=_stride_name('rpn_bbox_pred_reshape', stride))
    if landmark_pred is not None:
        landmark_pred = mx.sym.Reshape(landmark_pred, shape=(0, 0, -1),
                                       name=_stride_name('rpn_landmark_pred_reshape', stride))

    label, bbox_weight = labels['label'], labels['bbox_weight']
    landmark_weight = labels.get('landmark_weight')
    anchor_weight = count = None
    ohem = int(cfg.TRAIN.RPN_ENABLE_OHEM)
    if ohem >= OHEM_IN_GRAPH:
        label, anchor_weight, count = ohem_symbol(cls_score, label, cfg,
                                                  name=_stride_name('rpn_ohem', stride),
                                                  positive_count=True)
        bbox_weight = _apply_anchor_weight(bbox_weight, anchor_weight, num_anchors,
                                           layout.box_len,
                                           'face_bbox_weight_ohem_stride%d' % stride)
        if landmark_weight is not None:
            landmark_weight = _apply_anchor_weight(landmark_weight, anchor_weight, num_anchors,
                                                   layout.landmark_len,
                                                   'face_landmark_weight_ohem_stride%d' % stride)
    elif ohem != OHEM_OFF:
        raise ValueError('cfg.TRAIN.RPN_ENABLE_OHEM=%d is not supported: 0 (labels as assigned) '
                         'or >= 2 (OHEM in the graph)' % ohem)

    names = {kind: '%s_stride%d' % (kind, stride) for kind in layout.train_output_kinds}
    normaliser = None
    if int(cfg.LR_MODE) == LR_MODE_COUNT_NORMALISED:
        box_scale, landmark_scale = count_normalised_grad_scales(cfg, lr_mult)
        normaliser = _positive_count(labels['label'], count,
                                     _stride_name('rpn_positive_count', stride))
    else:
        box_scale, landmark_scale = loss_grad_scales(cfg, lr_mult)
    cls_prob = mx.sym.SoftmaxOutput(data=cls_score, label=label, multi_output=True,
                                    normalization='valid', use_ignore=True, ignore_label=-1,
                                    grad_scale=lr_mult, name=names['face_rpn_cls_prob'])
    outputs = [cls_prob,
               mx.sym.BlockGrad(label, name=names['face_rpn_label']),
               smooth_l1_loss(bbox_pred, labels['bbox_target'], bbox_weight, box_scale,
                              names['face_rpn_bbox_loss'], normaliser),
               mx.sym.BlockGrad(bbox_weight, name=names['face_rpn_bbox_weight'])]
    if layout.landmarks:
        outputs += [smooth_l1_loss(landmark_pred, labels['landmark_target'], landmark_weight,
                                   landmark_scale, names['face_rpn_landmark_loss'], normaliser),
                    mx.sym.BlockGrad(landmark_weight, name=names['face_rpn_landmark_weight'])]
    return StrideTrainOutputs(outputs, feature, cls_score, bbox_pred, landmark_pred,
                              labels['label'], label, labels['bbox_target'], anchor_weight, count,
                              raw_heads)


def train_outputs(features, cfg, lr_mult=1.0, layout=None, necks=None, head_module=None):
    """The training group (module docstring) from stride -> detection-module feature; with
    ``cfg.CASCADE`` the cascade outputs of every stride follow the first stage's, in
    :meth:`rcnn.model_layout.ModelLayout.train_output_names` order (``necks``,
    ``head_module``: see :func:`deploy_outputs`)."""
    from rcnn.symbol.cascade import FirstStage, cascade_train_outputs, gt_boxes_input
    layout = layout or ModelLayout.from_config(cfg)
    cascade = _cascade_stages(cfg, layout, necks, head_module)
    gt_boxes = gt_boxes_input(cfg) if cascade is not None else None
    params = head_params(cfg)
    outputs, cascade_outputs = [], []
    for stride in layout.strides:
        stage = stride_train_outputs(features[stride], stride, cfg, lr_mult, layout, params)
        outputs.extend(stage.outputs)
        if cascade is not None:
            first = FirstStage(cascade[0][stride], stage.feature, *stage.raw_heads,
                               head_module=cascade[1])
            cascade_outputs += cascade_train_outputs(first, stride, cfg, gt_boxes, lr_mult)
    return mx.sym.Group(outputs + cascade_outputs)
