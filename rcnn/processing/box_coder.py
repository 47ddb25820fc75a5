"""The box and landmark coder: regression targets for training, and their inverse for inference.

One object, built from the recipe's ``TRAIN.BBOX_STDS`` (4 values, dx dy dw dh) and
``TRAIN.LANDMARK_STD`` (one value for every landmark coordinate), used by anchor labelling
(:mod:`rcnn.io.anchor_targets`, :meth:`BoxCoder.encode_boxes` /
:meth:`BoxCoder.encode_landmarks`) and by the decoder (:mod:`rcnn.inference.postprocess`,
:meth:`BoxCoder.decode_boxes` / :meth:`BoxCoder.decode_landmarks`), so that a model trained
with non-unit stds decodes right.

Encoding (training targets, as the original ``assign_anchor_fpn``)::

    box target      = nonlinear_transform(anchor, face box) / BBOX_STDS
    landmark target = landmark_transform(anchor, face points) / LANDMARK_STD

computed in float64, rounded to float32, then divided in float32 (the order the training
labels always had, so the batches stay bit-identical). The extra values of the larger heads are
scaled as the original's column slicing scales them (its ``bbox_targets[:, 0::4] /=
BBOX_STDS[0]`` on 5-wide rows also divides the fifth column; ``landmark_targets /=
LANDMARK_STD`` divides all 15 values), in both directions::

    blur target       = blur / BBOX_STDS[0]            (USE_BLUR)
    visibility target = visibility / LANDMARK_STD      (USE_OCCLUSION)
 Decoding multiplies the network's deltas
by the stds first (as the original detector's ``bbox_stds`` / ``landmark_std``) and applies
``nonlinear_pred`` / ``landmark_pred``. With the defaults (all 1, the released models) the
multiplications are skipped: the result is bit for bit the plain kernels'.

The kernels (:mod:`rcnn.processing.bbox_transform`: ``nonlinear_transform``,
``nonlinear_pred``, ``landmark_transform``, ``landmark_pred``) keep their original names.
"""
import numpy as np

from rcnn.model_layout import BOX_LEN, LANDMARK_LEN, NUM_LANDMARKS
from rcnn.processing.bbox_transform import (landmark_pred, landmark_transform, nonlinear_pred,
                                            nonlinear_transform)

__all__ = ['BoxCoder', 'DEFAULT_BBOX_STDS', 'DEFAULT_LANDMARK_STD']

#: the original recipe's values (and the released models')
DEFAULT_BBOX_STDS = (1.0, 1.0, 1.0, 1.0)
DEFAULT_LANDMARK_STD = 1.0


