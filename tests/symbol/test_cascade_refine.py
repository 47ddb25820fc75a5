"""The cascade refine operator: labels, targets and weights of refined anchors on a
hand-computed case (IoUs worked out on paper), OHEM on the stage's own scores, padding rows,
a crop without faces, the blur column, and the MXNet op giving the same as the NumPy core.

The hand case: stride 16, 2 x 2 feature map, 2 base anchors per cell, a0 = [0, 0, 15, 15]
(16 x 16) and a1 = [-8, -8, 23, 23] (32 x 32, same centre); one face [8, 0, 23, 15]. With
zero deltas every a1 anchor overlaps the face by IoU 0.25 or 0.111 (< 0.4: background). The a0
deltas move each a0 anchor to a chosen box:

    cell (x, y)  anchor          deltas (dx, dy, dw, dh)   refined box       IoU     label
    (0, 0)       [0,0,15,15]     (0.5, 0, 0, 0)            [8,0,23,15]       1       1
    (1, 0)       [16,0,31,15]    (-0.5, 0.375, 0, 0)       [8,6,23,21]       0.4545  -1
    (0, 1)       [0,16,15,31]    (0, 0, ln 2, 0)           [-8,16,23,31]     0       0
    (1, 1)       [16,16,31,31]   (-0.5, -0.6875, 0, 0)     [8,5,23,20]       0.5238  1

The (1, 1) positive's target against the face: dx 0, dy (7.5 - 12.5) / 16 = -0.3125, dw 0, dh 0.
"""
import json

import mxnet as mx
import numpy as np
import pytest

from rcnn.processing.sampler import OHEMSampler
from rcnn.symbol.cascade_refine import (CASCADE_REFINE_OP_TYPE, MAX_LOG_SCALE, CascadeRefiner,
                                        label_refined, refine_anchors)

BASE_ANCHORS = np.array([[0, 0, 15, 15], [-8, -8, 23, 23]], np.float32)
FACE = [8, 0, 23, 15, 1]
A0_DELTAS = {0: (0.5, 0, 0, 0), 1: (-0.5, 0.375, 0, 0), 2: (0, 0, np.log(2.0), 0),
             3: (-0.5, -0.6875, 0, 0)}
#: anchor-major labels: a0 at positions 0..3, then a1 at positions 0..3
EXPECTED_LABELS = [1, -1, 0, 1, 0, 0, 0, 0]


def _refiner(batch_size=256, fg_fraction=0.25):
    return CascadeRefiner(BASE_ANCHORS, 16, (0.4, 0.5), (1.0, 1.0, 1.0, 1.0),
                          OHEMSampler(batch_size, fg_fraction))


def _deltas(box_len=4):
    """(1, L*A, 2, 2) first-stage deltas: channel a*L + k at (y, x)."""
    deltas = np.zeros((1, box_len * 2, 2, 2), np.float32)
    for position, values in A0_DELTAS.items():
        y, x = divmod(position, 2)
        deltas[0, 0:4, y, x] = values
    return deltas


def _gt(*rows, padding=3):
    boxes = np.full((1, len(rows) + padding, 5), -1, np.float32)
    boxes[0, :len(rows)] = rows
    return boxes


def test_refined_boxes_are_the_deltas_decoded_on_the_anchors():
    anchors = np.array([[16, 16, 31, 31], [0, 16, 15, 31]], np.float32)
    refined = refine_anchors(anchors, [A0_DELTAS[3], A0_DELTAS[2]], (1, 1, 1, 1))
    np.testing.assert_allclose(refined, [[8, 5, 23, 20], [-8, 16, 23, 31]], atol=1e-5)
    # deltas are multiplied by the stds first (a std of 2 doubles the shift)
    doubled = refine_anchors(anchors[:1], [(-0.25, -0.34375, 0, 0)], (2, 2, 1, 1))
    np.testing.assert_allclose(doubled, [[8, 5, 23, 20]], atol=1e-5)


def test_a_huge_size_delta_gives_a_finite_box_clipped_at_max_log_scale():
    anchor = np.array([[0, 0, 15, 15]], np.float32)
    refined = refine_anchors(anchor, [(0, 0, 50.0, 0)], (1, 1, 1, 1))
    assert np.isfinite(refined).all()
    width = 16 * np.exp(MAX_LOG_SCALE)
    np.testing.assert_allclose(refined[0, [0, 2]], [7.5 - 0.5 * (width - 1),
                                                    7.5 + 0.5 * (width - 1)], rtol=1e-5)
    assert label_refined(refined, np.array([FACE], np.float32), 0.4, 0.5)[0].tolist() == [0]


