"""Training crops, photometric augmentation and the image -> network tensor transform.

Everything here is NumPy / OpenCV only (no MXNet), so it can run in loader worker processes.

Training sample (:func:`training_crops`; ``get_crop_image1`` is its original name), per roidb
record, as the original RetinaFace training:

1. decode the image (BGR uint8); a ``flipped`` record is mirrored left-right here (its boxes and
   landmarks were already mirrored by the reader);
2. ``pre_scale`` drawn uniformly from ``cfg.PRE_SCALES``; ``size = int(min(h, w) * pre_scale)``;
   ``im_scale = SIZE / size`` with ``SIZE = cfg.SCALES[0][0]``; the whole image is resized by
   ``im_scale`` (bilinear), boxes and landmark x/y are multiplied by ``im_scale``;
3. up to ``cfg.CROP_TRIES`` random ``SIZE x SIZE`` windows (top row first, then left column, both
   uniform over the valid range); boxes and landmarks are shifted by the window corner; a face is
   kept when its box centre ``((x1 + x2) / 2, (y1 + y2) / 2)`` lies in ``[0, SIZE)`` on both axes
   and ``max(x2 - x1, y2 - y1) >= cfg.TRAIN.MIN_BOX_SIZE``; the first window keeping a face wins,
   the last try is taken whatever it keeps. Kept boxes are not clipped to the window;
4. colour jitter (:func:`color_aug`), then :func:`transform` to a ``(1, 3, SIZE, SIZE)`` tensor.

Colour jitter (``cfg.COLOR_MODE``, ``cfg.COLOR_JITTERING`` = j), on float32 BGR pixels:

* mode 0 or j <= 0: none; mode 1: brightness only; mode >= 2: brightness, contrast and saturation
  in a random order (one ``rng.permutation(3)`` draw, then one factor per step, in order);
* every step draws ``alpha = 1 + U(-j, j)``; with ``luma = 0.299 R + 0.587 G + 0.114 B``:
  brightness ``x * alpha``; contrast ``alpha * x + (1 - alpha) * mean(luma)`` (mean over the
  image); saturation ``alpha * x + (1 - alpha) * luma`` (per pixel);
* the result is clipped to [0, 255] once, after the last step. (The original did not clip and
  applied the luma weights to the B, G, R channels in that order; here the weights follow the
  channels' meaning.)

Tensor (:func:`transform`, from :mod:`rcnn.processing.pixels`, the transform the detector uses
too): BGR -> RGB, ``(pixel / PIXEL_SCALE - mean) / std`` per channel, NCHW float32.
``cfg.PIXEL_MEANS`` / ``cfg.PIXEL_STDS`` are listed in **BGR** order, as in the original config
(RGB channel ``c`` uses entry ``2 - c``).
"""
import logging

import cv2
import numpy as np

from rcnn.config import COLOR_ALL, COLOR_NONE
from rcnn.dataset.image_header import ImageReadError
from rcnn.io.decode import imread_checked
from rcnn.processing.pixels import transform

logger = logging.getLogger(__name__)

__all__ = ['ImageReadError', 'read_image', 'training_crops', 'get_crop_image1', 'get_image',
           'crop_window_faces', 'color_aug', 'transform', 'resize']

# ITU-R BT.601 luma weights in the channel order of OpenCV images (B, G, R)
_LUMA_BGR = np.array([0.114, 0.587, 0.299], dtype=np.float32)
_default_rng = np.random.default_rng()


def read_image(roi_rec):
    """Decode a record's image, mirrored when ``roi_rec['flipped']``.

    Args:
        roi_rec: roidb record with ``image`` (path) and optionally ``height``, ``width``,
            ``flipped``.
    Returns:
        (H, W, 3) uint8 BGR image.
    Raises:
        ImageReadError: the file is missing, truncated or cannot be decoded (see
            :func:`rcnn.io.decode.imread_checked`), or its decoded size differs from the
            record's ``height`` x ``width`` (the labels would not match the pixels).
    """
    path = roi_rec['image']
    im = imread_checked(path, cv2.IMREAD_COLOR)
    expected = (roi_rec.get('height'), roi_rec.get('width'))
    if None not in expected and tuple(im.shape[:2]) != tuple(int(v) for v in expected):
        raise ImageReadError('image %s decodes to %dx%d (h x w) but its record says %dx%d'
                             % (path, im.shape[0], im.shape[1], expected[0], expected[1]))
    if roi_rec.get('flipped', False):
        im = cv2.flip(im, 1)
    return im


def _luma(im):
    """(H, W) float32 luma of a BGR float32 image (plain arithmetic, no BLAS threads)."""
    return im[:, :, 0] * _LUMA_BGR[0] + im[:, :, 1] * _LUMA_BGR[1] + im[:, :, 2] * _LUMA_BGR[2]


def _brightness(im, alpha):
    im *= alpha
    return im


def _contrast(im, alpha):
    mean_luma = float(_luma(im).mean(dtype=np.float64))
    im *= alpha
    im += (1.0 - alpha) * mean_luma
    return im


