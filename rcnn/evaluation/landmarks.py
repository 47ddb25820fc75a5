"""5-point landmark error of detected faces: NME, its cumulative error distribution, AUC.

Ground truth
    A RetinaFace train-style ``label.txt`` (face lines of 20 numbers: ``x y w h``, 5 x
    ``(px py flag)``, ``blur``; read by :func:`rcnn.dataset.label_file.read_label_file`).
    A point written ``-1 -1 -1`` is missing and excluded; a point with a flag >= 0 (visible or
    occluded, both labelled with coordinates) is scored. 4-number face lines have no points.

Predictions
    Prediction files carrying landmarks (15 values a box line, see
    :func:`rcnn.evaluation.widerface.read_prediction_file`), with raw detector scores.

Matching (one to one)
    Per image, the predictions with score >= ``min_score`` are taken in descending score order;
    each takes the not yet taken face of highest IoU (the AP evaluator's IoU: +1 pixel
    convention on ``x2 = x + w``), when that IoU >= ``iou_thresh``. Faces without points take
    part in the matching (a detection of such a face does not move on to a neighbour) but are
    not scored.

Error
    NME of a matched face = mean over its present points of the Euclidean distance between the
    predicted and the labelled point, divided by ``sqrt(w * h)`` of the ground-truth box (the
    side of the square of the box's area). Faces of zero area are not scored.

Summary at a threshold ``T`` (default :data:`NME_THRESHOLD` = 0.1, i.e. 10 % of the face size)
    * CED(x): fraction of the scored matched faces with NME <= x;
    * AUC@T = (1/T) * integral of CED over [0, T] = mean(max(0, T - e)) / T over those faces
      (1.0 when every error is 0);
    * failure rate@T: fraction of those faces with NME > T.
    Faces with points that no prediction matched are reported as a count (``missed``), not in
    the curve.
"""
import logging
import os
from dataclasses import dataclass

import numpy as np

from rcnn.dataset.label_file import NUM_LANDMARKS, MISSING, read_label_file
from rcnn.evaluation.widerface import SETTINGS, WiderGroundTruth, pairwise_iou

__all__ = ['NME_THRESHOLD', 'NME_MIN_SCORE', 'LandmarkGroundTruth', 'LandmarkResult',
           'load_landmark_ground_truth', 'match_one_to_one', 'face_nme', 'image_nme',
           'evaluate_landmarks', 'ced_curve', 'ced_auc']

logger = logging.getLogger(__name__)

#: failure threshold of the NME (fraction of sqrt(w * h) of the face box)
NME_THRESHOLD = 0.1
#: predictions below this raw score are not matched (the detector's default threshold)
NME_MIN_SCORE = 0.5


@dataclass
class LandmarkGroundTruth:
    """Faces with their labelled points.

    Attributes:
        boxes: :class:`rcnn.evaluation.widerface.WiderGroundTruth` of the same images (every
            face kept in every setting); gives the image names and ``x y w h`` boxes.
        points: per image, (G_i, 5, 2) float64 ``x y`` of the 5 points, NaN where missing.
    """
    boxes: WiderGroundTruth
    points: list

    @property
    def num_images(self):
        return self.boxes.num_images

    def num_faces_with_points(self):
        return int(sum(np.count_nonzero(np.isfinite(p[:, :, 0]).any(axis=1))
                       for p in self.points))


