"""Training transforms: a list of steps, each applied to the image and its faces together.

A step is a callable ``step(image, faces, rng, info) -> (image, faces)``: ``faces`` is a
:class:`rcnn.dataset.annotations.FaceAnnotations`, ``rng`` the sample's numpy Generator (every
random draw of a sample comes from it, in step order) and ``info`` a dict the steps record
what they chose in (``pre_scale``, ``im_scale``, ``crop_window``, ``im_info``). Each step has
a plain constructor and a ``from_config(cfg)`` classmethod. :class:`TrainTransform` chains the
original RetinaFace training steps::

    PreScale -> RandomCropWindow -> ColorJitter -> ToTensor

PreScale (``cfg.PRE_SCALES``, crop size ``S = cfg.SCALES[0][0]``)
    ``pre_scale`` drawn uniformly from the list; ``short = int(min(h, w) * pre_scale)``; the
    image is resized by ``im_scale = S / short`` (bilinear), the faces by the same factor.
RandomCropWindow (``cfg.CROP_TRIES``, ``cfg.TRAIN.MIN_BOX_SIZE``)
    up to ``tries`` random ``S x S`` windows (top row first, then left column, both uniform
    over the valid range); a face is kept when its box centre lies in ``[0, S)`` on both axes
    of the window and ``max(x2 - x1, y2 - y1) >= min_box_size``; the first window keeping a
    face wins, the last try is taken whatever it keeps. Kept boxes are not clipped.
ColorJitter (``cfg.COLOR_JITTERING``, ``cfg.COLOR_MODE``)
    float32 pixels, then :func:`color_aug` (below).
ToTensor (``cfg.PIXEL_MEANS``, ``PIXEL_STDS``, ``PIXEL_SCALE``)
    :class:`rcnn.processing.pixels.PixelTransform` (the detector's transform): BGR -> RGB,
    normalised, ``(1, 3, S, S)`` float32.

Colour jitter (``cfg.COLOR_MODE``, ``cfg.COLOR_JITTERING`` = j), on float32 BGR pixels:

* mode 0 or j <= 0: none; mode 1: brightness only; mode >= 2: brightness, contrast and saturation
  in a random order (one ``rng.permutation(3)`` draw, then one factor per step, in order);
* every step draws ``alpha = 1 + U(-j, j)``; with ``luma = 0.299 R + 0.587 G + 0.114 B``:
  brightness ``x * alpha``; contrast ``alpha * x + (1 - alpha) * mean(luma)`` (mean over the
  image); saturation ``alpha * x + (1 - alpha) * luma`` (per pixel);
* the result is clipped to [0, 255] once, after the last step. (The original did not clip and
  applied the luma weights to the B, G, R channels in that order; here the weights follow the
  channels' meaning.)

NumPy / OpenCV only (no MXNet): the loader's worker processes run it.
"""
import cv2
import numpy as np

from rcnn.config import COLOR_ALL, COLOR_NONE
from rcnn.processing.pixels import PixelTransform

__all__ = ['PreScale', 'RandomCropWindow', 'ColorJitter', 'ToTensor', 'TrainTransform',
           'color_aug', 'crop_window_faces']

# ITU-R BT.601 luma weights in the channel order of OpenCV images (B, G, R)
_LUMA_BGR = np.array([0.114, 0.587, 0.299], dtype=np.float32)


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



class PreScale(object):
    """Resize so that a random fraction of the short side becomes the crop size.

    Args:
        size: crop size S in pixels.
        pre_scales: the fractions drawn from (uniformly, one ``rng.integers`` draw).
    """

    def __init__(self, size, pre_scales):
        self.size = int(size)
        self.pre_scales = tuple(float(v) for v in pre_scales)
        if not self.pre_scales:
            raise ValueError('PRE_SCALES must list at least one value')

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.SCALES[0][0], cfg.PRE_SCALES)

    def __call__(self, image, faces, rng, info):
        pre_scale = self.pre_scales[int(rng.integers(len(self.pre_scales)))]
        short_side = max(1, int(min(image.shape[:2]) * pre_scale))
        im_scale = float(self.size) / short_side
        image = cv2.resize(image, None, None, fx=im_scale, fy=im_scale,
                           interpolation=cv2.INTER_LINEAR)
        if image.shape[0] < self.size or image.shape[1] < self.size:
            raise ValueError('%s: resized image %s is smaller than the %d crop'
                             % (info.get('image'), image.shape[:2], self.size))
        info.update(pre_scale=pre_scale, im_scale=im_scale)
        return image, faces.scale(im_scale)


