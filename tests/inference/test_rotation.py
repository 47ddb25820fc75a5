"""Rotated passes: the mapping back against numpy's own rotation and hand-computed boxes, the
merge of a face found in several passes, and the released mnet.25 on rotated real photos."""
import cv2
import numpy as np
import pytest

from conftest import shared_path
from rcnn.inference.input_check import InvalidInputError
from rcnn.inference.rotation import (check_rotations, detect_rotations, landmark_roll,
                                     rotate_image, rotated_shape, unrotate_boxes,
                                     unrotate_points, upright_angles)
from rcnn.processing.detections import Detections

ANGLES = (0, 90, 180, 270)


@pytest.mark.parametrize('angle', ANGLES)
def test_every_pixel_maps_back_to_where_numpy_took_it(angle):
    height, width = 3, 5
    image = np.arange(height * width).reshape(height, width)      # each value names its pixel
    rotated = rotate_image(image, angle)
    assert rotated.shape == rotated_shape(height, width, angle)
    ys, xs = np.mgrid[:rotated.shape[0], :rotated.shape[1]]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    back = unrotate_points(points, angle, height, width).astype(int)
    assert (image[back[:, 1], back[:, 0]] == rotated.ravel()).all()


def test_hand_computed_points_and_boxes():
    # a 5 wide x 3 high image turned counterclockwise by 90 is 3 wide x 5 high; its pixel
    # (0, 3) is the original's top row, column 1
    np.testing.assert_array_equal(unrotate_points(np.array([[0.0, 3.0]]), 90, 3, 5), [[1, 0]])
    # the box x 0..1, y 1..3 of the 90-degree image covers the original's columns 4 - 3 = 1
    # to 4 - 1 = 3 of rows 0..1
    np.testing.assert_array_equal(unrotate_boxes(np.array([[0.0, 1.0, 1.0, 3.0]]), 90, 3, 5),
                                  [[1, 0, 3, 1]])
    # 180: x -> 4 - x, y -> 2 - y;  270: (x, y) -> (y, 2 - x)
    np.testing.assert_array_equal(unrotate_boxes(np.array([[0.0, 0.0, 1.0, 2.0]]), 180, 3, 5),
                                  [[3, 0, 4, 2]])
    np.testing.assert_array_equal(unrotate_boxes(np.array([[0.0, 1.0, 2.0, 4.0]]), 270, 3, 5),
                                  [[1, 0, 4, 2]])
    # landmarks keep their order (a rotation does not mirror)
    points = np.array([[[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [0.0, 2.0], [2.0, 2.0]]])
    back = unrotate_points(points, 90, 3, 5)
    np.testing.assert_array_equal(back[0, :, 0], 4 - points[0, :, 1])
    np.testing.assert_array_equal(back[0, :, 1], points[0, :, 0])


def test_check_rotations():
    assert check_rotations((0, 90, 180, 270)) == (0, 90, 180, 270)
    assert check_rotations(90) == (90,)
    for bad in ((), (45,), (0, 0), (90.5,), 'x'):
        with pytest.raises(InvalidInputError):
            check_rotations(bad)


class _Model(object):
    nms_threshold = 0.4
    vote = False


def _face(box, score, points):
    return Detections(np.array([box], np.float32), np.array([score], np.float32),
                      np.array([points], np.float32))


def test_duplicates_of_the_rotated_passes_merge_into_the_best_one():
    # a 100 x 60 image holding one face 40 wide and 32 high, turned clockwise by 90 degrees:
    # upright in the 90-degree pass (score 0.9, box 32 wide and 40 high there), found weaker
    # by the upright pass with its sides swapped (0.6), and not by the other passes
    height, width = 60, 100
    points_90 = [[18.0, 30.0], [34.0, 30.0], [26.0, 40.0], [20.0, 50.0], [32.0, 50.0]]
    per_pass = {
        0: _face([43.0, 6.0, 75.0, 46.0], 0.6, [[50.0, 20.0]] * 5),
        90: _face([10.0, 20.0, 42.0, 60.0], 0.9, points_90),
        180: Detections.concatenate([]),
        270: _face([0.0, 0.0, 5.0, 5.0], 0.3, [[1.0, 1.0]] * 5),
    }
    image = np.zeros((height, width, 3), np.uint8)
    seen = []

    def candidates_of(view):
        seen.append(view.shape[:2])
        return per_pass[ANGLES[len(seen) - 1]]

    faces, landmarks, angles = detect_rotations(_Model(), image, ANGLES, candidates_of)
    assert seen == [(60, 100), (100, 60), (60, 100), (100, 60)]
    # x = 99 - y, y = x: the 90 box y 20..60 -> x 39..79, x 10..42 -> y 10..42; its IoU with
    # the weaker upright box (43, 6, 75, 46) is 1089 / 1617 = 0.67: suppressed
    assert len(faces) == 2
    np.testing.assert_allclose(faces[0], [39, 10, 79, 42, 0.9])
    np.testing.assert_allclose(landmarks[0, 0], [99 - 30, 18])
    np.testing.assert_allclose(landmarks[0, 4], [99 - 50, 32])
    assert angles[0] == 90
    # the 270 pass's small face: (x, y) -> (y, 59 - x)
    np.testing.assert_allclose(faces[1], [0, 54, 5, 59, 0.3])
    assert angles[1] == 270


def test_landmark_roll_by_hand():
    upright = [[0.0, 0.0], [10.0, 0.0], [5.0, 5.0], [1.0, 10.0], [9.0, 10.0]]
    # turned clockwise by 90 on screen: the head's top points right, the mouth is left of
    # the eyes
    clockwise = [[0.0, 0.0], [0.0, 10.0], [-5.0, 5.0], [-10.0, 1.0], [-10.0, 9.0]]
    upside_down = [[10.0, 10.0], [0.0, 10.0], [5.0, 5.0], [9.0, 0.0], [1.0, 0.0]]
    np.testing.assert_allclose(landmark_roll(np.array([upright, clockwise, upside_down])),
                               [0.0, 90.0, 180.0], atol=1e-9)
    # found upright in the 270 pass: turned clockwise by 270; found turned by 90 in it: 0
    assert upright_angles(np.array([upright, clockwise]), 270).tolist() == [270, 0]


def test_an_upright_candidate_beats_a_better_scored_sideways_duplicate():
    # the upright pass finds the face lying on its side (landmarks say: turned clockwise by
    # 90) with a saturated score; the 90 pass finds it upright with a lower one
    sideways = [[60.0, 10.0], [60.0, 40.0], [55.0, 25.0], [46.0, 12.0], [46.0, 38.0]]
    upright = [[18.0, 30.0], [34.0, 30.0], [26.0, 40.0], [20.0, 50.0], [32.0, 50.0]]
    calls = iter([_face([43.0, 6.0, 75.0, 46.0], 0.999, sideways),
                  _face([10.0, 20.0, 42.0, 60.0], 0.9, upright)])
    image = np.zeros((60, 100, 3), np.uint8)
    faces, landmarks, angles = detect_rotations(_Model(), image, (0, 90),
                                                lambda view: next(calls))
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0], [39, 10, 79, 42, 0.9])
    assert angles.tolist() == [90]
    # alone, the sideways candidate is kept, its angle read from its landmarks
    calls = iter([_face([43.0, 6.0, 75.0, 46.0], 0.999, sideways), Detections.concatenate([])])
    faces, _, angles = detect_rotations(_Model(), image, (0, 90), lambda view: next(calls))
    assert len(faces) == 1 and faces[0, 4] == pytest.approx(0.999) and angles.tolist() == [90]


