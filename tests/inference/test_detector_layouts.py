"""RetinaFace on every layout family: hand-made deploy checkpoints with known faces.

Each checkpoint is a tiny MXNet deploy graph with the output names and channel counts a layout
implies: per stride, 1x1 convolutions with stride ``s`` read the input pixel at ``(s*y, s*x)``
for feature cell ``(y, x)``. Every weight is zero except the face logit of one anchor, which
sees the red channel: a white pixel at a cell's sample makes that anchor a face there
(probability ``1 / (1 + e^-5)``), everything else scores ``1 / (1 + e^5)``. Every other value
(box deltas, landmark deltas, blur, visibility) is a bias, the same at every cell. The test
computes the expected face by hand: the anchor from the original's anchor rule written out,
shifted to the cell, then the original's box / landmark decoding.
"""
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from rcnn.checkpoint.files import recipe_path
from rcnn.config import generate_config
from rcnn.model_layout import ModelLayout
from rcnn.recipe import write_recipe

FACE_P = 1.0 / (1.0 + math.exp(-5.0))          # the face probability of a white sample
BOX_DELTAS = (0.1, -0.2, math.log(1.5), math.log(0.75))
LANDMARK_DELTAS = np.array([[-0.2, -0.2], [0.2, -0.2], [0.0, 0.05], [-0.15, 0.25],
                            [0.15, 0.25]])
BLUR = 0.375
VISIBILITY = np.array([0.0, 0.9, -0.25, 0.5, 1.0])
CASCADE_DELTAS = (-0.05, 0.1, math.log(0.8), math.log(1.25))


# --------------------------------------------------------------------------- hand reference

def hand_anchor(side_w, side_h, cell, stride, shift=0.0):
    """An anchor of a ``side_w x side_h`` box centred on 7.5 (base 16) in cell (y, x)."""
    y, x = cell
    cx, cy = 7.5 + shift + x * stride, 7.5 + shift + y * stride
    return np.array([cx - 0.5 * (side_w - 1), cy - 0.5 * (side_h - 1),
                     cx + 0.5 * (side_w - 1), cy + 0.5 * (side_h - 1)])


def hand_box(anchor, deltas):
    width, height = anchor[2] - anchor[0] + 1, anchor[3] - anchor[1] + 1
    cx, cy = anchor[0] + 0.5 * (width - 1), anchor[1] + 0.5 * (height - 1)
    pcx, pcy = deltas[0] * width + cx, deltas[1] * height + cy
    pw, ph = math.exp(deltas[2]) * width, math.exp(deltas[3]) * height
    return np.array([pcx - 0.5 * (pw - 1), pcy - 0.5 * (ph - 1),
                     pcx + 0.5 * (pw - 1), pcy + 0.5 * (ph - 1)])


def hand_points(anchor, deltas):
    width, height = anchor[2] - anchor[0] + 1, anchor[3] - anchor[1] + 1
    cx, cy = anchor[0] + 0.5 * (width - 1), anchor[1] + 0.5 * (height - 1)
    return np.stack([deltas[:, 0] * width + cx, deltas[:, 1] * height + cy], axis=1)


def clip(box, height, width):
    return np.array([min(max(box[0], 0), width - 1), min(max(box[1], 0), height - 1),
                     min(max(box[2], 0), width - 1), min(max(box[3], 0), height - 1)])


# --------------------------------------------------------------------------- hand-made graphs

