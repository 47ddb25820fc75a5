"""RetinaFace.detect and its post-processing: hand-built cases and the released mnet.25.

The released-model tests compare ``detect`` with an independent path: the graph run through a
plain ``mx.mod.Module`` and decoded by a straightforward loop written here, with the anchor
boxes written out by hand.
"""
import math
import os

import cv2
import numpy as np
import pytest

from conftest import shared_path
from rcnn.inference.postprocess import bbox_vote, flip_back, merge_detections
from rcnn.processing.detections import Detections, decode_detections
from rcnn.processing.generate_anchor import AnchorCache
from rcnn.model_layout import deploy_output_names

MXNET_OUTPUT_SUFFIX = '_output'
# net3 anchors of cell (0, 0), written out by hand: base 16 (centre 7.5), ratio 1,
# side = 16 * scale, box = centre -+ (side - 1) / 2.
HAND_ANCHORS = {
    32: np.array([[-248, -248, 263, 263], [-120, -120, 135, 135]], dtype=np.float64),  # 512, 256
    16: np.array([[-56, -56, 71, 71], [-24, -24, 39, 39]], dtype=np.float64),          # 128, 64
    8: np.array([[-8, -8, 23, 23], [0, 0, 15, 15]], dtype=np.float64),                 # 32, 16
}
STRIDES = (32, 16, 8)


# --------------------------------------------------------------------------- helpers

def iou_matrix(a, b):
    """(N, 4) x (K, 4) IoU with the +1 convention, by broadcasting."""
    a = np.asarray(a, dtype=np.float64)[:, None, :4]
    b = np.asarray(b, dtype=np.float64)[None, :, :4]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return inter / (area_a + area_b - inter)


def read_val_labels(label_path):
    """Tiny independent parser of a val label.txt: {relative image path: (K, 4) x1 y1 x2 y2}."""
    faces = {}
    current = None
    with open(label_path) as f:
        for line in f:
            line = line.strip()
            if line.startswith('#'):
                current = line[1:].strip()
                faces[current] = []
            elif line:
                x, y, w, h = [float(v) for v in line.split()[:4]]
                faces[current].append([x, y, x + w, y + h])
    return {k: np.array(v).reshape(-1, 4) for k, v in faces.items()}


def assert_same_faces(faces_a, points_a, faces_b, points_b, atol=1e-3):
    """Same faces (matched by best IoU, scores and boxes within atol), same landmarks."""
    assert len(faces_a) == len(faces_b)
    if len(faces_a) == 0:
        return
    match = iou_matrix(faces_a, faces_b).argmax(axis=1)
    assert len(set(match.tolist())) == len(match)
    np.testing.assert_allclose(faces_a[:, :4], faces_b[match, :4], atol=atol, rtol=0)
    np.testing.assert_allclose(faces_a[:, 4], faces_b[match, 4], atol=1e-5, rtol=0)
    np.testing.assert_allclose(points_a, points_b[match], atol=atol, rtol=0)


def mirror(faces, points, width):
    """Mirror faces/landmarks of an image of ``width`` horizontally (independent of flip_back)."""
    faces = faces.copy()
    faces[:, 0], faces[:, 2] = width - 1 - faces[:, 2], width - 1 - faces[:, 0]
    points = points.copy()
    points[:, :, 0] = width - 1 - points[:, :, 0]
    # left eye <-> right eye, left mouth corner <-> right mouth corner
    points = points[:, [1, 0, 2, 4, 3], :]
    return faces, points


# --------------------------------------------------------------------------- decoding, no model

def make_outputs(level_shapes, num_anchors=2, batch=1):
    """Zero deploy outputs (face probability 0) for {stride: (H, W)}."""
    outputs = []
    for stride in STRIDES:
        height, width = level_shapes[stride]
        outputs.append(np.zeros((batch, 2 * num_anchors, height, width), np.float32))
        outputs.append(np.zeros((batch, 4 * num_anchors, height, width), np.float32))
        outputs.append(np.zeros((batch, 10 * num_anchors, height, width), np.float32))
    return outputs


@pytest.fixture
def anchor_cache():
    return AnchorCache({s: HAND_ANCHORS[s].astype(np.float32) for s in STRIDES})


