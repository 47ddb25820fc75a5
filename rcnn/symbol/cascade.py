"""Cascade stages: second-stage heads per stride, trained on refined anchors (``CASCADE``).

The original (insightface master ``rcnn/symbol/symbol_common.py``, ``get_out``) adds, for
``CASCADE = n > 0``, ``n`` stages after each stride's first heads. Per stride:

* the stage input ``body`` (``CASCADE_MODE``):

  ====  ===================================================================================
  0     the first heads' feature (the stride's detection-module output)
  1     a new detection module on the neck level, named ``RF_head_stride{s}_cas``
  2     a new detection module on neck level + first heads' feature (they must have the same
        channels)
  3     a new detection module on the neck level, concatenated with the first stage's raw
        class scores, box deltas (and landmark deltas) on the channel axis
  ====  ===================================================================================

* per stage ``k``: a 1x1 class-score conv ``face_rpn_cls_score_stride{s}_cas{k}`` (2A filters,
  always built: the refine operator samples with its scores), the refine operator
  (:mod:`rcnn.symbol.cascade_refine`: labels and box targets of the refined anchors, against the
  ``gt_boxes`` input); with ``s`` in ``CASCADE_CLS_STRIDES`` a ``SoftmaxOutput``
  ``face_rpn_cls_prob_stride{s}_cas{k}`` (ignore -1, 'valid' normalisation, grad scale
  ``lr_mult``) and the sampled labels; with ``s`` in ``CASCADE_BBOX_STRIDES`` a 1x1 box conv
  ``face_rpn_bbox_pred_stride{s}_cas{k}`` (box_len * A filters), its smooth-L1 loss
  ``face_rpn_bbox_loss_stride{s}_cas{k}`` and the box weights.

Every stage reads the same ``body`` and refines the *first* stage's boxes (the original passes
the first stage's deltas to every stage), so stages are parallel heads, not a chain.

Grad scale of a stage's box loss: ``LR_MODE`` 0 -- the first stage's box scale
(:func:`rcnn.symbol.loss_scale.loss_grad_scales`; master's ``0.25 * lr_mult * B / N`` with
``TRAIN.LOSS_SCALE = 'master'``); ``LR_MODE`` 1 -- ``0.5 * lr_mult`` on the loss divided by the
batch's kept positives + 0.01.

Outputs of one stride, per stage in order (names from
:meth:`rcnn.model_layout.ModelLayout.cascade_train_output_names` /
``stride_deploy_output_names``):

    training: [cls_prob (B, 2, A*H*W), label (B, A*H*W)] if a class stride,
              [bbox_loss (B, L*A, H*W), bbox_weight (B, L*A, H*W)] if a box stride
    deploy:   [cls_prob_reshape (B, 2A, H, W)] if a class stride,
              [bbox_pred (B, L*A, H, W)] if a box stride

The deploy graph lists them right after the stride's first-stage outputs, as the original's
``save_model`` (its detector reads them there); the training graph lists every stride's after
all first-stage outputs (:meth:`ModelLayout.train_output_names`).

The graph builders call :func:`cascade_train_outputs` / :func:`cascade_deploy_outputs` at the
end of each stride with a :class:`FirstStage`.
"""
import json
from collections import namedtuple

import mxnet as mx

from rcnn.model_layout import GT_BOXES_NAME, ModelLayout, cascade_name
from rcnn.processing.generate_anchor import generate_anchors_fpn
from rcnn.processing.sampler import OHEMSampler
from rcnn.symbol import cascade_refine
from rcnn.symbol.loss_scale import loss_grad_scales

__all__ = ['FirstStage', 'CASCADE_MODULE_NAME', 'gt_boxes_input', 'cascade_body',
           'cascade_train_outputs', 'cascade_deploy_outputs']

#: name of a stride's cascade detection module (modes 1-3), as the original's
#: ``'%s_head_stride%d_cas' % (PREFIX, stride)`` with ``PREFIX = 'RF'``
CASCADE_MODULE_NAME = 'RF_head_stride%d_cas'
#: smoothing of the positive count a LR_MODE 1 box loss is divided by (the original's)
_POS_COUNT_EPS = 0.01
_WEIGHT_SIGMA = 0.01
#: input side used to compare channel counts at graph-build time (any multiple of 64 works)
_PROBE_SIDE = 128

#: what the cascade of one stride is built from.
#:   neck: the neck level (B, C, H, W); head: the first heads' feature (the detection module's
#:   output); cls_score, bbox_pred, landmark_pred: the first stage's raw 1x1 convolution
#:   outputs (B, 2A / L*A / P*A, H, W; landmark_pred None without landmarks);
#:   head_module: ``f(data, name) -> symbol``, the detection module the first heads sit on
#:   (the cascade's own module in modes 1-3 is built with it).
FirstStage = namedtuple('FirstStage', ['neck', 'head', 'cls_score', 'bbox_pred',
                                       'landmark_pred', 'head_module'])


def gt_boxes_input(cfg):
    """The ``gt_boxes`` label variable (one per graph, shared by the strides), or None
    without cascade."""
    if int(cfg.CASCADE) <= 0:
        return None
    return mx.sym.Variable(GT_BOXES_NAME)


