"""The anchor-target generator and its original entry ``assign_anchor_fpn``: hand-built cases,
layouts against a reference written independently, the tiled IoU path against the dense one,
subsampling, stride selection, the border rule and the label shapes."""
import numpy as np
import pytest

from rcnn.config import generate_config
from rcnn.dataset.annotations import FaceAnnotations
from rcnn.io.anchor_targets import AnchorTargetGenerator
from rcnn.io.rpn import assign_anchor_fpn, faces_from_gt_label
from rcnn.processing import matcher as matcher_module
from rcnn.processing.box_coder import BoxCoder
from rcnn.processing.matcher import IoUMatcher
from rcnn.processing.sampler import RandomSampler

FEAT_640 = [(1, 4, 20, 20), (1, 4, 40, 40), (1, 4, 80, 80)]
IM_INFO = [640, 640, 1.0]


def _cfg():
    cfg, _ = generate_config('mnet', 'retinaface')
    return cfg


def _generator(matcher=None, sampler=None, coder=None):
    """The mnet recipe's generator with some parts replaced by plainly built ones."""
    generator = AnchorTargetGenerator.from_config(_cfg())
    generator.matcher = matcher or generator.matcher
    generator.sampler = sampler
    generator.coder = coder or generator.coder
    return generator


def _run(generator, gt_label, **kwargs):
    return generator(FEAT_640, faces_from_gt_label(gt_label, True), IM_INFO, **kwargs)


def _label(boxes, landmarks=None, classes=None):
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    classes = np.ones(len(boxes)) if classes is None else np.asarray(classes)
    if landmarks is None:
        landmarks = np.full((len(boxes), 5, 3), -1, dtype=np.float32)
    return {'gt_boxes': np.hstack([boxes, classes[:, None]]).astype(np.float32),
            'gt_landmarks': np.asarray(landmarks, dtype=np.float32)}


# ---------------------------------------------------------------- hand-built cases

# stride 8, anchor a = 1 is [0, 0, 15, 15] at cell (0, 0); at cell (y=10, x=20): [160, 80, 175, 95]
FACE_ON_ANCHOR = [160, 80, 175, 95]
CENTRE = (167.5, 87.5)
POINT_OFFSETS = np.array([[-4, -3], [4, -3], [0, 1], [-3, 5], [3, 5]], dtype=np.float64)


def _one_face_labels(landmarks_present=True, cfg=None):
    points = np.zeros((1, 5, 3), dtype=np.float32)
    points[0, :, 0] = CENTRE[0] + POINT_OFFSETS[:, 0]
    points[0, :, 1] = CENTRE[1] + POINT_OFFSETS[:, 1]
    points[0, :, 2] = 1.0 if landmarks_present else -1.0
    if not landmarks_present:
        points[:] = -1
    return assign_anchor_fpn(FEAT_640, _label([FACE_ON_ANCHOR], points), IM_INFO, landmark=True,
                             cfg=cfg or _cfg())


def test_face_exactly_on_an_anchor():
    labels = _one_face_labels()
    a, y, x, height, width = 1, 10, 20, 80, 80
    s8 = labels['face_label_stride8'][0]
    index = a * height * width + y * width + x
    assert s8[index] == 1
    assert np.sum(s8 == 1) == 1
    # the 4 direct neighbours of the same size overlap 8 x 16 px: IoU 128 / 384 = 1/3 -> ignored
    ignored = {a * height * width + yy * width + xx
               for yy, xx in ((y, x - 1), (y, x + 1), (y - 1, x), (y + 1, x))}
    assert set(np.flatnonzero(s8 == -1)) == ignored
    # everything else, the other strides included, is background
    for stride in (32, 16):
        assert np.all(labels['face_label_stride%d' % stride] == 0)
    position = y * width + x
    target = labels['face_bbox_target_stride8'][0]
    np.testing.assert_allclose(target[a * 4:a * 4 + 4, position], 0, atol=1e-6)
    weight = labels['face_bbox_weight_stride8'][0]
    assert np.all(weight[a * 4:a * 4 + 4, position] == 1) and weight.sum() == 4
    lmk = labels['face_landmark_target_stride8'][0][a * 10:a * 10 + 10, position]
    np.testing.assert_allclose(lmk, (POINT_OFFSETS / 16.0).reshape(10), atol=1e-6)
    lmk_weight = labels['face_landmark_weight_stride8'][0]
    assert np.all(lmk_weight[a * 10:a * 10 + 10, position] == 1) and lmk_weight.sum() == 10
    for stride in (32, 16):
        assert labels['face_bbox_weight_stride%d' % stride].sum() == 0


