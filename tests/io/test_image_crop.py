"""Training crops (the transform steps and get_crop_image1), colour jitter, the tensor transform.

The images are drawn here: filled rectangles of distinct colours at known places (the "faces"),
plus landmark dots, so labels can be checked against the pixels of the crop.
"""
import cv2
import numpy as np
import pytest

from rcnn.config import generate_config
from rcnn.dataset.retinaface_dataset import flip_roidb_entry
from rcnn.io.image import (ImageReadError, color_aug, crop_record, get_crop_image1, read_image,
                           training_crops)
from rcnn.io.transforms import ColorJitter, PreScale, RandomCropWindow, ToTensor, TrainTransform
from rcnn.processing.pixels import transform

BACKGROUND = (40, 40, 40)
# (x1, y1, x2, y2, BGR colour); all inside a 400 x 600 (h x w) image, asymmetric left-right
RECTANGLES = [
    (20, 30, 99, 129, (0, 0, 255)),
    (150, 60, 189, 109, (0, 255, 0)),
    (300, 200, 419, 339, (255, 0, 0)),
    (480, 20, 579, 99, (0, 255, 255)),
    (60, 250, 139, 379, (255, 0, 255)),
    (520, 300, 559, 359, (255, 255, 0)),
]
DOT_COLOURS = [(0, 0, 128), (0, 128, 0), (128, 0, 0), (0, 128, 128), (128, 0, 128)]
DOT_RADIUS = 3


def _cfg():
    cfg, _ = generate_config('mnet', 'retinaface')
    return cfg


def _transform(color_mode=0, min_box_size=None, tries=None):
    """The mnet recipe's training steps, with the colour mode, the smallest kept face and the
    window tries given plainly (jitter off by default, so pixels can be compared)."""
    cfg = _cfg()
    return TrainTransform([
        PreScale.from_config(cfg),
        RandomCropWindow(640, cfg.CROP_TRIES if tries is None else tries,
                         cfg.TRAIN.MIN_BOX_SIZE if min_box_size is None else min_box_size),
        ColorJitter(cfg.COLOR_JITTERING, color_mode), ToTensor.from_config(cfg)])


def _crops(records, transform, rng):
    """(tensors, cropped records), as get_crop_image1 returns them."""
    pairs = [crop_record(record, transform, rng) for record in records]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _landmarks_of(x1, y1, x2, y2):
    """Five points at fixed fractions of a box (eye, eye, nose, mouth, mouth)."""
    fx = np.array([0.3, 0.7, 0.5, 0.35, 0.65])
    fy = np.array([0.35, 0.35, 0.55, 0.75, 0.75])
    points = np.stack([np.round(x1 + fx * (x2 - x1)), np.round(y1 + fy * (y2 - y1)),
                       np.ones(5)], axis=1)
    return points.astype(np.float32)


@pytest.fixture
def drawn_record(tmp_path):
    """A 400 x 600 image with RECTANGLES and their landmark dots, and its roidb record."""
    image = np.full((400, 600, 3), BACKGROUND, dtype=np.uint8)
    landmarks = []
    for x1, y1, x2, y2, colour in RECTANGLES:
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness=-1)
        points = _landmarks_of(x1, y1, x2, y2)
        for (px, py, _), dot in zip(points, DOT_COLOURS):
            cv2.circle(image, (int(px), int(py)), DOT_RADIUS, dot, thickness=-1)
        landmarks.append(points)
    path = tmp_path / 'drawn.png'
    cv2.imwrite(str(path), image)
    boxes = np.array([r[:4] for r in RECTANGLES], dtype=np.float32)
    record = {'image': str(path), 'height': 400, 'width': 600, 'boxes': boxes,
              'landmarks': np.array(landmarks, dtype=np.float32),
              'blur': np.zeros(len(boxes), dtype=np.float32),
              'gt_classes': np.ones(len(boxes), dtype=np.int32), 'flipped': False}
    return record


def _plain_spot(box):
    """A point of a face box away from its landmark dots: (x, y) ints."""
    return (int(box[0] + 0.5 * (box[2] - box[0])), int(box[1] + 0.12 * (box[3] - box[1])))


def _pixels(tensor):
    """(1, 3, H, W) RGB tensor with identity normalisation -> (H, W, 3) BGR float."""
    return tensor[0].transpose(1, 2, 0)[:, :, ::-1]