def _conv1x1(body, name, num_filter):
    """1x1 conv (weight ``Normal(0.01)`` lr x1, bias 0 lr x2 no wd, as the original's
    ``conv_only``) over the channel concatenation of ``body``, a list of (symbol, channels).

    Several parts (mode 3) are not concatenated: the conv is the sum of each part's conv with
    its input-channel slice of the one weight, the same function and the same parameter
    (2A or L*A, sum of channels, 1, 1) as the original's conv of the concatenation. MXNet
    1.9.1's MKLDNN ``Concat`` backward dies with SIGFPE on some of these channel splits.
    """
    channels = sum(c for _, c in body) if len(body) > 1 else None
    weight = mx.sym.Variable(name + '_weight', init=mx.init.Normal(_WEIGHT_SIGMA), lr_mult=1.0,
                             shape=None if channels is None else (num_filter, channels, 1, 1))
    bias = mx.sym.Variable(name + '_bias', init=mx.init.Constant(0.0), lr_mult=2.0,
                           wd_mult=0.0, shape=(num_filter,))
    if len(body) == 1:
        return mx.sym.Convolution(data=body[0][0], weight=weight, bias=bias, kernel=(1, 1),
                                  pad=(0, 0), stride=(1, 1), num_filter=num_filter, name=name)
    terms, begin = [], 0
    for index, (part, part_channels) in enumerate(body):
        part_name = '%s_part%d' % (name, index)
        part_weight = mx.sym.slice_axis(weight, axis=1, begin=begin, end=begin + part_channels,
                                        name=part_name + '_weight_slice')
        terms.append(mx.sym.Convolution(data=part, weight=part_weight, no_bias=True,
                                        kernel=(1, 1), pad=(0, 0), stride=(1, 1),
                                        num_filter=num_filter, name=part_name))
        begin += part_channels
    return mx.sym.broadcast_add(mx.sym.add_n(*terms, name=name + '_sum'),
                                mx.sym.reshape(bias, shape=(1, -1, 1, 1)), name=name)


def _channels(symbol):
    """Output channels of a feature symbol (shape inference on a small probe input)."""
    _, shapes, _ = symbol.infer_shape_partial(data=(1, 3, _PROBE_SIDE, _PROBE_SIDE))
    return int(shapes[0][1])


def cascade_body(first, stride, mode):
    """What the cascade heads of ``stride`` read (``CASCADE_MODE``, module docstring): a list
    of (symbol, channels) whose channel concatenation is the original's ``body``."""
    mode = int(mode)
    if mode == 0:
        return [(first.head, None)]
    name = CASCADE_MODULE_NAME % stride
    if mode == 1:
        return [(first.head_module(first.neck, name), None)]
    if mode == 2:
        neck_channels, head_channels = _channels(first.neck), _channels(first.head)
        if neck_channels != head_channels:
            raise ValueError('CASCADE_MODE=2 adds the neck level (%d channels) to the detection '
                             'module output (%d channels) at stride %d: they must be equal '
                             '(choose CASCADE_MODE 0, 1 or 3 for this network)'
                             % (neck_channels, head_channels, stride))
        merged = mx.sym.elemwise_add(first.neck, first.head, name=name + '_input')
        return [(first.head_module(merged, name), None)]
    if mode == 3:
        parts = [first.head_module(first.neck, name), first.cls_score, first.bbox_pred]
        if first.landmark_pred is not None:
            parts.append(first.landmark_pred)
        return [(part, _channels(part)) for part in parts]
    raise ValueError('CASCADE_MODE must be 0, 1, 2 or 3, got %r' % mode)


def _base_anchors(cfg, stride):
    strides = [int(s) for s in cfg.RPN_FEAT_STRIDE]
    return generate_anchors_fpn(dense_anchor=bool(cfg.DENSE_ANCHOR),
                                cfg=cfg)[strides.index(int(stride))]


def _refine(cls_score, bbox_pred_t0, gt_boxes, stride, stage, cfg):
    """The refine operator of one stage: ``(label, bbox_target, bbox_weight, pos_count)``."""
    # a bad setting fails here, not in the first batch
    cascade_refine.CascadeRefiner(_base_anchors(cfg, stride), stride, cfg.TRAIN.CASCADE_OVERLAP,
                                  cfg.TRAIN.BBOX_STDS, OHEMSampler.from_config(cfg))
    name = cascade_name('face_rpn_refine', stride, stage)
    op = mx.sym.Custom(
        cls_score=mx.sym.BlockGrad(cls_score, name=name + '_score_nograd'),
        bbox_pred_t0=mx.sym.BlockGrad(bbox_pred_t0, name=name + '_bbox_nograd'),
        gt_boxes=mx.sym.BlockGrad(gt_boxes, name=name + '_gt_nograd'),
        op_type=cascade_refine.CASCADE_REFINE_OP_TYPE, name=name, stride=int(stride),
        base_anchors=json.dumps(_base_anchors(cfg, stride).tolist()),
        overlaps=json.dumps([float(v) for v in cfg.TRAIN.CASCADE_OVERLAP]),
        bbox_stds=json.dumps([float(v) for v in cfg.TRAIN.BBOX_STDS]),
        rpn_batch_size=int(cfg.TRAIN.RPN_BATCH_SIZE),
        fg_fraction=float(cfg.TRAIN.RPN_FG_FRACTION),
        force_positive=bool(cfg.TRAIN.RPN_FORCE_POSITIVE))
    return op[0], op[1], op[2], op[3]


