"""The one rule that turns an image size into a resize factor.

WIDER FACE testing (every protocol), the training pre-scale and the whole-image resize all use
the same rule as the original: bring the short side to ``target_size`` unless the long side
would then exceed ``max_size`` after rounding; in that case bring the long side to
``max_size``.
"""
import numpy as np

__all__ = ['fit_scale', 'fit_inside_scale']


def fit_scale(height, width, target_size, max_size):
    """Resize factor for a ``height x width`` image (short side -> ``target_size``, long side
    capped at ``max_size``).

    ``round(scale * long side) > max_size`` is the original's test (``np.round``, half to even),
    kept so that the sizes it gives stay the original's.
    """
    short_side, long_side = min(height, width), max(height, width)
    scale = float(target_size) / float(short_side)
    if np.round(scale * long_side) > max_size:
        scale = float(max_size) / float(long_side)
    return scale


def fit_inside_scale(height, width, canvas_long, canvas_short):
    """Largest factor that fits the image inside a ``canvas_long x canvas_short`` canvas turned
    the image's way (a landscape canvas for a landscape image, a portrait one for a portrait
    image); images are scaled up as well as down."""
    long_side, short_side = max(height, width), min(height, width)
    return min(float(canvas_long) / long_side, float(canvas_short) / short_side)