def test_labels_by_iou_with_the_cascade_overlaps():
    refined = np.array([[8, 0, 23, 15], [8, 6, 23, 21], [-8, 16, 23, 31], [8, 5, 23, 20]],
                       np.float32)
    labels, matched = label_refined(refined, np.array([FACE], np.float32), 0.4, 0.5)
    assert labels.tolist() == [1, -1, 0, 1]
    assert matched.tolist() == [0, 0, 0, 0]
    # other thresholds move the 0.4545 and 0.5238 anchors
    assert label_refined(refined, np.array([FACE], np.float32), 0.3, 0.45)[0].tolist() == \
        [1, 1, 0, 1]
    assert label_refined(refined, np.zeros((0, 5), np.float32), 0.4, 0.5)[0].tolist() == [0] * 4


def test_force_positive_makes_each_faces_best_refined_anchor_positive():
    refined = np.array([[8, 6, 23, 21], [-8, 16, 23, 31]], np.float32)      # IoU 0.4545, 0
    labels, _ = label_refined(refined, np.array([FACE], np.float32), 0.4, 0.5,
                              force_positive=True)
    assert labels.tolist() == [1, 0]


def test_hand_case_labels_targets_weights_and_count():
    label, target, weight, count = _refiner()(np.zeros((1, 2, 8), np.float32), _deltas(),
                                              _gt(FACE))
    assert label.shape == (1, 8) and target.shape == weight.shape == (1, 8, 4)
    assert label[0].tolist() == EXPECTED_LABELS
    np.testing.assert_allclose(target[0, 0:4, 0], 0, atol=1e-6)
    np.testing.assert_allclose(target[0, 0:4, 3], [0, -0.3125, 0, 0], atol=1e-6)
    expected_weight = np.zeros((8, 4), np.float32)
    expected_weight[0:4, [0, 3]] = 1               # a0's four values at positions 0 and 3
    np.testing.assert_array_equal(weight[0], expected_weight)
    assert count.tolist() == [[2.0]]


def test_targets_are_divided_by_the_bbox_stds():
    refiner = CascadeRefiner(BASE_ANCHORS, 16, (0.4, 0.5), (0.1, 0.1, 0.2, 0.2),
                             OHEMSampler(256, 0.25))
    deltas = _deltas()
    deltas[0, 0:4] /= np.array([0.1, 0.1, 0.2, 0.2], np.float32)[:, None, None]
    label, target, _, _ = refiner(np.zeros((1, 2, 8), np.float32), deltas, _gt(FACE))
    assert label[0].tolist() == EXPECTED_LABELS
    np.testing.assert_allclose(target[0, 0:4, 3], [0, -3.125, 0, 0], atol=1e-5)


def test_ohem_keeps_the_hardest_by_the_stages_own_scores():
    # RPN_BATCH_SIZE 4, fg fraction 0.25: one positive (the lowest fg score), three negatives
    # (the highest fg scores); anchor-major scores
    fg = np.array([2.0, 9.0, 0.5, -1.0, 0.1, 0.3, 0.2, -0.4], np.float32)
    scores = np.stack([np.zeros(8, np.float32), fg])[None]
    label, _, weight, count = _refiner(batch_size=4)(scores, _deltas(), _gt(FACE))
    assert label[0].tolist() == [-1, -1, 0, 1, -1, 0, 0, -1]
    assert weight[0, 0:4, 3].tolist() == [1, 1, 1, 1] and weight.sum() == 4
    assert count.tolist() == [[1.0]]


def test_padding_rows_are_not_faces_and_a_crop_without_faces_is_all_background():
    refiner = _refiner()
    scores = np.zeros((2, 2, 8), np.float32)
    deltas = np.concatenate([_deltas(), _deltas()])
    gt = np.concatenate([_gt(FACE, padding=5), _gt(FACE, padding=5)])
    gt[1, 0] = -1                                  # the second image keeps no face
    label, target, weight, count = refiner(scores, deltas, gt)
    assert label[0].tolist() == EXPECTED_LABELS
    assert label[1].tolist() == [0] * 8
    assert not target[1].any() and not weight[1].any() and count[1, 0] == 0


def test_blur_value_gets_no_target_and_no_weight():
    label, target, weight, _ = _refiner()(np.zeros((1, 2, 8), np.float32), _deltas(box_len=5),
                                          _gt(FACE))
    assert target.shape == weight.shape == (1, 10, 4)
    assert label[0].tolist() == EXPECTED_LABELS
    np.testing.assert_array_equal(weight[0, 0:5, 3], [1, 1, 1, 1, 0])
    np.testing.assert_array_equal(weight[0, 5:10], 0)
    np.testing.assert_allclose(target[0, 0:5, 3], [0, -0.3125, 0, 0, 0], atol=1e-6)


def test_bad_overlaps_are_refused():
    with pytest.raises(ValueError, match='CASCADE_OVERLAP'):
        CascadeRefiner(BASE_ANCHORS, 16, (0.6, 0.5), (1, 1, 1, 1), OHEMSampler(256, 0.25))