def _saturation(im, alpha):
    luma = _luma(im)
    im *= alpha
    im += ((1.0 - alpha) * luma)[:, :, np.newaxis]
    return im


_COLOUR_STEPS = (_brightness, _contrast, _saturation)


def color_aug(im, jitter, mode, rng):
    """Random brightness / contrast / saturation (see the module docstring).

    Args:
        im: (H, W, 3) float32 BGR pixels; modified in place.
        jitter: j, each factor is drawn in [1 - j, 1 + j].
        mode: COLOR_NONE (0) none, COLOR_BRIGHTNESS (1) brightness only, COLOR_ALL (>= 2) all
            three in a random order (rcnn/config.py).
        rng: numpy Generator.
    Returns:
        ``im``, clipped to [0, 255].
    """
    if mode <= COLOR_NONE or jitter <= 0.0:
        return im
    order = rng.permutation(len(_COLOUR_STEPS)) if mode >= COLOR_ALL else [0]
    for step in order:
        alpha = np.float32(1.0 + rng.uniform(-jitter, jitter))
        im = _COLOUR_STEPS[step](im, alpha)
    np.clip(im, 0.0, 255.0, out=im)
    return im


def crop_window_faces(boxes, window_size, min_box_size):
    """Faces kept by a crop window.

    Args:
        boxes: (K, 4) float boxes x1 y1 x2 y2, already shifted into window coordinates.
        window_size: side of the square window in pixels.
        min_box_size: minimum of ``max(x2 - x1, y2 - y1)``.
    Returns:
        (K,) bool: box centre inside ``[0, window_size)`` on both axes and large enough.
    """
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    box_size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    inside = ((centre_x >= 0) & (centre_y >= 0) &
              (centre_x < window_size) & (centre_y < window_size))
    return inside & (box_size >= min_box_size)


def _scaled_record(roi_rec, im_scale, with_landmarks):
    """Shallow copy of a record with boxes (and landmark x, y) multiplied by ``im_scale``."""
    new_rec = dict(roi_rec)
    new_rec['boxes'] = np.asarray(roi_rec['boxes'], dtype=np.float32).reshape(-1, 4) * im_scale
    if with_landmarks and 'landmarks' in roi_rec:
        landmarks = np.array(roi_rec['landmarks'], dtype=np.float32).reshape(-1, 5, 3)
        landmarks[:, :, 0:2] *= im_scale
        new_rec['landmarks'] = landmarks
    return new_rec


def _choose_window(rng, image_shape, boxes, size, tries, min_box_size):
    """Random crop window; returns (up, left, keep (K,) bool)."""
    height, width = image_shape[:2]
    keep = np.zeros(len(boxes), dtype=bool)
    for attempt in range(tries):
        up = int(rng.integers(0, height - size + 1))
        left = int(rng.integers(0, width - size + 1))
        shifted = boxes - np.array([left, up, left, up], dtype=boxes.dtype)
        keep = crop_window_faces(shifted, size, min_box_size)
        if keep.any() or attempt == tries - 1:
            break
    return up, left, keep


def _crop_one(roi_rec, cfg, rng):
    """One record -> ((1, 3, SIZE, SIZE) float32 tensor, cropped record)."""
    size = int(cfg.SCALES[0][0])
    with_landmarks = bool(cfg.get('FACE_LANDMARK', True))
    im = read_image(roi_rec)
    pre_scale = float(cfg.PRE_SCALES[int(rng.integers(len(cfg.PRE_SCALES)))])
    short_side = max(1, int(min(im.shape[:2]) * pre_scale))
    im_scale = float(size) / short_side
    im = cv2.resize(im, None, None, fx=im_scale, fy=im_scale, interpolation=cv2.INTER_LINEAR)
    if im.shape[0] < size or im.shape[1] < size:
        raise ValueError('%s: resized image %s is smaller than the %d crop'
                         % (roi_rec['image'], im.shape[:2], size))
    new_rec = _scaled_record(roi_rec, im_scale, with_landmarks)
    up, left, keep = _choose_window(rng, im.shape, new_rec['boxes'], size,
                                    int(cfg.CROP_TRIES), float(cfg.TRAIN.MIN_BOX_SIZE))
    crop = im[up:up + size, left:left + size]
    new_rec['boxes'] = new_rec['boxes'][keep] - np.array([left, up, left, up], dtype=np.float32)
    new_rec['gt_classes'] = np.asarray(roi_rec['gt_classes'])[keep]
    if with_landmarks and 'landmarks' in new_rec:
        landmarks = new_rec['landmarks'][keep]
        landmarks[:, :, 0] -= left
        landmarks[:, :, 1] -= up
        new_rec['landmarks'] = landmarks
    if 'blur' in roi_rec:
        new_rec['blur'] = np.asarray(roi_rec['blur'])[keep]
    pixels = crop.astype(np.float32)
    pixels = color_aug(pixels, float(cfg.COLOR_JITTERING), int(cfg.COLOR_MODE), rng)
    im_tensor = transform(pixels, cfg.PIXEL_MEANS, cfg.PIXEL_STDS, cfg.PIXEL_SCALE)
    new_rec['im_info'] = np.array([size, size, im_scale], dtype=np.float32)
    new_rec['crop_window'] = np.array([left, up, left + size, up + size], dtype=np.int64)
    new_rec['pre_scale'] = pre_scale
    return im_tensor, new_rec


