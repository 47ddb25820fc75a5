"""Cython kernels and box/landmark transforms against hand cases and NumPy references."""
import numpy as np
import pytest

from cython_ext.anchors import anchors_cython
from cython_ext.bbox import bbox_overlaps_cython
from cython_ext.cpu_nms import cpu_nms
from rcnn.config import generate_config
from rcnn.processing.bbox_transform import (clip_boxes, landmark_pred, landmark_transform,
                                            nonlinear_pred, nonlinear_transform)
from rcnn.processing.generate_anchor import anchors_plane, generate_anchors_fpn
from rcnn.processing.nms import cpu_nms_wrapper, py_nms_wrapper


def random_boxes(rng, n, max_xy=500.0, max_wh=200.0):
    xy = rng.uniform(0, max_xy, size=(n, 2))
    wh = rng.uniform(1, max_wh, size=(n, 2))
    return np.hstack([xy, xy + wh]).astype(np.float32)


def iou_reference(a, b):
    """Broadcast IoU, +1 convention, independent of the Cython loop."""
    a = a.astype(np.float64)[:, None, :]
    b = b.astype(np.float64)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0, None)
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    inter = iw * ih
    return inter / (area_a + area_b - inter)


def nms_reference(dets, thresh):
    """Textbook greedy NMS over a precomputed IoU matrix (suppress at IoU >= thresh)."""
    iou = iou_reference(dets[:, :4], dets[:, :4])
    order = sorted(range(len(dets)), key=lambda i: (-dets[i, 4], i))
    keep, removed = [], set()
    for i in order:
        if i in removed:
            continue
        keep.append(i)
        removed.update(j for j in order if j != i and iou[i, j] >= thresh)
    return keep


# ---------------------------------------------------------------- anchors

def test_base_anchors_are_the_original_recipe():
    base = generate_anchors_fpn(cfg=generate_config('mnet', 'retinaface')[0])
    assert len(base) == 3
    np.testing.assert_array_equal(base[0], [[-248, -248, 263, 263], [-120, -120, 135, 135]])
    # stride 16: scales 8, 4 of a 16 px box centred on 7.5
    np.testing.assert_array_equal(base[1], [[-56, -56, 71, 71], [-24, -24, 39, 39]])
    np.testing.assert_array_equal(base[2], [[-8, -8, 23, 23], [0, 0, 15, 15]])


def test_640_input_has_16800_anchors_in_the_expected_layout():
    cfg, _ = generate_config('mnet', 'retinaface')
    total = 0
    for stride, base in zip(cfg.RPN_FEAT_STRIDE, generate_anchors_fpn(cfg=cfg)):
        size = 640 // stride
        plane = anchors_plane(size, size, stride, base)
        assert plane.shape == (size, size, 2, 4) and plane.dtype == np.float32
        # cell (y=3, x=5), anchor 1 is base anchor 1 shifted by (5*stride, 3*stride)
        np.testing.assert_array_equal(plane[3, 5, 1], base[1] + [5 * stride, 3 * stride] * 2)
        total += plane.reshape(-1, 4).shape[0]
    assert total == 20 * 20 * 2 + 40 * 40 * 2 + 80 * 80 * 2 == 16800


def test_anchors_cython_matches_meshgrid_reference():
    base = np.array([[0, 0, 15, 15], [-4, -2, 9, 30]], dtype=np.float32)
    got = anchors_cython(7, 5, 8, base)
    ys, xs = np.mgrid[0:7, 0:5]
    shifts = np.stack([xs, ys, xs, ys], axis=-1)[:, :, None, :] * 8
    np.testing.assert_array_equal(got, base[None, None] + shifts)


# ---------------------------------------------------------------- IoU / NMS

def test_iou_hand_case():
    # 10x10 box vs the same box shifted by 5 px: inter 5*10 = 50, union 150
    a = np.array([[0, 0, 9, 9]], dtype=np.float32)
    b = np.array([[5, 0, 14, 9], [20, 20, 30, 30], [0, 0, 9, 9]], dtype=np.float32)
    np.testing.assert_allclose(bbox_overlaps_cython(a, b), [[50 / 150, 0, 1]], rtol=1e-6)


def test_iou_matches_numpy_reference_on_random_boxes():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 300), random_boxes(rng, 40)
    got = bbox_overlaps_cython(a, b)
    assert got.shape == (300, 40)
    np.testing.assert_allclose(got, iou_reference(a, b), rtol=1e-5, atol=1e-6)
    assert bbox_overlaps_cython(a[:0], b).shape == (0, 40)


