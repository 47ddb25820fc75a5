"""Neck, SSH context module, heads, losses and outputs shared by the RetinaFace graphs.

A network module (``symbol_mnet``, ``symbol_resnet``) builds a backbone giving one feature map
per stride (32, 16, 8) and calls :func:`fpn_neck` then :func:`ssh_features` with its
:class:`NeckNames`; :func:`deploy_outputs` or :func:`train_outputs` add the heads.

Parameter names and attributes follow the released graphs (``mnet.25-symbol.json``,
``R50-symbol.json``): neck and head weights ``Normal(0.01)`` with ``lr_mult`` 1, biases 0 with
``lr_mult`` 2; ``wd_mult`` 0 on the SSH and head biases but 1 on the lateral and aggregation
biases (as released), BatchNorm ``eps=2e-5``, ``momentum=0.9``, ``fix_gamma=False``.

Deploy graph: 9 outputs, strides 32, 16, 8, each ``face_rpn_cls_prob_reshape_stride{s}``
(B, 2A, H, W; channels A..2A-1 are face probabilities), ``face_rpn_bbox_pred_stride{s}``
(B, 4A, H, W), ``face_rpn_landmark_pred_stride{s}`` (B, 10A, H, W). The class softmax is
``softmax(axis=1)`` on the scores reshaped to ``(0, 2, -1, 0)``: the same function as the
released graph's ``SoftmaxActivation(mode='channel')`` (tests compare them), and exportable
to ONNX as is.

Training graph inputs: ``data`` (B, 3, H, W) and, per stride s (``A`` anchors per position,
``H*W`` positions of that stride's map; anchor-major labels, index ``a*H*W + p``; target
channel ``a*4 + k`` / ``a*10 + k`` at position ``p``):

    face_label_stride{s}            (B, A*H*W)     1 face, 0 background, -1 ignored
    face_bbox_target_stride{s}      (B, 4A, H*W)
    face_bbox_weight_stride{s}      (B, 4A, H*W)
    face_landmark_target_stride{s}  (B, 10A, H*W)
    face_landmark_weight_stride{s}  (B, 10A, H*W)

Training graph outputs: 6 per stride, strides 32, 16, 8 (18 in all); output ``6k + i`` of
stride index ``k``:

    i = 0  face_rpn_cls_prob_stride{s}        (B, 2, A*H*W)  SoftmaxOutput (ignore -1, 'valid')
    i = 1  face_rpn_label_stride{s}           (B, A*H*W)     OHEM-sampled labels, BlockGrad
    i = 2  face_rpn_bbox_loss_stride{s}       (B, 4A, H*W)   MakeLoss(smooth_l1), grad 1/256 *
    i = 3  face_rpn_bbox_weight_stride{s}     (B, 4A, H*W)   effective box weights, BlockGrad
    i = 4  face_rpn_landmark_loss_stride{s}   (B, 10A, H*W)  MakeLoss, grad 0.4*LANDMARK_LR_MULT/256 *
    i = 5  face_rpn_landmark_weight_stride{s} (B, 10A, H*W)  effective landmark weights, BlockGrad

(* with the default ``cfg.TRAIN.LOSS_SCALE = 'release'``; see :mod:`rcnn.symbol.loss_scale`.)

With ``cfg.CASCADE > 0`` (:mod:`rcnn.symbol.cascade`) the training graph has one more label,
``gt_boxes``, and the cascade outputs after these; the deploy graph has each stride's cascade
outputs right after its three.

The class-score convolution keeps the released name ``face_rpn_cls_score_stride{s}``: the data
loader infers each stride's map size from ``face_rpn_cls_score_stride{s}_output``
(:func:`feature_shapes`, :func:`label_shapes`). Every label input enters through ``BlockGrad``,
so no gradient reaches the labels.
"""
from collections import namedtuple

import mxnet as mx

from rcnn.config import OHEM_IN_GRAPH, OHEM_OFF
from rcnn.model_layout import (BOX_LEN, DATA_NAME, FEATURE_STRIDES, HEAD_LENGTHS,
                               LANDMARK_LEN, NUM_CLASSES, cls_score_name,
                               deploy_output_names, head_names, label_names,
                               train_output_names)