def _expected_crop(record, im_scale, left, up, size=640, min_box_size=0):
    """Independent statement of the crop rule: scale, shift, keep by centre (loop per face)."""
    kept_boxes, kept_landmarks, kept_ids = [], [], []
    for i, box in enumerate(record['boxes'].astype(np.float64)):
        x1, y1, x2, y2 = box * im_scale - [left, up, left, up]
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        if not (0 <= cx < size and 0 <= cy < size):
            continue
        if max(x2 - x1, y2 - y1) < min_box_size:
            continue
        points = record['landmarks'][i].astype(np.float64).copy()
        points[:, 0] = points[:, 0] * im_scale - left
        points[:, 1] = points[:, 1] * im_scale - up
        kept_boxes.append([x1, y1, x2, y2])
        kept_landmarks.append(points)
        kept_ids.append(i)
    return (np.array(kept_boxes).reshape(-1, 4), np.array(kept_landmarks).reshape(-1, 5, 3),
            kept_ids)


def test_crop_moves_kept_faces_by_scale_and_offset_and_drops_the_others(drawn_record):
    cfg = _transform()
    pre_scales = _cfg().PRE_SCALES
    seen_dropped = seen_kept = 0
    scales_seen = set()
    for seed in range(40):
        ims, records = _crops([drawn_record], cfg, np.random.default_rng(seed))
        tensor, rec = ims[0], records[0]
        assert tensor.shape == (1, 3, 640, 640) and tensor.dtype == np.float32
        pre_scale = rec['pre_scale']
        assert pre_scale in pre_scales
        im_scale = 640.0 / int(400 * pre_scale)
        np.testing.assert_allclose(rec['im_info'], [640, 640, im_scale], rtol=1e-6)
        scales_seen.add(pre_scale)
        left, up, right, bottom = rec['crop_window']
        assert (right - left, bottom - up) == (640, 640)
        assert 0 <= left <= round(600 * im_scale) - 640 and 0 <= up <= round(400 * im_scale) - 640
        boxes, landmarks, kept = _expected_crop(drawn_record, im_scale, left, up)
        np.testing.assert_allclose(rec['boxes'], boxes, atol=1e-3)
        np.testing.assert_allclose(rec['landmarks'], landmarks, atol=1e-3)
        np.testing.assert_array_equal(rec['landmarks'][:, :, 2], 1.0)   # visibility untouched
        assert rec['gt_classes'].tolist() == [1] * len(kept)
        assert rec['blur'].shape == (len(kept),)
        seen_kept += len(kept)
        seen_dropped += len(RECTANGLES) - len(kept)
        # the pixels agree with the labels: each kept face's colour inside its box
        pixels = _pixels(tensor)
        for box, i in zip(rec['boxes'], kept):
            cx, cy = _plain_spot(box)
            if 0 <= cy < 640:
                np.testing.assert_allclose(pixels[cy, cx], RECTANGLES[i][4], atol=1)
            # and background one source pixel left of its left edge (no other face is there);
            # the resize maps source pixel x to (x + 0.5) * s - 0.5
            outside_x = int(np.floor(box[0] - im_scale - 1.5))
            if outside_x >= 0 and 0 <= cy < 640:
                np.testing.assert_allclose(pixels[cy, outside_x], BACKGROUND, atol=1)
    assert seen_kept > 0 and seen_dropped > 0
    assert len(scales_seen) >= 3


def test_crop_landmark_dots_are_where_the_labels_say(drawn_record):
    cfg = _transform()
    for seed in range(10):
        ims, records = _crops([drawn_record], cfg, np.random.default_rng(seed))
        pixels = _pixels(ims[0])
        for points in records[0]['landmarks']:
            for (px, py, _), dot in zip(points, DOT_COLOURS):
                # the resize maps source pixel x to (x + 0.5) * s - 0.5: look at that spot
                s = records[0]['im_info'][2]
                qx, qy = int(round(px + 0.5 * (s - 1))), int(round(py + 0.5 * (s - 1)))
                if 0 <= qx < 640 and 0 <= qy < 640:
                    np.testing.assert_allclose(pixels[qy, qx], dot, atol=2)