def test_box_target_of_the_bigger_anchor_at_the_same_cell():
    # a = 0 at that cell is [152, 72, 183, 103] (32 px): IoU 0.25 -> background, but its target
    # still encodes the face: dx = dy = 0, dw = dh = log(16 / 32)
    labels = _one_face_labels()
    target = labels['face_bbox_target_stride8'][0][0:4, 10 * 80 + 20]
    np.testing.assert_allclose(target, [0, 0, np.log(0.5), np.log(0.5)], atol=1e-6)


def test_face_without_landmarks_gets_zero_landmark_weight():
    labels = _one_face_labels(landmarks_present=False)
    assert labels['face_bbox_weight_stride8'].sum() == 4
    for stride in (32, 16, 8):
        assert labels['face_landmark_weight_stride%d' % stride].sum() == 0


def test_invisible_but_present_landmarks_keep_their_weight():
    points = np.zeros((1, 5, 3), dtype=np.float32)
    points[0, :, :2] = CENTRE
    points[0, :, 2] = 0.0           # present, not visible: still trained (visibility >= 0)
    labels = assign_anchor_fpn(FEAT_640, _label([FACE_ON_ANCHOR], points), IM_INFO,
                               landmark=True, cfg=_cfg())
    assert labels['face_landmark_weight_stride8'].sum() == 10


@pytest.mark.parametrize('case', ['no faces', 'ignored class'])
def test_image_without_usable_faces_is_all_background(case):
    if case == 'no faces':
        gt_label = _label(np.zeros((0, 4)))
    else:
        gt_label = _label([FACE_ON_ANCHOR], classes=[-1])
    labels = assign_anchor_fpn(FEAT_640, gt_label, IM_INFO, landmark=True, cfg=_cfg())
    for name, array in labels.items():
        assert np.all(array == 0), name
    assert sorted(labels) == sorted(AnchorTargetGenerator.from_config(_cfg()).label_names)


def test_identical_faces_match_the_first_one():
    points_a = np.zeros((5, 3), np.float32)
    points_a[:, :2] = CENTRE
    points_b = points_a.copy()
    points_b[:, 0] += 8                        # different landmarks, same box
    gt_label = _label([FACE_ON_ANCHOR, FACE_ON_ANCHOR], np.stack([points_a, points_b]))
    labels = assign_anchor_fpn(FEAT_640, gt_label, IM_INFO, landmark=True, cfg=_cfg())
    lmk = labels['face_landmark_target_stride8'][0][10:20, 10 * 80 + 20]
    np.testing.assert_allclose(lmk, 0, atol=1e-6)          # face 0's points are on the centre


def test_targets_are_divided_by_the_stds():
    generator = _generator(coder=BoxCoder((0.1, 0.1, 0.2, 0.2), 0.5))
    box = [156, 80, 179, 95]                                # 24 x 16, same centre
    gt_label = _label([box], np.tile(np.array([[CENTRE[0] + 4, CENTRE[1] - 2, 1]],
                                              np.float32), (1, 5, 1)))
    labels = _run(generator, gt_label)
    position = 10 * 80 + 20
    np.testing.assert_allclose(labels['face_bbox_target_stride8'][0][4:8, position],
                               [0, 0, np.log(24 / 16) / 0.2, 0], atol=1e-5)
    np.testing.assert_allclose(labels['face_landmark_target_stride8'][0][10:12, position],
                               [4 / 16 / 0.5, -2 / 16 / 0.5], atol=1e-6)


# ---------------------------------------------------------------- reference implementation