class BoxCoder(object):
    """Encode faces relative to anchors and decode network deltas back.

    Args:
        bbox_stds: 4 positive floats dividing the dx, dy, dw, dh targets.
        landmark_std: positive float dividing every landmark target.
    Raises:
        ValueError: wrong count, or a value that is not a positive finite number.
    """

    def __init__(self, bbox_stds=DEFAULT_BBOX_STDS, landmark_std=DEFAULT_LANDMARK_STD):
        stds = np.asarray(bbox_stds, dtype=np.float64).reshape(-1)
        if stds.shape != (BOX_LEN,) or not np.all(np.isfinite(stds)) or np.any(stds <= 0):
            raise ValueError('BBOX_STDS must be %d positive numbers, got %r'
                             % (BOX_LEN, bbox_stds))
        landmark_std = float(landmark_std)
        if not (np.isfinite(landmark_std) and landmark_std > 0):
            raise ValueError('LANDMARK_STD must be a positive number, got %r' % (landmark_std,))
        self.bbox_stds = tuple(float(v) for v in stds)
        self.landmark_std = landmark_std
        self._box_stds32 = stds.astype(np.float32)
        self._landmark_std32 = np.float32(landmark_std)
        self._unit_boxes = bool(np.all(stds == 1.0))
        self._unit_landmarks = landmark_std == 1.0

    @classmethod
    def from_config(cls, cfg):
        """The coder of a recipe: ``cfg.TRAIN.BBOX_STDS`` and ``cfg.TRAIN.LANDMARK_STD``."""
        return cls(cfg.TRAIN.BBOX_STDS, cfg.TRAIN.LANDMARK_STD)

    @property
    def is_identity(self):
        """True when every std is 1 (the released models' coder)."""
        return self._unit_boxes and self._unit_landmarks

    # ------------------------------------------------------------------ training targets

    def encode_boxes(self, anchors, gt_boxes):
        """(N, 4) anchors, (N, 4+) matched face boxes -> (N, 4) float32 targets."""
        targets = nonlinear_transform(anchors, gt_boxes).astype(np.float32)
        if not self._unit_boxes:
            targets /= self._box_stds32
        return targets

    def encode_landmarks(self, anchors, gt_points):
        """(N, 4) anchors, (N, 5, 2+) matched face points -> (N, 10) float32 targets, x then y
        per point."""
        targets = np.asarray(landmark_transform(anchors, gt_points))
        targets = targets.reshape(-1, LANDMARK_LEN).astype(np.float32)
        if not self._unit_landmarks:
            targets /= self._landmark_std32
        return targets

    def encode_blur(self, blur):
        """(N,) raw blur values -> (N,) float32 targets (module docstring)."""
        targets = np.asarray(blur, dtype=np.float32)
        return targets if self.bbox_stds[0] == 1.0 else targets / self._box_stds32[0]

    def encode_visibility(self, visibility):
        """(...) raw visibility values -> float32 targets of the same shape."""
        targets = np.asarray(visibility, dtype=np.float32)
        return targets if self._unit_landmarks else targets / self._landmark_std32

    # ------------------------------------------------------------------ inference

    def decode_boxes(self, anchors, deltas):
        """(N, 4) anchors, (N, 4) network box deltas -> (N, 4) boxes x1 y1 x2 y2."""
        if not self._unit_boxes:
            deltas = deltas * self._box_stds32.astype(deltas.dtype, copy=False)
        return nonlinear_pred(anchors, deltas)

    def decode_landmarks(self, anchors, deltas):
        """(N, 4) anchors, (N, 5, P) network landmark deltas -> (N, 5, P) points.

        P = 2: x, y deltas. P = 3 (``USE_OCCLUSION``): the third value of each point is the
        head's raw visibility output, returned as it is (not a coordinate: no std, no anchor).
        """
        deltas = np.asarray(deltas)
        point_len = deltas.shape[-1] if deltas.ndim == 3 else 2
        deltas = deltas.reshape(-1, NUM_LANDMARKS, point_len)
        raw = deltas[:, :, 2:]
        if point_len > 2:
            deltas = deltas[:, :, :2]
        if not self._unit_landmarks:
            deltas = deltas * deltas.dtype.type(self._landmark_std32)
        points = landmark_pred(anchors, deltas)
        if point_len > 2:
            points = np.concatenate([points, raw.astype(points.dtype, copy=False)], axis=2)
        return points

    def decode_blur(self, deltas):
        """(N,) network blur outputs -> (N,) blur values (inverse of :meth:`encode_blur`)."""
        return deltas if self.bbox_stds[0] == 1.0 else \
            deltas * self._box_stds32[0].astype(deltas.dtype, copy=False)

    def decode_visibility(self, deltas):
        """Network visibility outputs -> visibility values (inverse of
        :meth:`encode_visibility`)."""
        if self._unit_landmarks:
            return deltas
        return deltas * deltas.dtype.type(self._landmark_std32)

    def to_dict(self):
        """The recipe values, JSON-ready."""
        return {'bbox_stds': list(self.bbox_stds), 'landmark_std': self.landmark_std}

    def __eq__(self, other):
        return (isinstance(other, BoxCoder) and self.bbox_stds == other.bbox_stds and
                self.landmark_std == other.landmark_std)

    def __repr__(self):
        return 'BoxCoder(bbox_stds=%r, landmark_std=%r)' % (self.bbox_stds, self.landmark_std)
