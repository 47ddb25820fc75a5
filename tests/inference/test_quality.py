"""Face quality: the original's check_large_pose rules on hand-computed faces, yaw/roll against
projected 3D heads and the sample-set painter, and the written quality rule."""
import math

import numpy as np
import pytest

from rcnn.inference.quality import (FULL_QUALITY_SIZE, NON_FRONTAL_FACTOR, POSE_NAMES,
                                    check_large_pose, estimate_yaw_roll, face_qualities,
                                    pose_codes, quality_value)
from tools.sample_data.face import FaceSpec, face_landmarks

# a symmetric face in unit coordinates (y down): eyes (-1, 0), (1, 0), nose (0, 1), mouth
# corners (-0.8, 2), (0.8, 2); scaled by 20 and moved to (100, 100)
UNIT_FACE = np.array([[-1, 0], [1, 0], [0, 1], [-0.8, 2], [0.8, 2]], np.float64)
BOX = [70, 70, 130, 150]


def _face(nose):
    points = UNIT_FACE.copy()
    points[2] = nose
    return points * 20 + 100


def test_frontal_face_scores_by_hand():
    # theta1 = theta2 = atan2(2, .2) - 45 deg = 39.29; theta3 = theta4 = 45;
    # theta5 = theta6 = atan2(1, .8) = 51.34; theta7 = theta8 = 95.71 - 51.34 = 44.37
    code, left, right, up, down = check_large_pose(_face((0, 1)), BOX)
    assert code == 0 and POSE_NAMES[code] == 'frontal'
    assert left == pytest.approx(1.0) and right == pytest.approx(1.0)
    assert up == pytest.approx(39.2894 / 45.0, abs=1e-4)
    assert down == pytest.approx(44.3700 / 51.3402, abs=1e-4)


def test_nose_towards_the_left_is_left_profile():
    # nose at (-0.6, 1): theta1 = -68.20 + 84.29 = 16.09, theta2 = -95.71 + 148.00 = 52.29
    code, left, right, _, _ = check_large_pose(_face((-0.6, 1)), BOX)
    assert code == 1 and left == pytest.approx(52.29 / 16.09, rel=2e-3)
    assert right == pytest.approx(16.09 / 52.29, rel=2e-3)
    code, _, right, _, _ = check_large_pose(_face((0.6, 1)), BOX)
    assert code == 2 and right == pytest.approx(52.29 / 16.09, rel=2e-3)


def test_nose_outside_the_eye_mouth_line_scores_ten_and_left_wins():
    code, left, right, _, _ = check_large_pose(_face((-1.5, 1)), BOX)
    assert (code, left, right) == (1, 10.0, 0.0)
    code, left, right, _, _ = check_large_pose(_face((1.5, 1)), BOX)
    assert (code, left, right) == (2, 0.0, 10.0)


def test_left_score_between_two_and_three_needs_the_box_centre():
    # nose at (-0.45, 1): left = 2.15; right eye / right mouth corner midpoint x = 118
    points = _face((-0.45, 1))
    assert check_large_pose(points, BOX)[0] == 0                  # box centre x 100 < 118
    assert check_large_pose(points, [70, 70, 170, 150])[0] == 1   # box centre x 120 >= 118
    mirrored = _face((0.45, 1))                                  # left midpoint x = 82
    assert check_large_pose(mirrored, BOX)[0] == 0                # 100 > 82: not right
    assert check_large_pose(mirrored, [30, 70, 130, 150])[0] == 2  # centre 80 <= 82


def test_nose_near_the_eyes_is_up_near_the_mouth_is_down():
    assert check_large_pose(_face((0, 0.2)), BOX)[0] == 3
    assert check_large_pose(_face((0, 1.9)), BOX)[0] == 4
    assert check_large_pose(_face((0, 1.7)), BOX)[0] == 0          # down = 3.66 < 5


def test_mirrored_faces_swap_left_and_right():
    # the original's angles are mirror images of each other (theta1 <-> theta2, theta3 <->
    # theta4, ...), so mirroring a face swaps the left and right scores and poses, except when
    # both theta1 and theta2 are <= 0 (then the left test wins on both sides)
    rng = np.random.default_rng(0)
    points = _face((0, 1))[None] + rng.normal(0, 12, (400, 5, 2))
    boxes = np.tile(np.array(BOX, float), (400, 1)) + rng.normal(0, 10, (400, 4))
    mirrored = points[:, [1, 0, 2, 4, 3]] * [-1, 1] + [200, 0]
    mirrored_boxes = np.stack([200 - boxes[:, 2], boxes[:, 1], 200 - boxes[:, 0], boxes[:, 3]],
                              axis=1)
    codes, scores = pose_codes(points, boxes)
    codes_m, scores_m = pose_codes(mirrored, mirrored_boxes)
    both_ten = (scores[:, 0] == 10) & (scores_m[:, 0] == 10)
    assert both_ten.sum() < 20
    keep = ~both_ten
    np.testing.assert_allclose(scores_m[keep][:, [1, 0, 2, 3]], scores[keep], rtol=1e-3)
    swap = np.array([0, 2, 1, 3, 4])
    np.testing.assert_array_equal(codes_m[keep], swap[codes[keep]])
    assert set(codes.tolist()) == {0, 1, 2, 3, 4}             # every pose occurs


def test_check_large_pose_refuses_other_shapes():
    with pytest.raises(ValueError, match=r'\(5, 2\)'):
        check_large_pose(np.zeros((4, 2)), BOX)