def _replay_window(seed, record, tries):
    """Replay the documented draws: pre_scale index, then (up, left) per try."""
    pre_scales = _cfg().PRE_SCALES
    rng = np.random.default_rng(seed)
    pre_scale = pre_scales[rng.integers(len(pre_scales))]
    im_scale = 640.0 / int(min(record['height'], record['width']) * pre_scale)
    height, width = round(record['height'] * im_scale), round(record['width'] * im_scale)
    for attempt in range(tries):
        up = rng.integers(0, height - 640 + 1)
        left = rng.integers(0, width - 640 + 1)
        _, _, kept = _expected_crop(record, im_scale, left, up)
        if kept:
            return im_scale, left, up, attempt
    return im_scale, left, up, tries - 1


def test_first_window_with_a_face_wins_and_the_last_try_is_taken_anyway(tmp_path):
    # one small face in a big image: zoomed-in crops often miss it
    image = np.full((1000, 1500, 3), 90, dtype=np.uint8)
    cv2.rectangle(image, (700, 450), (729, 489), (0, 0, 255), thickness=-1)
    path = tmp_path / 'one_face.jpg'
    cv2.imwrite(str(path), image)
    record = {'image': str(path), 'height': 1000, 'width': 1500,
              'boxes': np.array([[700, 450, 729, 489]], dtype=np.float32),
              'landmarks': np.full((1, 5, 3), -1, dtype=np.float32),
              'gt_classes': np.ones(1, dtype=np.int32), 'flipped': False}
    attempts, empty = [], 0
    for seed in range(30):
        for tries in (25, 2):
            im_scale, left, up, attempt = _replay_window(seed, record, tries)
            _, records = _crops([record], _transform(tries=tries), np.random.default_rng(seed))
            np.testing.assert_array_equal(records[0]['crop_window'][:2], [left, up])
            assert records[0]['im_info'][2] == pytest.approx(im_scale)
            attempts.append(attempt)
            empty += len(records[0]['boxes']) == 0
    assert max(attempts) >= 1          # some crops needed more than one try
    assert empty > 0                   # and with 2 tries some ended without the face


def test_crop_without_faces_gives_empty_arrays(drawn_record):
    record = dict(drawn_record, boxes=np.zeros((0, 4), np.float32),
                  landmarks=np.zeros((0, 5, 3), np.float32), blur=np.zeros(0, np.float32),
                  gt_classes=np.zeros(0, np.int32))
    _, records = get_crop_image1([record], cfg=_cfg(), rng=np.random.default_rng(0))
    assert records[0]['boxes'].shape == (0, 4)
    assert records[0]['landmarks'].shape == (0, 5, 3)
    assert records[0]['gt_classes'].shape == (0,)


def test_min_box_size_drops_small_faces(drawn_record):
    cfg = _transform(min_box_size=150)
    for seed in range(10):
        _, records = _crops([drawn_record], cfg, np.random.default_rng(seed))
        rec = records[0]
        left, up = rec['crop_window'][:2]
        boxes, _, _ = _expected_crop(drawn_record, rec['im_info'][2], left, up,
                                     min_box_size=150)
        np.testing.assert_allclose(rec['boxes'], boxes, atol=1e-3)
        sides = np.maximum(rec['boxes'][:, 2] - rec['boxes'][:, 0],
                           rec['boxes'][:, 3] - rec['boxes'][:, 1])
        assert np.all(sides >= 150)


def test_flipped_record_mirrors_pixels_consistently_with_its_labels(drawn_record):
    flipped = flip_roidb_entry(drawn_record)     # the reader mirrors boxes and landmarks
    assert flipped['flipped']
    cfg = _transform()
    checked_faces = checked_dots = 0
    for seed in range(12):
        ims, records = _crops([flipped], cfg, np.random.default_rng(seed))
        rec, pixels = records[0], _pixels(ims[0])
        s = rec['im_info'][2]
        left, up = rec['crop_window'][:2]
        boxes, _, kept = _expected_crop(flipped, s, left, up)
        np.testing.assert_allclose(rec['boxes'], boxes, atol=1e-3)
        for box, i in zip(rec['boxes'], kept):
            cx, cy = _plain_spot(box)
            if 0 <= cy < 640:
                np.testing.assert_allclose(pixels[cy, cx], RECTANGLES[i][4], atol=1)
                checked_faces += 1
        # point 0 of a flipped face is the mirrored point 1 of the original: its dot colour
        for points in rec['landmarks']:
            for (px, py, _), dot in zip(points, [DOT_COLOURS[j] for j in (1, 0, 2, 4, 3)]):
                qx, qy = int(round(px + 0.5 * (s - 1))), int(round(py + 0.5 * (s - 1)))
                if 0 <= qx < 640 and 0 <= qy < 640:
                    np.testing.assert_allclose(pixels[qy, qx], dot, atol=2)
                    checked_dots += 1
    assert checked_faces > 5 and checked_dots > 10


