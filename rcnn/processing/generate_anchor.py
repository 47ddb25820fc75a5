"""Base anchors per feature stride, their layout over a feature map, and the one cache of
those layouts (:class:`AnchorCache`, used by anchor labelling and by the decoder).

An anchor is ``x1 y1 x2 y2`` in input pixels with the original +1 convention:
width = x2 - x1 + 1, centre = x1 + 0.5 * (width - 1).
"""
from collections import OrderedDict

import numpy as np

from cython_ext.anchors import anchors_cython
from rcnn.model_layout import strides_of

__all__ = ['generate_anchors', 'generate_anchors_fpn', 'anchors_plane', 'AnchorCache',
           'DEFAULT_MAX_ANCHOR_PLANES']

#: anchor planes an :class:`AnchorCache` keeps by default: 3 strides x 8 input shapes (the
#: MXNet backend's executor cache), i.e. a 5-scale pyramid with room to spare
DEFAULT_MAX_ANCHOR_PLANES = 24


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


class AnchorCache(object):
    """All anchors of a feature map, computed once per (stride, height, width), least recently
    used dropped first beyond ``max_planes`` planes, so a long run over varied input sizes keeps
    bounded memory (a dropped plane is recomputed identically when needed again).

    Args:
        base_anchors: {stride: (A, 4) float32 anchors of cell (0, 0)}.
        max_planes: planes kept (one per stride and feature-map size); None keeps every plane.
    """

    def __init__(self, base_anchors, max_planes=DEFAULT_MAX_ANCHOR_PLANES):
        self.base_anchors = {int(s): np.asarray(a, dtype=np.float32)
                             for s, a in base_anchors.items()}
        if max_planes is not None and int(max_planes) < 1:
            raise ValueError('max_planes must be >= 1 or None, got %r' % (max_planes,))
        self.max_planes = None if max_planes is None else int(max_planes)
        self._planes = OrderedDict()

    def num_anchors(self, stride):
        return len(self.base_anchors[stride])

    def _entry(self, stride, height, width):
        """(plane (H, W, A, 4), the same anchors as rows (H * W * A, 4)), both read-only."""
        key = (stride, height, width)
        entry = self._planes.get(key)
        if entry is not None:
            self._planes.move_to_end(key)
            return entry
        plane = anchors_plane(height, width, stride, self.base_anchors[stride])
        plane.setflags(write=False)
        entry = self._planes[key] = (plane, plane.reshape(-1, 4))
        if self.max_planes is not None:
            while len(self._planes) > self.max_planes:
                self._planes.popitem(last=False)
        return entry

    def plane(self, stride, height, width):
        """(height, width, A, 4) float32, read-only (see :func:`anchors_plane`)."""
        return self._entry(stride, height, width)[0]

    def get(self, stride, height, width):
        """(height * width * A, 4) float32, index ``(h * width + w) * A + a``."""
        return self._entry(stride, height, width)[1]

    def __len__(self):
        return len(self._planes)
