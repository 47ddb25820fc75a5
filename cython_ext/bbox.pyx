# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Pairwise IoU with the original +1 pixel convention."""
import numpy as np
cimport numpy as cnp

cnp.import_array()
ctypedef cnp.float32_t DTYPE_t


def bbox_overlaps_cython(boxes, query_boxes):
    """IoU of every box against every query box.

    Args:
        boxes: (N, 4) float, x1 y1 x2 y2.
        query_boxes: (K, 4) float, x1 y1 x2 y2.
    Returns:
        (N, K) float32 IoU; areas are (x2 - x1 + 1) * (y2 - y1 + 1).
    """
    cdef cnp.ndarray[DTYPE_t, ndim=2] b = np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 4)
    cdef cnp.ndarray[DTYPE_t, ndim=2] q = np.ascontiguousarray(query_boxes, dtype=np.float32).reshape(-1, 4)
    cdef Py_ssize_t n = b.shape[0]
    cdef Py_ssize_t k_total = q.shape[0]
    cdef cnp.ndarray[DTYPE_t, ndim=2] overlaps = np.zeros((n, k_total), dtype=np.float32)
    cdef DTYPE_t iw, ih, query_area, union_area
    cdef Py_ssize_t i, k
    for k in range(k_total):
        query_area = (q[k, 2] - q[k, 0] + 1) * (q[k, 3] - q[k, 1] + 1)
        for i in range(n):
            iw = min(b[i, 2], q[k, 2]) - max(b[i, 0], q[k, 0]) + 1
            if iw > 0:
                ih = min(b[i, 3], q[k, 3]) - max(b[i, 1], q[k, 1]) + 1
                if ih > 0:
                    union_area = ((b[i, 2] - b[i, 0] + 1) * (b[i, 3] - b[i, 1] + 1)
                                  + query_area - iw * ih)
                    overlaps[i, k] = iw * ih / union_area
    return overlaps