def test_box_voting_keeps_the_angle_of_each_cluster_top():
    class Voter(_Model):
        vote = True
    per_pass = [_face([10.0, 10.0, 50.0, 50.0], 0.7, [[20.0, 20.0]] * 5),
                _face([10.0, 49.0, 50.0, 89.0], 0.8, [[30.0, 70.0]] * 5)]
    image = np.zeros((100, 100, 3), np.uint8)
    calls = iter(per_pass)
    faces, landmarks, angles = detect_rotations(Voter(), image, (0, 90),
                                                lambda view: next(calls))
    # the 90 box maps to x 99 - 89 .. 99 - 49 = 10..50, y 10..50: one cluster of two, score
    # 0.8 and the landmarks of its top (the 90 pass)
    assert len(faces) == 1 and angles.tolist() == [90]
    np.testing.assert_allclose(faces[0], [10, 10, 50, 50, 0.8], atol=1e-5)
    np.testing.assert_allclose(landmarks[0, 0], [99 - 70, 30])


# ---------------------------------------------------------------------------- released model

@pytest.fixture(scope='module')
def mnet25():
    from retinaface import RetinaFace
    return RetinaFace(str(shared_path('models', 'mnet.25') / 'mnet.25'), 0, ctx_id=-1)


@pytest.fixture(scope='module')
def photo():
    image = cv2.imread(str(shared_path('images', 'Tom_Cruise_avp_2014_4.jpg')))
    return cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)


