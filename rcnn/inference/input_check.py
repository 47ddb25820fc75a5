"""Validation of what callers pass to ``RetinaFace.detect`` / ``detect_batch`` / ``align``.

Every rejection raises :class:`InvalidInputError` (a ``ValueError``) with one line naming the
argument, what it holds and what is expected -- never a silent empty or wrong result:

* ``threshold`` must be a real number in [0, 1] (a face probability); ``None``, a string, NaN
  or ``threshold > 1`` (which would return no face at all) are refused;
* the network was trained on raw 8-bit pixel values, so an image must hold values in 0..255.
  A ``uint8`` image always does. Any other dtype is accepted when its values do -- arithmetic
  on a ``uint8`` image (``astype(np.float32)``, integer promotion) gives such arrays and they
  detect exactly like the ``uint8`` image -- up to a margin of :data:`PIXEL_MARGIN` for the
  overshoot of bicubic or Lanczos resampling. What is refused, with the conversion to use:

  - a floating-point image whose largest value lies in (0, 1]: a 0..1-scaled image, seen by
    the network as black (``img * 255``); an all-zero image is accepted either way;
  - values above 255 + margin: a 16-bit image (``cv2.imread(..., cv2.IMREAD_UNCHANGED)`` of
    a 16-bit PNG or TIFF holds 0..65535; ``cv2.imread(path)`` reads it as 8-bit) or another
    scale, which the network sees saturated (a face photo gives a third of its faces);
  - values below -margin: a mean-subtracted or normalised image (the pixel transform is the
    model's own, applied inside the detector);
  - NaN or infinite values.

The check is on values, not on the dtype alone, because the dtype says nothing about the scale
of a float image and an integer image promoted from ``uint8`` is valid.
"""
import math
import numbers

import numpy as np

__all__ = ['InvalidInputError', 'PIXEL_MARGIN', 'check_threshold', 'check_pixel_range']

#: how far outside 0..255 a non-uint8 image may reach (bicubic / Lanczos resampling of an
#: 8-bit image overshoots sharp edges by up to about 10% of the range)
PIXEL_MARGIN = 32.0
_PIXEL_MAX = 255.0


class InvalidInputError(ValueError):
    """An argument of ``detect()`` that cannot give a meaningful result."""


def check_threshold(threshold, name='threshold'):
    """``threshold`` as a float in [0, 1]; :class:`InvalidInputError` otherwise."""
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, numbers.Real):
        raise InvalidInputError('%s must be a face probability in [0, 1], got %r (%s)'
                                % (name, threshold, type(threshold).__name__))
    value = float(threshold)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InvalidInputError('%s must be a face probability in [0, 1], got %r%s' % (
            name, threshold, ' (no face can score above 1, so nothing would be found)'
            if math.isfinite(value) and value > 1.0 else ''))
    return value


def _conversion_hint(image, name):
    """How to bring an image with values above 255 to 8 bits, as a phrase."""
    if image.dtype == np.uint16:
        return ('a 16-bit image (as cv2.imread(..., cv2.IMREAD_UNCHANGED) gives for a 16-bit '
                'PNG or TIFF) is seen saturated; read it with cv2.imread(path) (8-bit BGR) or '
                'pass np.rint(%s / 257).astype(np.uint8)' % name)
    return 'rescale it to 0..255 (e.g. %s * (255 / %s.max())) or pass it as uint8' % (name, name)


def check_pixel_range(image, name='img'):
    """Refuse an image whose values are not raw 8-bit pixel values (see the module docstring).

    Args:
        image: (H, W, C) array of any real dtype; ``uint8`` is not inspected.
        name: the argument's name in the messages.
    Returns:
        ``image`` unchanged.
    Raises:
        InvalidInputError naming ``name``, its dtype, its value range and the conversion.
    """
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind == 'f' and not np.isfinite(image).all():
        raise InvalidInputError('%s (%s) contains NaN or infinite pixel values'
                                % (name, image.dtype))
    low, peak = float(image.min()), float(image.max())
    if image.dtype.kind == 'f' and 0.0 < peak <= 1.0:
        raise InvalidInputError(
            '%s is %s with values in [%g, %g]: detect() expects raw 0..255 pixel values (as '
            'cv2.imread gives); a 0..1 image would be seen as black and give no face. Pass '
            '(%s * 255) instead' % (name, image.dtype, low, peak, name))
    if peak > _PIXEL_MAX + PIXEL_MARGIN:
        raise InvalidInputError(
            '%s is %s with values in [%g, %g]: detect() expects raw 8-bit pixel values 0..255; '
            '%s' % (name, image.dtype, low, peak, _conversion_hint(image, name)))
    if low < -PIXEL_MARGIN:
        raise InvalidInputError(
            '%s is %s with values in [%g, %g]: detect() expects raw 0..255 pixel values (as '
            'cv2.imread gives), not a mean-subtracted or normalised image; the model applies '
            'its own pixel transform' % (name, image.dtype, low, peak))
    return image