class HeadValues(object):
    """Weights and biases of every head of a layout (zero weights, known biases)."""

    def __init__(self, layout, cascade_cls=True, cascade_box=True):
        self.layout = layout
        a = layout.num_anchors
        self.cascade_cls, self.cascade_box = cascade_cls, cascade_box
        self.params = {}
        for stride in layout.strides:
            self._head('face_rpn_cls_score_stride%d' % stride, 2 * a,
                       np.r_[np.zeros(a), np.full(a, -5.0)])
            box_bias = list(BOX_DELTAS) + ([BLUR] if layout.blur else [])
            self._head('face_rpn_bbox_pred_stride%d' % stride, layout.box_len * a,
                       np.tile(box_bias, a))
            if layout.landmarks:
                per_point = LANDMARK_DELTAS
                if layout.occlusion:
                    per_point = np.concatenate([LANDMARK_DELTAS, VISIBILITY[:, None]], axis=1)
                self._head('face_rpn_landmark_pred_stride%d' % stride, layout.landmark_len * a,
                           np.tile(per_point.reshape(-1), a))
            for stage in range(layout.cascade):
                if cascade_cls:
                    self._head('face_rpn_cls_score_stride%d_cas%d' % (stride, stage), 2 * a,
                               np.r_[np.zeros(a), np.full(a, -5.0)])
                if cascade_box:
                    self._head('face_rpn_bbox_pred_stride%d_cas%d' % (stride, stage),
                               layout.box_len * a,
                               np.tile(list(CASCADE_DELTAS) + ([0.0] if layout.blur else []), a))

    def _head(self, name, channels, bias):
        self.params[name + '_weight'] = np.zeros((channels, 3, 1, 1), np.float32)
        self.params[name + '_bias'] = np.asarray(bias, np.float32)

    def make_face(self, stride, anchor, stage=None, channel=0):
        """The face logit of ``anchor`` at ``stride`` (of cascade ``stage``) sees one input
        channel (0 red, 1 green)."""
        name = 'face_rpn_cls_score_stride%d' % stride
        if stage is not None:
            name += '_cas%d' % stage
        self.params[name + '_weight'][self.layout.num_anchors + anchor, channel] = 10.0 / 255.0


def _softmax_output(mx, score, num_anchors, name):
    pairs = mx.sym.Reshape(score, shape=(0, 2, -1, 0))
    prob = mx.sym.softmax(pairs, axis=1)
    return mx.sym.Reshape(prob, shape=(0, 2 * num_anchors, -1, 0), name=name)


def save_graph(prefix, heads, cfg=None, network='mnet'):
    """Write ``heads`` as a deploy checkpoint (and, with ``cfg``, its recipe)."""
    import mxnet as mx
    from rcnn.checkpoint.params import save_checkpoint
    layout = heads.layout
    data = mx.sym.Variable('data')
    a = layout.num_anchors
    outputs = []

    def conv(name, stride):
        weight = heads.params[name + '_weight']
        return mx.sym.Convolution(data, kernel=(1, 1), stride=(stride, stride),
                                  num_filter=weight.shape[0], name=name)

    for s in layout.strides:
        outputs.append(_softmax_output(mx, conv('face_rpn_cls_score_stride%d' % s, s), a,
                                       'face_rpn_cls_prob_reshape_stride%d' % s))
        outputs.append(conv('face_rpn_bbox_pred_stride%d' % s, s))
        if layout.landmarks:
            outputs.append(conv('face_rpn_landmark_pred_stride%d' % s, s))
        for stage in range(layout.cascade):
            if heads.cascade_cls:
                outputs.append(_softmax_output(
                    mx, conv('face_rpn_cls_score_stride%d_cas%d' % (s, stage), s), a,
                    'face_rpn_cls_prob_reshape_stride%d_cas%d' % (s, stage)))
            if heads.cascade_box:
                outputs.append(conv('face_rpn_bbox_pred_stride%d_cas%d' % (s, stage), s))
    params = {k: mx.nd.array(v) for k, v in heads.params.items()}
    save_checkpoint(str(prefix), 0, mx.sym.Group(outputs), params, {})
    if cfg is not None:
        write_recipe(str(prefix), cfg, network)
    return str(prefix)


def layout_cfg(**overrides):
    cfg, _ = generate_config('mnet', 'retinaface', overrides=overrides)
    return cfg, ModelLayout.from_config(cfg)


def white_at(height, width, *points):
    """A black BGR image with white pixels at ``(y, x)`` points, or pure red / green ones at
    ``(y, x, 'red' | 'green')`` points."""
    image = np.zeros((height, width, 3), np.uint8)
    bgr = {'white': (255, 255, 255), 'red': (0, 0, 255), 'green': (0, 255, 0)}
    for point in points:
        image[point[0], point[1]] = bgr[point[2] if len(point) > 2 else 'white']
    return image


def detector(prefix, **kwargs):
    from retinaface import RetinaFace
    return RetinaFace(prefix, 0, ctx_id=-1, **kwargs)


# --------------------------------------------------------------------------- five strides

def _retina_side(k):
    """Anchor side of the five-level table: 16 px x 2^(k/3), k counted from stride 4 up."""
    return 16.0 * 2.0 ** (k / 3.0)