def test_same_rng_seed_gives_the_same_crop_and_flip_changes_pixels(drawn_record):
    cfg = _transform(color_mode=2)
    a, ra = _crops([drawn_record], cfg, np.random.default_rng(5))
    b, rb = _crops([drawn_record], cfg, np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(ra[0]['boxes'], rb[0]['boxes'])
    c, _ = _crops([drawn_record], cfg, np.random.default_rng(6))
    assert not np.array_equal(a[0], c[0])


# ---------------------------------------------------------------- colour jitter

def _luma(im):
    b, g, r = im[..., 0].astype(np.float64), im[..., 1].astype(np.float64), im[..., 2]
    return 0.299 * r + 0.587 * g + 0.114 * b


def _jitter_reference(im, jitter, seed):
    """Replay the documented draws with plain float64 formulas, clip at the end."""
    rng = np.random.default_rng(seed)
    out = im.astype(np.float64)
    for step in rng.permutation(3):
        alpha = np.float32(1.0 + rng.uniform(-jitter, jitter))
        if step == 0:
            out = out * alpha
        elif step == 1:
            out = alpha * out + (1 - alpha) * _luma(out).mean()
        else:
            out = alpha * out + (1 - alpha) * _luma(out)[..., None]
    return np.clip(out, 0, 255)


def test_colour_jitter_matches_the_documented_formulas():
    rng = np.random.default_rng(0)
    im = rng.uniform(0, 255, size=(32, 48, 3)).astype(np.float32)
    for seed in range(6):
        out = color_aug(im.copy(), 0.5, 2, np.random.default_rng(seed))
        np.testing.assert_allclose(out, _jitter_reference(im, 0.5, seed), atol=2e-3)
        assert out.min() >= 0 and out.max() <= 255


def test_colour_jitter_on_grey_is_brightness_only_and_modes_0_1():
    grey = np.full((8, 8, 3), 100.0, dtype=np.float32)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        order = list(rng.permutation(3))
        alphas = [1.0 + rng.uniform(-0.125, 0.125) for _ in order]
        expected = 100.0 * alphas[order.index(0)]      # contrast/saturation keep a grey grey
        out = color_aug(grey.copy(), 0.125, 2, np.random.default_rng(seed))
        np.testing.assert_allclose(out, expected, rtol=1e-5)
    np.testing.assert_array_equal(color_aug(grey.copy(), 0.125, 0, np.random.default_rng(0)), grey)
    rng = np.random.default_rng(3)
    brightness = 1.0 + rng.uniform(-0.125, 0.125)
    np.testing.assert_allclose(color_aug(grey.copy(), 0.125, 1, np.random.default_rng(3)),
                               100.0 * brightness, rtol=1e-5)


def test_colour_jitter_clips_to_0_255():
    bright = np.full((4, 4, 3), 250.0, dtype=np.float32)
    out = color_aug(bright, 0.9, 1, np.random.default_rng(1))   # alpha = 1 + U(-.9, .9)
    rng = np.random.default_rng(1)
    alpha = 1.0 + rng.uniform(-0.9, 0.9)
    np.testing.assert_allclose(out, min(250.0 * alpha, 255.0), rtol=1e-5)


# ---------------------------------------------------------------- tensor, samples, errors

def test_transform_is_bgr_to_rgb_with_bgr_ordered_means_and_stds():
    im = np.zeros((2, 3, 3), dtype=np.uint8)
    im[..., 0], im[..., 1], im[..., 2] = 10, 20, 40      # B, G, R
    tensor = transform(im, pixel_means=[1, 2, 3], pixel_stds=[1, 2, 4], pixel_scale=2.0)
    assert tensor.shape == (1, 3, 2, 3) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0, 0], (40 / 2 - 3) / 4)    # R uses mean[2], std[2]
    np.testing.assert_allclose(tensor[0, 1], (20 / 2 - 2) / 2)
    np.testing.assert_allclose(tensor[0, 2], (10 / 2 - 1) / 1)


