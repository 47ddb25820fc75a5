"""From the deploy graph's outputs to candidate faces: the anchors that pass the threshold,
decoded.

The detector (:mod:`rcnn.inference`) and the deploy checks (:mod:`rcnn.deploy`) both decode
with it, so it lives below both.

The deploy graph has three outputs per feature stride ``s`` (32, 16, 8 for ``net3``), each
``(B, C, H_s, W_s)``:

* ``face_rpn_cls_prob_reshape_stride{s}``: C = 2A, channels ``[0, A)`` background and
  ``[A, 2A)`` face probability of anchor ``a``;
* ``face_rpn_bbox_pred_stride{s}``: C = 4A, channel ``4a + k`` = delta k (dx dy dw dh) of anchor a;
* ``face_rpn_landmark_pred_stride{s}``: C = 10A, channel ``10a + 2p + c`` = coordinate c of
  point p (left eye, right eye, nose, left and right mouth corners) of anchor a.

Anchors are laid out position-major, anchor-minor (``anchors_plane(H, W, ...).reshape(-1, 4)``:
index ``(h * W + w) * A + a``), which is also the order in which passing anchors are pooled,
as in the original. Only the anchors whose face probability reaches the threshold are decoded,
and the strides are decoded together (one :class:`rcnn.processing.box_coder.BoxCoder` call,
which multiplies the deltas by the recipe's stds, then ``nonlinear_pred`` / ``landmark_pred``).
"""
import numpy as np

from rcnn.model_layout import BOX_LEN, DEPLOY_OUTPUTS_PER_STRIDE, NUM_LANDMARKS
from rcnn.processing.bbox_transform import clip_boxes
from rcnn.processing.box_coder import BoxCoder

__all__ = ['Detections', 'decode_detections', 'empty_faces']

_DEFAULT_CODER = BoxCoder()


def empty_faces():
    """The result of a detection that found nothing: (0, 5) and (0, 5, 2) float32."""
    return np.zeros((0, 5), dtype=np.float32), np.zeros((0, NUM_LANDMARKS, 2), dtype=np.float32)


class Detections(object):
    """Candidate faces of one or more passes, before NMS.

    Attributes:
        boxes: (N, 4) float32, x1 y1 x2 y2 in the coordinates of the pass input.
        scores: (N,) float32 face probabilities.
        landmarks: (N, 5, 2) float32 points.
    """
    __slots__ = ('boxes', 'scores', 'landmarks')

    def __init__(self, boxes, scores, landmarks):
        self.boxes = boxes
        self.scores = scores
        self.landmarks = landmarks

    def __len__(self):
        return len(self.scores)

    @classmethod
    def concatenate(cls, parts):
        parts = list(parts)
        if not parts:
            faces, points = empty_faces()
            return cls(faces[:, :4], faces[:, 4], points)
        return cls(np.concatenate([p.boxes for p in parts]),
                   np.concatenate([p.scores for p in parts]),
                   np.concatenate([p.landmarks for p in parts]))


def _select_level(scores, box_out, landmark_out, num_anchors, threshold, batch_index,
                  decay=1.0):
    """Passing anchors of one stride.

    Args:
        scores: (B, 2A, H, W) class probabilities; box_out (B, 4A, H, W); landmark_out
            (B, 10A, H, W).
        decay: factor applied to the face scores before thresholding.
    Returns:
        flat anchor indices (n,) int64 (position-major, anchor-minor), their scores (n,),
        box deltas (n, 4) and landmark deltas (n, 5, 2).
    """
    height, width = box_out.shape[2], box_out.shape[3]
    face_scores = scores[batch_index, num_anchors:, :height, :width]           # (A, H, W)
    if decay != 1.0:
        face_scores = face_scores * np.float32(decay)
    rows, cols, anchor_ids = np.nonzero((face_scores >= threshold).transpose(1, 2, 0))
    flat = (rows.astype(np.int64) * width + cols) * num_anchors + anchor_ids
    level_scores = face_scores[anchor_ids, rows, cols]
    deltas = box_out[batch_index].reshape(num_anchors, BOX_LEN, height, width)
    deltas = deltas[anchor_ids, :, rows, cols]                                  # (n, 4)
    points = landmark_out[batch_index].reshape(num_anchors, NUM_LANDMARKS, 2, height, width)
    points = points[anchor_ids, :, :, rows, cols]                               # (n, 5, 2)
    return flat, level_scores, deltas, points


def decode_detections(outputs, strides, anchor_cache, threshold, clip_shape, batch_index=0,
                      score_decay=None, coder=None):
    """Faces of one network pass whose score reaches ``threshold``.

    Args:
        outputs: the 9 deploy outputs in :func:`rcnn.model_layout.deploy_output_names` order,
            numpy arrays
            (B, C, H_s, W_s).
        strides: e.g. (32, 16, 8), the order of ``outputs``.
        anchor_cache: :class:`AnchorCache` with base anchors for those strides.
        threshold: minimum face probability (after ``score_decay``).
        clip_shape: (height, width) the boxes are clipped to, in input pixels.
        batch_index: which image of the batch.
        score_decay: {stride: factor} multiplying that stride's scores before thresholding
            (the original's ``decay4`` on a stride-4 level).
        coder: the :class:`rcnn.processing.box_coder.BoxCoder` of the model's recipe (None: the
            released models' coder, every std 1).
    Returns:
        :class:`Detections` in input coordinates, pooled stride by stride (coarse first).
    """
    per_stride = DEPLOY_OUTPUTS_PER_STRIDE
    if len(outputs) != per_stride * len(strides):
        raise ValueError('expected %d outputs (%d per stride %s), got %d'
                         % (per_stride * len(strides), per_stride, list(strides), len(outputs)))
    anchors, scores, deltas, points = [], [], [], []
    for level, stride in enumerate(strides):
        cls_out, box_out, landmark_out = outputs[per_stride * level:per_stride * (level + 1)]
        num_anchors = anchor_cache.num_anchors(stride)
        decay = (score_decay or {}).get(stride, 1.0)
        flat, level_scores, level_deltas, level_points = _select_level(
            cls_out, box_out, landmark_out, num_anchors, threshold, batch_index, decay)
        plane = anchor_cache.get(stride, box_out.shape[2], box_out.shape[3])
        anchors.append(plane[flat])
        scores.append(level_scores)
        deltas.append(level_deltas)
        points.append(level_points)
    coder = _DEFAULT_CODER if coder is None else coder
    anchors = np.concatenate(anchors)
    boxes = coder.decode_boxes(anchors, np.concatenate(deltas).astype(np.float32, copy=False))
    clip_boxes(boxes, clip_shape)
    landmarks = coder.decode_landmarks(anchors,
                                       np.concatenate(points).astype(np.float32, copy=False))
    return Detections(boxes.astype(np.float32, copy=False),
                      np.concatenate(scores).astype(np.float32, copy=False),
                      landmarks.astype(np.float32, copy=False))
