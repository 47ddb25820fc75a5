"""What both RetinaFace networks share: the config check, the pyramid-to-heads assembly and
the shapes the loader asks for.

A network module (``symbol_mnet``, ``symbol_resnet``) builds a backbone giving one map per
stride 4, 8, 16 and 32 and calls :func:`pyramid_features` with its :class:`NeckNames` and
detection-module width; :func:`deploy_outputs` or :func:`train_outputs`
(:mod:`rcnn.symbol.heads`, which documents the inputs and outputs) add the heads. The layout
(strides, anchors per position, values per anchor) is ``ModelLayout.from_config(cfg)``.

Building blocks: :mod:`rcnn.symbol.layers` (conv + BatchNorm), :mod:`rcnn.symbol.deformable`
(``USE_DCN``), :mod:`rcnn.symbol.neck` (the pyramid), :mod:`rcnn.symbol.detection_module`
(``HEAD_MODULE``, ``CONTEXT_FILTER_RATIO``), :mod:`rcnn.symbol.heads` (``USE_MAXOUT``,
``SHARE_WEIGHT_*``, ``LR_MODE``, ``FACE_LANDMARK``, ``USE_BLUR``, ``USE_OCCLUSION``).

The class-score convolution keeps the released name ``face_rpn_cls_score_stride{s}``: the data
loader infers each stride's map size from ``face_rpn_cls_score_stride{s}_output``
(:func:`feature_shapes`, :func:`label_shapes`).
"""
import re

from rcnn.model_layout import (DATA_NAME, MXNET_OUTPUT_SUFFIX, NUM_CLASSES, ModelLayout,
                               cls_score_name, deploy_output_names, label_name,
                               label_names)
from rcnn.symbol.deformable import DCN_CONTEXT, DCN_OFF, deformable_mode
from rcnn.symbol.detection_module import HEAD_MODULES, detection_module, module_width
from rcnn.symbol.heads import (deploy_outputs, smooth_l1_loss, stride_train_outputs,
                               train_outputs)
from rcnn.symbol.layers import NECK_BN_EPS, conv_bn
from rcnn.symbol.neck import NeckNames, check_pyramid_strides, fpn_neck

__all__ = ['NECK_BN_EPS', 'NeckNames', 'deploy_output_names', 'label_names',
           'check_graph_config', 'graph_config', 'conv_bn', 'fpn_neck', 'pyramid_features',
           'deploy_outputs', 'smooth_l1_loss', 'train_outputs', 'stride_train_outputs',
           'module_builder', 'build_train_graph', 'build_deploy_graph', 'feature_shapes',
           'label_shapes']
_CLS_SCORE_OUTPUT = re.compile(r'^face_rpn_cls_score_stride(\d+)%s$' % MXNET_OUTPUT_SUFFIX)


def graph_config(network, cfg=None):
    """``cfg``, or the ``network`` preset when None, after :func:`check_graph_config`."""
    if cfg is None:
        from rcnn.config import generate_config
        cfg, _ = generate_config(network, 'retinaface')
    check_graph_config(cfg)
    return cfg


def check_graph_config(cfg):
    """Raise ValueError when ``cfg`` asks for a graph these builders do not make."""
    layout = ModelLayout.from_config(cfg)
    strides = [int(s) for s in cfg.RPN_FEAT_STRIDE]
    if tuple(strides) != layout.strides:
        raise ValueError('cfg.RPN_FEAT_STRIDE %s does not match the strides of '
                         'cfg.RPN_ANCHOR_CFG %s' % (strides, list(layout.strides)))
    check_pyramid_strides(layout.strides)
    if int(cfg.NUM_CLASSES) != NUM_CLASSES:
        raise ValueError('cfg.NUM_CLASSES must be %d (face / background), got %r'
                         % (NUM_CLASSES, cfg.NUM_CLASSES))
    if int(cfg.NUM_ANCHORS) != layout.num_anchors:
        raise ValueError('cfg.NUM_ANCHORS=%r does not match cfg.RPN_ANCHOR_CFG / DENSE_ANCHOR '
                         '(%d anchors per position)' % (cfg.NUM_ANCHORS, layout.num_anchors))
    if int(cfg.USE_DCN) not in (DCN_OFF, 1, DCN_CONTEXT):
        raise ValueError('cfg.USE_DCN must be 0, 1 or 2, got %r' % cfg.USE_DCN)
    if cfg.HEAD_MODULE not in HEAD_MODULES:
        raise ValueError('cfg.HEAD_MODULE must be one of %s, got %r'
                         % (list(HEAD_MODULES), cfg.HEAD_MODULE))


