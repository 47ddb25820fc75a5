"""Anchor labels of every member of the model family: each anchor table, ``DENSE_ANCHOR``,
``USE_BLUR`` (5 box values), ``USE_OCCLUSION`` (15 landmark values) and ``FACE_LANDMARK``
off, against hand-computed cases and against a reference written independently from the
original's formulas (anchors by meshgrid, IoU by broadcasting, layouts by index arithmetic)."""
import numpy as np
import pytest

from rcnn.config import generate_config
from rcnn.dataset.annotations import FaceAnnotations
from rcnn.io.anchor_targets import AnchorTargetGenerator
from rcnn.io.rpn import assign_anchor_fpn
from test_anchor_labels import reference_iou

IM_INFO = [640, 640, 1.0]


def _cfg(**overrides):
    cfg, _ = generate_config('mnet', 'retinaface', overrides=overrides)
    return cfg


def _feat(strides, height=640, width=640):
    return [(1, 4, height // s, width // s) for s in strides]


def _gt_label(boxes, points=None, blur=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if points is None:
        points = np.full((len(boxes), 5, 3), -1, np.float32)
    label = {'gt_boxes': np.hstack([boxes, np.ones((len(boxes), 1), np.float32)]),
             'gt_landmarks': np.asarray(points, np.float32)}
    if blur is not None:
        label['gt_blur'] = np.asarray(blur, np.float32)
    return label


# stride 8, anchor a = 1 of RAC_SSH is [0, 0, 15, 15]; at cell (y=10, x=20): [160, 80, 175, 95]
FACE = [160, 80, 175, 95]
CELL = 10 * 80 + 20
OFFSETS = np.array([[-4, -3], [4, -3], [0, 1], [-3, 5], [3, 5]], np.float64)


def _points(visibility):
    points = np.zeros((1, 5, 3), np.float32)
    points[0, :, 0] = 167.5 + OFFSETS[:, 0]
    points[0, :, 1] = 87.5 + OFFSETS[:, 1]
    points[0, :, 2] = visibility
    return points


# ---------------------------------------------------------------- hand-computed cases

def test_dense_anchor_face_on_a_shifted_anchor():
    # dense base anchors of stride 8: [-8 -8 23 23], [0 0 15 15], [-4 -4 27 27], [4 4 19 19];
    # a = 3 at cell (10, 20) is [164, 84, 179, 99]
    cfg = _cfg(DENSE_ANCHOR=True)
    face = [164, 84, 179, 99]
    labels = assign_anchor_fpn(_feat((32, 16, 8)), _gt_label([face]), IM_INFO, landmark=True,
                               cfg=cfg)
    s8 = labels['face_label_stride8'][0]
    assert s8.shape == (4 * 6400,)
    assert np.flatnonzero(s8 == 1).tolist() == [3 * 6400 + CELL]
    # the unshifted a = 1 at the four cells around it overlaps 12 x 12 px: IoU 144 / 368
    for y, x in ((10, 20), (10, 21), (11, 20), (11, 21)):
        assert s8[1 * 6400 + y * 80 + x] == -1
    target = labels['face_bbox_target_stride8'][0]
    assert target.shape == (16, 6400)
    np.testing.assert_allclose(target[12:16, CELL], 0, atol=1e-6)
    # a = 1 at the same cell: centre 7.5 px left of and above the face's, same size
    np.testing.assert_allclose(target[4:8, CELL], [4 / 16, 4 / 16, 0, 0], atol=1e-6)
    assert labels['face_bbox_weight_stride8'][0][12:16, CELL].tolist() == [1, 1, 1, 1]
    assert labels['face_bbox_weight_stride8'].sum() == 4


def test_blur_is_the_fifth_box_value_with_weight_one_tenth():
    cfg = _cfg(USE_BLUR=True)
    labels = assign_anchor_fpn(_feat((32, 16, 8)), _gt_label([FACE], _points(1.0), [0.7]),
                               IM_INFO, landmark=True, cfg=cfg)
    target = labels['face_bbox_target_stride8'][0]
    weight = labels['face_bbox_weight_stride8'][0]
    assert target.shape == weight.shape == (10, 6400)
    np.testing.assert_allclose(target[5:10, CELL], [0, 0, 0, 0, 0.7], atol=1e-6)
    np.testing.assert_allclose(weight[5:10, CELL], [1, 1, 1, 1, 0.1])
    np.testing.assert_allclose(weight.sum(), 4.1, rtol=1e-6)
    # a = 0 at that cell (32 px) is background: it still encodes the face (and its blur), with
    # no weight
    np.testing.assert_allclose(target[0:5, CELL], [0, 0, np.log(0.5), np.log(0.5), 0.7],
                               atol=1e-6)
    assert np.all(weight[0:5, CELL] == 0)
    assert labels['face_landmark_target_stride8'].shape == (1, 20, 6400)


def test_blur_and_visibility_are_scaled_as_the_originals_std_columns():
    # the original divides columns 0::4 of 5-wide box rows by BBOX_STDS[0] (the blur too) and
    # all 15 landmark values by LANDMARK_STD
    from rcnn.processing.box_coder import BoxCoder
    cfg = _cfg(USE_BLUR=True, USE_OCCLUSION=True)
    generator = AnchorTargetGenerator.from_config(cfg)
    generator.coder = BoxCoder((0.1, 0.1, 0.2, 0.2), 0.5)
    faces = FaceAnnotations(np.array([FACE], np.float32), _points(1.0)[:, :, :2],
                            np.array([[1, 0, 1, 1, 0]], np.float32), blur=[0.7])
    labels = generator(_feat((32, 16, 8)), faces, IM_INFO)
    box = labels['face_bbox_target_stride8'][0][5:10, CELL]
    np.testing.assert_allclose(box, [0, 0, 0, 0, 7.0], atol=1e-5)
    points = labels['face_landmark_target_stride8'][0][15:30, CELL].reshape(5, 3)
    np.testing.assert_allclose(points[:, 2], [2, 0, 2, 2, 0], atol=1e-6)
    np.testing.assert_allclose(points[:, :2], OFFSETS / 16.0 / 0.5, atol=1e-6)
    np.testing.assert_allclose(generator.coder.decode_blur(np.float32(box[4:])), [0.7],
                               rtol=1e-6)
    np.testing.assert_allclose(generator.coder.decode_visibility(points[:, 2]), [1, 0, 1, 1, 0])


def test_blur_and_visibility_weights_follow_their_keys():
    cfg = _cfg(USE_BLUR=True, USE_OCCLUSION=True, **{'TRAIN.BLUR_WEIGHT': 1.0,
                                                     'TRAIN.VISIBILITY_WEIGHT': 0.5})
    visibility = np.array([1.0, 0.0, 1.0, -1.0, 0.0], np.float32)
    labels = assign_anchor_fpn(_feat((32, 16, 8)), _gt_label([FACE], _points(visibility), [0.7]),
                               IM_INFO, landmark=True, cfg=cfg)
    np.testing.assert_allclose(labels['face_bbox_weight_stride8'][0][5:10, CELL], [1] * 5)
    landmark_weight = labels['face_landmark_weight_stride8'][0][15:30, CELL].reshape(5, 3)
    np.testing.assert_allclose(landmark_weight, [[1, 1, 0.5]] * 3 + [[0, 0, 0]] + [[1, 1, 0.5]])


def test_without_faces_blur_targets_are_zero():
    cfg = _cfg(USE_BLUR=True)
    labels = assign_anchor_fpn(_feat((32, 16, 8)), _gt_label(np.zeros((0, 4))), IM_INFO,
                               landmark=True, cfg=cfg)
    for name, array in labels.items():
        assert np.all(array == 0), name


def test_occlusion_targets_and_weights_per_point():
    cfg = _cfg(USE_OCCLUSION=True)
    # points: visible, occluded, visible, missing, occluded
    visibility = np.array([1.0, 0.0, 1.0, -1.0, 0.0], np.float32)
    points = _points(visibility)
    points[0, 3, :2] = -1                      # the reader's placeholder of a missing point
    labels = assign_anchor_fpn(_feat((32, 16, 8)), _gt_label([FACE], points), IM_INFO,
                               landmark=True, cfg=cfg)
    target = labels['face_landmark_target_stride8'][0]
    weight = labels['face_landmark_weight_stride8'][0]
    assert target.shape == weight.shape == (30, 6400)
    expected = np.zeros((5, 3))
    expected[:, :2] = OFFSETS / 16.0
    expected[:, 2] = visibility
    expected[3] = 0
    np.testing.assert_allclose(target[15:30, CELL], expected.reshape(15), atol=1e-6)
    expected_weight = np.tile([1.0, 1.0, 0.1], (5, 1))
    expected_weight[3] = 0
    np.testing.assert_allclose(weight[15:30, CELL], expected_weight.reshape(15), rtol=1e-6)
    np.testing.assert_allclose(weight.sum(), 4 * 2.1, rtol=1e-6)
    assert labels['face_bbox_target_stride8'].shape == (1, 8, 6400)


def test_occlusion_face_without_landmarks_trains_none():
    cfg = _cfg(USE_OCCLUSION=True)
    labels = assign_anchor_fpn(_feat((32, 16, 8)), _gt_label([FACE]), IM_INFO, landmark=True,
                               cfg=cfg)
    assert labels['face_bbox_weight_stride8'].sum() == 4
    for stride in (32, 16, 8):
        assert labels['face_landmark_weight_stride%d' % stride].sum() == 0
        assert labels['face_landmark_target_stride%d' % stride].sum() == 0


def test_blur_travels_with_the_faces_kept():
    cfg = _cfg(USE_BLUR=True)
    faces = FaceAnnotations(np.array([FACE, [0, 0, 300, 300]], np.float32), blur=[0.2, 0.9],
                            classes=[1, 0])
    labels = AnchorTargetGenerator.from_config(cfg)(_feat((32, 16, 8)), faces, IM_INFO)
    np.testing.assert_allclose(labels['face_bbox_target_stride8'][0][9, CELL], 0.2, atol=1e-6)


def test_face_landmark_off_gives_box_labels_only():
    cfg = _cfg(FACE_LANDMARK=False)
    generator = AnchorTargetGenerator.from_config(cfg)
    labels = generator(_feat((32, 16, 8)), FaceAnnotations(np.array([FACE])), IM_INFO)
    assert list(labels) == generator.label_names == [
        'face_%s_stride%d' % (k, s) for s in (32, 16, 8)
        for k in ('label', 'bbox_target', 'bbox_weight')]
    assert np.sum(labels['face_label_stride8'] == 1) == 1
    with pytest.raises(ValueError, match='no landmark head'):
        assign_anchor_fpn(_feat((32, 16, 8)), _gt_label([FACE]), IM_INFO, landmark=True, cfg=cfg)


def test_select_stride_over_five_strides():
    cfg = _cfg(RPN_ANCHOR_CFG='RAC_RETINA')
    strides = (64, 32, 16, 8, 4)
    labels = assign_anchor_fpn(_feat(strides), _gt_label([FACE]), IM_INFO, landmark=True,
                               cfg=cfg, select_stride=16)
    for stride in strides:
        kept = labels['face_label_stride%d' % stride]
        assert kept.shape == (1, 3 * (640 // stride) ** 2)
        assert np.all(kept == -1) == (stride != 16), stride


def test_label_shapes_follow_the_layout():
    cases = {(): ((32, 16, 8), 2, 4, 10), ('RPN_ANCHOR_CFG', 'RAC_SSH2'): ((32, 16, 8), 4, 4, 10),
             ('RPN_ANCHOR_CFG', 'RAC_SSH3'): ((32, 16, 8, 4), 4, 4, 10),
             ('RPN_ANCHOR_CFG', 'RAC_RETINA'): ((64, 32, 16, 8, 4), 3, 4, 10),
             ('DENSE_ANCHOR', True): ((32, 16, 8), 4, 4, 10),
             ('USE_BLUR', True): ((32, 16, 8), 2, 5, 10),
             ('USE_OCCLUSION', True): ((32, 16, 8), 2, 4, 15)}
    for override, (strides, anchors, box, landmark) in cases.items():
        cfg = _cfg(**dict([override])) if override else _cfg()
        generator = AnchorTargetGenerator.from_config(cfg)
        feat = _feat(strides, 320, 384)
        shapes = dict(generator.label_shapes(feat, batch=2))
        labelled = generator(feat, FaceAnnotations(np.array([FACE])), [320, 384, 1.0])
        assert list(labelled) == list(shapes), override
        for stride in strides:
            cells = (320 // stride) * (384 // stride)
            name = 'face_%%s_stride%d' % stride
            assert shapes[name % 'label'] == (2, anchors * cells)
            assert shapes[name % 'bbox_target'] == (2, box * anchors, cells)
            assert shapes[name % 'landmark_weight'] == (2, landmark * anchors, cells)
            for kind in ('label', 'bbox_target', 'landmark_weight'):
                assert labelled[name % kind].shape == (1,) + shapes[name % kind][1:], override


# ---------------------------------------------------------------- independent reference

def _base_anchors(table, stride, dense):
    """The original's formulas, written out: ratios outer, scales inner, centre 7.5."""
    entry = table[str(stride)]
    rows = []
    for ratio in entry['RATIOS']:
        width = np.round(np.sqrt(256.0 / ratio))
        height = np.round(width * ratio)
        for scale in entry['SCALES']:
            w, h = width * scale, height * scale
            rows.append([7.5 - 0.5 * (w - 1), 7.5 - 0.5 * (h - 1),
                         7.5 + 0.5 * (w - 1), 7.5 + 0.5 * (h - 1)])
    rows = np.array(rows)
    return np.vstack([rows, rows + stride // 2]) if dense else rows


def _reference(cfg, feat_shapes, boxes, points, blur):
    table, strides = cfg.RPN_ANCHOR_CFG, [int(s) for s in cfg.RPN_FEAT_STRIDE]
    box_len = 5 if cfg.USE_BLUR else 4
    point_len = 3 if cfg.USE_OCCLUSION else 2
    all_anchors, where = [], []
    for stride, shape in zip(strides, feat_shapes):
        height, width = shape[-2:]
        base = _base_anchors(table, stride, cfg.DENSE_ANCHOR)
        ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
        for a, anchor in enumerate(base):
            shifted = anchor[None, None, :] + stride * np.stack([xs, ys, xs, ys], axis=-1)
            all_anchors.append(shifted.reshape(-1, 4))
            where += [(stride, a, p) for p in range(height * width)]
    anchors = np.concatenate(all_anchors)
    iou = reference_iou(anchors, boxes)
    best, best_iou = iou.argmax(axis=1), iou.max(axis=1)
    labels = np.where(best_iou >= 0.5, 1.0, np.where(best_iou < 0.3, 0.0, -1.0))
    aw, ah = anchors[:, 2] - anchors[:, 0] + 1, anchors[:, 3] - anchors[:, 1] + 1
    acx, acy = anchors[:, 0] + 0.5 * (aw - 1), anchors[:, 1] + 0.5 * (ah - 1)
    m = boxes[best]
    mw, mh = m[:, 2] - m[:, 0] + 1, m[:, 3] - m[:, 1] + 1
    mcx, mcy = m[:, 0] + 0.5 * (mw - 1), m[:, 1] + 0.5 * (mh - 1)
    box = [(mcx - acx) / aw, (mcy - acy) / ah, np.log(mw / aw), np.log(mh / ah)]
    box_weight = [np.ones(len(anchors))] * 4
    if box_len == 5:
        box.append(blur[best])
        box_weight.append(np.full(len(anchors), 0.1))
    pts = points[best]
    landmark, landmark_weight = [], []
    for p in range(5):
        present = pts[:, p, 2] >= 0 if point_len == 3 else pts[:, 0, 2] >= 0
        values = [(pts[:, p, 0] - acx) / aw, (pts[:, p, 1] - acy) / ah]
        weights = [present * 1.0, present * 1.0]
        if point_len == 3:
            values = [v * present for v in values] + [pts[:, p, 2] * present]
            weights.append(present * 0.1)
        landmark += values
        landmark_weight += weights
    positive = labels == 1
    columns = {'bbox_target': np.stack(box, 1),
               'bbox_weight': np.stack(box_weight, 1) * positive[:, None],
               'landmark_target': np.stack(landmark, 1),
               'landmark_weight': np.stack(landmark_weight, 1) * positive[:, None]}
    out = {}
    count = len(_base_anchors(table, strides[0], cfg.DENSE_ANCHOR))
    for stride, shape in zip(strides, feat_shapes):
        hw = shape[-2] * shape[-1]
        out['label', stride] = np.zeros((1, count * hw))
        for kind, array in columns.items():
            out[kind, stride] = np.zeros((1, array.shape[1] * count, hw))
    for i, (stride, a, p) in enumerate(where):
        hw = out['label', stride].shape[1] // count
        out['label', stride][0, a * hw + p] = labels[i]
        for kind, array in columns.items():
            length = array.shape[1]
            out[kind, stride][0, a * length:(a + 1) * length, p] = array[i]
    return out


def _random_faces(rng, count, height, width):
    xy = rng.uniform(-10, [width - 10, height - 10], size=(count, 2))
    wh = np.exp(rng.uniform(np.log(5), np.log(150), size=(count, 2)))
    boxes = np.hstack([xy, xy + wh])
    points = np.zeros((count, 5, 3))
    points[:, :, 0] = xy[:, :1] + rng.uniform(0, 1, (count, 5)) * wh[:, :1]
    points[:, :, 1] = xy[:, 1:] + rng.uniform(0, 1, (count, 5)) * wh[:, 1:]
    points[:, :, 2] = rng.choice([0.0, 1.0], size=(count, 5))
    missing = rng.uniform(size=(count, 5)) < 0.15
    points[missing] = -1
    points[rng.uniform(size=count) < 0.25] = -1          # faces without landmarks
    blur = rng.uniform(0, 1, size=count).round(3)
    return boxes.astype(np.float32), points.astype(np.float32), blur.astype(np.float32)


@pytest.mark.parametrize('overrides', [
    {'RPN_ANCHOR_CFG': 'RAC_SSH2'}, {'RPN_ANCHOR_CFG': 'RAC_SSH3'},
    {'RPN_ANCHOR_CFG': 'RAC_RETINA'}, {'DENSE_ANCHOR': True},
    {'RPN_ANCHOR_CFG': 'RAC_SSH3', 'DENSE_ANCHOR': True},
    {'USE_BLUR': True, 'USE_OCCLUSION': True}], ids=lambda o: '-'.join('%s=%s' % i for i in
                                                                       o.items()))
def test_labels_match_the_reference(overrides):
    cfg = _cfg(**overrides)
    height, width = 192, 256
    feat = _feat(cfg.RPN_FEAT_STRIDE, height, width)
    rng = np.random.default_rng(len(str(overrides)))
    boxes, points, blur = _random_faces(rng, 12, height, width)
    labels = assign_anchor_fpn(feat, _gt_label(boxes, points, blur), [height, width, 1.0],
                               landmark=True, cfg=cfg)
    reference = _reference(cfg, feat, boxes.astype(np.float64), points.astype(np.float64),
                           blur.astype(np.float64))
    assert sum(np.sum(labels['face_label_stride%d' % s] == 1) for s in cfg.RPN_FEAT_STRIDE) > 0
    assert sorted(labels) == sorted('face_%s_stride%d' % key for key in reference)
    for (kind, stride), expected in reference.items():
        actual = labels['face_%s_stride%d' % (kind, stride)]
        assert actual.shape == expected.shape and actual.dtype == np.float32, (kind, stride)
        np.testing.assert_allclose(actual, expected, atol=3e-5, err_msg='%s %d' % (kind, stride))
