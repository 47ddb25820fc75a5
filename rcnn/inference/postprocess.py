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
        mirrored the same way and points reordered by :data:`FLIP_LANDMARK_ORDER`.
    """
    detections.boxes[:] = mirror_boxes(detections.boxes, width)
    detections.landmarks = mirror_landmarks(detections.landmarks, width)
    return detections


def bbox_vote(dets, landmarks, iou_thresh, max_results=VOTE_MAX_RESULTS):
    """Box voting, as the original ``bbox_vote`` (including its quirk).

    Repeatedly take the highest-scoring remaining box and every remaining box whose IoU with it
    (+1 convention) is >= ``iou_thresh`` (the top box included) as a cluster, and remove the
    cluster. A cluster of two or more boxes yields the score-weighted mean of its boxes with
    the cluster's maximum score. **A cluster of a single box is dropped, unless it is the last
    cluster** (nothing remains after it), in which case that box is kept as is. This quirk of
    the original removes isolated low-score boxes and shapes the published WIDER FACE numbers,
    so it is kept. At most ``max_results`` faces are returned.

    Unlike the original (which returned no landmarks when voting), each face carries the
    landmarks of its cluster's top box. The original returned a placeholder box for an empty
    input; here an empty input gives an empty result (``detect`` never votes on nothing).

    Args:
        dets: (N, 5) float, x1 y1 x2 y2 score, sorted by descending score.
        landmarks: (N, 5, 2) float.
        iou_thresh: clustering IoU.
        max_results: cap on the number of faces.
    Returns:
        (M, 5) float32 faces in cluster order (descending score), (M, 5, 2) float32 landmarks.
    """
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    landmarks = np.asarray(landmarks, dtype=np.float32).reshape(-1, NUM_LANDMARKS, 2)
    if len(dets) != len(landmarks):
        raise ValueError('dets and landmarks differ in length: %d vs %d'
                         % (len(dets), len(landmarks)))
    remaining = np.arange(len(dets))
    faces, points = [], []
    while remaining.size and len(faces) < max_results:
        top = remaining[0]
        in_cluster = bbox_overlaps(dets[remaining, :4], dets[top:top + 1, :4])[:, 0] >= iou_thresh
        cluster = remaining[in_cluster]
        remaining = remaining[~in_cluster]
        if cluster.size <= 1:
            if remaining.size == 0:          # the quirk: a lone box survives only when last
                faces.append(dets[top])
                points.append(landmarks[top])
            continue
        weights = dets[cluster, 4]
        mean_box = (dets[cluster, :4] * weights[:, None]).sum(axis=0) / weights.sum()
        faces.append(np.append(mean_box, weights.max()))
        points.append(landmarks[top])
    if not faces:
        return empty_faces()
    return np.asarray(faces, dtype=np.float32), np.asarray(points, dtype=np.float32)


def merge_detections(detections, nms_thresh, vote=False):
    """Final faces from the pooled candidates of every pass.

    Candidates are sorted by descending score (stable), then reduced by greedy NMS (a box whose
    IoU with a kept, higher-scoring box is >= ``nms_thresh`` is suppressed, as the original's
    ``cpu_nms``) or, with ``vote``,
    by :func:`bbox_vote` at IoU >= ``nms_thresh``.

    Args:
        detections: :class:`Detections` in original-image coordinates.
    Returns:
        faces (N, 5) float32 x1 y1 x2 y2 score, landmarks (N, 5, 2) float32, by descending score.
    """
    if len(detections) == 0:
        return empty_faces()
    order = np.argsort(-detections.scores, kind='stable')
    dets = np.empty((len(order), 5), dtype=np.float32)
    dets[:, :4] = detections.boxes[order]
    dets[:, 4] = detections.scores[order]
    landmarks = detections.landmarks[order]
    if vote:
        return bbox_vote(dets, landmarks, nms_thresh)
    keep = np.asarray(cpu_nms(dets, nms_thresh), dtype=np.int64)
    return dets[keep], np.ascontiguousarray(landmarks[keep], dtype=np.float32)