@pytest.fixture
def retina_checkpoint(tmp_path):
    cfg, layout = layout_cfg(RPN_ANCHOR_CFG='RAC_RETINA')
    assert layout.strides == (64, 32, 16, 8, 4) and layout.num_anchors == 3
    heads = HeadValues(layout)
    heads.make_face(16, 1)             # stride 16 = k 6..8: anchor 1 is k = 7; red
    heads.make_face(4, 0, channel=1)   # stride 4: anchor 0 is k = 0 (16 px); green (stride 4
    #                                    samples every stride-16 pixel too)
    return save_graph(tmp_path / 'retina', heads, cfg), cfg


def _retina_expected(height, width, decay4=0.5):
    big = hand_anchor(_retina_side(7), _retina_side(7), (3, 2), 16)
    small = hand_anchor(16, 16, (5, 9), 4)
    faces = [(FACE_P, big), (FACE_P * decay4, small)]
    faces.sort(key=lambda f: -f[0])
    return [(score, clip(hand_box(anchor, BOX_DELTAS), height, width),
             hand_points(anchor, LANDMARK_DELTAS)) for score, anchor in faces]


def _assert_faces(faces, landmarks, expected, atol=1e-3):
    assert len(faces) == len(expected), faces
    for row, (score, box, points) in enumerate(expected):
        np.testing.assert_allclose(faces[row, 4], score, atol=1e-5)
        np.testing.assert_allclose(faces[row, :4], box, atol=atol)
        if points is not None:
            np.testing.assert_allclose(landmarks[row, :, :2], points, atol=atol)


def test_five_strides_decode_every_level_with_decay_on_stride_4(retina_checkpoint):
    prefix, _ = retina_checkpoint
    # stride 16 cell (3, 2) red; stride 4 cell (5, 9) green
    image = white_at(128, 160, (48, 32, 'red'), (20, 36, 'green'))
    found = detector(prefix)
    assert found.strides == (64, 32, 16, 8, 4)
    faces, landmarks = found.detect(image, threshold=0.3)
    assert faces.shape == (2, 5) and landmarks.shape == (2, 5, 2)
    _assert_faces(faces, landmarks, _retina_expected(128, 160))
    faces, landmarks = detector(prefix, decay4=1.0).detect(image, threshold=0.3)
    _assert_faces(faces, landmarks, _retina_expected(128, 160, decay4=1.0))
    # decayed below the threshold
    faces, _ = found.detect(image, threshold=0.6)
    assert len(faces) == 1


def test_network_net5_reads_a_five_stride_checkpoint_without_recipe(retina_checkpoint):
    prefix, _ = retina_checkpoint
    Path(recipe_path(prefix)).unlink()
    image = white_at(128, 160, (48, 32, 'red'), (20, 36, 'green'))
    faces, landmarks = detector(prefix, network='net5').detect(image, threshold=0.3)
    _assert_faces(faces, landmarks, _retina_expected(128, 160))
    with pytest.raises(ValueError, match=r'strides \[64, 32, 16, 8, 4\]; its network has '
                                         r'strides \[32, 16, 8\] \(network=net5 or net5a or '
                                         r'x5 has those strides\)$'):
        detector(prefix)


def test_recipe_wins_over_the_network_name_and_says_so(retina_checkpoint, caplog):
    prefix, _ = retina_checkpoint
    with caplog.at_level(logging.INFO, logger='rcnn.inference.detector'):
        found = detector(prefix, network='net3')
    assert found.strides == (64, 32, 16, 8, 4)
    lines = [r.getMessage() for r in caplog.records if 'wins over network' in r.getMessage()]
    assert len(lines) == 1 and "network='net3'" in lines[0] and '64, 32, 16, 8, 4' in lines[0]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger='rcnn.inference.detector'):
        detector(prefix, network='net5')
    assert not [r for r in caplog.records if 'wins over network' in r.getMessage()]


def test_the_original_detector_members(retina_checkpoint):
    prefix, _ = retina_checkpoint
    found = detector(prefix)
    assert found._feat_stride_fpn == [64, 32, 16, 8, 4]
    assert found.fpn_keys == ['stride64', 'stride32', 'stride16', 'stride8', 'stride4']
    assert found._num_anchors == {key: 3 for key in found.fpn_keys}
    np.testing.assert_allclose(found._anchors_fpn['stride4'][0], hand_anchor(16, 16, (0, 0), 4))
    np.testing.assert_allclose(found._anchors_fpn['stride64'][2],
                               hand_anchor(_retina_side(14), _retina_side(14), (0, 0), 64),
                               atol=1e-3)
    assert found.pixel_means.dtype == np.float32 and not found.pixel_means.any()
    assert found.use_landmarks is True and found.cascade == 0


