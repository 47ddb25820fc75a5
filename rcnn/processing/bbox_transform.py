"""Box and landmark encodings relative to anchors, IoU and clipping.

Convention (the original pipeline's): a box ``x1 y1 x2 y2`` has width x2 - x1 + 1 and
centre x1 + 0.5 * (width - 1); likewise for heights.
"""
import numpy as np

from cython_ext.bbox import bbox_overlaps_cython

__all__ = ['bbox_overlaps', 'clip_boxes', 'nonlinear_transform', 'nonlinear_pred',
           'landmark_transform', 'landmark_pred']

_EPS = 1e-14


def bbox_overlaps(boxes, query_boxes):
    """(N, 4) x (K, 4) -> (N, K) float32 IoU with the +1 pixel convention."""
    return bbox_overlaps_cython(boxes, query_boxes)


def clip_boxes(boxes, im_shape):
    """Clip boxes to an image, in place, and return them.

    Args:
        boxes: (N, 4k) float, x1 y1 x2 y2 repeated k times.
        im_shape: (height, width[, channels]).
    """
    max_x = im_shape[1] - 1
    max_y = im_shape[0] - 1
    boxes[:, 0::4] = np.clip(boxes[:, 0::4], 0, max_x)
    boxes[:, 1::4] = np.clip(boxes[:, 1::4], 0, max_y)
    boxes[:, 2::4] = np.clip(boxes[:, 2::4], 0, max_x)
    boxes[:, 3::4] = np.clip(boxes[:, 3::4], 0, max_y)
    return boxes


def _sizes_and_centres(boxes):
    """(N, 4) boxes -> widths, heights, centre_x, centre_y, each (N,) float."""
    widths = boxes[:, 2] - boxes[:, 0] + 1.0
    heights = boxes[:, 3] - boxes[:, 1] + 1.0
    return widths, heights, boxes[:, 0] + 0.5 * (widths - 1.0), boxes[:, 1] + 0.5 * (heights - 1.0)


def nonlinear_transform(ex_rois, gt_rois):
    """Regression targets of ground-truth boxes relative to reference boxes.

    Args:
        ex_rois: (N, 4) reference boxes (anchors).
        gt_rois: (N, 4+) matched ground-truth boxes (extra columns ignored).
    Returns:
        (N, 4) float: dx, dy (centre offsets over width/height), log dw, log dh.
    """
    if len(ex_rois) != len(gt_rois):
        raise ValueError('ex_rois and gt_rois differ in length: %d vs %d'
                         % (len(ex_rois), len(gt_rois)))
    ex_w, ex_h, ex_cx, ex_cy = _sizes_and_centres(np.asarray(ex_rois, dtype=np.float64))
    gt_w, gt_h, gt_cx, gt_cy = _sizes_and_centres(np.asarray(gt_rois, dtype=np.float64)[:, :4])
    return np.stack([(gt_cx - ex_cx) / (ex_w + _EPS), (gt_cy - ex_cy) / (ex_h + _EPS),
                     np.log(gt_w / ex_w), np.log(gt_h / ex_h)], axis=1)


def nonlinear_pred(boxes, box_deltas):
    """Apply regression deltas to reference boxes (inverse of ``nonlinear_transform``).

    Args:
        boxes: (N, 4) reference boxes.
        box_deltas: (N, 4k) float, dx dy dw dh repeated k times.
    Returns:
        (N, 4k) float, predicted x1 y1 x2 y2 per group of four.
    """
    if boxes.shape[0] == 0:
        return np.zeros((0, box_deltas.shape[1]), dtype=box_deltas.dtype)
    widths, heights, ctr_x, ctr_y = _sizes_and_centres(boxes.astype(np.float64, copy=False))
    dx = box_deltas[:, 0::4]
    dy = box_deltas[:, 1::4]
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = np.exp(box_deltas[:, 2::4]) * widths[:, None]
    pred_h = np.exp(box_deltas[:, 3::4]) * heights[:, None]
    pred = np.empty(box_deltas.shape, dtype=np.result_type(box_deltas.dtype, np.float32))
    pred[:, 0::4] = pred_ctr_x - 0.5 * (pred_w - 1.0)
    pred[:, 1::4] = pred_ctr_y - 0.5 * (pred_h - 1.0)
    pred[:, 2::4] = pred_ctr_x + 0.5 * (pred_w - 1.0)
    pred[:, 3::4] = pred_ctr_y + 0.5 * (pred_h - 1.0)
    return pred


def _as_points(landmarks, what):
    """(N, 5, 2|3) points or the original's flat (N, 10) rows (x1 y1 x2 y2 ...) ->
    ``((N, 5, C) float array, flat)``."""
    landmarks = np.asarray(landmarks)
    if landmarks.ndim == 2 and landmarks.shape[1] % 2 == 0:
        return landmarks.reshape(landmarks.shape[0], landmarks.shape[1] // 2, 2), True
    if landmarks.ndim == 3 and landmarks.shape[2] in (2, 3):
        return landmarks, False
    raise ValueError('%s must be (N, P, 2), (N, P, 3) or flat (N, 2P), got shape %s'
                     % (what, landmarks.shape))


def landmark_transform(ex_rois, gt_landmarks):
    """Landmark targets relative to reference boxes.

    Args:
        ex_rois: (N, 4) reference boxes.
        gt_landmarks: (N, 5, 2) or (N, 5, 3) points (a third visibility column is ignored), or
            the original's flat (N, 10) rows ``x1 y1 x2 y2 ...``.
    Returns:
        float64 ``(x - centre_x) / width``, ``(y - centre_y) / height`` per point: (N, 5, 2),
        or flat (N, 10) when given flat rows.
    """
    points, flat = _as_points(gt_landmarks, 'gt_landmarks')
    if len(ex_rois) != len(points):
        raise ValueError('ex_rois and gt_landmarks differ in length: %d vs %d'
                         % (len(ex_rois), len(points)))
    widths, heights, ctr_x, ctr_y = _sizes_and_centres(np.asarray(ex_rois, dtype=np.float64))
    points = points.astype(np.float64)[:, :, :2]
    targets = np.empty(points.shape, dtype=np.float64)
    targets[:, :, 0] = (points[:, :, 0] - ctr_x[:, None]) / (widths[:, None] + _EPS)
    targets[:, :, 1] = (points[:, :, 1] - ctr_y[:, None]) / (heights[:, None] + _EPS)
    return targets.reshape(len(targets), -1) if flat else targets


def landmark_pred(boxes, landmark_deltas):
    """Decode landmark deltas (inverse of ``landmark_transform``).

    Args:
        boxes: (N, 4) reference boxes.
        landmark_deltas: (N, 5, 2) float, or the original's flat (N, 10) ``dx1 dy1 dx2 ...``.
    Returns:
        points in the layout given: (N, 5, 2) or flat (N, 10).
    """
    deltas, flat = _as_points(landmark_deltas, 'landmark_deltas')
    if boxes.shape[0] == 0:
        return np.zeros((0,) + tuple(np.shape(landmark_deltas)[1:]),
                        dtype=np.asarray(landmark_deltas).dtype)
    widths, heights, ctr_x, ctr_y = _sizes_and_centres(boxes.astype(np.float64, copy=False))
    pred = np.empty(deltas.shape, dtype=np.result_type(deltas.dtype, np.float32))
    pred[:, :, 0] = deltas[:, :, 0] * widths[:, None] + ctr_x[:, None]
    pred[:, :, 1] = deltas[:, :, 1] * heights[:, None] + ctr_y[:, None]
    return pred.reshape(len(pred), -1) if flat else pred