def training_crops(roidb, cfg, rng=None):
    """Random training crops of a list of records (see the module docstring).

    Args:
        roidb: list of records: ``image`` path, ``height``, ``width``, ``boxes`` (K, 4) float32
            x1 y1 x2 y2, ``landmarks`` (K, 5, 3) float32 (x, y, visibility; -1 when missing),
            ``gt_classes`` (K,) int32, ``flipped`` bool (optional ``blur`` (K,)).
        cfg: config (``SCALES``, ``PRE_SCALES``, ``CROP_TRIES``, ``COLOR_MODE``,
            ``COLOR_JITTERING``, ``PIXEL_*``, ``TRAIN.MIN_BOX_SIZE``, ``FACE_LANDMARK``), from
            ``rcnn.config.generate_config``.
        rng: numpy Generator for every random draw; defaults to a module-level generator.
    Returns:
        (processed_ims, processed_roidb): lists with one entry per record:
        ``(1, 3, SIZE, SIZE)`` float32 tensors, and copies of the records whose ``boxes`` (k, 4)
        float32, ``landmarks`` (k, 5, 3), ``gt_classes`` (k,) (and ``blur``) hold the kept faces
        in crop coordinates, plus ``im_info`` = [SIZE, SIZE, im_scale] float32,
        ``crop_window`` = [left, up, left + SIZE, up + SIZE] in resized-image pixels and
        ``pre_scale``.
    Raises:
        ImageReadError: an image is missing or unreadable (message names the file).
    """
    rng = _default_rng if rng is None else rng
    processed_ims, processed_roidb = [], []
    for roi_rec in roidb:
        im_tensor, new_rec = _crop_one(roi_rec, cfg, rng)
        processed_ims.append(im_tensor)
        processed_roidb.append(new_rec)
    return processed_ims, processed_roidb


get_crop_image1 = training_crops     # the original name


def resize(im, target_size, max_size, stride=0, interpolation=cv2.INTER_LINEAR):
    """Resize so the short side is ``target_size`` unless the long side would exceed ``max_size``.

    Args:
        im: (H, W, C) image.
        target_size: wanted short side in pixels.
        max_size: cap on the long side (``round(scale * long side) <= max_size``).
        stride: when > 0, zero-pad bottom/right so both sides are multiples of it.
    Returns:
        (resized image, im_scale float).
    """
    short_side, long_side = min(im.shape[:2]), max(im.shape[:2])
    im_scale = float(target_size) / float(short_side)
    if np.round(im_scale * long_side) > max_size:
        im_scale = float(max_size) / float(long_side)
    im = cv2.resize(im, None, None, fx=im_scale, fy=im_scale, interpolation=interpolation)
    if stride > 0:
        padded_h = int(np.ceil(im.shape[0] / float(stride)) * stride)
        padded_w = int(np.ceil(im.shape[1] / float(stride)) * stride)
        padded = np.zeros((padded_h, padded_w) + im.shape[2:], dtype=im.dtype)
        padded[:im.shape[0], :im.shape[1]] = im
        im = padded
    return im, im_scale


def get_image(roidb, cfg):
    """Whole images resized by ``cfg.SCALES[0]`` (no crop, no colour jitter), for tests and
    evaluation.

    The short side becomes ``SCALES[0][0]`` unless the long side would then exceed
    ``SCALES[0][1]`` (then the long side becomes ``SCALES[0][1]``); bottom/right zero padding to a
    multiple of ``cfg.IMAGE_STRIDE`` when it is > 0.

    Returns:
        (processed_ims, processed_roidb): ``(1, 3, h, w)`` float32 tensors and record copies with
        ``boxes`` and landmark x, y multiplied by ``im_scale`` and ``im_info`` = [h, w, im_scale].
    """
    target_size, max_size = cfg.SCALES[0]
    processed_ims, processed_roidb = [], []
    for roi_rec in roidb:
        im = read_image(roi_rec)
        im, im_scale = resize(im, target_size, max_size, stride=int(cfg.get('IMAGE_STRIDE', 0)))
        im_tensor = transform(im, cfg.PIXEL_MEANS, cfg.PIXEL_STDS, cfg.PIXEL_SCALE)
        new_rec = _scaled_record(roi_rec, im_scale, bool(cfg.get('FACE_LANDMARK', True)))
        new_rec['im_info'] = np.array([im_tensor.shape[2], im_tensor.shape[3], im_scale],
                                      dtype=np.float32)
        processed_ims.append(im_tensor)
        processed_roidb.append(new_rec)
    return processed_ims, processed_roidb