# --------------------------------------------------------------------------- 4 anchors, dense

def test_four_anchors_per_position(tmp_path):
    cfg, layout = layout_cfg(RPN_ANCHOR_CFG='RAC_SSH2')
    assert layout.num_anchors == 4
    heads = HeadValues(layout)
    heads.make_face(16, 3)             # ratio 1.5 (outer loop), scale 4: 13 x 20 base, x4
    prefix = save_graph(tmp_path / 'ssh2', heads, cfg)
    image = white_at(96, 96, (32, 48))             # stride 16 cell (2, 3)
    anchor = hand_anchor(52, 80, (2, 3), 16)
    expected = [(FACE_P, clip(hand_box(anchor, BOX_DELTAS), 96, 96),
                 hand_points(anchor, LANDMARK_DELTAS))]
    faces, landmarks = detector(prefix).detect(image)
    _assert_faces(faces, landmarks, expected)
    Path(recipe_path(prefix)).unlink()
    faces, landmarks = detector(prefix, network='net3a').detect(image)
    _assert_faces(faces, landmarks, expected)


def test_dense_anchors_decode_as_training_made_them(tmp_path):
    cfg, layout = layout_cfg(DENSE_ANCHOR=True)
    assert layout.num_anchors == 4
    heads = HeadValues(layout)
    heads.make_face(8, 3)              # the 16-px anchor again, shifted by half a stride (4)
    prefix = save_graph(tmp_path / 'dense', heads, cfg)
    image = white_at(64, 64, (16, 40))             # stride 8 cell (2, 5)
    anchor = hand_anchor(16, 16, (2, 5), 8, shift=4.0)
    faces, landmarks = detector(prefix).detect(image)
    _assert_faces(faces, landmarks, [(FACE_P, clip(hand_box(anchor, BOX_DELTAS), 64, 64),
                                      hand_points(anchor, LANDMARK_DELTAS))])
    # without its recipe the network name's 2 anchors cannot read the 4-anchor heads
    Path(recipe_path(prefix)).unlink()
    with pytest.raises(ValueError, match='class output of stride 32 has 8 channels; with 2 '
                                         'anchors per position it must have 4'):
        detector(prefix).detect(image)


# --------------------------------------------------------------------------- boxes only

def test_boxes_only_model_returns_landmarks_none(tmp_path):
    cfg, layout = layout_cfg(FACE_LANDMARK=False)
    heads = HeadValues(layout)
    heads.make_face(32, 0)
    prefix = save_graph(tmp_path / 'boxes', heads, cfg)
    image = white_at(70, 100, (32, 64))            # stride 32 cell (1, 2); anchor 512 px
    anchor = hand_anchor(512, 512, (1, 2), 32)
    expected = [(FACE_P, clip(hand_box(anchor, BOX_DELTAS), 70, 100), None)]
    found = detector(prefix)
    assert found.use_landmarks is False
    faces, landmarks = found.detect(image, do_flip=True)
    assert landmarks is None and faces.shape[1] == 5
    _assert_faces(faces[:1], None, expected)
    faces, landmarks = found.detect(np.zeros((70, 100, 3), np.uint8))
    assert faces.shape == (0, 5) and landmarks is None
    faces, landmarks = detector(prefix, vote=True).detect(image)
    assert landmarks is None and faces.shape == (1, 5)
    box, points = found.detect_center(image)
    assert points is None and box.shape == (5,)
    with pytest.raises(ValueError, match='no landmark heads'):
        found.align(image, landmarks)
    # the original's rule without a recipe: no landmark outputs, no landmarks
    Path(recipe_path(prefix)).unlink()
    faces, landmarks = detector(prefix).detect(image)
    assert landmarks is None
    _assert_faces(faces, None, expected)