def _iou(a, b):
    """(len(a), len(b)) IoU of x1 y1 x2 y2 boxes (continuous areas)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _rotate_boxes_forward(boxes, angle, height, width):
    """Boxes of the upright image in the image turned by ``angle``: the inverse rotation."""
    inverse = (360 - angle) % 360
    rh, rw = rotated_shape(height, width, angle)
    return unrotate_boxes(boxes, inverse, rh, rw)


@pytest.mark.parametrize('k', [1, 2, 3])
def test_released_model_finds_the_turned_face_upright(mnet25, photo, k):
    upright_faces, upright_points = mnet25.detect(photo, threshold=0.5)
    assert len(upright_faces) >= 1
    turned = np.ascontiguousarray(np.rot90(photo, k))
    faces, points, angles = mnet25.detect(turned, threshold=0.5, rotations=ANGLES)
    # the pass turning the image back upright sees the original pixels, so its faces win and
    # are the upright result moved onto the turned image (other passes may add weaker faces)
    expected = _rotate_boxes_forward(upright_faces[:, :4], 90 * k, *photo.shape[:2])
    iou = _iou(expected, faces[:, :4])
    match = iou.argmax(axis=1)
    assert (iou.max(axis=1) > 0.999).all()
    assert (angles[match] == (360 - 90 * k) % 360).all()
    np.testing.assert_allclose(faces[match, :4], expected, atol=1e-3)
    np.testing.assert_allclose(faces[match, 4], upright_faces[:, 4], rtol=1e-6)
    # aligned crops are upright: the crops of the upright photo
    crops = mnet25.align(turned, points[match])
    upright_crops = mnet25.align(photo, upright_points)
    assert np.abs(crops.astype(float) - upright_crops).mean() < 3.0
    # without the option the turned face is missed or its landmarks are not upright
    plain_faces, plain_points = mnet25.detect(turned, threshold=0.5)
    if len(plain_faces):
        plain_crops = mnet25.align(turned, plain_points[:1])
        assert np.abs(plain_crops.astype(float) - upright_crops[:1]).mean() > 20.0


def test_released_model_without_rotations_is_the_plain_pass(mnet25, photo):
    plain = mnet25.detect(photo, threshold=0.5)
    same = mnet25.detect(photo, threshold=0.5, rotations=(0,))
    assert len(same) == 2
    for a, b in zip(plain, same):
        np.testing.assert_array_equal(a, b)


def test_cli_rotations_give_each_face_its_angle(mnet25_prefix, photo, tmp_path):
    import json
    from test_detect_cli import load_cli
    cli = load_cli()
    path = tmp_path / 'turned.png'
    cv2.imwrite(str(path), np.ascontiguousarray(np.rot90(photo, 1)))
    out = tmp_path / 'out'
    base = ['--prefix', mnet25_prefix, '--gpu', '-1', str(path), '--out', str(out), '--json',
            '--no-draw']
    assert cli.main(base + ['--rotations', '0', '90', '180', '270']) == 0
    record, = json.loads((out / 'detections.json').read_text())
    assert record['faces'][0]['angle'] == 270
    assert cli.main(base) == 0
    record, = json.loads((out / 'detections.json').read_text())
    assert all('angle' not in face for face in record['faces'])
    with pytest.raises(SystemExit):
        cli.parse_args(base + ['--rotations', '45'])
    with pytest.raises(SystemExit):
        cli.parse_args(base + ['--tiles', 'many'])