from rcnn.symbol.cascade import (FirstStage, cascade_deploy_outputs, cascade_train_outputs,
                                 gt_boxes_input)
from rcnn.symbol.loss_scale import loss_grad_scales
from rcnn.symbol.ohem import ohem_symbol

__all__ = ['FEATURE_STRIDES', 'NECK_BN_EPS', 'NeckNames',
           'deploy_output_names', 'label_names', 'check_graph_config', 'graph_config', 'conv_bn',
           'ssh_context_module', 'ssh_head_module', 'fpn_neck', 'ssh_features', 'detection_heads',
           'deploy_outputs', 'smooth_l1_loss', 'train_outputs', 'feature_shapes', 'label_shapes']

#: BatchNorm epsilon of the neck and SSH modules
NECK_BN_EPS = 2e-5
_BN_MOMENTUM = 0.9
_WEIGHT_SIGMA = 0.01

#: per-stride layer names of a neck; ``lateral``/``ssh`` for every stride, ``upsample`` for the
#: strides whose map is upsampled into the next finer one, ``aggr`` for the finer strides
NeckNames = namedtuple('NeckNames', ['lateral', 'upsample', 'aggr', 'ssh'])
#: what the cascade stages of a graph share: stride -> neck level, the detection module
#: builder ``f(data, name)``, the ``gt_boxes`` input and the list collecting the stages'
#: training outputs (training graph only)
CascadeInputs = namedtuple('CascadeInputs', ['necks', 'head_module', 'gt_boxes', 'outputs'])


def graph_config(network, cfg=None):
    """``cfg``, or the ``network`` preset when None, after :func:`check_graph_config`."""
    if cfg is None:
        from rcnn.config import generate_config
        cfg, _ = generate_config(network, 'retinaface')
    check_graph_config(cfg)
    return cfg


def check_graph_config(cfg):
    """Raise ValueError when ``cfg`` asks for a graph these builders do not make."""
    strides = [int(s) for s in cfg.RPN_FEAT_STRIDE]
    if tuple(strides) != FEATURE_STRIDES:
        raise ValueError('cfg.RPN_FEAT_STRIDE must be %s (the backbones give these maps), got %s'
                         % (list(FEATURE_STRIDES), strides))
    if int(cfg.NUM_CLASSES) != NUM_CLASSES:
        raise ValueError('cfg.NUM_CLASSES must be %d (face / background), got %r'
                         % (NUM_CLASSES, cfg.NUM_CLASSES))
    if not cfg.FACE_LANDMARK:
        raise ValueError('cfg.FACE_LANDMARK=False is not supported: the graphs always have the '
                         'landmark head (as the released models)')
    if cfg.USE_BLUR:
        raise ValueError('cfg.USE_BLUR=True is not supported: no blur head')
    if int(cfg.NUM_ANCHORS) < 1:
        raise ValueError('cfg.NUM_ANCHORS must be >= 1, got %r' % cfg.NUM_ANCHORS)


def _weight(name):
    return mx.sym.Variable(name + '_weight', init=mx.init.Normal(_WEIGHT_SIGMA), lr_mult=1.0)


def _bias(name, wd_mult):
    return mx.sym.Variable(name + '_bias', init=mx.init.Constant(0.0), lr_mult=2.0,
                           wd_mult=wd_mult)