def load_landmark_ground_truth(label_path):
    """Read the faces and points of a train-style ``label.txt``.

    Raises:
        FileNotFoundError / :class:`rcnn.dataset.label_file.LabelFormatError` (file:line), or
        ValueError naming the file when no face line carries a point.
    """
    parsed = read_label_file(label_path)
    points = parsed.face_rows[:, 4:4 + 3 * NUM_LANDMARKS].reshape(-1, NUM_LANDMARKS, 3)
    missing = (points[:, :, 0] == MISSING) & (points[:, :, 1] == MISSING)
    if not len(points) or missing.all():
        raise ValueError('%s: no face line carries landmarks (the 20-number train format "x y '
                         'w h" + 5 x "px py flag" + "blur" is needed for the landmark error)'
                         % label_path)
    xy = np.where(missing[:, :, None], np.nan, points[:, :, :2])
    ends = np.cumsum(parsed.faces_per_image())[:-1]
    boxes = [np.ascontiguousarray(b) for b in np.split(parsed.face_rows[:, :4], ends)]
    all_faces = np.ones(len(parsed.face_rows), dtype=bool)
    gt = WiderGroundTruth([os.path.dirname(p) for p in parsed.image_names],
                          [os.path.splitext(os.path.basename(p))[0] for p in parsed.image_names],
                          boxes, {s: all_faces for s in SETTINGS}, source=label_path)
    return LandmarkGroundTruth(gt, np.split(xy, ends))


def match_one_to_one(pred_boxes, gt_boxes, iou_thresh=0.5):
    """Greedy one-to-one matching of predictions (already in descending score order).

    Args:
        pred_boxes: (P, 4+) ``x y w h``.
        gt_boxes: (G, 4+) ``x y w h``.
    Returns:
        (G,) int64: the index of the prediction matched to each face, -1 for none.
    """
    match = np.full(len(gt_boxes), -1, dtype=np.int64)
    if not len(pred_boxes) or not len(gt_boxes):
        return match
    iou = pairwise_iou(_xyxy(pred_boxes), _xyxy(gt_boxes))
    iou[iou < iou_thresh] = -1.0
    # a loop over predictions is inherent to greedy matching; only those overlapping some
    # face enough are visited, and it stops once every face is taken
    for p in np.flatnonzero((iou >= 0).any(axis=1)):
        row = np.where(match < 0, iou[p], -1.0)
        best = int(row.argmax())
        if row[best] >= 0:
            match[best] = p
            if (match >= 0).all():
                break
    return match


def _xyxy(boxes):
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:4]], axis=1)


def face_nme(pred_points, gt_points, gt_boxes):
    """NME of faces (module docstring).

    Args:
        pred_points: (F, 5, 2) predicted points.
        gt_points: (F, 5, 2) labelled points, NaN where missing.
        gt_boxes: (F, 4+) ``x y w h`` of the labelled faces.
    Returns:
        (F,) float64; NaN for a face without points or of zero area.
    """
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    distance = np.linalg.norm(np.asarray(pred_points, np.float64) -
                              np.asarray(gt_points, np.float64), axis=2)       # (F, 5)
    present = np.isfinite(distance)
    count = present.sum(axis=1)
    mean = np.where(present, distance, 0.0).sum(axis=1) / np.maximum(count, 1)
    size = np.sqrt(np.maximum(gt_boxes[:, 2], 0.0) * np.maximum(gt_boxes[:, 3], 0.0))
    with np.errstate(divide='ignore', invalid='ignore'):
        nme = mean / size
    return np.where((count > 0) & (size > 0), nme, np.nan)


def image_nme(pred_boxes, pred_points, gt_boxes, gt_points, iou_thresh=0.5,
              min_score=NME_MIN_SCORE):
    """(G,) NME of each face of one image; NaN where unmatched or not scored.

    Args:
        pred_boxes: (P, 5) ``x y w h score``; pred_points (P, 5, 2).
        gt_boxes: (G, 4) ``x y w h``; gt_points (G, 5, 2), NaN where missing.
    """
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 5)
    keep = np.flatnonzero(pred_boxes[:, 4] >= min_score)
    order = keep[np.argsort(-pred_boxes[keep, 4], kind='stable')]
    match = match_one_to_one(pred_boxes[order], gt_boxes, iou_thresh)
    nme = np.full(len(gt_boxes), np.nan)
    hit = np.flatnonzero(match >= 0)
    if len(hit):
        chosen = np.asarray(pred_points, np.float64)[order[match[hit]]]
        nme[hit] = face_nme(chosen, np.asarray(gt_points)[hit], np.asarray(gt_boxes)[hit])
    return nme


