"""ONNX export in the layout of the ``insightface`` Python package's face detector.

``insightface.model_zoo.get_model(path)`` treats any ONNX graph with 5 or more outputs as a
detector (its ``SCRFD`` class; the RetinaFace class of older releases is the same code). The
number of outputs tells it the layout (package version 2.1, ``insightface/model_zoo/scrfd.py``):
6 or 9 outputs are strides 8, 16, 32 with two anchors per position, 10 or 15 are strides 8, 16,
32, 64, 128 with one anchor; 9 and 15 have keypoints (:data:`PACKAGE_LAYOUTS`). A model of
another layout (RAC_RETINA's strides 4..64, four anchors per position, ...) cannot be read by
the package and is refused in one line. It decodes:

* input: one ``(1, 3, H, W)`` float tensor ``cv2.dnn.blobFromImage(img, 1/128, (W, H),
  (127.5,)*3, swapRB=True)``, i.e. RGB ``(pixel - 127.5) / 128``; the image is letterboxed into
  the ``det_size`` (resized keeping the aspect ratio, zero-padded bottom/right);
* outputs, in graph order: the scores of the strides (fine to coarse), then their box
  distances, then (with keypoints) their keypoint offsets; each ``(K * A, 1)``, ``(K * A, 4)``,
  ``(K * A, 10)`` with ``K = (H // s) * (W // s)`` (a leading batch axis of 1 is also accepted:
  rank 3 outputs);
* row ``(y * (W // s) + x) * A + a`` belongs to anchor ``a`` of cell (x, y), whose centre is
  ``(x * s, y * s)``; box = ``centre -+ distance * s`` (left, top, right, bottom), keypoint
  ``k`` = ``centre + offset[2k:2k+2] * s``; rows with score ``>= det_thresh`` are kept, divided
  by the letterbox scale and reduced by NMS (IoU > ``nms_thresh``, areas with the +1 pixel
  convention, as ours).

:func:`add_insightface_head` appends to one of our exported deploy graphs the nodes that turn
its RetinaFace outputs into exactly that (a blur value of ``USE_BLUR`` and the visibilities of
``USE_OCCLUSION`` have no place in the package's layout and are left out):

* the new input ``input.1`` is mapped back to raw RGB pixels (``x * 128 + 127.5``) in the graph,
  then through the model's pixel transform (:mod:`rcnn.processing.pixels`; nothing more for raw
  RGB models such as the released ones);
* the face probabilities (channels ``[A, 2A)`` of ``face_rpn_cls_prob_reshape``) become the
  scores;
* the RetinaFace box regression (deltas times the recipe's stds, then ``nonlinear_pred`` on
  anchors centred at
  ``(x * s + c_x, y * s + c_y)``, ``c`` the base anchor's centre) and landmark regression
  (times ``LANDMARK_STD``, then ``landmark_pred``) are decoded in the graph, boxes clipped to the input as our detector does,
  and expressed as distances / offsets from the package's centre ``(x * s, y * s)`` in stride
  units. Decoding with the package's formulas then gives our boxes and landmarks.

The batch axis is fixed to 1 and outputs are rank 2, as in the package's own detector files.
With a dynamic height/width the input size must be a multiple of the coarsest stride (32, or
128 for the five-stride layout: the package counts ``H // s`` anchor rows, the network
``ceil(H / s)``); ``det_size`` values always are multiples of 32 in practice.
"""
import logging

import numpy as np

from rcnn.deploy.onnx_nodes import NodeBuilder
from rcnn.model_layout import DATA_NAME, LANDMARK_LEN, NUM_LANDMARKS, ModelLayout

logger = logging.getLogger(__name__)

