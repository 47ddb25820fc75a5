"""The image-to-tensor transform: BGR pixels -> the network's normalised RGB NCHW input.

One transform, built from the recipe's ``PIXEL_MEANS``, ``PIXEL_STDS`` (3 values each, listed
in **BGR** order as in the original config) and ``PIXEL_SCALE``, used by the training crops
(:mod:`rcnn.io.image`), the detector (:mod:`rcnn.inference.detector`) and INT8 calibration
(:mod:`rcnn.deploy.quantize`), so inference feeds a model what it was trained on.

Per RGB channel ``c``: ``(pixel[..., 2 - c] / PIXEL_SCALE - mean[2 - c]) / std[2 - c]``, in
float32. The defaults (means 0, stds 1, scale 1: raw RGB values) are the released models'
recipe; with them the arithmetic is skipped (x / 1, x - 0 are exact, so no bit changes).

For the detector (:meth:`PixelTransform.network_input`), ``nocrop`` padding is added to the
raw image before the transform, as in the original detector: padded pixels hold the transform
of a black pixel (0 with the defaults).
"""
import cv2
import numpy as np

__all__ = ['PixelTransform', 'transform', 'DEFAULT_PIXEL_MEANS', 'DEFAULT_PIXEL_STDS',
           'DEFAULT_PIXEL_SCALE']

#: the original recipe's values (raw RGB pixels; the released models')
DEFAULT_PIXEL_MEANS = (0.0, 0.0, 0.0)
DEFAULT_PIXEL_STDS = (1.0, 1.0, 1.0)
DEFAULT_PIXEL_SCALE = 1.0


def _three(values, what):
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.shape != (3,) or not np.all(np.isfinite(array)):
        raise ValueError('%s must be 3 finite numbers (B, G, R), got %r' % (what, values))
    return array


class PixelTransform(object):
    """BGR image -> normalised RGB tensor.

    Args:
        means, stds: 3 values each, in BGR order; stds must be non-zero.
        scale: pixels are divided by it before the mean is subtracted (non-zero).
    """

    def __init__(self, means=DEFAULT_PIXEL_MEANS, stds=DEFAULT_PIXEL_STDS,
                 scale=DEFAULT_PIXEL_SCALE):
        means = _three(means, 'PIXEL_MEANS')
        stds = _three(stds, 'PIXEL_STDS')
        if np.any(stds == 0):
            raise ValueError('PIXEL_STDS must be non-zero, got %r' % (list(stds),))
        scale = float(scale)
        if not np.isfinite(scale) or scale == 0:
            raise ValueError('PIXEL_SCALE must be a non-zero number, got %r' % (scale,))
        self.means = tuple(float(v) for v in means)
        self.stds = tuple(float(v) for v in stds)
        self.scale = scale
        # per RGB channel (the tensor's order), float32 as applied
        self._rgb_means = means[::-1].astype(np.float32)
        self._rgb_stds = stds[::-1].astype(np.float32)
        self._scale32 = np.float32(scale)

    @classmethod
    def from_config(cls, cfg):
        """The transform of a recipe: ``cfg.PIXEL_MEANS``, ``PIXEL_STDS``, ``PIXEL_SCALE``."""
        return cls(cfg.PIXEL_MEANS, cfg.PIXEL_STDS, cfg.PIXEL_SCALE)

    @property
    def is_identity(self):
        """True for raw RGB values (means 0, stds 1, scale 1)."""
        return (self.scale == 1.0 and not any(self.means) and
                all(s == 1.0 for s in self.stds))

    def normalise_(self, tensor):
        """Apply the transform in place to an (N, 3, H, W) float32 tensor of raw RGB values."""
        if self.is_identity:
            return tensor
        for channel in range(3):
            plane = tensor[:, channel]
            if self._scale32 != 1.0:
                plane /= self._scale32
            if self._rgb_means[channel] != 0.0:
                plane -= self._rgb_means[channel]
            if self._rgb_stds[channel] != 1.0:
                plane /= self._rgb_stds[channel]
        return tensor

    def __call__(self, im):
        """(H, W, 3) BGR pixels (any real dtype) -> (1, 3, H, W) float32."""
        return self.network_input(im)

    def network_input(self, image, flip=False, pad_multiple=None):
        """BGR image -> network input.

        Args:
            image: (H, W, 3) BGR.
            flip: mirror horizontally.
            pad_multiple: zero-pad the image bottom/right up to a multiple of this (None: no
                padding) before the transform.
        Returns:
            (1, 3, H', W') float32, channels R, G, B.
        """
        height, width = image.shape[:2]
        if pad_multiple:
            padded_h = -(-height // pad_multiple) * pad_multiple
            padded_w = -(-width // pad_multiple) * pad_multiple
            data = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
        else:
            data = np.empty((1, 3, height, width), dtype=np.float32)
        source = image[:, ::-1] if flip else image
        for channel, bgr_plane in enumerate(reversed(_bgr_planes(source))):
            data[0, channel, :height, :width] = bgr_plane
        return self.normalise_(data)

    def to_dict(self):
        """The recipe values, JSON-ready."""
        return {'pixel_means': list(self.means), 'pixel_stds': list(self.stds),
                'pixel_scale': self.scale}

    def __eq__(self, other):
        return (isinstance(other, PixelTransform) and self.means == other.means and
                self.stds == other.stds and self.scale == other.scale)

    def __repr__(self):
        return 'PixelTransform(means=%r, stds=%r, scale=%r)' % (self.means, self.stds, self.scale)


def _bgr_planes(im):
    """The three channel planes of an (H, W, 3) image (OpenCV's vectorised split when it
    handles the dtype and layout: 3 contiguous copies, much faster than a strided NumPy
    transpose; strided views otherwise)."""
    if im.dtype in (np.uint8, np.float32) and im.strides[1:] == (3 * im.itemsize, im.itemsize):
        return cv2.split(im)
    return [im[:, :, c] for c in range(3)]


def transform(im, pixel_means, pixel_stds, pixel_scale):
    """BGR image -> normalised RGB NCHW tensor (the training crops' name for the transform).

    Args:
        im: (H, W, 3) BGR pixels (any numeric dtype).
        pixel_means, pixel_stds: 3 values each, in BGR order.
        pixel_scale: pixels are divided by it before the mean is subtracted.
    Returns:
        (1, 3, H, W) float32; channel c (R, G, B) is
        (im[..., 2 - c] / scale - mean[2 - c]) / std[2 - c].
    """
    return PixelTransform(pixel_means, pixel_stds, pixel_scale).network_input(im)
