"""Base anchors per feature stride, and their layout over a feature map.

An anchor is ``x1 y1 x2 y2`` in input pixels with the original +1 convention:
width = x2 - x1 + 1, centre = x1 + 0.5 * (width - 1).
"""
import numpy as np

from cython_ext.anchors import anchors_cython
from rcnn.model_layout import strides_of

__all__ = ['generate_anchors', 'generate_anchors_fpn', 'anchors_plane']


def _box_size_and_centre(box):
    width = box[2] - box[0] + 1
    height = box[3] - box[1] + 1
    return width, height, box[0] + 0.5 * (width - 1), box[1] + 0.5 * (height - 1)


def _boxes_around(centre_x, centre_y, widths, heights):
    """(n, 4) boxes of the given widths/heights centred on one point."""
    widths = np.asarray(widths, dtype=np.float64)
    heights = np.asarray(heights, dtype=np.float64)
    return np.stack([centre_x - 0.5 * (widths - 1), centre_y - 0.5 * (heights - 1),
                     centre_x + 0.5 * (widths - 1), centre_y + 0.5 * (heights - 1)], axis=1)


def generate_anchors(base_size=16, ratios=(0.5, 1, 2), scales=2 ** np.arange(3, 6), stride=16,
                     dense_anchor=False):
    """Anchors at cell (0, 0): every aspect ratio (outer loop) times every scale (inner loop).

    Args:
        base_size: side of the reference square ``[0, 0, base_size - 1, base_size - 1]``.
        ratios: height / width ratios.
        scales: multipliers of the ratio-adjusted reference box, in the order given.
        stride: feature stride, used only by ``dense_anchor``.
        dense_anchor: also add every anchor shifted by half a stride.
    Returns:
        (len(ratios) * len(scales) [* 2], 4) float32, x1 y1 x2 y2.
    """
    reference = np.array([0, 0, base_size - 1, base_size - 1], dtype=np.float64)
    width, height, centre_x, centre_y = _box_size_and_centre(reference)
    area = width * height
    ratios = np.asarray(ratios, dtype=np.float64)
    ratio_widths = np.round(np.sqrt(area / ratios))
    ratio_heights = np.round(ratio_widths * ratios)
    scales = np.asarray(scales, dtype=np.float64)
    anchors = np.vstack([
        _boxes_around(centre_x, centre_y, ratio_widths[i] * scales, ratio_heights[i] * scales)
        for i in range(len(ratios))])
    if dense_anchor:
        if stride % 2:
            raise ValueError('dense anchors need an even stride, got %d' % stride)
        anchors = np.vstack([anchors, anchors + stride // 2])
    return anchors.astype(np.float32)


def generate_anchors_fpn(dense_anchor=False, cfg=None):
    """Base anchors of every stride, coarse to fine (32, 16, 8).

    The original's argument order; ``cfg`` is required (there is no global config to fall
    back on).

    Args:
        dense_anchor: see ``generate_anchors``.
        cfg: a config with ``RPN_ANCHOR_CFG``, or an ``RPN_ANCHOR_CFG`` itself
            (``{'32': {'SCALES': ..., 'BASE_SIZE': ..., 'RATIOS': ...}, ...}``).
    Returns:
        list of (A, 4) float32 arrays, one per stride in descending stride order.
    """
    if cfg is None:
        raise TypeError('generate_anchors_fpn needs cfg (a config or its RPN_ANCHOR_CFG)')
    anchor_cfg = cfg['RPN_ANCHOR_CFG'] if 'RPN_ANCHOR_CFG' in cfg else cfg
    anchors_per_stride = []
    for stride in strides_of(anchor_cfg):
        stride_cfg = anchor_cfg[str(stride)]
        anchors_per_stride.append(generate_anchors(
            base_size=stride_cfg['BASE_SIZE'], ratios=np.array(stride_cfg['RATIOS']),
            scales=np.array(stride_cfg['SCALES']), stride=stride, dense_anchor=dense_anchor))
    return anchors_per_stride


def anchors_plane(height, width, stride, base_anchors):
    """All anchors of a ``height x width`` feature map.

    Args:
        base_anchors: (A, 4) float, anchors of cell (0, 0).
    Returns:
        (height, width, A, 4) float32; cell (y, x) holds base anchors shifted by
        (x * stride, y * stride). ``.reshape(-1, 4)`` orders them position-major, anchor-minor.
    """
    base_anchors = np.ascontiguousarray(base_anchors, dtype=np.float32)
    return anchors_cython(int(height), int(width), int(stride), base_anchors)