def ced_curve(errors, threshold=NME_THRESHOLD, num=201):
    """Cumulative error distribution: (num,) x in [0, threshold] and the fraction <= x."""
    x = np.linspace(0.0, threshold, num)
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    if not len(errors):
        return x, np.full(num, np.nan)
    return x, np.searchsorted(errors, x, side='right') / len(errors)


def ced_auc(errors, threshold=NME_THRESHOLD):
    """Area under the CED over [0, threshold], normalised to [0, 1] (exact, not sampled)."""
    errors = np.asarray(errors, dtype=np.float64)
    if not len(errors):
        return float('nan')
    return float(np.mean(np.maximum(threshold - errors, 0.0)) / threshold)


@dataclass
class LandmarkResult:
    """Landmark error of a prediction set.

    Attributes:
        errors: (M,) NME of the scored matched faces.
        faces: faces with at least one labelled point.
        missed: of those, how many no prediction matched.
        threshold: the failure threshold ``T``.
        min_score: predictions below it were not matched.
        files_without_landmarks: images whose prediction file has boxes but no landmarks.
    """
    errors: np.ndarray
    faces: int
    missed: int
    threshold: float
    min_score: float
    files_without_landmarks: int = 0

    @property
    def matched(self):
        return len(self.errors)

    @property
    def mean_nme(self):
        return float(np.mean(self.errors)) if len(self.errors) else float('nan')

    @property
    def auc(self):
        return ced_auc(self.errors, self.threshold)

    @property
    def failure_rate(self):
        if not len(self.errors):
            return float('nan')
        return float(np.mean(self.errors > self.threshold))

    def summary(self):
        """JSON-ready dict of the figures."""
        return {'nme': self.mean_nme, 'nme_auc': self.auc, 'nme_failure_rate': self.failure_rate,
                'nme_threshold': self.threshold, 'nme_min_score': self.min_score,
                'nme_faces': self.faces, 'nme_matched': self.matched, 'nme_missed': self.missed}


def evaluate_landmarks(predictions, pred_points, truth, iou_thresh=0.5,
                       min_score=NME_MIN_SCORE, threshold=NME_THRESHOLD):
    """Landmark error of predictions read for the images of ``truth``.

    Args:
        predictions: per image of ``truth.boxes``, (N_i, 5) ``x y w h score``.
        pred_points: per image, (N_i, 5, 2) or None (file without landmarks / no file).
        truth: :class:`LandmarkGroundTruth`.
    Returns:
        :class:`LandmarkResult`, or None when no prediction file with boxes has landmarks.
    """
    if len(predictions) != truth.num_images or len(pred_points) != truth.num_images:
        raise ValueError('%d / %d prediction arrays for %d ground-truth images'
                         % (len(predictions), len(pred_points), truth.num_images))
    errors, faces, missed, without = [], 0, 0, 0
    for boxes, points, gt_boxes, gt_points in zip(predictions, pred_points,
                                                   truth.boxes.boxes, truth.points):
        scored = np.isfinite(gt_points[:, :, 0]).any(axis=1)
        faces += int(np.count_nonzero(scored))
        if points is None:
            without += int(len(boxes) > 0)
            missed += int(np.count_nonzero(scored))
            continue
        nme = image_nme(boxes, points, gt_boxes, gt_points, iou_thresh, min_score)
        errors.append(nme[np.isfinite(nme)])
        missed += int(np.count_nonzero(scored & ~np.isfinite(nme)))
    with_boxes = sum(1 for boxes in predictions if len(boxes))
    if with_boxes and without == with_boxes:
        return None
    if without:
        logger.warning('%d of %d prediction files with boxes carry no landmarks (their faces '
                       'count as missed in the landmark error)', without, with_boxes)
    return LandmarkResult(np.concatenate([np.zeros(0)] + errors), faces, missed,
                          float(threshold), float(min_score), without)
