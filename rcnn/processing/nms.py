"""Non-maximum suppression under the original pipeline's names: :func:`nms` (NumPy),
:func:`py_nms_wrapper` and :func:`cpu_nms_wrapper` (the Cython kernel ``cpu_nms``, which the
detector calls directly)."""
import numpy as np

from cython_ext.cpu_nms import cpu_nms

__all__ = ['nms', 'py_nms_wrapper', 'cpu_nms_wrapper']


def nms(dets, thresh):
    """Greedy NMS in NumPy; same result as ``cpu_nms``.

    Args:
        dets: (N, 5) float, x1 y1 x2 y2 score.
        thresh: suppress a box whose IoU (+1 convention, float32) with a kept box is >= thresh
            (compared in double precision, as the original's kernel).
    Returns:
        list of kept indices in descending score order (ties keep input order).
    """
    dets = np.asarray(dets, dtype=np.float32).reshape(-1, 5)
    x1, y1, x2, y2, scores = dets.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind='stable')
    keep = []
    while order.size:
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        inter_w = np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1
        inter_h = np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1
        inter = np.maximum(inter_w, 0) * np.maximum(inter_h, 0)
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou.astype(np.float64) < thresh]
    return keep


def py_nms_wrapper(thresh):
    """Return ``nms(dets) -> keep`` using the NumPy implementation."""
    def _nms(dets):
        return nms(dets, thresh)
    return _nms


def cpu_nms_wrapper(thresh):
    """Return ``nms(dets) -> keep`` using the Cython kernel."""
    def _nms(dets):
        return cpu_nms(np.asarray(dets, dtype=np.float32), thresh)
    return _nms