class RandomCropWindow(object):
    """A random ``size x size`` window preferring one that keeps a face.

    Args:
        size: window side in pixels (the image must be at least that large).
        tries: windows drawn at most.
        min_box_size: smallest ``max(x2 - x1, y2 - y1)`` of a kept face.
    """

    def __init__(self, size, tries, min_box_size):
        self.size = int(size)
        self.tries = int(tries)
        self.min_box_size = float(min_box_size)
        if self.tries < 1:
            raise ValueError('CROP_TRIES must be >= 1, got %d' % self.tries)

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.SCALES[0][0], cfg.CROP_TRIES, cfg.TRAIN.MIN_BOX_SIZE)

    def choose(self, rng, image_shape, boxes):
        """(up, left, keep (K,) bool) of the window chosen for ``boxes`` (K, 4)."""
        height, width = image_shape[:2]
        keep = np.zeros(len(boxes), dtype=bool)
        for attempt in range(self.tries):
            up = int(rng.integers(0, height - self.size + 1))
            left = int(rng.integers(0, width - self.size + 1))
            shifted = boxes - np.array([left, up, left, up], dtype=boxes.dtype)
            keep = crop_window_faces(shifted, self.size, self.min_box_size)
            if keep.any() or attempt == self.tries - 1:
                break
        return up, left, keep

    def __call__(self, image, faces, rng, info):
        up, left, keep = self.choose(rng, image.shape, faces.boxes)
        info['crop_window'] = np.array([left, up, left + self.size, up + self.size],
                                       dtype=np.int64)
        info['im_info'] = np.array([self.size, self.size, info.get('im_scale', 1.0)],
                                   dtype=np.float32)
        crop = image[up:up + self.size, left:left + self.size]
        return crop, faces.keep(keep).shift(-left, -up)


class ColorJitter(object):
    """Random brightness / contrast / saturation on float32 pixels (:func:`color_aug`); the
    faces are unchanged."""

    def __init__(self, jitter, mode):
        self.jitter = float(jitter)
        self.mode = int(mode)

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.COLOR_JITTERING, cfg.COLOR_MODE)

    def __call__(self, image, faces, rng, info):
        return color_aug(image.astype(np.float32), self.jitter, self.mode, rng), faces


class ToTensor(object):
    """BGR pixels -> the network's ``(1, 3, H, W)`` float32 input; the faces are unchanged."""

    def __init__(self, pixel_transform=None):
        self.pixel_transform = PixelTransform() if pixel_transform is None else pixel_transform

    @classmethod
    def from_config(cls, cfg):
        return cls(PixelTransform.from_config(cfg))

    def __call__(self, image, faces, rng, info):
        return self.pixel_transform.network_input(image), faces


class TrainTransform(object):
    """The steps of a training sample, applied in order.

    Args:
        steps: callables ``(image, faces, rng, info) -> (image, faces)``.
    """

    def __init__(self, steps):
        self.steps = list(steps)

    @classmethod
    def from_config(cls, cfg):
        """PreScale, RandomCropWindow, ColorJitter, ToTensor of a recipe."""
        return cls([PreScale.from_config(cfg), RandomCropWindow.from_config(cfg),
                    ColorJitter.from_config(cfg), ToTensor.from_config(cfg)])

    def __call__(self, image, faces, rng, info=None):
        """Returns ``(tensor, faces, info)``; ``info`` (a new dict unless given) holds what
        the steps chose."""
        info = {} if info is None else info
        for step in self.steps:
            image, faces = step(image, faces, rng, info)
        return image, faces, info

    def __repr__(self):
        return 'TrainTransform(%s)' % ', '.join(type(step).__name__ for step in self.steps)