def pyramid_features(backbone_features, cfg, names, relative_width, sampled_dcn=False):
    """``(neck, features)``: stride -> pyramid map and stride -> detection-module output for
    every stride of the layout.

    Args:
        backbone_features: stride -> backbone map (strides 4, 8, 16, 32).
        cfg: the config (``HEAD_FILTER_NUM`` neck channels, ``HEAD_MODULE``, ``USE_DCN``,
            ``CONTEXT_FILTER_RATIO``).
        sampled_dcn: DCN v2 as differentiable sampling operators, which have a CPU backward
            (training graphs; see :mod:`rcnn.symbol.deformable`).
        names: the network's :class:`NeckNames`.
        relative_width: detection-module channels / ``HEAD_FILTER_NUM`` before
            ``CONTEXT_FILTER_RATIO`` (mnet 1, resnet 2).
    """
    layout = ModelLayout.from_config(cfg)
    dcn = deformable_mode(cfg, sampled_dcn)
    neck = fpn_neck(backbone_features, int(cfg.HEAD_FILTER_NUM), names, layout.strides, dcn)
    width = module_width(cfg, relative_width)
    features = {stride: detection_module(neck[stride], names.ssh[stride], width, cfg, dcn)
                for stride in layout.strides}
    return neck, features


def module_builder(cfg, relative_width, sampled_dcn=False):
    """``f(data, name)``: the graph's detection module (``cfg.HEAD_MODULE``, its width and
    deformable layers), which the cascade stages of modes 1-3 build again on the neck."""
    dcn = deformable_mode(cfg, sampled_dcn)
    width = module_width(cfg, relative_width)

    def build(data, name):
        return detection_module(data, name, width, cfg, dcn)
    return build


def build_train_graph(pyramid, relative_width, cfg, native_dcn=False):
    """The training graph of a network: its ``pyramid(cfg, sampled_dcn)`` -> ``(neck,
    features)``, the heads and losses of every stride, the cascade stages on the neck with
    the network's detection module (``relative_width``: see :func:`pyramid_features`).
    ``native_dcn``: DCN v2 as MXNet's operator (GPU only); else as sampling operators, which
    train on every device."""
    sampled = not native_dcn
    neck, features = pyramid(cfg, sampled_dcn=sampled)
    return train_outputs(features, cfg, necks=neck,
                         head_module=module_builder(cfg, relative_width, sampled))


def build_deploy_graph(pyramid, relative_width, cfg):
    """The deploy graph of a network (see :func:`build_train_graph`; DCN v2 as the operator)."""
    neck, features = pyramid(cfg)
    return deploy_outputs(features, cfg, necks=neck,
                          head_module=module_builder(cfg, relative_width))


def _graph_strides(internals):
    strides = []
    for name in internals.list_outputs():
        match = _CLS_SCORE_OUTPUT.match(name)
        if match:
            strides.append(int(match.group(1)))
    return sorted(strides, reverse=True)


def feature_shapes(sym, data_shape, strides=None):
    """stride -> (H, W) of the class-score map for input ``data_shape`` (B, 3, H, W).

    ``strides`` defaults to every stride whose ``face_rpn_cls_score_stride{s}`` the graph has.
    """
    internals = sym.get_internals()
    strides = _graph_strides(internals) if strides is None else list(strides)
    if not strides:
        raise ValueError('symbol has no face_rpn_cls_score_stride*: not a RetinaFace graph')
    shapes = {}
    outputs = set(internals.list_outputs())
    for stride in strides:
        name = cls_score_name(stride)
        if name not in outputs:
            raise ValueError('symbol has no %s: not a RetinaFace graph' % name)
        _, out_shapes, _ = internals[name].infer_shape(**{DATA_NAME: tuple(data_shape)})
        shapes[stride] = tuple(int(d) for d in out_shapes[0][2:])
    return shapes


def label_shapes(sym, data_shape, cfg):
    """``[(name, shape)]`` of the training labels for input ``data_shape`` (B, 3, H, W),
    in the layout's label order (per stride, coarse to fine)."""
    layout = ModelLayout.from_config(cfg)
    num_anchors = layout.num_anchors
    batch = int(data_shape[0])
    sizes = feature_shapes(sym, data_shape, layout.strides)
    per_kind = {'label': lambda n: (batch, num_anchors * n),
                'bbox_target': lambda n: (batch, layout.box_len * num_anchors, n),
                'bbox_weight': lambda n: (batch, layout.box_len * num_anchors, n),
                'landmark_target': lambda n: (batch, layout.landmark_len * num_anchors, n),
                'landmark_weight': lambda n: (batch, layout.landmark_len * num_anchors, n)}
    shapes = []
    for stride in layout.strides:
        height, width = sizes[stride]
        for kind in layout.label_kinds:
            shapes.append((label_name(kind, stride), per_kind[kind](height * width)))
    return shapes
