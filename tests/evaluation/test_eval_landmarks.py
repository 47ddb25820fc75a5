"""Landmark NME: hand-computed errors, one-to-one matching, CED / AUC, the label reader."""
import math

import numpy as np
import pytest

from rcnn.dataset.label_file import LabelFormatError
from rcnn.evaluation.landmarks import (ced_auc, ced_curve, evaluate_landmarks, face_nme,
                                       image_nme, load_landmark_ground_truth)

FIVE = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], dtype=np.float64)


def test_nme_is_the_mean_point_distance_over_sqrt_of_the_box_area():
    # distances 5 (3-4-5), 0, 10 (6-8-10), missing, 5: mean over the 4 present points = 5;
    # the box is 50 x 200, sqrt(w*h) = 100
    offsets = np.array([[3, 4], [0, 0], [6, 8], [100, 100], [-3, -4]], dtype=np.float64)
    gt = FIVE.copy()
    gt[3] = np.nan
    nme = face_nme([FIVE + offsets], [gt], [[0, 0, 50, 200]])
    np.testing.assert_allclose(nme, [0.05])


def test_faces_without_points_or_area_are_not_scored():
    nme = face_nme([FIVE, FIVE], [np.full((5, 2), np.nan), FIVE], [[0, 0, 10, 10], [0, 0, 0, 9]])
    assert np.isnan(nme).all()


def test_matching_is_one_to_one_in_score_order():
    face1, face2, face3 = [0, 0, 100, 100], [10, 0, 100, 100], [400, 0, 60, 60]
    points1, points2, points3 = FIVE, FIVE + [10, 0], FIVE + [400, 0]
    # A (0.9) is face1 exactly; B (0.8) overlaps face1 best (IoU 98/104) and face2 at 94/108 >=
    # 0.5: face1 is taken, so B is face2's; C on face3 scores under the 0.5 minimum
    pred_boxes = np.array([[3, 0, 100, 100, 0.8], face1 + [0.9], face3 + [0.3]], np.float64)
    pred_points = np.stack([points2 + [6, 8], points1, points3])
    nme = image_nme(pred_boxes, pred_points, np.array([face1, face2, face3], np.float64),
                    np.stack([points1, points2, points3]))
    np.testing.assert_allclose(nme[:2], [0.0, 0.1])    # |(6, 8)| = 10 over sqrt(100*100)
    assert np.isnan(nme[2])
    nme = image_nme(pred_boxes, pred_points, np.array([face1, face2, face3], np.float64),
                    np.stack([points1, points2, points3]), min_score=0.0)
    assert nme[2] == 0.0


def test_ced_auc_and_failure_rate_by_hand():
    errors = [0.0, 0.05, 0.2]
    # mean(max(0, 0.1 - e)) / 0.1 = (0.1 + 0.05 + 0) / 3 / 0.1
    assert ced_auc(errors, 0.1) == pytest.approx(0.5)
    x, fraction = ced_curve(errors, 0.1, num=3)
    np.testing.assert_allclose(x, [0.0, 0.05, 0.1])
    np.testing.assert_allclose(fraction, [1 / 3, 2 / 3, 2 / 3])
    assert ced_auc([0.0], 0.1) == 1.0 and math.isnan(ced_auc([], 0.1))


def _write_label(path):
    path.write_text(
        '# 0--e/a.jpg\n'
        '0 0 100 100 30 40 0.0 70 40 0.0 50 60 1.0 -1 -1 -1 65 80 0.0 0.5\n'
        '200 0 50 50 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1\n'
        '# 0--e/b.jpg\n'
        '10 10 40 40\n')
    return path


def test_train_style_labels_give_points_with_missing_ones_as_nan(tmp_path):
    truth = load_landmark_ground_truth(str(_write_label(tmp_path / 'label.txt')))
    assert truth.num_images == 2 and truth.boxes.names == ['a', 'b']
    a = truth.points[0]
    assert a.shape == (2, 5, 2)
    np.testing.assert_array_equal(a[0, 2], [50, 60])          # occluded (flag 1): scored
    assert np.isnan(a[0, 3]).all() and np.isnan(a[1]).all()
    assert truth.num_faces_with_points() == 1
    (tmp_path / 'val.txt').write_text('# 0--e/a.jpg\n1 2 3 4\n')
    with pytest.raises(ValueError, match=r'val\.txt: no face line carries landmarks'):
        load_landmark_ground_truth(str(tmp_path / 'val.txt'))
    (tmp_path / 'bad.txt').write_text('# 0--e/a.jpg\n1 2 3 4 5\n')
    with pytest.raises(LabelFormatError, match=r'bad\.txt:2'):
        load_landmark_ground_truth(str(tmp_path / 'bad.txt'))


def test_evaluate_landmarks_counts_matched_and_missed_faces(tmp_path):
    truth = load_landmark_ground_truth(str(_write_label(tmp_path / 'label.txt')))
    # image a: face 1 found with every point 2 px right (NME 0.02); the face without points is
    # matched but not scored; image b: no points at all
    boxes = [np.array([[0, 0, 100, 100, 0.9], [200, 0, 50, 50, 0.8]]), np.zeros((0, 5))]
    points = [np.stack([FIVE + [2, 0], FIVE]), None]
    result = evaluate_landmarks(boxes, points, truth)
    assert result.faces == 1 and result.matched == 1 and result.missed == 0
    assert result.mean_nme == pytest.approx(0.02)
    assert result.auc == pytest.approx(0.8) and result.failure_rate == 0.0
    # the face missed: counted, not in the curve
    result = evaluate_landmarks([np.zeros((0, 5)), np.zeros((0, 5))],
                                [np.zeros((0, 5, 2)), None], truth)
    assert result.matched == 0 and result.missed == 1 and math.isnan(result.mean_nme)
    # prediction files without any landmarks: no result
    assert evaluate_landmarks([boxes[0], boxes[1]], [None, None], truth) is None