def test_anchor_cache_matches_hand_layout(anchor_cache):
    plane = anchor_cache.get(8, 3, 4)
    assert plane.shape == (3 * 4 * 2, 4)
    # index (h * W + w) * A + a: h=2, w=3, a=1 -> the 16-px anchor shifted by (24, 16)
    np.testing.assert_array_equal(plane[(2 * 4 + 3) * 2 + 1], [24, 16, 39, 31])
    assert anchor_cache.get(8, 3, 4) is plane
    assert len(anchor_cache) == 1


def test_decode_one_anchor_by_hand(anchor_cache):
    outputs = make_outputs({32: (1, 1), 16: (2, 2), 8: (3, 4)})
    cls8, box8, lmk8 = outputs[6:9]
    # stride 8, h=2, w=3, anchor 1: [24, 16, 39, 31], 16 x 16, centre (31.5, 23.5)
    cls8[0, 2 + 1, 2, 3] = 0.9
    box8[0, 4 * 1:4 * 1 + 4, 2, 3] = [0.5, 0.0, math.log(2.0), 0.0]
    lmk8[0, 10 * 1 + 2 * 2, 2, 3] = 0.25    # nose x
    lmk8[0, 10 * 1 + 2 * 2 + 1, 2, 3] = -0.5  # nose y
    cls8[0, 2 + 0, 0, 0] = 0.49             # below the threshold
    dets = decode_detections(outputs, STRIDES, anchor_cache, 0.5, (100, 100))
    assert len(dets) == 1
    # centre (31.5 + 0.5 * 16, 23.5), size 32 x 16 -> x1 = 39.5 - 15.5, y1 = 23.5 - 7.5
    np.testing.assert_allclose(dets.boxes[0], [24.0, 16.0, 55.0, 31.0], atol=1e-5)
    np.testing.assert_allclose(dets.scores, [0.9], atol=1e-6)
    np.testing.assert_allclose(dets.landmarks[0, 2], [31.5 + 4.0, 23.5 - 8.0], atol=1e-5)
    np.testing.assert_allclose(dets.landmarks[0, 0], [31.5, 23.5], atol=1e-5)


def test_decode_clips_to_the_input_and_pools_coarse_first(anchor_cache):
    outputs = make_outputs({32: (1, 1), 16: (2, 2), 8: (3, 4)})
    outputs[0][0, 2 + 0, 0, 0] = 0.7         # the 512-px anchor of stride 32
    outputs[6][0, 2 + 1, 0, 0] = 0.8         # the 16-px anchor of stride 8
    dets = decode_detections(outputs, STRIDES, anchor_cache, 0.5, (40, 60))
    np.testing.assert_allclose(dets.scores, [0.7, 0.8], atol=1e-6)
    np.testing.assert_allclose(dets.boxes[0], [0, 0, 59, 39])    # clipped to 60 x 40
    np.testing.assert_allclose(dets.boxes[1], [0, 0, 15, 15])


def test_decode_batch_index_and_threshold_edges(anchor_cache):
    outputs = make_outputs({32: (1, 1), 16: (2, 2), 8: (3, 4)}, batch=2)
    outputs[3][1, 2 + 1, 1, 0] = 0.5         # image 1 only; score exactly at the threshold
    assert len(decode_detections(outputs, STRIDES, anchor_cache, 0.5, (50, 50), 0)) == 0
    dets = decode_detections(outputs, STRIDES, anchor_cache, 0.5, (50, 50), 1)
    # stride 16, h=1, w=0, anchor 1 (64 px): [-24, -24 + 16, 39, 39 + 16]
    np.testing.assert_allclose(dets.boxes, [[0, 0, 39, 49]])


def test_decode_applies_score_decay_before_threshold():
    cache = AnchorCache({4: np.array([[0, 0, 15, 15]], np.float32)})
    outputs = [np.zeros((1, 2, 1, 2), np.float32), np.zeros((1, 4, 1, 2), np.float32),
               np.zeros((1, 10, 1, 2), np.float32)]
    outputs[0][0, 1] = [0.8, 1.0]
    dets = decode_detections(outputs, (4,), cache, 0.5, (64, 64), score_decay={4: 0.5})
    np.testing.assert_allclose(dets.scores, [0.5])           # 0.8 -> 0.4 dropped; 1.0 -> 0.5
    np.testing.assert_allclose(dets.boxes, [[4, 0, 19, 15]])