def _box_loss(pred, target, weight, pos_count, cfg, lr_mult, name):
    """``MakeLoss(smooth_l1((pred - target) * weight, scalar=3))`` with the stage's scale."""
    diff = (pred - target) * weight
    loss = mx.sym.smooth_l1(data=diff, scalar=3.0, name=name + '_')
    if int(cfg.LR_MODE) == 0:
        scale = loss_grad_scales(cfg, lr_mult)[0]
    else:
        count = mx.sym.sum(pos_count) + _POS_COUNT_EPS
        loss = mx.sym.broadcast_div(loss, count)
        scale = 0.5 * lr_mult
    return mx.sym.MakeLoss(data=loss, grad_scale=scale, name=name)


def cascade_train_outputs(first, stride, cfg, gt_boxes, lr_mult=1.0):
    """Training outputs the cascade stages add to ``stride`` (module docstring).

    Args:
        first: :class:`FirstStage` of the stride.
        stride: the feature stride.
        cfg: the (derived) config; ``CASCADE`` > 0.
        gt_boxes: the graph's :func:`gt_boxes_input`.
        lr_mult: the heads' loss weight (1 for the face heads).
    Returns:
        list of symbols, in :meth:`ModelLayout.cascade_train_output_names` order.
    """
    layout = ModelLayout.from_config(cfg)
    num_anchors, box_len = layout.num_anchors, layout.box_len
    body = cascade_body(first, stride, cfg.CASCADE_MODE)
    outputs = []
    for stage in range(layout.cascade):
        def name(kind, stage=stage):
            return cascade_name(kind, stride, stage)
        cls_score = _conv1x1(body, name('face_rpn_cls_score'), 2 * num_anchors)
        cls_score = mx.sym.Reshape(cls_score, shape=(0, 2, -1),
                                   name=name('face_rpn_cls_score_reshape'))
        label, bbox_target, bbox_weight, pos_count = _refine(
            cls_score, first.bbox_pred, gt_boxes, stride, stage, cfg)
        if stride in layout.cascade_cls_strides:
            outputs.append(mx.sym.SoftmaxOutput(
                data=cls_score, label=label, multi_output=True, normalization='valid',
                use_ignore=True, ignore_label=-1, grad_scale=lr_mult,
                name=name('face_rpn_cls_prob')))
            outputs.append(mx.sym.BlockGrad(label, name=name('face_rpn_label')))
        if stride in layout.cascade_bbox_strides:
            bbox_pred = _conv1x1(body, name('face_rpn_bbox_pred'), box_len * num_anchors)
            bbox_pred = mx.sym.Reshape(bbox_pred, shape=(0, 0, -1),
                                       name=name('face_rpn_bbox_pred_reshape'))
            outputs.append(_box_loss(bbox_pred, bbox_target, bbox_weight, pos_count, cfg,
                                     lr_mult, name('face_rpn_bbox_loss')))
            outputs.append(mx.sym.BlockGrad(bbox_weight, name=name('face_rpn_bbox_weight')))
    return outputs


def cascade_deploy_outputs(first, stride, cfg):
    """Deploy outputs the cascade stages add to ``stride``: per stage the class probabilities
    ``face_rpn_cls_prob_reshape_stride{s}_cas{k}`` (B, 2A, H, W; channels A..2A-1 the face
    probability) and / or the box deltas ``face_rpn_bbox_pred_stride{s}_cas{k}``
    (B, L*A, H, W), in :meth:`ModelLayout.stride_deploy_output_names` order."""
    layout = ModelLayout.from_config(cfg)
    num_anchors, box_len = layout.num_anchors, layout.box_len
    body = cascade_body(first, stride, cfg.CASCADE_MODE)
    outputs = []
    for stage in range(layout.cascade):
        def name(kind, stage=stage):
            return cascade_name(kind, stride, stage)
        if stride in layout.cascade_cls_strides:
            cls_score = _conv1x1(body, name('face_rpn_cls_score'), 2 * num_anchors)
            pairs = mx.sym.Reshape(cls_score, shape=(0, 2, -1, 0),
                                   name=name('face_rpn_cls_score_reshape'))
            prob = mx.sym.softmax(pairs, axis=1, name=name('face_rpn_cls_prob'))
            outputs.append(mx.sym.Reshape(prob, shape=(0, 2 * num_anchors, -1, 0),
                                          name=name('face_rpn_cls_prob_reshape')))
        if stride in layout.cascade_bbox_strides:
            outputs.append(_conv1x1(body, name('face_rpn_bbox_pred'), box_len * num_anchors))
    return outputs
