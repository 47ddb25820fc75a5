"""Validation of what callers pass to ``RetinaFace.detect`` / ``detect_batch``.

Every rejection raises :class:`InvalidInputError` (a ``ValueError``) with one line naming the
argument, what it holds and what is expected -- never a silent empty result:

* ``threshold`` must be a real number in [0, 1] (a face probability); ``None``, a string, NaN
  or ``threshold > 1`` (which would return no face at all) are refused;
* a floating-point image whose largest value lies in (0, 1] is almost always a 0..1-scaled
  image, which the network (trained on raw 0..255 pixels) sees as black: refused, with the
  explicit rescale to use (``img * 255``); an all-zero image is accepted either way;
* floating-point images with NaN or infinite pixels are refused.
"""
import math
import numbers

import numpy as np

__all__ = ['InvalidInputError', 'check_threshold', 'check_pixel_range']


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


def check_pixel_range(image, name='img'):
    """Refuse a float image scaled to 0..1 or holding non-finite values.

    Args:
        image: (H, W, C) array of any real dtype (integer images are not inspected).
    Returns:
        ``image`` unchanged.
    """
    if image.dtype.kind != 'f':
        return image
    if not np.isfinite(image).all():
        raise InvalidInputError('%s (%s) contains NaN or infinite pixel values'
                                % (name, image.dtype))
    peak = float(image.max())
    if 0.0 < peak <= 1.0:
        raise InvalidInputError(
            '%s is %s with values in [%g, %g]: detect() expects raw 0..255 pixel values (as '
            'cv2.imread gives); a 0..1 image would be seen as black and give no face. Pass '
            '(%s * 255) instead' % (name, image.dtype, float(image.min()), peak, name))
    return image
