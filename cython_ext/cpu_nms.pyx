# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Greedy non-maximum suppression with the +1 pixel convention."""
import numpy as np
cimport numpy as cnp

cnp.import_array()
ctypedef cnp.float32_t DTYPE_t


def cpu_nms(dets, float thresh):
    """Greedy NMS.

    Args:
        dets: (N, 5) float32, x1 y1 x2 y2 score.
        thresh: a box is suppressed when its IoU with a kept, higher-scoring box is > thresh.
    Returns:
        list of kept indices into ``dets``, in descending score order.
    """
    cdef cnp.ndarray[DTYPE_t, ndim=2] d = np.ascontiguousarray(dets, dtype=np.float32).reshape(-1, 5)
    cdef Py_ssize_t n = d.shape[0]
    if n == 0:
        return []
    cdef cnp.ndarray[DTYPE_t, ndim=1] areas = (d[:, 2] - d[:, 0] + 1) * (d[:, 3] - d[:, 1] + 1)
    # stable sort so equal scores keep their input order
    cdef cnp.ndarray[cnp.intp_t, ndim=1] order = np.argsort(-d[:, 4], kind='stable')
    cdef cnp.ndarray[cnp.uint8_t, ndim=1] suppressed = np.zeros(n, dtype=np.uint8)
    cdef Py_ssize_t oi, oj, i, j
    cdef DTYPE_t ix1, iy1, ix2, iy2, iarea, w, h, inter
    keep = []
    for oi in range(n):
        i = order[oi]
        if suppressed[i]:
            continue
        keep.append(i)
        ix1 = d[i, 0]
        iy1 = d[i, 1]
        ix2 = d[i, 2]
        iy2 = d[i, 3]
        iarea = areas[i]
        for oj in range(oi + 1, n):
            j = order[oj]
            if suppressed[j]:
                continue
            w = min(ix2, d[j, 2]) - max(ix1, d[j, 0]) + 1
            if w <= 0:
                continue
            h = min(iy2, d[j, 3]) - max(iy1, d[j, 1]) + 1
            if h <= 0:
                continue
            inter = w * h
            if inter / (iarea + areas[j] - inter) > thresh:
                suppressed[j] = 1
    return keep
