# cython: language_level=3, boundscheck=False, wraparound=False
"""Shift base anchors over a feature map."""
import numpy as np
cimport numpy as cnp

cnp.import_array()
ctypedef cnp.float32_t DTYPE_t


def anchors_cython(int height, int width, int stride, cnp.ndarray[DTYPE_t, ndim=2] base_anchors):
    """All anchors of a feature map.

    Args:
        height, width: feature-map size.
        stride: pixels per feature cell.
        base_anchors: (A, 4) float32, x1 y1 x2 y2 of the anchors at cell (0, 0).
    Returns:
        (height, width, A, 4) float32: base anchor a shifted by (x*stride, y*stride, x*stride, y*stride).
    """
    cdef int num_anchors = base_anchors.shape[0]
    cdef cnp.ndarray[DTYPE_t, ndim=4] all_anchors = np.zeros(
        (height, width, num_anchors, 4), dtype=np.float32)
    cdef int y, x, a
    cdef DTYPE_t shift_x, shift_y
    for y in range(height):
        shift_y = y * stride
        for x in range(width):
            shift_x = x * stride
            for a in range(num_anchors):
                all_anchors[y, x, a, 0] = base_anchors[a, 0] + shift_x
                all_anchors[y, x, a, 1] = base_anchors[a, 1] + shift_y
                all_anchors[y, x, a, 2] = base_anchors[a, 2] + shift_x
                all_anchors[y, x, a, 3] = base_anchors[a, 3] + shift_y
    return all_anchors