def test_recipe_with_landmarks_on_a_boxes_only_graph_is_refused(tmp_path):
    cfg, layout = layout_cfg(FACE_LANDMARK=False)
    prefix = save_graph(tmp_path / 'boxes', HeadValues(layout))
    write_recipe(prefix, generate_config('mnet', 'retinaface')[0], 'mnet')
    with pytest.raises(ValueError, match='no landmark outputs, but its recipe says'):
        detector(prefix)


# --------------------------------------------------------------------------- blur, visibility

def test_blur_and_visibility_columns_raw_and_not_scaled(tmp_path):
    import cv2
    cfg, layout = layout_cfg(USE_BLUR=True, USE_OCCLUSION=True)
    assert layout.box_len == 5 and layout.landmark_len == 15
    heads = HeadValues(layout)
    heads.make_face(16, 0)
    prefix = save_graph(tmp_path / 'blur', heads, cfg)
    image = white_at(64, 80, (16, 32))             # stride 16 cell (1, 2), 128-px anchor
    found = detector(prefix)
    faces, landmarks = found.detect(image)
    anchor = hand_anchor(128, 128, (1, 2), 16)
    assert faces.shape == (1, 6) and landmarks.shape == (1, 5, 3)
    _assert_faces(faces, landmarks, [(FACE_P, clip(hand_box(anchor, BOX_DELTAS), 64, 80),
                                      hand_points(anchor, LANDMARK_DELTAS))])
    np.testing.assert_allclose(faces[0, 5], BLUR, atol=1e-6)
    np.testing.assert_allclose(landmarks[0, :, 2], VISIBILITY, atol=1e-6)

    # at scale 2 the white pixel, resized, is sampled at cell (2, 4): coordinates are divided
    # by the scale, the blur and visibility values are not
    resized = cv2.resize(image, None, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR)
    red = resized[32, 64, 2] / 255.0
    score = 1.0 / (1.0 + math.exp(-(10.0 * red - 5.0)))
    faces, landmarks = found.detect(image, threshold=0.5, scales=[2.0])
    anchor = hand_anchor(128, 128, (2, 4), 16)
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0, 4], score, atol=1e-4)
    np.testing.assert_allclose(faces[0, :4], clip(hand_box(anchor, BOX_DELTAS), 128, 160) / 2,
                               atol=1e-3)
    np.testing.assert_allclose(landmarks[0, :, :2], hand_points(anchor, LANDMARK_DELTAS) / 2,
                               atol=1e-3)
    np.testing.assert_allclose(faces[0, 5], BLUR, atol=1e-6)
    np.testing.assert_allclose(landmarks[0, :, 2], VISIBILITY, atol=1e-6)

    # voting keeps the columns: the top box's blur and points
    faces, landmarks = detector(prefix, vote=True).detect(image)
    assert faces.shape == (1, 6) and landmarks.shape == (1, 5, 3)
    np.testing.assert_allclose(faces[0, 5], BLUR, atol=1e-6)
    empty, none_found = found.detect(np.zeros((64, 80, 3), np.uint8))
    assert empty.shape == (0, 6) and none_found.shape == (0, 5, 3)
    crops = found.align(image, landmarks)
    np.testing.assert_array_equal(crops, found.align(image, landmarks[:, :, :2]))

    # without its recipe the original's rule still gives both columns: the value counts are
    # read from the heads
    Path(recipe_path(prefix)).unlink()
    bare = detector(prefix)
    assert bare.layout == layout
    faces, landmarks = bare.detect(image)
    assert faces.shape == (1, 6) and landmarks.shape == (1, 5, 3)
    np.testing.assert_allclose(landmarks[0, :, 2], VISIBILITY, atol=1e-6)


def test_flip_back_moves_visibility_with_its_point():
    from rcnn.inference.postprocess import flip_back
    from rcnn.processing.detections import Detections
    points = np.array([[[10, 5, 0.1], [30, 5, 0.2], [20, 9, 0.3], [12, 15, 0.4],
                        [28, 15, 0.5]]], np.float32)
    dets = Detections(np.array([[5, 0, 35, 20]], np.float32), np.array([0.9], np.float32),
                      points.copy(), np.array([[0.7]], np.float32))
    flip_back(dets, 100)
    np.testing.assert_allclose(dets.boxes, [[64, 0, 94, 20]])
    # left eye <-> right eye, left <-> right mouth corner; x' = 99 - x; visibility moves along
    np.testing.assert_allclose(dets.landmarks[0], [[69, 5, 0.2], [89, 5, 0.1], [79, 9, 0.3],
                                                   [71, 15, 0.5], [87, 15, 0.4]])
    np.testing.assert_allclose(dets.extras, [[0.7]])