def _numpy_transform(im, pixel_means, pixel_stds, pixel_scale):
    """Reference: the whole-image float32 formula (reverse channels, scale, mean, std, NCHW)."""
    rgb = im[:, :, ::-1].astype(np.float32)
    if pixel_scale != 1.0:
        rgb /= np.float32(pixel_scale)
    rgb -= np.asarray(pixel_means, dtype=np.float32)[::-1]
    rgb /= np.asarray(pixel_stds, dtype=np.float32)[::-1]
    return rgb.transpose(2, 0, 1)[np.newaxis]


@pytest.mark.parametrize('means, stds, scale', [
    ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], 1.0),                   # the mnet / resnet recipes
    ([103.94, 116.78, 123.68], [57.38, 57.12, 58.4], 1.0),
    ([0.406, 0.456, 0.485], [0.225, 0.224, 0.229], 255.0)])
def test_transform_equals_the_whole_image_formula_bit_for_bit(means, stds, scale):
    rng = np.random.default_rng(3)
    big = rng.uniform(-10.0, 265.0, size=(37, 45, 3)).astype(np.float32)
    big[0, 0] = -0.0
    views = [big, big[3:30, 5:40], big[:, ::-1], np.asfortranarray(big),
             big.astype(np.uint8), big.astype(np.float64)]
    for im in views:
        got = transform(im, means, stds, scale)
        want = _numpy_transform(im, means, stds, scale)
        assert got.shape == want.shape and got.dtype == np.float32 and got.flags['C_CONTIGUOUS']
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_a_sample_is_a_function_of_the_seed(drawn_record):
    from rcnn.io.anchor_targets import AnchorTargetGenerator
    from rcnn.io.sample import SampleMaker, sample_rng
    cfg = _cfg()
    feat_shapes = [(1, 4, 20, 20), (1, 4, 40, 40), (1, 4, 80, 80)]
    maker = SampleMaker.from_config(cfg, feat_shapes)
    runs = [maker(drawn_record, sample_rng(5, 2, 9)) for _ in range(2)]
    other = maker(drawn_record, sample_rng(5, 2, 10))
    (im_a, labels_a, _, _), (im_b, labels_b, _, _) = runs
    assert np.array_equal(im_a.view(np.uint32), im_b.view(np.uint32))
    assert sorted(labels_a) == sorted(labels_b)
    for name in labels_a:
        assert np.array_equal(labels_a[name], labels_b[name]), name
    assert not np.array_equal(im_a, other[0])
    # the tensor is the crop window of the resized, colour-jittered image: with jitter off it is
    # exactly the reference transform of that window
    maker = SampleMaker(_transform(color_mode=0), AnchorTargetGenerator.from_config(cfg),
                        feat_shapes)
    im, _, _, info = maker(drawn_record, sample_rng(5, 2, 9))
    left, up, right, down = info['crop_window']
    resized = cv2.resize(read_image(drawn_record), None, None, fx=float(info['im_info'][2]),
                         fy=float(info['im_info'][2]), interpolation=cv2.INTER_LINEAR)
    want = _numpy_transform(resized[up:down, left:right].astype(np.float32), cfg.PIXEL_MEANS,
                            cfg.PIXEL_STDS, cfg.PIXEL_SCALE)
    assert np.array_equal(im.view(np.uint32), want.view(np.uint32))


def test_missing_or_undecodable_image_raises_naming_the_file(drawn_record, tmp_path):
    missing = dict(drawn_record, image=str(tmp_path / 'nope.jpg'))
    with pytest.raises(ImageReadError, match='nope.jpg'):
        get_crop_image1([missing], cfg=_cfg())
    garbage = tmp_path / 'garbage.jpg'
    garbage.write_bytes(b'not a jpeg at all')
    with pytest.raises(ImageReadError, match='garbage.jpg'):
        read_image(dict(drawn_record, image=str(garbage)))
    with pytest.raises(ImageReadError, match='record says'):
        read_image(dict(drawn_record, height=401))


def test_original_name_is_an_alias_and_cfg_is_required(drawn_record):
    assert get_crop_image1 is training_crops
    with pytest.raises(TypeError):
        training_crops([drawn_record])          # no module-level config to fall back on
