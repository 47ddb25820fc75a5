"""Candidate faces to results: flip-back, NMS and box voting.

Candidates come from :func:`rcnn.processing.detections.decode_detections`; a flipped pass is
mirrored back (:func:`flip_back`), then the candidates of an image are merged
(:func:`merge_detections`: the original's NMS, or its box voting).
"""
import numpy as np

from cython_ext.cpu_nms import cpu_nms
from rcnn.model_layout import NUM_LANDMARKS
from rcnn.processing.bbox_transform import bbox_overlaps
from rcnn.processing.detections import empty_faces
from rcnn.processing.mirror import mirror_boxes, mirror_landmarks

__all__ = ['VOTE_MAX_RESULTS', 'flip_back', 'merge_detections', 'bbox_vote']

#: box voting keeps at most this many faces (as the original)
VOTE_MAX_RESULTS = 750


def flip_back(detections, width):
    """Mirror detections of a horizontally flipped input back, in place (the one mirror
    formula, :mod:`rcnn.processing.mirror`).

    Args:
        detections: :class:`rcnn.processing.detections.Detections` found on the flipped image.
        width: width of the flipped image in pixels (x' = width - x - 1).
    Returns:
        ``detections``: boxes with x1' = width - x2 - 1, x2' = width - x1 - 1; landmark x
        mirrored the same way and points reordered by :data:`FLIP_LANDMARK_ORDER` (a point's
        visibility value moves with it); blur values unchanged.
    """
    detections.boxes[:] = mirror_boxes(detections.boxes, width)
    if detections.landmarks is not None:
        detections.landmarks = mirror_landmarks(detections.landmarks, width)
    return detections


def bbox_vote(dets, landmarks, iou_thresh, max_results=VOTE_MAX_RESULTS, extras=None):
    """Box voting, as the original ``bbox_vote`` (including its quirk).

    Repeatedly take the highest-scoring remaining box and every remaining box whose IoU with it
    (+1 convention) is >= ``iou_thresh`` (the top box included) as a cluster, and remove the
    cluster. A cluster of two or more boxes yields the score-weighted mean of its boxes with
    the cluster's maximum score. **A cluster of a single box is dropped, unless it is the last
    cluster** (nothing remains after it), in which case that box is kept as is. This quirk of
    the original removes isolated low-score boxes and shapes the published WIDER FACE numbers,
    so it is kept. At most ``max_results`` faces are returned.

    Unlike the original (which returned no landmarks when voting), each face carries the
    landmarks -- and the blur value -- of its cluster's top box (the original weighted by its
    last column, which is the blur value when there is one). The original returned a
    placeholder box for an empty input; here an empty input gives an empty result (``detect``
    never votes on nothing).

    Args:
        dets: (N, 5) float, x1 y1 x2 y2 score, sorted by descending score.
        landmarks: (N, 5, P) float, or None for a model without landmarks.
        iou_thresh: clustering IoU.
        max_results: cap on the number of faces.
        extras: (N, E) raw box-head values after the deltas (the blur value), or None.
    Returns:
        (M, 5 + E) float32 faces in cluster order (descending score), (M, 5, P) float32
        landmarks (None when ``landmarks`` is None).
    """
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    extras = np.zeros((len(dets), 0)) if extras is None else np.asarray(extras)
    if extras.ndim != 2 or len(extras) != len(dets):
        raise ValueError('extras must be (N, E) for the %d dets, got shape %s'
                         % (len(dets), extras.shape))
    point_len = 2
    if landmarks is not None:
        landmarks = np.asarray(landmarks, dtype=np.float32)
        point_len = landmarks.shape[-1] if landmarks.ndim == 3 else 2
        landmarks = landmarks.reshape(-1, NUM_LANDMARKS, point_len)
        if len(dets) != len(landmarks):
            raise ValueError('dets and landmarks differ in length: %d vs %d'
                             % (len(dets), len(landmarks)))
    remaining = np.arange(len(dets))
    faces, tops = [], []
    while remaining.size and len(faces) < max_results:
        top = remaining[0]
        in_cluster = bbox_overlaps(dets[remaining, :4], dets[top:top + 1, :4])[:, 0] >= iou_thresh
        cluster = remaining[in_cluster]
        remaining = remaining[~in_cluster]
        if cluster.size <= 1:
            if remaining.size == 0:          # the quirk: a lone box survives only when last
                faces.append(dets[top])
                tops.append(top)
            continue
        weights = dets[cluster, 4]
        mean_box = (dets[cluster, :4] * weights[:, None]).sum(axis=0) / weights.sum()
        faces.append(np.append(mean_box, weights.max()))
        tops.append(top)
    if not faces:
        return empty_faces(extras.shape[1], point_len, landmarks is not None)
    faces = np.hstack([np.asarray(faces), extras[tops]]).astype(np.float32)
    points = None if landmarks is None else np.asarray(landmarks[tops], dtype=np.float32)
    return faces, points


def merge_detections(detections, nms_thresh, vote=False):
    """Final faces from the pooled candidates of every pass.

    Candidates are sorted by descending score (stable), then reduced by greedy NMS (a box whose
    IoU with a kept, higher-scoring box is >= ``nms_thresh`` is suppressed, as the original's
    ``cpu_nms``) or, with ``vote``,
    by :func:`bbox_vote` at IoU >= ``nms_thresh``.

    Args:
        detections: :class:`Detections` in original-image coordinates.
    Returns:
        faces (N, 5 + E) float32 x1 y1 x2 y2 score [blur], landmarks (N, 5, P) float32 (None
        for a model without landmarks), by descending score.
    """
    has_landmarks = detections.landmarks is not None
    point_len = detections.landmarks.shape[2] if has_landmarks else 2
    if len(detections) == 0:
        return empty_faces(detections.extras.shape[1], point_len, has_landmarks)
    order = np.argsort(-detections.scores, kind='stable')
    dets = np.empty((len(order), 5), dtype=np.float32)
    dets[:, :4] = detections.boxes[order]
    dets[:, 4] = detections.scores[order]
    landmarks = detections.landmarks[order] if has_landmarks else None
    extras = detections.extras[order]
    if vote:
        return bbox_vote(dets, landmarks, nms_thresh, extras=extras)
    keep = np.asarray(cpu_nms(dets, nms_thresh), dtype=np.int64)
    faces = dets[keep]
    if extras.shape[1]:
        faces = np.hstack([faces, extras[keep]]).astype(np.float32, copy=False)
    if has_landmarks:
        landmarks = np.ascontiguousarray(landmarks[keep], dtype=np.float32)
    return faces, landmarks