def test_decode_rejects_wrong_output_count(anchor_cache):
    with pytest.raises(ValueError, match='expected 9 outputs'):
        decode_detections([np.zeros((1, 4, 1, 1))] * 6, STRIDES, anchor_cache, 0.5, (9, 9))


def test_output_names_order():
    assert deploy_output_names((32, 16, 8)) == [
        'face_rpn_cls_prob_reshape_stride32', 'face_rpn_bbox_pred_stride32',
        'face_rpn_landmark_pred_stride32', 'face_rpn_cls_prob_reshape_stride16',
        'face_rpn_bbox_pred_stride16', 'face_rpn_landmark_pred_stride16',
        'face_rpn_cls_prob_reshape_stride8', 'face_rpn_bbox_pred_stride8',
        'face_rpn_landmark_pred_stride8']


def test_flip_back_by_hand():
    points = np.arange(10, dtype=np.float32).reshape(1, 5, 2)
    dets = Detections(np.array([[10, 20, 30, 40]], np.float32), np.array([0.9], np.float32),
                      points.copy())
    flip_back(dets, 100)
    np.testing.assert_array_equal(dets.boxes, [[69, 20, 89, 40]])
    # point p comes from point [1, 0, 2, 4, 3][p], x mirrored: 99 - x
    np.testing.assert_array_equal(dets.landmarks[0], [[97, 3], [99, 1], [95, 5], [91, 9],
                                                      [93, 7]])


def test_merge_nms_suppresses_at_and_above_the_threshold():
    # a = [0, 0, 9, 9] (100 px), b = [0, 0, 9, 19] (200 px): overlap 100 -> IoU 0.5 exactly;
    # d = [0, 0, 9, 20] (210 px): IoU 100/210 < 0.5
    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, 19], [0, 0, 9, 10], [0, 0, 9, 20]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    points = np.arange(40, dtype=np.float32).reshape(4, 5, 2)
    faces, lmk = merge_detections(Detections(boxes, scores, points), 0.5)
    # the original's cpu_nms suppresses at IoU >= thresh: b (0.5) and c (100/110) go, d stays
    np.testing.assert_array_equal(faces[:, 4], np.array([0.9, 0.6], np.float32))
    np.testing.assert_array_equal(lmk, points[[0, 3]])
    assert faces.dtype == np.float32 and lmk.dtype == np.float32


def test_merge_sorts_by_score_and_handles_empty():
    boxes = np.array([[0, 0, 9, 9], [50, 50, 59, 59]], np.float32)
    faces, lmk = merge_detections(Detections(boxes, np.array([0.6, 0.95], np.float32),
                                             np.zeros((2, 5, 2), np.float32)), 0.4)
    np.testing.assert_array_equal(faces[:, :4], boxes[::-1])
    faces, lmk = merge_detections(Detections.concatenate([]), 0.4)
    assert faces.shape == (0, 5) and lmk.shape == (0, 5, 2)


# --------------------------------------------------------------------------- box voting

