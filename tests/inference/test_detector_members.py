"""The original detector's network names and public members, against facts read in its code
(insightface ``retinaface.py``) and hand-computed cases."""
import math

import numpy as np
import pytest

from rcnn.inference.networks import NETWORK_NAMES, network_anchor_cfg, network_recipe
from rcnn.recipe import default_recipe
from test_detector_layouts import HeadValues, detector, layout_cfg, save_graph

# the original's table: name -> (strides, ratios, pixel means, pixel stds), BGR order
ORIGINAL = {
    'net3': ((32, 16, 8), (1.0,), (0, 0, 0), (1, 1, 1)),
    'net3a': ((32, 16, 8), (1.0, 1.5), (0, 0, 0), (1, 1, 1)),
    'net4': ((32, 16, 8, 4), (1.0,), (0, 0, 0), (1, 1, 1)),
    'net4a': ((32, 16, 8, 4), (1.0, 1.5), (0, 0, 0), (1, 1, 1)),
    'net5': ((64, 32, 16, 8, 4), (1.0,), (0, 0, 0), (1, 1, 1)),
    'net5a': ((64, 32, 16, 8, 4), (1.0, 1.5), (0, 0, 0), (1, 1, 1)),
    'net6': ((128, 64, 32, 16, 8, 4), (1.0,), (0, 0, 0), (1, 1, 1)),
    'ssh': ((32, 16, 8), (1.0,), (103.939, 116.779, 123.68), (1, 1, 1)),
    'vgg': ((32, 16, 8), (1.0,), (103.939, 116.779, 123.68), (1, 1, 1)),
    'x3': ((32, 16, 8), (1.0,), (103.52, 116.28, 123.675), (57.375, 57.12, 58.395)),
    'x3a': ((32, 16, 8), (1.0, 1.5), (103.52, 116.28, 123.675), (57.375, 57.12, 58.395)),
    'x5': ((64, 32, 16, 8, 4), (1.0,), (103.52, 116.28, 123.675), (57.375, 57.12, 58.395)),
}


def test_every_network_name_of_the_original():
    assert sorted(NETWORK_NAMES) == sorted(ORIGINAL)
    for name, (strides, ratios, means, stds) in ORIGINAL.items():
        recipe = network_recipe(name)
        assert recipe.strides == strides, name
        assert recipe.pixels.means == tuple(float(m) for m in means), name
        assert recipe.pixels.stds == tuple(float(s) for s in stds), name
        assert recipe.coder.is_identity and not recipe.dense_anchor, name
        for entry in recipe.anchor_cfg.values():
            assert tuple(entry['RATIOS']) == ratios and entry['BASE_SIZE'] == 16, name


def test_anchor_scales_of_each_stride_family():
    ssh = {'32': [32, 16], '16': [8, 4], '8': [2, 1]}
    assert {k: list(v['SCALES']) for k, v in network_anchor_cfg('net3').items()} == ssh
    assert {k: list(v['SCALES']) for k, v in network_anchor_cfg('net4').items()} == \
        dict(ssh, **{'4': [2, 1]})
    assert {k: list(v['SCALES']) for k, v in network_anchor_cfg('net6').items()} == \
        {'128': [32], '64': [16], '32': [8], '16': [4], '8': [2], '4': [1]}
    five = network_anchor_cfg('net5')
    for index, stride in enumerate((4, 8, 16, 32, 64)):
        want = [2.0 ** ((3 * index + k) / 3.0) for k in range(3)]
        np.testing.assert_allclose(five[str(stride)]['SCALES'], want, rtol=1e-12)
    # the number of anchors per position the detector takes from each name
    assert network_recipe('net5a').layout.num_anchors == 6
    assert network_recipe('net6').layout.num_anchors == 1


def test_net3_is_the_original_recipe():
    assert network_recipe('net3') == default_recipe()


