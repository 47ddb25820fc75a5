# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Greedy non-maximum suppression with the +1 pixel convention."""
import numpy as np
cimport numpy as cnp

cnp.import_array()


def cpu_nms(dets, double thresh):
    """Greedy NMS, as the original's kernel: the IoU is computed in float32 and a box is
    suppressed when it is >= ``thresh`` (compared in double precision).

    Args:
        dets: (N, 5) float32, x1 y1 x2 y2 score.
        thresh: a box is suppressed when its IoU with a kept, higher-scoring box is >= thresh.
    Returns:
        list of kept indices into ``dets``, in descending score order (ties keep input order).
    """
    d = np.asarray(dets, dtype=np.float32).reshape(-1, 5)
    cdef Py_ssize_t n = d.shape[0]
    if n == 0:
        return []
    order_arr = np.argsort(-d[:, 4], kind='stable')
    # coordinates in score order, one contiguous array each, for a cache-friendly inner loop
    cdef float[::1] x1 = np.ascontiguousarray(d[order_arr, 0])
    cdef float[::1] y1 = np.ascontiguousarray(d[order_arr, 1])
    cdef float[::1] x2 = np.ascontiguousarray(d[order_arr, 2])
    cdef float[::1] y2 = np.ascontiguousarray(d[order_arr, 3])
    cdef float[::1] areas = np.ascontiguousarray(
        (d[order_arr, 2] - d[order_arr, 0] + 1) * (d[order_arr, 3] - d[order_arr, 1] + 1))
    cdef cnp.intp_t[::1] order = order_arr
    cdef unsigned char[::1] suppressed = np.zeros(n, dtype=np.uint8)
    cdef Py_ssize_t i, j
    cdef float w, h, inter, ovr
    # boxes that do not overlap have IoU 0: suppressed only when thresh <= 0
    cdef bint drop_disjoint = thresh <= 0.0
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(order[i])
        for j in range(i + 1, n):
            if suppressed[j]:
                continue
            w = min(x2[i], x2[j]) - max(x1[i], x1[j]) + 1
            h = min(y2[i], y2[j]) - max(y1[i], y1[j]) + 1
            if w <= 0 or h <= 0:
                if drop_disjoint:
                    suppressed[j] = 1
                continue
            inter = w * h
            ovr = inter / (areas[i] + areas[j] - inter)
            if ovr >= thresh:
                suppressed[j] = 1
    return keep
