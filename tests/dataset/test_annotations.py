"""FaceAnnotations and the one mirror formula: hand-computed cases, pixels against labels."""
import cv2
import numpy as np

from rcnn.dataset.annotations import FaceAnnotations
from rcnn.processing.mirror import mirror_boxes, mirror_image, mirror_landmarks


def _faces():
    boxes = np.array([[10, 20, 29, 49], [0, 0, 99, 9]], np.float32)
    landmarks = np.array([[[12, 25], [26, 25], [20, 33], [14, 42], [25, 43]],
                          [[-1, -1]] * 5], np.float32)
    visibility = np.array([[1, 0, 1, 1, 1], [-1] * 5], np.float32)
    return FaceAnnotations(boxes, landmarks, visibility, blur=[0.3, 0.0], classes=[1, 1])


def test_mirror_is_width_minus_x_minus_one_on_boxes_and_points():
    # a 100 px wide image: column 10 -> 89, column 29 -> 70
    np.testing.assert_array_equal(mirror_boxes(np.array([[10, 20, 29, 49, 0.9]]), 100),
                                  [[70, 20, 89, 49, 0.9]])
    points = np.array([[[12, 1], [26, 2], [20, 3], [14, 4], [25, 5]]], np.float32)
    # point p of the mirror is point (1, 0, 2, 4, 3)[p] of the input, x' = 99 - x
    np.testing.assert_array_equal(mirror_landmarks(points, 100),
                                  [[[73, 2], [87, 1], [79, 3], [74, 5], [85, 4]]])


def test_flip_mirrors_faces_keeps_missing_points_and_twice_is_identity():
    faces = _faces()
    flipped = faces.flip(100)
    np.testing.assert_array_equal(flipped.boxes, [[70, 20, 89, 49], [0, 0, 99, 9]])
    np.testing.assert_array_equal(flipped.landmarks[0, 0], [99 - 26, 25])   # was point 1
    np.testing.assert_array_equal(flipped.visibility[0], [0, 1, 1, 1, 1])   # reordered too
    np.testing.assert_array_equal(flipped.landmarks[1], -1)                 # missing stay -1
    np.testing.assert_array_equal(flipped.blur, faces.blur)
    twice = flipped.flip(100)
    for name in ('boxes', 'landmarks', 'visibility', 'blur', 'classes'):
        np.testing.assert_array_equal(getattr(twice, name), getattr(faces, name), err_msg=name)


def test_scale_shift_keep():
    faces = _faces()
    moved = faces.scale(2.0).shift(-5, -10)
    np.testing.assert_array_equal(moved.boxes[0], [15, 30, 53, 88])
    np.testing.assert_array_equal(moved.landmarks[0, 2], [35, 56])
    np.testing.assert_array_equal(moved.visibility, faces.visibility)    # flags never move
    kept = moved.keep(np.array([False, True]))
    assert len(kept) == 1 and kept.blur.tolist() == [0.0]
    np.testing.assert_array_equal(kept.boxes, [[-5, -10, 193, 8]])
    assert len(faces) == 2                                                 # input unchanged


def test_record_round_trip():
    record = {'boxes': np.array([[1, 2, 3, 4]], np.float32),
              'landmarks': np.arange(15, dtype=np.float32).reshape(1, 5, 3),
              'blur': np.array([0.5], np.float32), 'gt_classes': np.array([1], np.int32)}
    fields = FaceAnnotations.from_record(record).record_fields()
    for key in record:
        np.testing.assert_array_equal(fields[key], record[key], err_msg=key)
        assert fields[key].dtype == record[key].dtype


def test_mirrored_pixels_lie_in_the_mirrored_boxes():
    image = np.zeros((40, 100, 3), np.uint8)
    cv2.rectangle(image, (10, 5), (29, 30), (0, 0, 255), thickness=-1)   # x 10..29 inclusive
    mirrored = mirror_image(image)
    x1, y1, x2, y2 = mirror_boxes(np.array([[10, 5, 29, 30]], np.float32), 100)[0].astype(int)
    red = mirrored[:, :, 2] == 255
    columns = np.flatnonzero(red.any(axis=0))
    assert (columns.min(), columns.max()) == (x1, x2) == (70, 89)
    rows = np.flatnonzero(red.any(axis=1))
    assert (rows.min(), rows.max()) == (y1, y2)