def _conv(data, name, num_filter, kernel, bias_wd_mult):
    pad = (kernel[0] // 2, kernel[1] // 2)
    return mx.sym.Convolution(data=data, weight=_weight(name), bias=_bias(name, bias_wd_mult),
                              kernel=kernel, pad=pad, stride=(1, 1), num_filter=num_filter,
                              name=name)


def conv_bn(data, name, num_filter, kernel=(1, 1), relu=True, bias_wd_mult=0.0):
    """Convolution (with bias, stride 1, 'same' padding) + BatchNorm [+ ReLU].

    Layers are named ``name``, ``name_bn``, ``name_relu`` (as the released graphs).
    """
    conv = _conv(data, name, num_filter, kernel, bias_wd_mult)
    out = mx.sym.BatchNorm(data=conv, name=name + '_bn', eps=NECK_BN_EPS, momentum=_BN_MOMENTUM,
                           fix_gamma=False)
    if relu:
        out = mx.sym.Activation(data=out, act_type='relu', name=name + '_relu')
    return out


def ssh_context_module(data, name, num_filter):
    """SSH detection module: ``2 * num_filter`` output channels.

    A 3x3 branch to ``num_filter`` channels (``{name}_conv1``, no ReLU) and a context branch:
    a shared 3x3 to ``num_filter/2`` (``{name}_context_conv1``, ReLU) feeding a 3x3
    (``_context_conv2``, no ReLU) and a 3x3 (``_context_conv3_1``, ReLU) -> 3x3
    (``_context_conv3_2``, no ReLU) chain; the three are concatenated, then ReLU.
    """
    half = num_filter // 2
    branch = conv_bn(data, name + '_conv1', num_filter, (3, 3), relu=False)
    context = conv_bn(data, name + '_context_conv1', half, (3, 3))
    context_a = conv_bn(context, name + '_context_conv2', half, (3, 3), relu=False)
    context_b = conv_bn(context, name + '_context_conv3_1', half, (3, 3))
    context_b = conv_bn(context_b, name + '_context_conv3_2', half, (3, 3), relu=False)
    concat = mx.sym.Concat(branch, context_a, context_b, dim=1, name=name + '_concat')
    return mx.sym.Activation(data=concat, act_type='relu', name=name + '_concat_relu')


def ssh_head_module(num_filter):
    """``f(data, name)``: the SSH detection module of ``2 * num_filter`` channels (what the
    first heads sit on; the cascade builds its own with it)."""
    def build(data, name):
        return ssh_context_module(data, name, num_filter)
    return build


def fpn_neck(backbone_features, num_filter, names):
    """Top-down feature pyramid over ``FEATURE_STRIDES``.

    The coarsest level is a 1x1 lateral conv; each finer level adds its own 1x1 lateral conv to
    the coarser level's map upsampled x2 (nearest) and cropped to the lateral's size, then
    applies a 3x3 aggregation conv. Every conv is conv + bias + BatchNorm + ReLU.

    Args:
        backbone_features: stride -> backbone symbol.
        num_filter: neck channels.
        names: :class:`NeckNames`.
    Returns:
        stride -> neck symbol (``num_filter`` channels).
    """
    neck = {}
    coarser = None
    for index, stride in enumerate(FEATURE_STRIDES):
        lateral = conv_bn(backbone_features[stride], names.lateral[stride], num_filter, (1, 1),
                          bias_wd_mult=1.0)
        if coarser is None:
            neck[stride] = lateral
        else:
            coarse_stride = FEATURE_STRIDES[index - 1]
            upsampled = mx.sym.UpSampling(coarser, scale=2, sample_type='nearest', num_args=1,
                                          workspace=512, name=names.upsample[coarse_stride])
            cropped = mx.sym.Crop(upsampled, lateral, num_args=2,
                                  name=names.upsample[coarse_stride] + '_crop')
            merged = mx.sym.elemwise_add(lateral, cropped, name=names.aggr[stride] + '_sum')
            neck[stride] = conv_bn(merged, names.aggr[stride], num_filter, (3, 3),
                                   bias_wd_mult=1.0)
        coarser = neck[stride]
    return neck


def ssh_features(neck, num_filter, names):
    """stride -> SSH module output (``2 * num_filter`` channels) of each neck level."""
    return {stride: ssh_context_module(neck[stride], names.ssh[stride], num_filter)
            for stride in FEATURE_STRIDES}


def detection_heads(feature, stride, num_anchors):
    """1x1 heads of one stride -> ``(cls_score (B, 2A, H, W), bbox_pred (B, 4A, H, W),
    landmark_pred (B, 10A, H, W))``."""
    heads = []
    for name, values in zip(head_names(stride), HEAD_LENGTHS):
        heads.append(mx.sym.Convolution(data=feature, weight=_weight(name),
                                        bias=_bias(name, 0.0), kernel=(1, 1), pad=(0, 0),
                                        stride=(1, 1), num_filter=values * num_anchors,
                                        name=name))
    return tuple(heads)


def deploy_outputs(features, cfg, necks=None, head_module=None):
    """The deploy group (see the module docstring) from stride -> SSH feature; with
    ``cfg.CASCADE`` each stride's cascade outputs follow its own (see :func:`train_outputs`)."""
    check_graph_config(cfg)
    cascade = _cascade_inputs(cfg, necks, head_module, training=False)
    num_anchors = int(cfg.NUM_ANCHORS)
    outputs = []
    for stride in FEATURE_STRIDES:
        raw_heads = detection_heads(features[stride], stride, num_anchors)
        cls_score, bbox_pred, landmark_pred = raw_heads
        pairs = mx.sym.Reshape(cls_score, shape=(0, 2, -1, 0),
                               name='face_rpn_cls_score_reshape_stride%d' % stride)
        prob = mx.sym.softmax(pairs, axis=1, name='face_rpn_cls_prob_stride%d' % stride)
        prob = mx.sym.Reshape(prob, shape=(0, 2 * num_anchors, -1, 0),
                              name='face_rpn_cls_prob_reshape_stride%d' % stride)
        outputs.extend([prob, bbox_pred, landmark_pred])
        if cascade is not None:
            first = FirstStage(cascade.necks[stride], features[stride], *raw_heads,
                               head_module=cascade.head_module)
            outputs += cascade_deploy_outputs(first, stride, cfg)
    return mx.sym.Group(outputs)


def _label_inputs(stride):
    """The five label variables of one stride, each behind BlockGrad."""
    return [mx.sym.BlockGrad(mx.sym.Variable(name), name=name + '_nograd')
            for name in label_names([stride])]


def _apply_anchor_weight(weight, anchor_weight, num_anchors, values, name):
    """(B, A*V, HW) weights times the (B, A*HW) anchor-major anchor weight of their anchor."""
    per_anchor = mx.sym.Reshape(weight, shape=(0, num_anchors, values, -1))
    anchor = mx.sym.Reshape(anchor_weight, shape=(0, num_anchors, 1, -1))
    return mx.sym.Reshape(mx.sym.broadcast_mul(per_anchor, anchor),
                          shape=(0, num_anchors * values, -1), name=name)


def smooth_l1_loss(pred, target, weight, grad_scale, name):
    """``MakeLoss(smooth_l1((pred - target) * weight, scalar=3))`` with ``grad_scale``.

    Per element, ``x = (pred - target) * weight``: ``4.5 x^2`` if ``|x| < 1/9`` else
    ``|x| - 1/18``; the gradient reaching ``pred`` is ``grad_scale * weight * d/dx``.
    """
    diff = (pred - target) * weight
    loss = mx.sym.smooth_l1(data=diff, scalar=3.0, name=name + '_')
    return mx.sym.MakeLoss(data=loss, grad_scale=grad_scale, name=name)


def _stride_train_outputs(feature, stride, cfg, lr_mult, cascade=None):
    num_anchors = int(cfg.NUM_ANCHORS)
    label, bbox_target, bbox_weight, landmark_target, landmark_weight = _label_inputs(stride)
    raw_heads = detection_heads(feature, stride, num_anchors)
    cls_score, bbox_pred, landmark_pred = raw_heads
    cls_score = mx.sym.Reshape(cls_score, shape=(0, 2, -1),
                               name='face_rpn_cls_score_reshape_stride%d' % stride)
    bbox_pred = mx.sym.Reshape(bbox_pred, shape=(0, 0, -1),
                               name='face_rpn_bbox_pred_reshape_stride%d' % stride)
    landmark_pred = mx.sym.Reshape(landmark_pred, shape=(0, 0, -1),
                                   name='face_rpn_landmark_pred_reshape_stride%d' % stride)

    ohem = int(cfg.TRAIN.RPN_ENABLE_OHEM)
    if ohem >= OHEM_IN_GRAPH:
        label, anchor_weight = ohem_symbol(cls_score, label, cfg,
                                           name='face_rpn_ohem_stride%d' % stride)
        bbox_weight = _apply_anchor_weight(bbox_weight, anchor_weight, num_anchors, BOX_LEN,
                                           'face_bbox_weight_ohem_stride%d' % stride)
        landmark_weight = _apply_anchor_weight(landmark_weight, anchor_weight, num_anchors,
                                               LANDMARK_LEN,
                                               'face_landmark_weight_ohem_stride%d' % stride)
    elif ohem != OHEM_OFF:
        raise ValueError('cfg.TRAIN.RPN_ENABLE_OHEM=%d is not supported: 0 (labels as assigned) '
                         'or >= 2 (OHEM in the graph)' % ohem)

    (cls_prob_name, label_out_name, bbox_loss_name, bbox_weight_name, landmark_loss_name,
     landmark_weight_name) = train_output_names([stride])
    cls_prob = mx.sym.SoftmaxOutput(data=cls_score, label=label, multi_output=True,
                                    normalization='valid', use_ignore=True, ignore_label=-1,
                                    grad_scale=lr_mult, name=cls_prob_name)
    box_scale, landmark_scale = loss_grad_scales(cfg, lr_mult)
    bbox_loss = smooth_l1_loss(bbox_pred, bbox_target, bbox_weight, box_scale,
                                bbox_loss_name)
    landmark_loss = smooth_l1_loss(landmark_pred, landmark_target, landmark_weight,
                                    landmark_scale, landmark_loss_name)
    outputs = [cls_prob,
               mx.sym.BlockGrad(label, name=label_out_name),
               bbox_loss,
               mx.sym.BlockGrad(bbox_weight, name=bbox_weight_name),
               landmark_loss,
               mx.sym.BlockGrad(landmark_weight, name=landmark_weight_name)]
    if cascade is not None:       # the graph lists them after every first-stage output
        first = FirstStage(cascade.necks[stride], feature, *raw_heads,
                           head_module=cascade.head_module)
        cascade.outputs.extend(cascade_train_outputs(first, stride, cfg, cascade.gt_boxes,
                                                     lr_mult))
    return outputs


def _cascade_inputs(cfg, necks, head_module, training):
    """What the cascade stages need (None without ``CASCADE``)."""
    if int(cfg.CASCADE) <= 0:
        return None
    if necks is None or head_module is None:
        raise ValueError('cfg.CASCADE=%d needs the neck levels and the detection module of '
                         'the network (necks=, head_module=)' % cfg.CASCADE)
    return CascadeInputs(necks, head_module, gt_boxes_input(cfg) if training else None, [])


def train_outputs(features, cfg, lr_mult=1.0, necks=None, head_module=None):
    """The training group (18 outputs, see the module docstring) from stride -> SSH feature;
    with ``cfg.CASCADE`` the cascade outputs of every stride follow (:mod:`rcnn.symbol.cascade`,
    which needs ``necks`` (stride -> neck level) and ``head_module``; order:
    :meth:`rcnn.model_layout.ModelLayout.train_output_names`)."""
    check_graph_config(cfg)
    cascade = _cascade_inputs(cfg, necks, head_module, training=True)
    outputs = []
    for stride in FEATURE_STRIDES:
        outputs.extend(_stride_train_outputs(features[stride], stride, cfg, lr_mult, cascade))
    if cascade is not None:
        outputs.extend(cascade.outputs)
    return mx.sym.Group(outputs)


def feature_shapes(sym, data_shape):
    """stride -> (H, W) of the class-score map for input ``data_shape`` (B, 3, H, W)."""
    internals = sym.get_internals()
    shapes = {}
    for stride in FEATURE_STRIDES:
        name = cls_score_name(stride)
        if name not in internals.list_outputs():
            raise ValueError('symbol has no %s: not a RetinaFace graph' % name)
        _, out_shapes, _ = internals[name].infer_shape(**{DATA_NAME: tuple(data_shape)})
        shapes[stride] = tuple(int(d) for d in out_shapes[0][2:])
    return shapes


def label_shapes(sym, data_shape, cfg):
    """``[(name, shape)]`` of the training labels for input ``data_shape`` (B, 3, H, W),
    in :func:`label_names` order."""
    num_anchors = int(cfg.NUM_ANCHORS)
    batch = int(data_shape[0])
    shapes = []
    for stride, (height, width) in sorted(feature_shapes(sym, data_shape).items(), reverse=True):
        positions = height * width
        per_stride = [(batch, num_anchors * positions),
                      (batch, BOX_LEN * num_anchors, positions),
                      (batch, BOX_LEN * num_anchors, positions),
                      (batch, LANDMARK_LEN * num_anchors, positions),
                      (batch, LANDMARK_LEN * num_anchors, positions)]
        shapes.extend(zip(label_names([stride]), per_stride))
    return shapes