def test_bbox_vote_hand_built_clusters():
    dets = np.array([
        [0, 0, 9, 9, 0.9],        # cluster 1 top
        [1, 0, 10, 9, 0.6],       # IoU with top = 90/110 -> cluster 1
        [100, 100, 109, 109, 0.8],   # alone: dropped (not the last cluster)
        [200, 200, 219, 219, 0.5],   # cluster 3 top
        [200, 200, 219, 221, 0.3],   # IoU 400/440 -> cluster 3
        [400, 0, 409, 9, 0.1],    # alone and last: kept as is
    ], np.float64)
    points = np.arange(60, dtype=np.float32).reshape(6, 5, 2)
    faces, lmk = bbox_vote(dets, points, 0.4)
    expected = np.array([
        [(0 * 0.9 + 1 * 0.6) / 1.5, 0, (9 * 0.9 + 10 * 0.6) / 1.5, 9, 0.9],
        [200, 200, 219, (219 * 0.5 + 221 * 0.3) / 0.8, 0.5],
        [400, 0, 409, 9, 0.1],
    ])
    np.testing.assert_allclose(faces, expected, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(lmk, points[[0, 3, 5]])
    assert faces.dtype == np.float32


def test_bbox_vote_lone_box_kept_only_when_last():
    dets = np.array([[0, 0, 9, 9, 0.9], [50, 50, 59, 59, 0.8]])
    faces, _ = bbox_vote(dets, np.zeros((2, 5, 2)), 0.4)
    np.testing.assert_array_equal(faces, np.array([[50, 50, 59, 59, 0.8]], np.float32))
    faces, lmk = bbox_vote(np.zeros((0, 5)), np.zeros((0, 5, 2)), 0.4)
    assert faces.shape == (0, 5) and lmk.shape == (0, 5, 2)


def test_bbox_vote_uses_iou_at_least_threshold_and_caps_results():
    # IoU exactly 0.5 merges (>=), unlike NMS (>)
    dets = np.array([[0, 0, 9, 9, 1.0], [0, 0, 9, 19, 1.0]])
    faces, _ = bbox_vote(dets, np.zeros((2, 5, 2)), 0.5)
    np.testing.assert_allclose(faces, [[0, 0, 9, 14, 1.0]])
    # 800 separate pairs -> capped at 750 faces, the best ones first
    pairs = []
    for i in range(800):
        score = 1.0 - i * 1e-3
        pairs += [[20 * i, 0, 20 * i + 9, 9, score], [20 * i, 0, 20 * i + 9, 9, score]]
    faces, lmk = bbox_vote(np.array(pairs), np.zeros((1600, 5, 2)), 0.4)
    assert faces.shape == (750, 5) and lmk.shape == (750, 5, 2)
    assert faces[-1, 0] == 20 * 749


def test_bbox_vote_length_mismatch():
    with pytest.raises(ValueError, match='differ in length'):
        bbox_vote(np.zeros((2, 5)), np.zeros((1, 5, 2)), 0.4)


# --------------------------------------------------------------------------- arguments, no model

def test_unknown_backend_and_network_raise():
    from retinaface import RetinaFace
    with pytest.raises(ValueError, match="unknown backend 'tvm'"):
        RetinaFace('no/such/prefix', 0, ctx_id=-1, backend='tvm')
    # the original's retinaface.py accepts net3 plus exactly these (net3l / net5b never existed)
    original = 'net3, net3a, net4, net4a, net5, net5a, net6, ssh, vgg, x3, x3a, x5'
    for network in ('resnet152', 'net3l', 'net5b'):
        with pytest.raises(ValueError, match="unknown network %r; the original detector's "
                                             'layouts are %s$' % (network, original)):
            RetinaFace('no/such/prefix', 0, ctx_id=-1, network=network)


def test_gpu_on_cpu_only_build_suggests_cpu():
    import mxnet as mx
    from retinaface import RetinaFace
    if mx.context.num_gpus() > 0:
        pytest.skip('a GPU is visible; the CPU-only error cannot be provoked')
    with pytest.raises(ValueError, match='ctx_id=-1'):
        RetinaFace('no/such/prefix', 0, ctx_id=0)


def test_image_validation():
    from retinaface import as_bgr_image
    for bad, message in [(None, 'is None'), (np.zeros((0, 5, 3), np.uint8), 'empty'),
                         (np.zeros((1, 1, 3), np.uint8), 'at least'),
                         (np.zeros((1, 40, 3), np.uint8), 'at least'),
                         (np.zeros((5, 5, 2), np.uint8), 'expected'),
                         (np.zeros((5, 5, 3), object), 'dtype'),
                         ([[0, 0], [0, 0]], 'numpy array')]:
        with pytest.raises(ValueError, match=message):
            as_bgr_image(bad)
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(as_bgr_image(gray), np.dstack([gray] * 3))
    bgra = np.random.RandomState(0).randint(0, 255, (3, 4, 4)).astype(np.uint8)
    np.testing.assert_array_equal(as_bgr_image(bgra), bgra[:, :, :3])


def test_network_input_rgb_flip_and_padding():
    from rcnn.processing.pixels import PixelTransform
    network_input = PixelTransform().network_input      # the released models': raw RGB values
    image = np.random.RandomState(1).randint(0, 255, (5, 7, 3)).astype(np.uint8)
    data = network_input(image, False, None)
    assert data.shape == (1, 3, 5, 7) and data.dtype == np.float32
    for channel in range(3):   # tensor channel 0 = R = BGR channel 2
        np.testing.assert_array_equal(data[0, channel], image[:, :, 2 - channel])
    flipped = network_input(image, True, 32)
    assert flipped.shape == (1, 3, 32, 32)
    np.testing.assert_array_equal(flipped[0, 0, :5, :7], image[:, ::-1, 2])
    assert not flipped[0, :, 5:, :].any() and not flipped[0, :, :, 7:].any()


# --------------------------------------------------------------------------- released mnet.25

@pytest.fixture(scope='module')
def mnet25():
    prefix = str(shared_path('models', 'mnet.25') / 'mnet.25')
    from retinaface import RetinaFace
    return RetinaFace(prefix, 0, ctx_id=-1)


@pytest.fixture(scope='module')
def tom_cruise():
    image = cv2.imread(str(shared_path('images', 'Tom_Cruise_avp_2014_4.jpg')))
    assert image is not None
    return image


@pytest.fixture(scope='module')
def group_photo():
    """The dlib val photo with the most faces (6, 500x332)."""
    path = shared_path('data', 'dlib_faces', 'val', 'images', '0--dlib', '2008_002470.jpg')
    return cv2.imread(str(path))


def reference_detect(prefix, image, threshold, nms_thresh=0.4):
    """The released graph through a plain Module, decoded by a straightforward loop."""
    import mxnet as mx
    from rcnn.checkpoint.params import load_checkpoint
    sym, arg_params, aux_params = load_checkpoint(prefix, 0)
    height, width = image.shape[:2]
    module = mx.mod.Module(sym, data_names=['data'], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[('data', (1, 3, height, width))], for_training=False)
    module.set_params(arg_params, aux_params)
    rgb = image[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None]
    module.forward(mx.io.DataBatch(data=[mx.nd.array(rgb)]), is_train=False)
    named = dict(zip(sym.list_outputs(), [o.asnumpy() for o in module.get_outputs()]))
    candidates = []
    for stride in STRIDES:
        probs = named['face_rpn_cls_prob_reshape_stride%d%s' % (stride, MXNET_OUTPUT_SUFFIX)][0]
        deltas = named['face_rpn_bbox_pred_stride%d%s' % (stride, MXNET_OUTPUT_SUFFIX)][0]
        marks = named['face_rpn_landmark_pred_stride%d%s' % (stride, MXNET_OUTPUT_SUFFIX)][0]
        for a, y, x in np.argwhere(probs[2:] >= threshold):
            ax1, ay1, ax2, ay2 = HAND_ANCHORS[stride][a] + [x * stride, y * stride] * 2
            aw, ah = ax2 - ax1 + 1, ay2 - ay1 + 1
            acx, acy = ax1 + (aw - 1) / 2, ay1 + (ah - 1) / 2
            dx, dy, dw, dh = deltas[4 * a:4 * a + 4, y, x].astype(np.float64)
            cx, cy = acx + dx * aw, acy + dy * ah
            w, h = aw * math.exp(dw), ah * math.exp(dh)
            box = [cx - (w - 1) / 2, cy - (h - 1) / 2, cx + (w - 1) / 2, cy + (h - 1) / 2]
            box = [min(max(box[0], 0), width - 1), min(max(box[1], 0), height - 1),
                   min(max(box[2], 0), width - 1), min(max(box[3], 0), height - 1)]
            points = [[acx + marks[10 * a + 2 * p, y, x] * aw,
                       acy + marks[10 * a + 2 * p + 1, y, x] * ah] for p in range(5)]
            candidates.append((float(probs[2 + a, y, x]), box, points))
    candidates.sort(key=lambda c: -c[0])
    kept = []
    for score, box, points in candidates:
        if all(iou_matrix([box], [k[1]])[0, 0] <= nms_thresh for k in kept):
            kept.append((score, box, points))
    faces = np.array([k[1] + [k[0]] for k in kept]).reshape(-1, 5)
    return faces, np.array([k[2] for k in kept]).reshape(-1, 5, 2)


def test_released_model_matches_plain_module(mnet25, group_photo, tom_cruise):
    prefix = str(shared_path('models', 'mnet.25') / 'mnet.25')
    for image, threshold in [(group_photo, 0.5), (group_photo, 0.05), (tom_cruise, 0.5)]:
        faces, points = mnet25.detect(image, threshold=threshold)
        ref_faces, ref_points = reference_detect(prefix, image, threshold)
        assert len(ref_faces) > 0
        assert faces.dtype == np.float32 and points.dtype == np.float32
        assert np.all(np.diff(faces[:, 4]) <= 0)
        assert_same_faces(faces, points, ref_faces, ref_points)


def test_released_model_finds_every_dlib_val_face(mnet25):
    root = shared_path('data', 'dlib_faces', 'val')
    labels = read_val_labels(root / 'label.txt')
    assert sum(len(b) for b in labels.values()) == 25
    for name, gt_boxes in labels.items():
        image = cv2.imread(str(root / 'images' / name))
        faces, points = mnet25.detect(image, threshold=0.5)
        best = iou_matrix(gt_boxes, faces).max(axis=1)
        assert np.all(best >= 0.5), '%s: faces missed, best IoUs %s' % (name, best)
        # landmarks of a face lie in (or very near) its box
        assert np.all(points[:, :, 0] >= faces[:, None, 0] - 0.25 * (faces[:, 2:3] - faces[:, 0:1]))
        assert np.all(points[:, :, 0] <= faces[:, None, 2] + 0.25 * (faces[:, 2:3] - faces[:, 0:1]))


def test_no_face_on_flat_images(mnet25):
    gradient = np.tile(np.linspace(0, 255, 320, dtype=np.float32), (240, 1)).astype(np.uint8)
    for image in (np.full((240, 320, 3), 128, np.uint8), gradient):
        faces, points = mnet25.detect(image, threshold=0.5)
        assert faces.shape == (0, 5) and points.shape == (0, 5, 2)
        assert faces.dtype == np.float32 and points.dtype == np.float32


def test_dog_faces_are_what_the_graph_says(mnet25):
    """dogs.jpg has no human face, but mnet.25 scores two dog faces above 0.5 (0.93, 0.66):
    model behaviour, reproduced exactly by the independent path."""
    prefix = str(shared_path('models', 'mnet.25') / 'mnet.25')
    dogs = cv2.imread(str(shared_path('images', 'dogs.jpg')))
    faces, points = mnet25.detect(dogs, threshold=0.5)
    assert_same_faces(faces, points, *reference_detect(prefix, dogs, 0.5))
    assert len(mnet25.detect(dogs, threshold=0.95)[0]) == 0


def test_flip_pass_equals_mirrored_detection(mnet25, group_photo):
    """detect(img, flip) pools passes P(img) and mirror(P(mirror img)); on the mirrored image
    the pool is the mirror of the same set, so the results mirror each other."""
    faces, points = mnet25.detect(group_photo, threshold=0.3, do_flip=True)
    mirrored = np.ascontiguousarray(group_photo[:, ::-1])
    m_faces, m_points = mnet25.detect(mirrored, threshold=0.3, do_flip=True)
    back_faces, back_points = mirror(m_faces, m_points, group_photo.shape[1])
    assert len(faces) >= 6
    assert_same_faces(faces, points, back_faces, back_points, atol=2e-3)
    plain, _ = mnet25.detect(group_photo, threshold=0.3)
    assert np.all(iou_matrix(plain, faces).max(axis=1) > 0.6)


def test_scale_equals_detection_on_resized_image(mnet25, group_photo):
    faces, points = mnet25.detect(group_photo, threshold=0.5, scales=[1.5])
    resized = cv2.resize(group_photo, None, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_LINEAR)
    r_faces, r_points = mnet25.detect(resized, threshold=0.5)
    r_faces[:, :4] /= 1.5
    assert_same_faces(faces, points, r_faces, r_points / 1.5, atol=1e-3)
    multi, multi_points = mnet25.detect(group_photo, threshold=0.5, scales=[0.75, 1.0, 1.5],
                                        do_flip=True)
    assert multi_points.shape == (len(multi), 5, 2)
    assert np.all(iou_matrix(faces, multi).max(axis=1) > 0.6)


def test_vote_mode_returns_landmarks(mnet25, group_photo):
    from retinaface import RetinaFace
    voter = RetinaFace(str(shared_path('models', 'mnet.25') / 'mnet.25'), 0, ctx_id=-1, vote=True)
    faces, points = voter.detect(group_photo, threshold=0.1, scales=[1.0, 1.5], do_flip=True)
    assert points.shape == (len(faces), 5, 2) and len(faces) >= 6
    nms_faces, _ = mnet25.detect(group_photo, threshold=0.5)
    assert np.all(iou_matrix(nms_faces, faces).max(axis=1) > 0.7)


def test_grayscale_and_bgra_accepted(mnet25, tom_cruise):
    gray = cv2.cvtColor(tom_cruise, cv2.COLOR_BGR2GRAY)
    expected = mnet25.detect(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), threshold=0.5)
    for variant in (gray, gray[:, :, None]):
        faces, points = mnet25.detect(variant, threshold=0.5)
        np.testing.assert_array_equal(faces, expected[0])
        np.testing.assert_array_equal(points, expected[1])
    assert len(expected[0]) == 1
    bgra = cv2.cvtColor(tom_cruise, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = 7
    faces, points = mnet25.detect(bgra, threshold=0.5)
    np.testing.assert_array_equal(faces, mnet25.detect(tom_cruise, threshold=0.5)[0])


def test_bad_images_and_arguments_raise(mnet25):
    for bad in (None, np.zeros((0, 0, 3), np.uint8), np.zeros((1, 1, 3), np.uint8),
                np.zeros((1, 1), np.uint8)):
        with pytest.raises(ValueError):
            mnet25.detect(bad)
    image = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(ValueError, match='scales'):
        mnet25.detect(image, scales=[])
    with pytest.raises(ValueError, match='scales'):
        mnet25.detect(image, scales=[0.0])
    with pytest.raises(ValueError, match='less than'):
        mnet25.detect(image, scales=[0.01])
    with pytest.raises(ValueError, match='threshold'):
        mnet25.detect(image, threshold=float('nan'))


def test_executor_bound_once_per_shape(mnet25):
    from retinaface import RetinaFace
    detector = RetinaFace(str(shared_path('models', 'mnet.25') / 'mnet.25'), 0, ctx_id=-1)
    backend = detector.backend
    assert backend.num_binds == 0
    image = np.full((96, 128, 3), 127, np.uint8)
    detector.detect(image)
    detector.detect(image)
    detector.detect(image, do_flip=True)            # the flip has the same shape
    assert backend.num_binds == 1
    detector.detect(np.full((64, 128, 3), 127, np.uint8))
    assert backend.num_binds == 2
    detector.detect(image)
    assert backend.num_binds == 2
    detector.detect(image, scales=[0.5, 1.0])       # one new shape (48 x 64)
    assert backend.num_binds == 3


def test_nocrop_pads_to_multiple_of_32(mnet25, group_photo):
    from retinaface import RetinaFace
    detector = RetinaFace(str(shared_path('models', 'mnet.25') / 'mnet.25'), 0, ctx_id=-1,
                          nocrop=True)
    seen = []
    forward = detector.backend.forward
    detector.backend.forward = lambda data: seen.append(data.shape) or forward(data)
    image = group_photo[:331, :497]                                   # 497 x 331
    faces, _ = detector.detect(image, threshold=0.5, do_flip=True)
    assert seen == [(1, 3, 352, 512)] * 2
    plain, _ = mnet25.detect(image, threshold=0.5)
    assert len(faces) == len(plain)
    assert np.all(iou_matrix(plain, faces).max(axis=1) > 0.8)
    assert faces[:, 2].max() <= 496 and faces[:, 3].max() <= 330     # clipped to the image


def test_backend_selects_outputs_by_name(mnet25, group_photo):
    """A graph listing the outputs in another order gives the same outputs."""
    import mxnet as mx
    from rcnn.inference.mxnet_backend import MXNetBackend
    from rcnn.checkpoint.params import load_checkpoint
    sym, arg_params, aux_params = load_checkpoint(
        str(shared_path('models', 'mnet.25') / 'mnet.25'), 0)
    shuffled = mx.sym.Group([sym[i] for i in [8, 2, 0, 5, 7, 1, 4, 3, 6]])
    backend = MXNetBackend(shuffled, arg_params, aux_params)
    data = np.random.RandomState(0).uniform(0, 255, (1, 3, 64, 96)).astype(np.float32)
    expected = mnet25.backend.forward(data)
    got = backend.forward(data)
    for name, a, b in zip(backend.output_names, got, expected):
        np.testing.assert_array_equal(a, b, err_msg=name)
    with pytest.raises(ValueError, match='face_rpn_bbox_pred_stride8'):
        MXNetBackend(mx.sym.Group([sym[i] for i in range(7)]), arg_params, aux_params)
    with pytest.raises(ValueError, match='lacks'):
        MXNetBackend(sym, {}, aux_params)


def test_missing_checkpoint_names_the_file(tmp_path):
    from retinaface import RetinaFace
    with pytest.raises(FileNotFoundError, match='nothing-symbol.json'):
        RetinaFace(str(tmp_path / 'nothing'), 0, ctx_id=-1)


def test_threads_set_before_mxnet_import(mnet25_prefix):
    """``threads`` reaches MXNet through OMP_NUM_THREADS when mxnet is not imported yet;
    afterwards a different count is ignored with a warning."""
    import subprocess
    import sys
    from conftest import ROOT
    code = ('import logging, os, sys\n'
            'logging.basicConfig(level=logging.WARNING)\n'
            'os.environ.pop("OMP_NUM_THREADS", None)\n'
            'from retinaface import RetinaFace\n'
            'assert "mxnet" not in sys.modules\n'
            'RetinaFace(%r, 0, ctx_id=-1, threads=1)\n'
            'print("omp", os.environ["OMP_NUM_THREADS"])\n'
            'RetinaFace(%r, 0, ctx_id=-1, threads=2)\n' % (mnet25_prefix, mnet25_prefix))
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=str(ROOT), timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'omp 1' in result.stdout
    assert 'threads=2 ignored' in result.stderr
    with pytest.raises(ValueError, match='threads'):
        from retinaface import RetinaFace
        RetinaFace(mnet25_prefix, 0, ctx_id=-1, threads=0)


def test_shape_cache_shares_memory_without_mixing_results():
    """Executors derived from one another (shared memory) give the results of independent
    binds, in any order; the LRU cache drops the oldest shape beyond ``max_shapes``."""
    from rcnn.inference.mxnet_backend import MXNetBackend
    from rcnn.checkpoint.params import load_checkpoint
    sym, arg_params, aux_params = load_checkpoint(
        str(shared_path('models', 'mnet.25') / 'mnet.25'), 0)
    rng = np.random.RandomState(3)
    shapes = [(1, 3, 64, 96), (1, 3, 160, 128), (1, 3, 32, 48), (2, 3, 64, 96)]
    inputs = {s: rng.uniform(0, 255, s).astype(np.float32) for s in shapes}
    expected = {s: MXNetBackend(sym, arg_params, aux_params).forward(inputs[s]) for s in shapes}
    backend = MXNetBackend(sym, arg_params, aux_params, max_shapes=3)
    for shape in shapes + shapes[::-1] + [shapes[1]]:
        for name, got, want in zip(backend.output_names, backend.forward(inputs[shape]),
                                   expected[shape]):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)
    # 4 shapes, then (cache of 3) the reversed pass re-binds only the evicted first shape
    assert backend.num_binds == 5
    # the batch of two equals each image alone
    np.testing.assert_allclose(expected[shapes[3]][6][:1],
                               MXNetBackend(sym, arg_params, aux_params).forward(
                                   inputs[shapes[3]][:1])[6], rtol=1e-4, atol=1e-5)