#: input name of the exported detector (the name the package's own detector files use)
INPUT_NAME = 'input.1'
#: the package's input normalisation: blob = (pixel - MEAN) / STD, channels RGB
INPUT_MEAN = 127.5
INPUT_STD = 128.0
#: strides in the package's output order (of the released models' layout)
PACKAGE_STRIDES = (8, 16, 32)
#: anchors per position the package assumes for a 6- or 9-output detector
PACKAGE_NUM_ANCHORS = 2
#: the layouts the package reads: number of strides -> (strides in its order, anchors)
PACKAGE_LAYOUTS = {3: (PACKAGE_STRIDES, PACKAGE_NUM_ANCHORS), 5: ((8, 16, 32, 64, 128), 1)}
#: output groups in the package's order, with the width of one row
OUTPUT_GROUPS = (('score', 1), ('bbox', 4), ('kps', LANDMARK_LEN))


def package_output_groups(landmarks=True):
    """The output groups of a model with (or without) landmarks."""
    return OUTPUT_GROUPS if landmarks else OUTPUT_GROUPS[:2]


def package_output_names(strides=PACKAGE_STRIDES, landmarks=True):
    """Output names in graph order: ``score_8, score_16, score_32, bbox_8, ..., kps_32``."""
    return ['%s_%d' % (group, stride) for group, _ in package_output_groups(landmarks)
            for stride in strides]


def package_layout(layout):
    """``(strides in the package's order, anchors per position)`` of ``layout`` (a
    :class:`rcnn.model_layout.ModelLayout`), or ValueError, in one line, naming what the
    package reads."""
    strides = tuple(sorted(layout.strides))
    expected = PACKAGE_LAYOUTS.get(len(strides))
    if expected is None or expected != (strides, layout.num_anchors):
        raise ValueError(
            'the insightface package reads detectors with %s; this model has strides %s and %d '
            'anchors per position' % (' or '.join(
                'strides %s and %d anchor%s per position' % (', '.join(map(str, s)), a,
                                                             's' if a > 1 else '')
                for s, a in PACKAGE_LAYOUTS.values()),
                ', '.join(map(str, strides)), layout.num_anchors))
    return expected


def anchor_geometry(base_anchors):
    """Per-anchor size and centre offset of a stride's base anchors.

    Args:
        base_anchors: (A, 4) float, x1 y1 x2 y2 of the anchors of cell (0, 0).
    Returns:
        sizes (A, 2) float32 ``(x2 - x1 + 1, y2 - y1 + 1)`` and centres (A, 2) float32
        ``x1 + 0.5 * (w - 1)``, ``y1 + 0.5 * (h - 1)`` (the conventions of ``nonlinear_pred``).
    """
    anchors = np.asarray(base_anchors, dtype=np.float64)
    sizes = anchors[:, 2:4] - anchors[:, 0:2] + 1.0
    centres = anchors[:, 0:2] + 0.5 * (sizes - 1.0)
    return sizes.astype(np.float32), centres.astype(np.float32)


def _positions(b, feature, stride):
    """(H_s * W_s, 1, 2) float32 ``(x * s, y * s)`` of every cell of ``feature`` (B, C, H, W),
    row-major."""
    shape = b.op('Shape', [feature], 'shape')
    height = b.op('Gather', [shape, b.const(2, 'h_index', np.int64)], 'height')
    width = b.op('Gather', [shape, b.const(3, 'w_index', np.int64)], 'width')
    zero = b.const(0, 'zero', np.int64)
    one = b.const(1, 'one', np.int64)
    stride_f = b.const(float(stride), 'stride')
    xs = b.op('Mul', [b.op('Cast', [b.op('Range', [zero, width, one])], to=1), stride_f])
    ys = b.op('Mul', [b.op('Cast', [b.op('Range', [zero, height, one])], to=1), stride_f])
    row = b.op('Unsqueeze', [xs, b.const([0], 'axes', np.int64)])             # (1, W)
    col = b.op('Unsqueeze', [ys, b.const([1], 'axes', np.int64)])             # (H, 1)
    zeros_row = b.op('Mul', [row, b.const(0.0, 'zero_f')])
    zeros_col = b.op('Mul', [col, b.const(0.0, 'zero_f')])
    grid_x = b.op('Add', [row, zeros_col])                                     # (H, W)
    grid_y = b.op('Add', [col, zeros_row])
    last = b.const([-1], 'axes', np.int64)
    grid = b.op('Concat', [b.op('Unsqueeze', [grid_x, last]), b.op('Unsqueeze', [grid_y, last])],
                axis=-1)                                                       # (H, W, 2)
    return b.op('Reshape', [grid, b.const([-1, 1, 2], 'shape', np.int64)], 'positions')