def _projected_head(yaw_deg, roll_deg, scale=30.0, centre=(200.0, 150.0)):
    """5 points of a 3D head (eyes x = +-1, mouth corners +-0.8 at depth 0, nose tip 0.81 in
    front: NOSE_DEPTH 0.9 times the half-width 0.9) turned by yaw about the vertical axis,
    projected orthographically, then rotated in the image plane by roll."""
    head = np.array([[-1, 0, 0], [1, 0, 0], [0, 1, 0.81], [-0.8, 2, 0], [0.8, 2, 0]], float)
    yaw, roll = math.radians(yaw_deg), math.radians(roll_deg)
    x = head[:, 0] * math.cos(yaw) + head[:, 2] * math.sin(yaw)
    y = head[:, 1]
    xr = x * math.cos(roll) - y * math.sin(roll)
    yr = x * math.sin(roll) + y * math.cos(roll)
    return np.stack([xr, yr], axis=1) * scale + np.array(centre)


@pytest.mark.parametrize('yaw, roll', [(0, 0), (30, 0), (-45, 0), (20, 25), (-60, -15)])
def test_yaw_and_roll_of_a_projected_head(yaw, roll):
    est_yaw, est_roll = estimate_yaw_roll(_projected_head(yaw, roll)[None])
    assert est_yaw[0] == pytest.approx(yaw, abs=1e-6)
    assert est_roll[0] == pytest.approx(roll, abs=1e-6)


def test_yaw_and_roll_follow_the_painted_faces():
    yaws = []
    for yaw in (-0.8, -0.3, 0.0, 0.3, 0.8):
        spec = FaceSpec(cx=100, cy=100, height=120, angle=12.0, yaw=yaw)
        est_yaw, est_roll = estimate_yaw_roll(face_landmarks(spec)[None])
        assert est_roll[0] == pytest.approx(12.0, abs=1e-6)  # the painter's clockwise angle
        yaws.append(est_yaw[0])
    assert yaws[2] == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.diff(yaws) > 5.0)                     # the painter's yaw > 0 turns right


def test_quality_rule_by_hand():
    # score .9, size 56 (half of 112), yaw 60 (cos .5), frontal, blur .2, visibility mean .6
    value = quality_value([0.9], [56.0], [60.0], [0], blur=[0.2],
                          visibility=[[1, 1, 1, 0, 0]])
    assert value[0] == pytest.approx(0.9 * 0.5 * 0.5 * 0.8 * 0.6)
    assert quality_value([0.9], [300.0], [0.0], [1])[0] == pytest.approx(0.9 * NON_FRONTAL_FACTOR)
    # past 90 degrees of yaw and blur above 1 the factors stop at 0; visibility is clipped
    assert quality_value([1.0], [200.0], [120.0], [0])[0] == 0.0
    assert quality_value([1.0], [200.0], [0.0], [0], blur=[1.3])[0] == 0.0
    assert quality_value([1.0], [200.0], [0.0], [0],
                         visibility=[[2, 2, 2, 2, -1]])[0] == pytest.approx(0.8)


def test_face_qualities_records_without_and_with_the_heads():
    points = _face((0, 1))[None].astype(np.float32)
    faces = np.array([[70, 70, 130, 150, 0.95]], np.float32)
    record, = face_qualities(faces, points)
    assert record.pose == 'frontal' and record.size == pytest.approx(60.0)
    assert record.blur is None and record.visibility is None
    assert record.quality == pytest.approx(0.95 * 60.0 / FULL_QUALITY_SIZE, rel=1e-6)
    as_json = record.to_json()
    assert set(as_json) == {'score', 'box', 'landmarks', 'size', 'pose', 'yaw', 'roll',
                            'quality'}

    with_blur = np.concatenate([faces, [[0.25]]], axis=1)
    with_visibility = np.concatenate([points, np.array([[[1], [1], [1], [1], [0]]], np.float32)],
                                     axis=2)
    record, = face_qualities(with_blur, with_visibility)
    assert record.blur == pytest.approx(0.25)
    assert record.visibility == (1.0, 1.0, 1.0, 1.0, 0.0)
    assert record.quality == pytest.approx(0.95 * 60.0 / 112 * 0.75 * 0.8, rel=1e-5)
    assert record.to_json()['visibility'] == [1.0, 1.0, 1.0, 1.0, 0.0]


def test_face_qualities_empty_and_bad_shapes():
    assert face_qualities(np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)) == []
    with pytest.raises(ValueError, match='faces must be'):
        face_qualities(np.zeros((1, 4)), np.zeros((1, 5, 2)))
    with pytest.raises(ValueError, match='landmarks must be'):
        face_qualities(np.zeros((1, 5)), np.zeros((2, 5, 2)))


def test_detect_with_quality_on_the_released_model(mnet25_prefix):
    import cv2
    from conftest import shared_path
    from retinaface import RetinaFace
    image = cv2.imread(str(shared_path('images', 'Tom_Cruise_avp_2014_4.jpg')))
    detector = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    faces, landmarks = detector.detect(image, threshold=0.5)
    faces_q, landmarks_q, records = detector.detect(image, threshold=0.5, quality=True)
    assert faces.tobytes() == faces_q.tobytes() and landmarks.tobytes() == landmarks_q.tobytes()
    assert len(records) == len(faces) >= 1
    best = records[0]
    assert best.pose == 'frontal' and abs(best.yaw) < 30 and abs(best.roll) < 20
    assert 0.0 < best.quality <= best.score
    assert best.blur is None and best.visibility is None        # mnet.25 has neither head
    assert detector.check_large_pose(landmarks[0], faces[0, :4])[0] == 0