def test_gpu_context_on_a_cpu_only_build_says_what_to_pass(mnet25_prefix):
    mx = pytest.importorskip('mxnet')
    if mx.runtime.Features().is_enabled('CUDA'):
        pytest.skip('this MXNet build has GPU support')
    from retinaface import RetinaFace
    with pytest.raises(ValueError, match=r'no GPU support; pass --gpu -1 \(ctx_id=-1\)'):
        RetinaFace(mnet25_prefix, 0)                  # ctx_id=0, the original's default


def test_no_mxnet_start_up_chatter_on_the_console(mnet25_prefix):
    """MXNet prints a "Subgraph backend MKLDNN is activated" line per bound executor unless
    MXNET_SUBGRAPH_VERBOSE=0, which the detector sets before importing mxnet."""
    import subprocess
    import sys
    code = ('import numpy as np; from retinaface import RetinaFace; '
            'd = RetinaFace(%r, 0, ctx_id=-1); d.detect(np.zeros((64, 80, 3), np.uint8)); '
            'd.detect(np.zeros((96, 64, 3), np.uint8))' % mnet25_prefix)
    env = {k: v for k, v in os.environ.items() if k != 'MXNET_SUBGRAPH_VERBOSE'}
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          env=env, cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'Subgraph backend' not in done.stdout + done.stderr