# --------------------------------------------------------------------------- cascade

def _cascade_checkpoint(tmp_path, cfg=True):
    config, layout = layout_cfg(CASCADE=1)
    heads = HeadValues(layout)
    heads.make_face(16, 0)             # the first stage finds anchor 0 ...
    heads.make_face(16, 1, stage=0)    # ... the cascade stage decides: anchor 1
    return save_graph(tmp_path / 'cascade', heads, config if cfg else None), layout


def _cascade_expected(height, width):
    anchor = hand_anchor(64, 64, (2, 1), 16)       # stride 16 anchor 1: scale 4
    refined = hand_box(hand_box(anchor, BOX_DELTAS), CASCADE_DELTAS)
    return [(FACE_P, clip(refined, height, width), hand_points(anchor, LANDMARK_DELTAS))]


def test_cascade_stage_scores_and_refines_the_first_stage_boxes(tmp_path):
    prefix, layout = _cascade_checkpoint(tmp_path)
    image = white_at(64, 64, (32, 16))             # stride 16 cell (2, 1)
    found = detector(prefix)
    assert found.cascade == 1 and found.layout == layout
    assert found.outputs.names[3:5] == ['face_rpn_cls_prob_reshape_stride32_cas0',
                                        'face_rpn_bbox_pred_stride32_cas0']
    faces, landmarks = found.detect(image)
    _assert_faces(faces, landmarks, _cascade_expected(64, 64))
    # without a recipe, as the original: more than three outputs per stride are the cascade's
    Path(recipe_path(prefix)).unlink()
    faces, landmarks = detector(prefix).detect(image)
    _assert_faces(faces, landmarks, _cascade_expected(64, 64))


def test_two_cascade_stages_both_refine_the_first_stage_boxes(tmp_path):
    """Training gives every stage the first stage's refined anchors (the original's
    cascade_refine reads bbox_pred_t0 at each stage), so the last stage's deltas apply to the
    first stage's box, not to the stage before."""
    config, layout = layout_cfg(CASCADE=2)
    heads = HeadValues(layout)
    heads.make_face(16, 1, stage=1)    # only the last stage's probabilities decide
    prefix = save_graph(tmp_path / 'cascade2', heads, config)
    found = detector(prefix)
    assert found.cascade == 2
    faces, landmarks = found.detect(white_at(64, 64, (32, 16)))
    anchor = hand_anchor(64, 64, (2, 1), 16)
    refined = hand_box(hand_box(anchor, BOX_DELTAS), CASCADE_DELTAS)
    _assert_faces(faces, landmarks, [(FACE_P, clip(refined, 64, 64),
                                      hand_points(anchor, LANDMARK_DELTAS))])


def test_cascade_recipe_on_a_graph_without_cascade_outputs_is_refused(tmp_path):
    _, layout = layout_cfg()
    prefix = save_graph(tmp_path / 'plain', HeadValues(layout))
    write_recipe(prefix, layout_cfg(CASCADE=1)[0], 'mnet')
    with pytest.raises(ValueError, match='CASCADE=1, but the graph has 0 cascade stage'):
        detector(prefix)


def test_cascade_box_only_stage_keeps_the_first_stage_scores(tmp_path):
    config, layout = layout_cfg(CASCADE=1)
    heads = HeadValues(layout, cascade_cls=False)
    heads.make_face(16, 1)
    prefix = save_graph(tmp_path / 'casbox', heads, config)
    faces, landmarks = detector(prefix).detect(white_at(64, 64, (32, 16)))
    _assert_faces(faces, landmarks, _cascade_expected(64, 64))


# --------------------------------------------------------------------------- onnxruntime

def _runtime_case(tmp_path, which):
    """(prefix, layout, image) of a hand-made checkpoint with a face."""
    if which == 'retina':
        cfg, layout = layout_cfg(RPN_ANCHOR_CFG='RAC_RETINA')
        heads = HeadValues(layout)
        heads.make_face(16, 1)
        heads.make_face(4, 0, channel=1)
        image = white_at(128, 160, (48, 32, 'red'), (20, 36, 'green'))
    elif which == 'cascade_blur':
        cfg, layout = layout_cfg(CASCADE=1, USE_BLUR=True, USE_OCCLUSION=True)
        heads = HeadValues(layout)
        heads.make_face(16, 1, stage=0)
        image = white_at(64, 64, (32, 16))
    else:
        cfg, layout = layout_cfg(FACE_LANDMARK=False, DENSE_ANCHOR=True)
        heads = HeadValues(layout)
        heads.make_face(8, 3)
        image = white_at(64, 64, (16, 40))
    return save_graph(tmp_path / which, heads, cfg), layout, image