def test_the_mxnet_op_gives_the_numpy_result_and_no_gradient():
    rng = np.random.RandomState(0)
    scores = rng.randn(1, 2, 8).astype(np.float32)
    inputs = {'score': scores, 'deltas': _deltas(), 'gt': _gt(FACE)}
    variables = {name: mx.sym.Variable(name) for name in inputs}
    op = mx.sym.Custom(cls_score=variables['score'], bbox_pred_t0=variables['deltas'],
                       gt_boxes=variables['gt'], op_type=CASCADE_REFINE_OP_TYPE, stride=16,
                       base_anchors=json.dumps(BASE_ANCHORS.tolist()), overlaps='[0.4, 0.5]',
                       bbox_stds='[1, 1, 1, 1]', rpn_batch_size=256, fg_fraction=0.25)
    args = {name: mx.nd.array(value) for name, value in inputs.items()}
    grads = {name: mx.nd.ones(value.shape) for name, value in inputs.items()}
    executor = op.bind(mx.cpu(), args=args, args_grad=grads)
    outputs = [o.asnumpy() for o in executor.forward(is_train=True)]
    expected = _refiner()(scores, _deltas(), _gt(FACE))
    assert [o.shape for o in outputs] == [e.shape for e in expected]
    for have, want in zip(outputs, expected):
        np.testing.assert_array_equal(have, want)
    executor.backward([mx.nd.ones(o.shape) for o in outputs])
    assert all(not g.asnumpy().any() for g in grads.values())


def test_the_op_refuses_inputs_that_do_not_fit_its_anchors(capfd):
    op = mx.sym.Custom(cls_score=mx.sym.Variable('s'), bbox_pred_t0=mx.sym.Variable('d'),
                       gt_boxes=mx.sym.Variable('g'), op_type=CASCADE_REFINE_OP_TYPE, stride=16,
                       base_anchors=json.dumps(BASE_ANCHORS.tolist()), overlaps='[0.4, 0.5]',
                       bbox_stds='[1, 1, 1, 1]', rpn_batch_size=256, fg_fraction=0.25)
    with pytest.raises(mx.base.MXNetError):
        op.infer_shape(s=(1, 2, 12), d=(1, 8, 2, 2), g=(1, 4, 5))
    # MXNet prints the operator's own message
    assert 'do not fit 2 anchors per position' in ''.join(capfd.readouterr())


def _numpy_iou(boxes, faces):
    """Dense IoU, +1 pixel convention, written out independently."""
    ix1 = np.maximum(boxes[:, None, 0], faces[None, :, 0])
    iy1 = np.maximum(boxes[:, None, 1], faces[None, :, 1])
    ix2 = np.minimum(boxes[:, None, 2], faces[None, :, 2])
    iy2 = np.minimum(boxes[:, None, 3], faces[None, :, 3])
    inter = np.clip(ix2 - ix1 + 1, 0, None) * np.clip(iy2 - iy1 + 1, 0, None)
    area = lambda b: (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)      # noqa: E731
    return inter / (area(boxes)[:, None] + area(faces)[None, :] - inter)


def test_labels_of_many_refined_anchors_match_a_dense_numpy_iou():
    """Refined anchors of a 40 x 40 map (stride 8, shifted and scaled at random) against 80
    faces: the block-pruned matching gives the dense IoU's labels and, on positives, faces."""
    rng = np.random.RandomState(11)
    refiner = CascadeRefiner(BASE_ANCHORS * 0.5, 8, (0.4, 0.5), (1, 1, 1, 1),
                             OHEMSampler(256, 0.25))
    anchors = refiner.anchors(40, 40)
    refined = refine_anchors(anchors, rng.normal(0, 0.4, anchors.shape), (1, 1, 1, 1))
    corners = rng.uniform(0, 300, (80, 2))
    faces = np.hstack([corners, corners + rng.uniform(6, 24, (80, 2))]).astype(np.float32)
    labels, matched = label_refined(refined, faces, 0.4, 0.5)
    iou = _numpy_iou(refined.astype(np.float64), faces.astype(np.float64))
    best = iou.max(axis=1)
    expected = np.full(len(refined), -1.0)
    expected[best < 0.4] = 0
    expected[best >= 0.5] = 1
    settled = np.abs(best - 0.4) > 1e-4
    settled &= np.abs(best - 0.5) > 1e-4                  # float32 kernel vs float64 here
    np.testing.assert_array_equal(labels[settled], expected[settled])
    positive = (labels == 1) & settled
    assert positive.sum() > 20 and (labels == -1).sum() > 20
    np.testing.assert_array_equal(matched[positive], iou[positive].argmax(axis=1))
