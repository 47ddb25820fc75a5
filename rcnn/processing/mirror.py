"""The horizontal mirror of an image and of everything located on it.

One formula for every x coordinate, the original pipeline's: a pixel column ``x`` of an image
``width`` pixels wide goes to ``x' = width - x - 1`` (evaluated in that order, in the array's
own precision). It serves the mirrored copies of the training set, the pixels of a mirrored
record and the detector's flip-back of detections found on a mirrored input.

Boxes swap their two x edges (``x1' = W - x2 - 1``, ``x2' = W - x1 - 1``); facial points are
mirrored and renumbered by :data:`rcnn.model_layout.FLIP_LANDMARK_ORDER` so that "left eye"
still names the left eye (as seen) after the mirror. Mirroring twice gives the input back.
"""
import cv2
import numpy as np

from rcnn.model_layout import FLIP_LANDMARK_ORDER

__all__ = ['mirror_x', 'mirror_boxes', 'mirror_landmarks', 'mirror_image']


def mirror_x(x, width):
    """``width - x - 1`` for an array (or number) of x coordinates."""
    return width - x - 1


def mirror_boxes(boxes, width):
    """Mirrored copy of boxes.

    Args:
        boxes: (N, 4+) x1 y1 x2 y2 [...]; columns past the fourth are copied unchanged.
        width: width of the image the boxes lie on, in pixels.
    Returns:
        (N, 4+) array of the same dtype, ``x1' = W - x2 - 1``, ``x2' = W - x1 - 1``.
    """
    mirrored = np.array(boxes, copy=True)
    mirrored[:, 0] = mirror_x(boxes[:, 2], width)
    mirrored[:, 2] = mirror_x(boxes[:, 0], width)
    return mirrored


def mirror_landmarks(landmarks, width, missing=None):
    """Mirrored copy of facial points, renumbered by FLIP_LANDMARK_ORDER.

    Args:
        landmarks: (N, 5, 2+) x, y [, ...] per point; columns past x are copied unchanged.
        width: image width in pixels.
        missing: optional (N, 5) bool, points whose coordinates are placeholders (they keep
            their values, only their order changes).
    Returns:
        (N, 5, 2+) array of the same dtype: point ``p`` is the input's point
        ``FLIP_LANDMARK_ORDER[p]`` with ``x' = W - x - 1``.
    """
    mirrored = np.array(landmarks, copy=True)
    xs = mirror_x(landmarks[:, :, 0], width)
    mirrored[:, :, 0] = xs if missing is None else np.where(missing, landmarks[:, :, 0], xs)
    return mirrored[:, list(FLIP_LANDMARK_ORDER)]


def mirror_image(image):
    """(H, W, C) image mirrored left-right (a new array)."""
    return cv2.flip(image, 1)