def _channels_last(b, tensor, row_shape):
    """(1, C, H, W) -> Transpose to (1, H, W, C) -> Reshape to ``row_shape`` (e.g. (-1, A, 4)),
    rows position-major, anchor-minor."""
    transposed = b.op('Transpose', [tensor], perm=[0, 2, 3, 1])
    return b.op('Reshape', [transposed, b.const(row_shape, 'shape', np.int64)])


def _stride_head(b, outputs, stride, base_anchors, image_limits, names, coder, layout):
    """Nodes of one stride; returns the names of its score, bbox (and kps) outputs."""
    num_anchors = len(base_anchors)
    sizes, centres = anchor_geometry(base_anchors)
    stride_f = b.const(float(stride), 'stride')
    cls, box = outputs[:2]

    # scores: face channels [A, 2A) -> (K*A, 1)
    face = b.op('Slice', [cls, b.const([num_anchors], 'start', np.int64),
                          b.const([2 * num_anchors], 'end', np.int64),
                          b.const([1], 'axis', np.int64)], 'face_prob')
    score = b.op('Reshape', [b.op('Transpose', [face], perm=[0, 2, 3, 1]),
                             b.const([-1, 1], 'shape', np.int64)], output=names[0])

    # boxes: nonlinear_pred around the anchor centre, relative to the cell position p
    size = b.const(sizes, 'anchor_size')                       # (A, 2)
    centre = b.const(centres, 'anchor_centre')                 # (A, 2)
    deltas = _channels_last(b, box, [-1, num_anchors, layout.box_len])   # (K, A, 4 | 5)
    if layout.box_len != 4:                                    # the blur value stays out
        deltas = b.op('Slice', [deltas, b.const([0], 'start', np.int64),
                                b.const([4], 'end', np.int64), b.const([2], 'axis', np.int64)])
    if tuple(coder.bbox_stds) != (1.0, 1.0, 1.0, 1.0):
        deltas = b.op('Mul', [deltas, b.const(coder.bbox_stds, 'bbox_stds')])
    shift, log_scale = (b.op('Slice', [deltas, b.const([lo], 'start', np.int64),
                                       b.const([lo + 2], 'end', np.int64),
                                       b.const([2], 'axis', np.int64)]) for lo in (0, 2))
    ctr = b.op('Add', [b.op('Mul', [shift, size]), centre])    # predicted centre - p
    half = b.op('Mul', [b.op('Sub', [b.op('Mul', [b.op('Exp', [log_scale]), size]),
                                     b.const(1.0, 'one_f')]), b.const(0.5, 'half')])
    left_top = b.op('Sub', [half, ctr])                        # p - (x1, y1)
    right_bottom = b.op('Add', [ctr, half])                    # (x2, y2) - p
    # clip x1, x2 to [0, W - 1] and y1, y2 to [0, H - 1] (our detector's clip_boxes)
    positions = _positions(b, box, stride)                     # (K, 1, 2)
    room = b.op('Sub', [image_limits, positions])              # (W-1, H-1) - p
    neg_positions = b.op('Neg', [positions])
    left_top = b.op('Max', [b.op('Min', [left_top, positions]), b.op('Neg', [room])])
    right_bottom = b.op('Max', [b.op('Min', [right_bottom, room]), neg_positions])
    distances = b.op('Div', [b.op('Concat', [left_top, right_bottom], axis=-1), stride_f])
    bbox = b.op('Reshape', [distances, b.const([-1, 4], 'shape', np.int64)], output=names[1])

    if not layout.landmarks:
        return score, bbox
    # landmarks: landmark_pred around the anchor centre, relative to p, in stride units
    point_len = layout.landmark_point_len
    points = _channels_last(b, outputs[2], [-1, num_anchors, NUM_LANDMARKS, point_len])
    if point_len != 2:                                         # the visibilities stay out
        points = b.op('Slice', [points, b.const([0], 'start', np.int64),
                                b.const([2], 'end', np.int64), b.const([3], 'axis', np.int64)])
    if coder.landmark_std != 1.0:
        points = b.op('Mul', [points, b.const(coder.landmark_std, 'landmark_std')])
    size_pts = b.const(sizes[:, None, :], 'anchor_size')            # (A, 1, 2)
    centre_pts = b.const(centres[:, None, :], 'anchor_centre')
    offsets = b.op('Div', [b.op('Add', [b.op('Mul', [points, size_pts]), centre_pts]), stride_f])
    kps = b.op('Reshape', [offsets, b.const([-1, LANDMARK_LEN], 'shape', np.int64)],
               output=names[2])
    return score, bbox, kps


