"""Aligned crops: the similarity estimate against known transforms, a linear least-squares
solve and OpenCV; the warp on a synthetic image; the released mnet.25 on the dlib photos."""
import cv2
import numpy as np
import pytest

from rcnn.inference.align import (ARCFACE_112, TEMPLATE_96x112, align_faces, reference_points,
                                  similarity_transforms)
from test_retinaface import iou_matrix


def _similarity(angle, scale, tx, ty):
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def _apply(matrix, points):
    return points @ matrix[:, :2].T + matrix[:, 2]


def _random_faces(rng, count):
    """Template points moved by random similarities: (count, 5, 2) landmarks and the (count,
    2, 3) transforms template -> landmarks."""
    moves = [_similarity(rng.uniform(-np.pi, np.pi), rng.uniform(0.3, 8.0),
                         rng.uniform(-500, 2000), rng.uniform(-500, 2000)) for _ in range(count)]
    return np.stack([_apply(m, ARCFACE_112) for m in moves]), np.stack(moves)


def test_known_similarity_maps_back_to_the_template():
    landmarks, moves = _random_faces(np.random.RandomState(0), 50)
    matrices = similarity_transforms(landmarks, ARCFACE_112)
    for matrix, points, move in zip(matrices, landmarks, moves):
        assert np.abs(_apply(matrix, points) - ARCFACE_112).max() < 1e-3
        # the estimate is the inverse of the move
        inverse = cv2.invertAffineTransform(move)
        np.testing.assert_allclose(matrix, inverse, atol=1e-6)


def test_estimate_equals_opencv_on_exact_points():
    landmarks, _ = _random_faces(np.random.RandomState(1), 5)
    for points, matrix in zip(landmarks, similarity_transforms(landmarks, ARCFACE_112)):
        expected, _ = cv2.estimateAffinePartial2D(points.astype(np.float32),
                                                  ARCFACE_112.astype(np.float32),
                                                  method=cv2.LMEDS)
        np.testing.assert_allclose(matrix, expected, atol=1e-3)


def test_noisy_points_give_the_least_squares_similarity():
    """Against an independent linear least-squares solve of x' = a x - b y + tx,
    y' = b x + a y + ty."""
    rng = np.random.RandomState(2)
    landmarks, _ = _random_faces(rng, 20)
    landmarks += rng.normal(0, 3.0, landmarks.shape)
    for points, matrix in zip(landmarks, similarity_transforms(landmarks, ARCFACE_112)):
        x, y = points[:, 0], points[:, 1]
        rows = np.concatenate([np.stack([x, -y, np.ones(5), np.zeros(5)], 1),
                               np.stack([y, x, np.zeros(5), np.ones(5)], 1)])
        target = np.concatenate([ARCFACE_112[:, 0], ARCFACE_112[:, 1]])
        a, b, tx, ty = np.linalg.lstsq(rows, target, rcond=None)[0]
        np.testing.assert_allclose(matrix, [[a, -b, tx], [b, a, ty]], atol=1e-6)


def test_warp_puts_marked_points_on_the_template():
    """A dot drawn at each known landmark position lands on its template point in the crop
    (intensity-weighted centroid, one dot per image)."""
    move = _similarity(0.4, 2.5, 300.0, 150.0)
    landmarks = _apply(move, ARCFACE_112)
    for (x, y), (tx, ty) in zip(landmarks, ARCFACE_112):
        image = np.zeros((600, 800, 3), np.uint8)
        cv2.circle(image, (int(round(x * 16)), int(round(y * 16))), 6 * 16, (255, 255, 255), -1,
                   lineType=cv2.LINE_AA, shift=4)
        crop, = align_faces(image, landmarks[None], size=112)
        assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
        weight = crop[:, :, 0].astype(np.float64)
        ys, xs = np.mgrid[:112, :112]
        assert abs((weight * xs).sum() / weight.sum() - tx) < 0.1
        assert abs((weight * ys).sum() / weight.sum() - ty) < 0.1


def test_other_sizes_and_templates():
    np.testing.assert_allclose(reference_points(224), ARCFACE_112 * 2)
    np.testing.assert_allclose(TEMPLATE_96x112[:, 0] + 8, ARCFACE_112[:, 0])
    image = np.full((300, 300, 3), 128, np.uint8)
    points = ARCFACE_112 + 50
    assert align_faces(image, points, size=224).shape == (1, 224, 224, 3)
    assert align_faces(image, points, size=(96, 112), template=TEMPLATE_96x112).shape == \
        (1, 112, 96, 3)
    assert align_faces(image, np.zeros((0, 5, 2))).shape == (0, 112, 112, 3)


def test_bad_inputs_are_refused():
    image = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ValueError, match='face\\(s\\) \\[1\\] coincide'):
        align_faces(image, np.stack([ARCFACE_112, np.ones((5, 2))]))
    with pytest.raises(ValueError, match='not finite'):
        similarity_transforms(np.full((1, 5, 2), np.nan), ARCFACE_112)
    with pytest.raises(ValueError, match='\\(N, 5, 2\\)'):
        align_faces(image, np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match='uint8'):
        align_faces(image.astype(np.float32), ARCFACE_112)
    with pytest.raises(ValueError, match='template='):
        align_faces(image, ARCFACE_112, size=(96, 112))


def test_dlib_photo_crops_put_the_annotated_eyes_on_the_template(mnet25_prefix, dlib_faces):
    """Detect with the released mnet.25, align with the detected landmarks, and map the
    annotated (dlib 68-point derived) eyes into the crops: they sit on the template's eyes."""
    from rcnn.dataset.label_file import read_label_file
    from rcnn.dataset.retinaface_dataset import build_roidb
    from retinaface import RetinaFace
    train = dlib_faces / 'train'
    roidb = build_roidb(read_label_file(str(train / 'label.txt')), str(train / 'images'))
    detector = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    template = reference_points(112)
    eye_errors = []
    for entry in roidb:
        image = cv2.imread(entry['image'])
        faces, landmarks = detector.detect(image, threshold=0.5)
        crops = detector.align(image, landmarks)
        assert crops.shape == (len(faces), 112, 112, 3) and crops.dtype == np.uint8
        np.testing.assert_array_equal(crops, align_faces(image, landmarks))
        iou = iou_matrix(entry['boxes'], faces)
        matrices = similarity_transforms(landmarks, template)
        for gt_index, det_index in enumerate(iou.argmax(axis=1)):
            if iou[gt_index, det_index] < 0.5:
                continue
            gt_eyes = entry['landmarks'][gt_index, :2, :2].astype(np.float64)
            in_crop = _apply(matrices[det_index], gt_eyes)
            eye_errors.append(np.linalg.norm(in_crop - template[:2], axis=1))
            # the crop is a real face: brighter-than-black content around the template
            assert crops[det_index].mean() > 20
    eye_errors = np.concatenate(eye_errors)
    assert len(eye_errors) >= 2 * 12                # most of the 18 annotated faces detected
    assert np.median(eye_errors) < 4.0 and eye_errors.max() < 10.0   # pixels of a 112 crop