@pytest.mark.parametrize('which', ['retina', 'cascade_blur', 'dense_boxes'])
def test_onnxruntime_backend_reads_the_same_names_for_any_layout(tmp_path, monkeypatch, which):
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    monkeypatch.setenv('RETINAFACE_CACHE_DIR', str(tmp_path / 'cache'))
    prefix, layout, image = _runtime_case(tmp_path, which)
    by_mxnet = detector(prefix).detect(image, threshold=0.3, do_flip=True)
    runtime = detector(prefix, backend='onnxruntime')
    assert runtime.backend.output_names == runtime.outputs.names
    by_onnx = runtime.detect(image, threshold=0.3, do_flip=True)
    assert len(by_mxnet[0]) > 0
    np.testing.assert_allclose(by_onnx[0], by_mxnet[0], atol=1e-4)
    if layout.landmarks:
        np.testing.assert_allclose(by_onnx[1], by_mxnet[1], atol=1e-4)
    else:
        assert by_onnx[1] is None and by_mxnet[1] is None
    # the exported file alone: its recipe travels in its metadata
    onnx_file = runtime.backend.onnx_path
    alone = detector(onnx_file, backend='onnxruntime')
    assert alone.layout == layout
    np.testing.assert_allclose(alone.detect(image, threshold=0.3, do_flip=True)[0],
                               by_mxnet[0], atol=1e-4)


@pytest.mark.parametrize('which', ['retina', 'dense_boxes'])
def test_opencv_backend_reads_the_same_names_for_any_layout(tmp_path, monkeypatch, which):
    pytest.importorskip('onnx')
    import cv2
    if not hasattr(cv2, 'dnn'):
        pytest.skip('this OpenCV build has no DNN module')
    monkeypatch.setenv('RETINAFACE_CACHE_DIR', str(tmp_path / 'cache'))
    prefix, layout, image = _runtime_case(tmp_path, which)
    by_mxnet = detector(prefix).detect(image, threshold=0.3)
    by_opencv = detector(prefix, backend='opencv').detect(image, threshold=0.3)
    assert len(by_mxnet[0]) > 0
    np.testing.assert_allclose(by_opencv[0], by_mxnet[0], atol=1e-4)
    if layout.landmarks:
        np.testing.assert_allclose(by_opencv[1], by_mxnet[1], atol=1e-4)


# --------------------------------------------------------------------------- recipe file

def test_recipe_file_records_the_layout_the_detector_needs(tmp_path):
    cfg, layout = layout_cfg(RPN_ANCHOR_CFG='RAC_SSH3', DENSE_ANCHOR=True, USE_BLUR=True,
                             FACE_LANDMARK=False, CASCADE=2)
    prefix = str(tmp_path / 'm')
    record = json.loads(Path(write_recipe(prefix, cfg, 'mnet')).read_text())
    want = {'strides': [32, 16, 8, 4], 'num_anchors': 8, 'box_len': 5, 'landmark_len': 0,
            'cascade': 2, 'landmarks': False, 'blur': True, 'occlusion': False}
    assert {key: record['layout'][key] for key in want} == want
    for key in ('cascade_cls_strides', 'cascade_bbox_strides'):    # recorded when known
        assert record['layout'].get(key, [32, 16, 8, 4]) == [32, 16, 8, 4]
    assert record['dense_anchor'] is True