def test_nms_hand_case():
    dets = np.array([[0, 0, 9, 9, 0.9],     # kept
                     [1, 0, 10, 9, 0.8],    # IoU 90/110 = .818 with #0: suppressed at .4
                     [50, 50, 60, 60, 0.7],  # kept
                     [5, 0, 14, 9, 0.95]],  # highest score, IoU 50/150 with #0: kept
                    dtype=np.float32)
    assert cpu_nms(dets, 0.4) == [3, 0, 2]
    assert cpu_nms(dets, 0.9) == [3, 0, 1, 2]
    assert cpu_nms(dets[:0], 0.4) == []


@pytest.mark.parametrize('nms', [cpu_nms, lambda dets, t: py_nms_wrapper(t)(dets)])
def test_nms_suppresses_at_iou_equal_to_the_threshold(nms):
    """The original kernel suppresses when IoU >= thresh: 10x5 inside 10x10 is IoU 50/100."""
    dets = np.array([[0, 0, 9, 9, 0.9], [0, 0, 9, 4, 0.8], [30, 30, 39, 39, 0.7]], np.float32)
    assert list(nms(dets, 0.5)) == [0, 2]
    assert list(nms(dets, 0.5001)) == [0, 1, 2]
    assert list(nms(dets, 0.0)) == [0]          # IoU 0 >= 0: even disjoint boxes go


@pytest.mark.parametrize('thresh', [0.3, 0.4, 0.7])
def test_cython_and_numpy_nms_agree_with_reference(thresh):
    rng = np.random.default_rng(int(thresh * 10))
    boxes = random_boxes(rng, 400, max_xy=300, max_wh=80)
    dets = np.hstack([boxes, rng.uniform(size=(400, 1)).astype(np.float32)])
    expected = nms_reference(dets, thresh)
    assert list(cpu_nms_wrapper(thresh)(dets)) == expected
    assert list(py_nms_wrapper(thresh)(dets)) == expected


# ---------------------------------------------------------------- transforms

def test_nonlinear_transform_hand_case():
    anchor = np.array([[0, 0, 15, 15]], dtype=np.float32)        # w=h=16, centre 7.5
    gt = np.array([[8, 4, 39, 19]], dtype=np.float32)            # w=32, h=16, centre (23.5, 11.5)
    np.testing.assert_allclose(nonlinear_transform(anchor, gt),
                               [[16 / 16, 4 / 16, np.log(2), 0]], atol=1e-12)


def test_box_round_trip_on_random_boxes():
    rng = np.random.default_rng(1)
    anchors, gt = random_boxes(rng, 500), random_boxes(rng, 500)
    deltas = nonlinear_transform(anchors, gt)
    np.testing.assert_allclose(nonlinear_pred(anchors, deltas), gt, rtol=1e-5, atol=1e-3)


def test_landmark_transform_hand_case_and_round_trip():
    anchor = np.array([[0, 0, 15, 31]], dtype=np.float32)        # w=16, h=32, centre (7.5, 15.5)
    points = np.array([[[7.5, 15.5, 1], [23.5, 15.5, 1], [7.5, -0.5, 0], [0, 0, 1], [15.5, 47.5, 1]]])
    expected = [[[0, 0], [1, 0], [0, -0.5], [-7.5 / 16, -15.5 / 32], [0.5, 1]]]
    deltas = landmark_transform(anchor, points)
    np.testing.assert_allclose(deltas, expected, atol=1e-12)
    np.testing.assert_allclose(landmark_pred(anchor, deltas), points[:, :, :2], atol=1e-5)
    # the original's flat layout (N, 10): x1 y1 x2 y2 ... in, the same layout out
    flat_points = points[:, :, :2].reshape(1, 10)
    flat_deltas = landmark_transform(anchor, flat_points)
    assert flat_deltas.shape == (1, 10)
    np.testing.assert_allclose(flat_deltas, [[0, 0, 1, 0, 0, -0.5, -7.5 / 16, -15.5 / 32, 0.5, 1]],
                               atol=1e-12)
    decoded = landmark_pred(anchor, flat_deltas.astype(np.float32))
    assert decoded.shape == (1, 10)
    np.testing.assert_allclose(decoded, flat_points, atol=1e-5)
    assert landmark_pred(anchor[:0], np.zeros((0, 10), np.float32)).shape == (0, 10)
    with pytest.raises(ValueError, match=r'\(N, P, 2\), \(N, P, 3\) or flat'):
        landmark_pred(anchor, np.zeros((1, 5, 4), np.float32))
    rng = np.random.default_rng(2)
    anchors = random_boxes(rng, 200)
    pts = rng.uniform(-50, 600, size=(200, 5, 2))
    np.testing.assert_allclose(landmark_pred(anchors, landmark_transform(anchors, pts)), pts,
                               rtol=1e-5, atol=1e-3)


def test_clip_boxes():
    boxes = np.array([[-5, -3, 700, 20], [10, 500, 30, 480]], dtype=np.float32)
    clip_boxes(boxes, (480, 640, 3))
    np.testing.assert_array_equal(boxes, [[0, 0, 639, 20], [10, 479, 30, 479]])