def reference_iou(anchors, boxes):
    """(A, B) IoU of (A, 4) and (B, 4) x1 y1 x2 y2 boxes, +1 pixel convention, by
    broadcasting in float64 (the reference the labellers are compared with)."""
    area_a = (anchors[:, 2] - anchors[:, 0] + 1) * (anchors[:, 3] - anchors[:, 1] + 1)
    area_b = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    iw = np.minimum(anchors[:, None, 2], boxes[None, :, 2]) - \
        np.maximum(anchors[:, None, 0], boxes[None, :, 0]) + 1
    ih = np.minimum(anchors[:, None, 3], boxes[None, :, 3]) - \
        np.maximum(anchors[:, None, 1], boxes[None, :, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _reference_labels(feat_shapes, boxes, landmarks):
    """Straightforward per-stride statement of the rule: anchors built with meshgrid, IoU by
    broadcasting in float64, layouts by explicit index arithmetic."""
    out = {}
    base_by_stride = {32: [(-248, 263), (-120, 135)], 16: [(-56, 71), (-24, 39)],
                      8: [(-8, 23), (0, 15)]}
    all_anchors, where = [], []
    for stride, shape in zip((32, 16, 8), feat_shapes):
        height, width = shape[-2:]
        ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
        for a, (lo, hi) in enumerate(base_by_stride[stride]):
            anchors = np.stack([lo + xs * stride, lo + ys * stride, hi + xs * stride,
                                hi + ys * stride], axis=-1).reshape(-1, 4)
            all_anchors.append(anchors.astype(np.float64))
            where += [(stride, a, p) for p in range(height * width)]
    anchors = np.concatenate(all_anchors)
    iou = reference_iou(anchors, boxes)
    best = iou.argmax(axis=1)
    best_iou = iou.max(axis=1)
    labels = np.where(best_iou >= 0.5, 1.0, np.where(best_iou < 0.3, 0.0, -1.0))
    aw = anchors[:, 2] - anchors[:, 0] + 1
    ah = anchors[:, 3] - anchors[:, 1] + 1
    acx, acy = anchors[:, 0] + 0.5 * (aw - 1), anchors[:, 1] + 0.5 * (ah - 1)
    m = boxes[best]
    mw, mh = m[:, 2] - m[:, 0] + 1, m[:, 3] - m[:, 1] + 1
    mcx, mcy = m[:, 0] + 0.5 * (mw - 1), m[:, 1] + 0.5 * (mh - 1)
    deltas = np.stack([(mcx - acx) / aw, (mcy - acy) / ah, np.log(mw / aw), np.log(mh / ah)], 1)
    pts = landmarks[best]
    lmk = np.stack([(pts[:, :, 0] - acx[:, None]) / aw[:, None],
                    (pts[:, :, 1] - acy[:, None]) / ah[:, None]], axis=2).reshape(-1, 10)
    has_lmk = pts[:, 0, 2] >= 0
    for stride, shape in zip((32, 16, 8), feat_shapes):
        height, width = shape[-2:]
        hw = height * width
        out['label', stride] = np.zeros((1, 2 * hw))
        out['bbox_target', stride] = np.zeros((1, 8, hw))
        out['bbox_weight', stride] = np.zeros((1, 8, hw))
        out['landmark_target', stride] = np.zeros((1, 20, hw))
        out['landmark_weight', stride] = np.zeros((1, 20, hw))
    for i, (stride, a, p) in enumerate(where):
        hw = out['label', stride].shape[1] // 2
        out['label', stride][0, a * hw + p] = labels[i]
        for k in range(4):
            out['bbox_target', stride][0, a * 4 + k, p] = deltas[i, k]
            out['bbox_weight', stride][0, a * 4 + k, p] = float(labels[i] == 1)
        for k in range(10):
            out['landmark_target', stride][0, a * 10 + k, p] = lmk[i, k]
            out['landmark_weight', stride][0, a * 10 + k, p] = float(labels[i] == 1 and has_lmk[i])
    return out


def _random_faces(rng, count, size=640, lo=6, hi=120):
    xy = rng.uniform(-10, size - 10, size=(count, 2))
    wh = np.exp(rng.uniform(np.log(lo), np.log(hi), size=(count, 2)))
    boxes = np.hstack([xy, xy + wh]).astype(np.float32)
    landmarks = np.zeros((count, 5, 3), dtype=np.float32)
    landmarks[:, :, 0] = xy[:, :1] + rng.uniform(0, 1, (count, 5)) * wh[:, :1]
    landmarks[:, :, 1] = xy[:, 1:] + rng.uniform(0, 1, (count, 5)) * wh[:, 1:]
    landmarks[:, :, 2] = 1.0
    landmarks[rng.uniform(size=count) < 0.3] = -1.0      # some faces without landmarks
    return boxes, landmarks


@pytest.mark.parametrize('count', [3, 40])
def test_layouts_match_an_independent_reference(count):
    rng = np.random.default_rng(count)
    feat = [(1, 4, 10, 12), (1, 4, 20, 24), (1, 4, 40, 48)]     # a 320 x 384 input
    boxes, landmarks = _random_faces(rng, count, size=320)
    labels = assign_anchor_fpn(feat, _label(boxes, landmarks), [320, 384, 1.0], landmark=True,
                               cfg=_cfg())
    reference = _reference_labels(feat, boxes.astype(np.float64), landmarks.astype(np.float64))
    assert np.sum(labels['face_label_stride8'] == 1) > 0
    for (kind, stride), expected in reference.items():
        actual = labels['face_%s_stride%d' % (kind, stride)]
        assert actual.shape == expected.shape and actual.dtype == np.float32
        np.testing.assert_allclose(actual, expected, atol=2e-5, err_msg='%s %d' % (kind, stride))


@pytest.mark.parametrize('count', [1, 60, 700])
def test_tiled_iou_path_matches_the_dense_one_exactly(monkeypatch, count):
    rng = np.random.default_rng(100 + count)
    boxes, landmarks = _random_faces(rng, count, lo=4, hi=200)
    boxes[count // 2:] = boxes[:count - count // 2]      # duplicate faces: the tie rule matters
    gt_label = _label(boxes, landmarks)
    monkeypatch.setattr(matcher_module, 'DENSE_PAIRS', 0)           # always tiles
    tiled = assign_anchor_fpn(FEAT_640, gt_label, IM_INFO, landmark=True, cfg=_cfg())
    monkeypatch.setattr(matcher_module, 'DENSE_PAIRS', 10 ** 12)    # always dense
    dense = assign_anchor_fpn(FEAT_640, gt_label, IM_INFO, landmark=True, cfg=_cfg())
    for name in dense:
        np.testing.assert_array_equal(tiled[name], dense[name], err_msg=name)


# ---------------------------------------------------------------- sampling and strides

def _many_positive_faces(count=120):
    """``count`` 16 x 16 faces exactly on distinct stride-8 anchors (a = 1)."""
    cells = np.arange(count)
    xs, ys = (cells % 40) * 2 * 8, (cells // 40) * 2 * 8 + 8
    boxes = np.stack([xs, ys, xs + 15, ys + 15], axis=1).astype(np.float32)
    return _label(boxes)


def test_ohem_off_caps_positives_and_negatives():
    generator = _generator(sampler=RandomSampler(256, 0.25))
    gt_label = _many_positive_faces()
    full = assign_anchor_fpn(FEAT_640, gt_label, IM_INFO, landmark=True, cfg=_cfg())
    sampled = _run(generator, gt_label, rng=np.random.default_rng(0))
    all_full = np.concatenate([full['face_label_stride%d' % s][0] for s in (32, 16, 8)])
    all_sampled = np.concatenate([sampled['face_label_stride%d' % s][0] for s in (32, 16, 8)])
    assert np.sum(all_full == 1) == 120
    assert np.sum(all_sampled == 1) == 64
    assert np.sum(all_sampled == 0) == 256 - 64
    # only labels are switched off, never changed to another class
    changed = all_sampled != all_full
    assert np.all(all_sampled[changed] == -1)
    # weights follow the sampled positives
    weights = sampled['face_bbox_weight_stride8'][0]
    assert weights.sum() == 4 * np.sum(sampled['face_label_stride8'] == 1)
    again = _run(generator, gt_label, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(again['face_label_stride8'], sampled['face_label_stride8'])


def test_ohem_on_keeps_every_label():
    cfg = _cfg()
    assert cfg.TRAIN.RPN_ENABLE_OHEM == 2                  # the graph's operator selects
    assert AnchorTargetGenerator.from_config(cfg).sampler is None
    labels = assign_anchor_fpn(FEAT_640, _many_positive_faces(), IM_INFO, landmark=True, cfg=cfg)
    assert np.sum(labels['face_label_stride8'] == 1) == 120
    assert np.sum(labels['face_label_stride32'] == 0) == 800


def test_select_stride_ignores_the_other_strides():
    labels = assign_anchor_fpn(FEAT_640, _label([FACE_ON_ANCHOR]), IM_INFO, landmark=True,
                               cfg=_cfg(), select_stride=8)
    assert np.all(labels['face_label_stride32'] == -1)
    assert np.all(labels['face_label_stride16'] == -1)
    assert np.sum(labels['face_label_stride8'] == 1) == 1


def test_force_positive_marks_each_face_best_anchor():
    # a 10 x 10 face: its best anchor, [160, 80, 175, 95], has IoU 100 / 256 < 0.5
    box = [163, 83, 172, 92]
    plain = assign_anchor_fpn(FEAT_640, _label([box]), IM_INFO, cfg=_cfg())
    forced = _run(_generator(matcher=IoUMatcher(0.5, 0.3, force_positive=True)), _label([box]))
    assert np.sum(plain['face_label_stride8'] == 1) == 0
    assert np.flatnonzero(forced['face_label_stride8'][0] == 1).tolist() == [6400 + 10 * 80 + 20]


def test_without_landmark_flag_only_box_labels_are_returned():
    labels = assign_anchor_fpn(FEAT_640, {'gt_boxes': _label([FACE_ON_ANCHOR])['gt_boxes']},
                               IM_INFO, landmark=False, cfg=_cfg())
    assert sorted(labels) == sorted('face_%s_stride%d' % (k, s) for s in (32, 16, 8)
                                    for k in ('label', 'bbox_target', 'bbox_weight'))


def test_class_zero_faces_are_left_out_and_records_without_landmarks_have_none():
    record = {'boxes': np.array([FACE_ON_ANCHOR, [0, 0, 200, 200]], np.float32),
              'gt_classes': np.array([1, 0], np.int32)}
    faces = FaceAnnotations.from_record(record)
    assert np.all(faces.visibility == -1) and faces.landmarks.shape == (2, 5, 2)
    generator = AnchorTargetGenerator.from_config(_cfg())
    labels = generator(FEAT_640, faces, IM_INFO)
    only_first = generator(FEAT_640, faces.keep(np.array([True, False])), IM_INFO)
    for name in labels:
        np.testing.assert_array_equal(labels[name], only_first[name], err_msg=name)
    assert labels['face_landmark_weight_stride8'].sum() == 0


def test_bad_arguments_are_reported():
    with pytest.raises(ValueError, match='feat_shape'):
        assign_anchor_fpn(FEAT_640[:2], _label([FACE_ON_ANCHOR]), IM_INFO, cfg=_cfg())
    bad = _label([FACE_ON_ANCHOR])
    bad['gt_landmarks'] = np.zeros((2, 5, 3), np.float32)
    with pytest.raises(ValueError, match='gt_landmarks'):
        assign_anchor_fpn(FEAT_640, bad, IM_INFO, landmark=True, cfg=_cfg())


def test_allowed_border_leaves_out_anchors_crossing_the_input():
    border = IoUMatcher(0.5, 0.3, allowed_border={32: 0, 16: 9999, 8: 9999})
    labels = _run(_generator(matcher=border), _label([FACE_ON_ANCHOR]))
    s32 = labels['face_label_stride32'][0].reshape(2, 20, 20)
    # a = 0 spans [-248 + 32x, 263 + 32x]: inside 0..639 for x (and y) in 8..11;
    # a = 1 spans [-120 + 32x, 135 + 32x]: inside for 4..15
    expected = np.full((2, 20, 20), -1.0)
    expected[0, 8:12, 8:12] = 0
    expected[1, 4:16, 4:16] = 0
    np.testing.assert_array_equal(s32, expected)
    targets = labels['face_bbox_target_stride32'][0].reshape(2, 4, 20, 20)
    assert np.all(targets[0][:, expected[0] == -1] == 0)
    assert np.any(targets[0][:, 8:12, 8:12] != 0)
    assert np.sum(labels['face_label_stride8'] == 1) == 1          # other strides unchanged


@pytest.mark.parametrize('with_landmarks', [True, False])
def test_label_shapes_are_those_of_a_labelled_image(with_landmarks):
    generator = AnchorTargetGenerator.from_config(_cfg(), with_landmarks=with_landmarks)
    labels = generator(FEAT_640, FaceAnnotations(np.array([FACE_ON_ANCHOR])), IM_INFO)
    shapes = generator.label_shapes(FEAT_640, batch=3)
    assert [name for name, _ in shapes] == generator.label_names == list(labels)
    assert shapes == [(name, (3,) + labels[name].shape[1:]) for name in labels]
    # 2 anchors per position; 80 x 80 cells at stride 8
    assert dict(shapes)['face_label_stride8'] == (3, 2 * 6400)
    assert dict(shapes)['face_bbox_target_stride8'] == (3, 8, 6400)


def test_generator_is_built_from_plain_parts_without_a_config():
    from rcnn.processing.generate_anchor import AnchorCache, generate_anchors
    cache = AnchorCache({8: generate_anchors(16, (1.0,), np.array([2, 1]), 8)})
    generator = AnchorTargetGenerator((8,), cache, IoUMatcher(0.5, 0.3), BoxCoder(),
                                      with_landmarks=False)
    labels = generator([(1, 4, 80, 80)], FaceAnnotations(np.array([FACE_ON_ANCHOR])), IM_INFO)
    assert sorted(labels) == ['face_bbox_target_stride8', 'face_bbox_weight_stride8',
                              'face_label_stride8']
    expected = assign_anchor_fpn(FEAT_640, _label([FACE_ON_ANCHOR]), IM_INFO, cfg=_cfg())
    for name in labels:
        np.testing.assert_array_equal(labels[name], expected[name], err_msg=name)