def _pixel_transform_nodes(b, raw, pixels):
    """Nodes applying ``pixels`` (a PixelTransform) to raw RGB ``raw``; output ``data``."""
    rgb_means = np.asarray(pixels.means[::-1], np.float32).reshape(1, 3, 1, 1)
    rgb_stds = np.asarray(pixels.stds[::-1], np.float32).reshape(1, 3, 1, 1)
    scaled = b.op('Div', [raw, b.const(pixels.scale, 'pixel_scale')])
    centred = b.op('Sub', [scaled, b.const(rgb_means, 'pixel_means')])
    return b.op('Div', [centred, b.const(rgb_stds, 'pixel_stds')], output=DATA_NAME)


def layout_output_names(layout, stride):
    """Our deploy output names of one stride of ``layout``: [cls, bbox(, landmark)]."""
    return ['%s_stride%d' % (kind, stride) for kind in layout.deploy_output_kinds]


def add_insightface_head(model, base_anchors_per_stride, output_names_of, recipe=None,
                         layout=None):
    """Turn an exported RetinaFace deploy graph (input ``data``, our outputs) into the
    package's detector layout, in place; returns ``model``.

    Args:
        model: ``onnx.ModelProto`` from :func:`rcnn.deploy.onnx_export.build_onnx_model`.
        base_anchors_per_stride: {stride: (A, 4) base anchors} of the recipe.
        output_names_of: function stride -> [cls, bbox(, landmark)] output names of our graph.
        recipe: the model's :class:`rcnn.recipe.Recipe` (pixel transform and box coder; None:
            the original recipe).
        layout: the model's :class:`rcnn.model_layout.ModelLayout` (None: ``net3``); one the
            package cannot read is refused (:func:`package_layout`).
    """
    from rcnn.recipe import default_recipe
    recipe = default_recipe() if recipe is None else recipe
    layout = ModelLayout() if layout is None else layout
    from onnx import TensorProto, helper
    graph = model.graph
    strides, num_anchors = package_layout(layout)
    if sorted(base_anchors_per_stride) != sorted(strides):
        raise ValueError('the recipe has anchors for strides %s, the layout strides %s'
                         % (sorted(base_anchors_per_stride), sorted(strides)))
    for stride, anchors in base_anchors_per_stride.items():
        if len(anchors) != num_anchors:
            raise ValueError('the recipe has %d anchors per position at stride %d, the layout %d'
                             % (len(anchors), stride, num_anchors))
    data_input, = [inp for inp in graph.input if inp.name == DATA_NAME]
    dims = data_input.type.tensor_type.shape.dim
    height = dims[2].dim_value or dims[2].dim_param or 'height'
    width = dims[3].dim_value or dims[3].dim_param or 'width'
    old_outputs = {out.name for out in graph.output}

    b = NodeBuilder(graph.initializer, 'insightface')
    # input.1 = (RGB - 127.5) / 128  ->  raw RGB = input.1 * 128 + 127.5 -> the model's input
    scaled = b.op('Mul', [INPUT_NAME, b.const(INPUT_STD, 'input_std')])
    raw = b.op('Add', [scaled, b.const(INPUT_MEAN, 'input_mean')],
               output=DATA_NAME if recipe.pixels.is_identity else None)
    if not recipe.pixels.is_identity:
        _pixel_transform_nodes(b, raw, recipe.pixels)
    normalise_nodes = list(b.nodes)
    b.nodes = []
    input_shape = b.op('Shape', [INPUT_NAME], 'input_shape')
    limits = b.op('Sub', [b.op('Cast', [b.op('Gather', [input_shape,
                                                        b.const([3, 2], 'wh_index', np.int64)])],
                               to=1), b.const(1.0, 'one_f')], 'image_limits')   # (W-1, H-1)
    heads = {}
    groups = package_output_groups(layout.landmarks)
    for stride in strides:
        names = ['%s_%d' % (group, stride) for group, _ in groups]
        sources = output_names_of(stride)
        missing = [name for name in sources if name not in old_outputs]
        if missing:
            raise ValueError('the graph lacks outputs %s' % missing)
        heads[stride] = _stride_head(b, sources, stride, base_anchors_per_stride[stride],
                                     limits, names, recipe.coder, layout)

    new_nodes = normalise_nodes + list(graph.node) + b.nodes
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                                     [1, 3, height, width]))
    del graph.output[:]
    for column, (group, row_width) in enumerate(groups):
        for stride in strides:
            rows = ('anchors_s%d' % stride if not (isinstance(height, int) and isinstance(width, int))
                    else (height // stride) * (width // stride) * num_anchors)
            graph.output.append(helper.make_tensor_value_info(
                heads[stride][column], TensorProto.FLOAT, [rows, row_width]))
    logger.info('insightface layout: %d nodes added, input %s (1, 3, %s, %s)',
                len(b.nodes) + len(normalise_nodes), INPUT_NAME, height, width)
    return model


def build_insightface_model(sym, arg_params, aux_params, input_size=None, recipe=None,
                            layout=None):
    """ONNX model in the package's detector layout from a deploy checkpoint.

    Args:
        input_size: (height, width) for a fixed input, or None for a symbolic height and width
            (each a multiple of the coarsest stride at run time).
        recipe: the model's :class:`rcnn.recipe.Recipe` (anchors, pixel transform, box coder;
            None: the original recipe, the released models').
        layout: the model's :class:`rcnn.model_layout.ModelLayout` (None: ``net3``).
    """
    import onnx
    from rcnn.deploy.onnx_export import build_onnx_model
    from rcnn.recipe import default_recipe
    recipe = default_recipe() if recipe is None else recipe
    layout = ModelLayout() if layout is None else layout
    package_layout(layout)                  # refused before the export's work
    base_anchors = recipe.base_anchors()
    if input_size is None:
        shape, dynamic = (1, 3, 640, 640), True
    else:
        shape, dynamic = (1, 3, int(input_size[0]), int(input_size[1])), False
    model = build_onnx_model(sym, arg_params, aux_params, input_shape=shape, dynamic=dynamic,
                             metadata={'retinaface.layout': 'insightface'})
    if dynamic:
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    add_insightface_head(model, base_anchors, lambda stride: layout_output_names(layout, stride),
                         recipe, layout)
    onnx.checker.check_model(model)
    return model


def package_decode(outputs, input_height, input_width, layout=None):
    """Every anchor of the layout outputs decoded with the package's formulas.

    Args:
        outputs: the arrays in graph order (scores, boxes[, keypoints] of each stride, fine to
            coarse).
        layout: the model's :class:`rcnn.model_layout.ModelLayout` (None: ``net3``).
    Returns:
        scores (N,), boxes (N, 4) x1 y1 x2 y2 and keypoints (N, 5, 2) (None without
        landmarks), float32, stride by stride (fine first), each position-major, anchor-minor.
    """
    layout = ModelLayout() if layout is None else layout
    strides, num_anchors = package_layout(layout)
    count = len(strides)
    scores, boxes, points = [], [], []
    for level, stride in enumerate(strides):
        rows, cols = input_height // stride, input_width // stride
        centres = np.stack(np.mgrid[:rows, :cols][::-1], axis=-1).reshape(-1, 2) * float(stride)
        centres = np.repeat(centres, num_anchors, axis=0)
        distances = outputs[level + count] * stride
        scores.append(outputs[level][:, 0])
        boxes.append(np.concatenate([centres - distances[:, :2], centres + distances[:, 2:]], 1))
        if layout.landmarks:
            offsets = outputs[level + 2 * count] * stride
            points.append(np.tile(centres, NUM_LANDMARKS).reshape(-1, NUM_LANDMARKS, 2)
                          + offsets.reshape(-1, NUM_LANDMARKS, 2))
    decoded = [np.concatenate(scores), np.concatenate(boxes),
               np.concatenate(points) if points else None]
    return tuple(None if part is None else part.astype(np.float32) for part in decoded)


def _rows(output, width):
    """(1, A * width, H, W) -> (H * W * A, width), position-major, anchor-minor."""
    return output[0].transpose(1, 2, 0).reshape(-1, width)


def reference_decode(mxnet_outputs, input_height, input_width, recipe=None, layout=None):
    """Every anchor of our deploy outputs decoded by the detector's steps (anchors of the
    recipe, its box coder, boxes clipped to the input), in the package's stride order; same
    returns as :func:`package_decode`.

    Args:
        mxnet_outputs: ``{deploy output name: (1, C, H_s, W_s) array}``.
    """
    from rcnn.processing.bbox_transform import clip_boxes
    from rcnn.processing.generate_anchor import anchors_plane
    from rcnn.recipe import default_recipe
    recipe = default_recipe() if recipe is None else recipe
    layout = ModelLayout() if layout is None else layout
    strides, num_anchors = package_layout(layout)
    base_anchors = recipe.base_anchors()
    scores, boxes, points = [], [], []
    for stride in strides:
        names = layout_output_names(layout, stride)
        cls, box = mxnet_outputs[names[0]], mxnet_outputs[names[1]]
        anchors = anchors_plane(cls.shape[2], cls.shape[3], stride,
                                base_anchors[stride]).reshape(-1, 4)
        scores.append(_rows(cls[:, num_anchors:], 1)[:, 0])
        deltas = _rows(box, layout.box_len)[:, :4]
        boxes.append(clip_boxes(recipe.coder.decode_boxes(anchors, deltas),
                                (input_height, input_width)))
        if layout.landmarks:
            point_deltas = _rows(mxnet_outputs[names[2]], layout.landmark_len)
            point_deltas = point_deltas.reshape(-1, NUM_LANDMARKS, layout.landmark_point_len)
            points.append(recipe.coder.decode_landmarks(anchors,
                                                        np.ascontiguousarray(point_deltas[:, :, :2])))
    decoded = [np.concatenate(scores), np.concatenate(boxes),
               np.concatenate(points) if points else None]
    return tuple(None if part is None else part.astype(np.float32) for part in decoded)


def verify_insightface_model(onnx_path, sym, arg_params, aux_params, input_size=(640, 640),
                             seed=0, recipe=None, layout=None):
    """Decode the layout model's outputs on a random image with the package's formulas and our
    MXNet graph's outputs with the detector's steps; returns the largest differences
    ``{'score': .., 'box': .., 'kps': ..}`` (pixels for boxes and keypoints; no ``kps``
    without landmarks)."""
    from rcnn.deploy.onnx_export import create_session, mxnet_forward
    from rcnn.recipe import default_recipe
    recipe = default_recipe() if recipe is None else recipe
    layout = ModelLayout() if layout is None else layout
    strides, _ = package_layout(layout)
    height, width = int(input_size[0]), int(input_size[1])
    pixels = np.random.RandomState(seed).uniform(0, 255, (1, 3, height, width)).astype(np.float32)
    session = create_session(onnx_path)
    got = session.run(package_output_names(strides, layout.landmarks),
                      {INPUT_NAME: (pixels - INPUT_MEAN) / INPUT_STD})
    reference = mxnet_forward(sym, arg_params, aux_params,
                              recipe.pixels.normalise_(pixels.copy()))
    expected = reference_decode(reference, height, width, recipe, layout)
    decoded = package_decode(got, height, width, layout)
    return {key: float(np.abs(a - b).max())
            for key, a, b in zip(('score', 'box', 'kps'), decoded, expected) if a is not None}


def verify_insightface_checkpoint(prefix, epoch, onnx_path, input_size=(640, 640)):
    """:func:`verify_insightface_model` of ``onnx_path`` against the checkpoint (recipe and
    layout) it was exported from."""
    from rcnn.recipe import load_recipe
    from rcnn.checkpoint.params import load_checkpoint
    from rcnn.deploy.checkpoint_layout import checkpoint_layout
    sym, arg_params, aux_params = load_checkpoint(prefix, epoch)
    return verify_insightface_model(onnx_path, sym, arg_params, aux_params,
                                    input_size=input_size, recipe=load_recipe(prefix),
                                    layout=checkpoint_layout(prefix, sym))


def export_insightface_checkpoint(prefix, epoch, onnx_path, input_size=None, verify=True,
                                  isolate=False):
    """Load a deploy checkpoint, write its layout model to ``onnx_path`` (atomically) and, with
    ``verify``, return :func:`verify_insightface_model`'s differences (else ``{}``);
    ``isolate`` runs that check in a process of its own
    (:func:`rcnn.deploy.onnx_export.call_in_child`).

    Raises:
        :class:`rcnn.deploy.onnx_export.CheckMemoryError` before anything is written when the
        check would not fit in the available memory; ``CheckCrashedError`` when the isolated
        check died.
    """
    from rcnn.recipe import load_recipe
    from rcnn.checkpoint.params import load_checkpoint
    from rcnn.utils.fileio import atomic_write_bytes
    from rcnn.deploy.onnx_export import check_verification_memory
    from rcnn.deploy.checkpoint_layout import checkpoint_layout
    sym, arg_params, aux_params = load_checkpoint(prefix, epoch)
    layout = checkpoint_layout(prefix, sym)
    package_layout(layout)
    if verify:
        check_verification_memory(sym, [(1, 3) + tuple(input_size or (640, 640))])
    recipe = load_recipe(prefix)
    model = build_insightface_model(sym, arg_params, aux_params, input_size=input_size,
                                    recipe=recipe, layout=layout)
    atomic_write_bytes(onnx_path, model.SerializeToString())
    if not verify:
        return {}
    check_size = tuple(input_size or (640, 640))
    if isolate:
        from rcnn.deploy.onnx_export import call_in_child
        return call_in_child(verify_insightface_checkpoint, (prefix, epoch, onnx_path, check_size),
                             (1, 3) + check_size, onnx_path)
    return verify_insightface_model(onnx_path, sym, arg_params, aux_params,
                                    input_size=check_size, recipe=recipe, layout=layout)