def test_cascade_stages_are_grouped_by_name_wherever_the_stage_is_named():
    from rcnn.processing.detections import DeployOutputs
    first = ['face_rpn_cls_prob_reshape_stride8', 'face_rpn_bbox_pred_stride8',
             'face_rpn_landmark_pred_stride8']
    after = first + ['face_rpn_cls_prob_reshape_stride8_cas0', 'face_rpn_bbox_pred_stride8_cas0',
                     'face_rpn_bbox_pred_stride8_cas1']
    before = first + ['face_rpn_cls_prob_reshape_cas0_stride8', 'face_rpn_bbox_pred_cas0_stride8',
                      'face_rpn_bbox_pred_cas1_stride8']
    for names in (after, before):
        plan = DeployOutputs(names, (8,))
        assert plan.per_stride[0][1:4] == (0, 1, 2)
        assert plan.per_stride[0].cascade == ((3, 4), (None, 5)) and plan.cascade == 2
    with pytest.raises(ValueError, match='lack the class or box output of stride 16'):
        DeployOutputs(first, (16, 8))
    with pytest.raises(ValueError, match='neither a first-stage output'):
        DeployOutputs(first + ['face_rpn_bbox_pred_stride8_cas0'] * 2, (8,))


def test_a_boxes_only_recipe_ignores_landmark_outputs_of_its_graph(tmp_path):
    _, layout = layout_cfg()
    heads = HeadValues(layout)
    heads.make_face(32, 0)
    prefix = save_graph(tmp_path / 'plain', heads)
    write_recipe(prefix, layout_cfg(FACE_LANDMARK=False)[0], 'mnet')
    found = detector(prefix)
    assert found.use_landmarks is False
    faces, landmarks = found.detect(white_at(70, 100, (32, 64)))
    assert landmarks is None and faces.shape == (1, 5)


def test_strides_with_and_without_a_cascade_stage_decode_together():
    from rcnn.processing.detections import DeployOutputs, decode_detections
    from rcnn.processing.generate_anchor import AnchorCache
    names = ['face_rpn_cls_prob_reshape_stride16', 'face_rpn_bbox_pred_stride16',
             'face_rpn_bbox_pred_stride16_cas0',
             'face_rpn_cls_prob_reshape_stride8', 'face_rpn_bbox_pred_stride8']
    plan = DeployOutputs(names, (16, 8))
    cache = AnchorCache({16: np.array([[0, 0, 15, 15]], np.float32),
                         8: np.array([[0, 0, 15, 15]], np.float32)})
    cls16, cls8 = np.zeros((1, 2, 2, 2), np.float32), np.zeros((1, 2, 4, 4), np.float32)
    cls16[0, 1, 1, 0] = 0.9                          # stride 16 cell (1, 0)
    cls8[0, 1, 0, 3] = 0.8                           # stride 8 cell (0, 3)
    box16 = np.tile(np.array(BOX_DELTAS, np.float32)[None, :, None, None], (1, 1, 2, 2))
    cas16 = np.tile(np.array(CASCADE_DELTAS, np.float32)[None, :, None, None], (1, 1, 2, 2))
    box8 = np.tile(np.array(BOX_DELTAS, np.float32)[None, :, None, None], (1, 1, 4, 4))
    dets = decode_detections([cls16, box16, cas16, cls8, box8], (16, 8), cache, 0.5,
                             (1000, 1000), plan=plan)
    np.testing.assert_allclose(dets.scores, [0.9, 0.8])
    refined = hand_box(hand_box(hand_anchor(16, 16, (1, 0), 16), BOX_DELTAS), CASCADE_DELTAS)
    np.testing.assert_allclose(dets.boxes[0], clip(refined, 1000, 1000), atol=1e-4)
    np.testing.assert_allclose(dets.boxes[1], clip(hand_box(hand_anchor(16, 16, (0, 3), 8),
                                                            BOX_DELTAS), 1000, 1000), atol=1e-4)
    assert dets.landmarks is None and dets.extras.shape == (2, 0)


def test_wider_test_writes_the_five_columns_of_a_blur_visibility_model(tmp_path):
    import cv2
    from rcnn.evaluation.wider_test import detect_image
    from rcnn.inference.pipeline import Schedule
    cfg, layout = layout_cfg(USE_BLUR=True, USE_OCCLUSION=True)
    heads = HeadValues(layout)
    heads.make_face(16, 0)
    found = detector(save_graph(tmp_path / 'blur', heads, cfg))
    path = str(tmp_path / 'face.png')
    cv2.imwrite(path, white_at(64, 80, (16, 32)))
    faces, points = detect_image(found, path, 'original', 0.5, Schedule())
    assert faces.shape == (1, 5) and points.shape == (1, 5, 2)
    np.testing.assert_allclose(faces[0, 4], FACE_P, atol=1e-5)
