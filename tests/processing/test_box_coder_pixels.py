"""The box/landmark coder (rcnn/processing/box_coder.py) and the pixel transform
(rcnn/processing/pixels.py), against hand computations."""
import numpy as np
import pytest

from rcnn.config import generate_config
from rcnn.io.anchor_targets import AnchorTargetGenerator
from rcnn.io.rpn import assign_anchor_fpn, faces_from_gt_label
from rcnn.processing.bbox_transform import landmark_pred, nonlinear_pred
from rcnn.processing.box_coder import BoxCoder
from rcnn.processing.pixels import PixelTransform, transform

ANCHORS = np.array([[0, 0, 15, 15], [10, 20, 41, 83]], dtype=np.float32)


def test_encode_divides_and_decode_multiplies_by_the_stds():
    coder = BoxCoder((0.1, 0.2, 0.5, 0.25), 0.5)
    boxes = np.array([[2, 4, 21, 19], [12, 18, 45, 90]], dtype=np.float32)
    targets = coder.encode_boxes(ANCHORS, boxes)
    # anchor 0: w = h = 16, centre 7.5; box 0: w 20, h 16, centre (11.5, 11.5)
    np.testing.assert_allclose(targets[0], [4.0 / 16 / 0.1, 4.0 / 16 / 0.2,
                                            np.log(20 / 16.) / 0.5, np.log(16 / 16.) / 0.25],
                               rtol=1e-6)
    np.testing.assert_allclose(coder.decode_boxes(ANCHORS, targets), boxes, atol=1e-4)

    points = np.array([[[3, 5], [12, 5], [7, 9], [4, 13], [11, 13]]] * 2, dtype=np.float32)
    landmark_targets = coder.encode_landmarks(ANCHORS, points)
    assert landmark_targets.shape == (2, 10) and landmark_targets.dtype == np.float32
    # point 0 of anchor 0: ((3 - 7.5) / 16, (5 - 7.5) / 16) / 0.5
    np.testing.assert_allclose(landmark_targets[0, :2], [-4.5 / 16 / 0.5, -2.5 / 16 / 0.5],
                               rtol=1e-6)
    decoded = coder.decode_landmarks(ANCHORS, landmark_targets.reshape(2, 5, 2))
    np.testing.assert_allclose(decoded, points, atol=1e-4)


def test_default_coder_is_bitwise_the_plain_kernels():
    rng = np.random.default_rng(1)
    deltas = rng.normal(size=(2, 4)).astype(np.float32)
    points = rng.normal(size=(2, 5, 2)).astype(np.float32)
    coder = BoxCoder()
    assert coder.is_identity
    np.testing.assert_array_equal(coder.decode_boxes(ANCHORS, deltas),
                                  nonlinear_pred(ANCHORS, deltas))
    np.testing.assert_array_equal(coder.decode_landmarks(ANCHORS, points),
                                  landmark_pred(ANCHORS, points))


@pytest.mark.parametrize('stds, std', [((1, 1, 1), 1.0), ((1, 1, 0, 1), 1.0), ((1,) * 4, -1.0),
                                       ((1, 1, float('nan'), 1), 1.0)])
def test_coder_refuses_bad_stds(stds, std):
    with pytest.raises(ValueError, match='STD'):
        BoxCoder(stds, std)


def test_training_targets_follow_the_config_stds():
    cfg, _ = generate_config('mnet', 'retinaface')
    assert cfg.TRAIN.RPN_ENABLE_OHEM == 2          # no random sampling: the labels are complete
    gt = {'gt_boxes': np.array([[100, 120, 180, 210, 1]], np.float32),
          'gt_landmarks': np.array([[[120, 150, 1], [160, 150, 1], [140, 170, 1],
                                     [125, 190, 1], [155, 190, 1]]], np.float32)}
    shapes = [(1, 4, 10, 10), (1, 4, 20, 20), (1, 4, 40, 40)]
    plain = assign_anchor_fpn(shapes, gt, [320, 320, 1], landmark=True, cfg=cfg)
    generator = AnchorTargetGenerator.from_config(cfg)
    assert generator.coder == BoxCoder(cfg.TRAIN.BBOX_STDS, cfg.TRAIN.LANDMARK_STD)
    generator.coder = BoxCoder((0.1, 0.1, 0.2, 0.2), 0.25)
    scaled = generator(shapes, faces_from_gt_label(gt, True), [320, 320, 1])
    for stride in (32, 16, 8):
        name = 'face_bbox_target_stride%d' % stride
        per_channel = np.tile(np.float32([0.1, 0.1, 0.2, 0.2]), 2)[None, :, None]
        np.testing.assert_allclose(scaled[name], plain[name] / per_channel, rtol=1e-6)
        name = 'face_landmark_target_stride%d' % stride
        np.testing.assert_allclose(scaled[name], plain[name] / np.float32(0.25), rtol=1e-6)
        np.testing.assert_array_equal(scaled['face_label_stride%d' % stride],
                                      plain['face_label_stride%d' % stride])
    assert np.abs(plain['face_bbox_target_stride8']).max() > 0


def test_pixel_transform_by_hand_bgr_order():
    image = np.array([[[10, 20, 30], [40, 50, 60]]], dtype=np.uint8)         # (1, 2, 3) BGR
    pixels = PixelTransform(means=[1, 2, 3], stds=[2, 4, 8], scale=0.5)
    tensor = pixels(image)
    assert tensor.shape == (1, 3, 1, 2) and tensor.dtype == np.float32
    # R channel: (R / 0.5 - 3) / 8
    np.testing.assert_allclose(tensor[0, 0, 0], [(30 / 0.5 - 3) / 8, (60 / 0.5 - 3) / 8])
    np.testing.assert_allclose(tensor[0, 2, 0], [(10 / 0.5 - 1) / 2, (40 / 0.5 - 1) / 2])
    np.testing.assert_array_equal(transform(image, [1, 2, 3], [2, 4, 8], 0.5), tensor)
    padded = pixels.network_input(image, flip=True, pad_multiple=4)
    assert padded.shape == (1, 3, 4, 4)
    np.testing.assert_allclose(padded[0, 0, 0, :2], [(60 / 0.5 - 3) / 8, (30 / 0.5 - 3) / 8])
    np.testing.assert_allclose(padded[0, 1, 3, 3], (0 - 2) / 4.0)      # a black padded pixel


def test_default_pixel_transform_is_raw_rgb():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    tensor = PixelTransform()(image)
    assert PixelTransform().is_identity
    np.testing.assert_array_equal(tensor[0],
                                  image[:, :, ::-1].transpose(2, 0, 1).astype(np.float32))


@pytest.mark.parametrize('kwargs', [dict(stds=[1, 0, 1]), dict(means=[1, 2]), dict(scale=0),
                                    dict(means=[1, float('inf'), 1])])
def test_pixel_transform_refuses_bad_values(kwargs):
    with pytest.raises(ValueError, match='PIXEL_'):
        PixelTransform(**kwargs)