def test_bbox_pred_copies_the_blur_column():
    from retinaface import RetinaFace
    boxes = np.array([[0, 0, 15, 15], [10, 20, 29, 59]], np.float32)   # 16x16 and 20x40
    deltas = np.array([[0.5, 0.0, math.log(2), 0.0, 0.7], [0.0, -0.25, 0.0, math.log(0.5),
                                                          -1.5]])
    pred = RetinaFace.bbox_pred(boxes, deltas)
    assert pred.shape == (2, 5) and pred.dtype == np.float64
    # centre (7.5 + 8, 7.5), 32 x 16 -> x 15.5 -+ 15.5; centre (19.5, 39.5 - 10), 20 x 20
    np.testing.assert_allclose(pred, [[0.0, 0.0, 31.0, 15.0, 0.7],
                                      [10.0, 20.0, 29.0, 39.0, -1.5]])
    assert RetinaFace.bbox_pred(np.zeros((0, 4)), np.zeros((0, 5))).shape == (0, 5)


def test_landmark_pred_copies_the_visibility_value():
    from retinaface import RetinaFace
    boxes = np.array([[0, 0, 15, 31]], np.float32)            # 16 x 32, centre (7.5, 15.5)
    deltas = np.zeros((1, 5, 3))
    deltas[0, :, 0] = [-0.25, 0.25, 0, -0.125, 0.125]
    deltas[0, :, 1] = [-0.25, -0.25, 0, 0.25, 0.25]
    deltas[0, :, 2] = [0, 1, 0.5, -1, 0.25]
    pred = RetinaFace.landmark_pred(boxes, deltas)
    np.testing.assert_allclose(pred[0, :, 0], [3.5, 11.5, 7.5, 5.5, 9.5])
    np.testing.assert_allclose(pred[0, :, 1], [7.5, 7.5, 15.5, 23.5, 23.5])
    np.testing.assert_allclose(pred[0, :, 2], [0, 1, 0.5, -1, 0.25])


@pytest.fixture
def plain_detector(tmp_path):
    cfg, layout = layout_cfg()
    return detector(save_graph(tmp_path / 'plain', HeadValues(layout), cfg), nms=0.4)


def test_bbox_vote_member_votes_at_the_detector_iou(plain_detector):
    det = np.array([[0, 0, 9, 9, 0.9, 0.25],            # two overlapping boxes: voted
                    [1, 0, 10, 9, 0.6, 0.75],
                    [50, 50, 59, 59, 0.5, 0.5]])       # the last cluster, alone: kept
    voted = plain_detector.bbox_vote(det)
    np.testing.assert_allclose(voted, [[0.4, 0, 9.4, 9, 0.9, 0.25], [50, 50, 59, 59, 0.5, 0.5]],
                               rtol=1e-6)
    assert plain_detector.bbox_vote(np.zeros((0, 5))).shape == (0, 5)


def test_detect_center_picks_the_large_centred_face(plain_detector, monkeypatch):
    faces = np.array([[0, 0, 40, 40, 0.99],             # large, far from the centre
                      [40, 30, 60, 50, 0.6],            # small, at the centre (50, 40)
                      [45, 35, 55, 45, 0.7]], np.float32)
    points = np.arange(3 * 5 * 2, dtype=np.float32).reshape(3, 5, 2)
    monkeypatch.setattr(plain_detector, 'detect', lambda *args, **kwargs: (faces, points))
    image = np.zeros((80, 100, 3), np.uint8)
    # area - 2 * squared offset: 1600 - 2 * (30^2 + 20^2) = -1000; 400 - 0; 100 - 0
    face, landmark = plain_detector.detect_center(image)
    np.testing.assert_array_equal(face, faces[1])
    np.testing.assert_array_equal(landmark, points[1])
    monkeypatch.setattr(plain_detector, 'detect',
                        lambda *args, **kwargs: (faces[:0], points[:0]))
    assert plain_detector.detect_center(image) == (None, None)
