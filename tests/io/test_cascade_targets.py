"""The gt_boxes label of cascade training: padded rows of the crop's faces, the faces the anchor
labels use, the capacity check naming the image and the flag, and the loader's sample maker
giving it only with CASCADE > 0."""
import cv2
import numpy as np
import pytest

from rcnn.config import generate_config
from rcnn.dataset.annotations import FaceAnnotations
from rcnn.io.anchor_targets import AnchorTargetGenerator
from rcnn.io.cascade_targets import (CascadeTargets, check_face_capacity, padded_gt_boxes,
                                     with_cascade_targets)
from rcnn.io.sample import SampleMaker, sample_rng

FEAT_SHAPES = [(1, 4, 5, 5), (1, 4, 10, 10), (1, 4, 20, 20)]     # a 160-pixel crop


def _cfg(**overrides):
    cfg, _ = generate_config('mnet', 'retinaface', overrides)
    return cfg


def test_rows_are_the_labelled_faces_then_minus_one():
    faces = FaceAnnotations([[1, 2, 30, 40], [5, 5, 9, 9], [50, 60, 90, 99]],
                            classes=[1, 0, 1])
    rows = padded_gt_boxes(faces, 4)
    assert rows.shape == (1, 4, 5) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[0], [[1, 2, 30, 40, 1], [50, 60, 90, 99, 1],
                                            [-1] * 5, [-1] * 5])
    assert (padded_gt_boxes(FaceAnnotations(np.zeros((0, 4))), 2) == -1).all()


def test_a_crop_with_more_faces_than_rows_names_the_flag():
    faces = FaceAnnotations(np.tile([[0, 0, 9, 9]], (3, 1)))
    with pytest.raises(ValueError, match='TRAIN.MAX_BBOX_PER_IMAGE=2'):
        padded_gt_boxes(faces, 2)


def test_capacity_check_names_the_first_image_with_too_many_faces():
    roidb = [{'image': 'a.jpg', 'boxes': np.zeros((2, 4))},
             {'image': 'crowd.jpg', 'boxes': np.zeros((5, 4))}]
    check_face_capacity(roidb, 5)
    with pytest.raises(ValueError, match=r'crowd.jpg has 5 faces.*MAX_BBOX_PER_IMAGE=5'):
        check_face_capacity(roidb, 4)


def test_the_wrapper_adds_gt_boxes_to_the_anchor_labels():
    cfg = _cfg(CASCADE=1, **{'TRAIN.MAX_BBOX_PER_IMAGE': 6})
    plain = AnchorTargetGenerator.from_config(cfg)
    targets = with_cascade_targets(plain, cfg)
    assert isinstance(targets, CascadeTargets)
    assert with_cascade_targets(plain, _cfg()) is plain
    assert targets.label_names == plain.label_names + ['gt_boxes']
    assert targets.label_shapes(FEAT_SHAPES, 3) == \
        plain.label_shapes(FEAT_SHAPES, 3) + [('gt_boxes', (3, 6, 5))]
    assert targets.with_landmarks == plain.with_landmarks
    faces = FaceAnnotations([[20, 30, 80, 100]])
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    labels = targets(FEAT_SHAPES, faces, [160, 160, 1.0], rng_a)
    reference = plain(FEAT_SHAPES, faces, [160, 160, 1.0], rng_b)
    assert set(labels) == set(reference) | {'gt_boxes'}
    for name in reference:
        np.testing.assert_array_equal(labels[name], reference[name])
    np.testing.assert_array_equal(labels['gt_boxes'][0, 0], [20, 30, 80, 100, 1])


def test_a_cascade_sample_carries_the_crops_faces(tmp_path):
    image = np.full((200, 240, 3), 90, np.uint8)
    cv2.rectangle(image, (40, 50), (119, 149), (0, 0, 255), thickness=-1)
    path = tmp_path / 'face.png'
    cv2.imwrite(str(path), image)
    record = {'image': str(path), 'height': 200, 'width': 240,
              'boxes': np.array([[40, 50, 119, 149]], np.float32),
              'gt_classes': np.ones(1, np.int32), 'flipped': False}
    cfg = _cfg(CASCADE=1, SCALES=[(160, 160)], **{'TRAIN.MAX_BBOX_PER_IMAGE': 3})
    _, labels, faces, _ = SampleMaker.from_config(cfg, FEAT_SHAPES)(record, sample_rng(1, 0, 0))
    rows = labels['gt_boxes']
    assert rows.shape == (1, 3, 5)
    assert len(faces) >= 1
    np.testing.assert_allclose(rows[0, :len(faces), :4], faces.boxes)
    assert (rows[0, len(faces):] == -1).all()
    _, plain, _, _ = SampleMaker.from_config(_cfg(SCALES=[(160, 160)]), FEAT_SHAPES)(
        record, sample_rng(1, 0, 0))
    assert 'gt_boxes' not in plain
