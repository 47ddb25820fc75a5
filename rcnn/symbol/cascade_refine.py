"""The cascade refine operator: labels and box targets of a cascade stage, on refined anchors.

A cascade stage (:mod:`rcnn.symbol.cascade`) is trained on the first stage's predictions, not
on the fixed anchors (the original's ``PY_OP/cascade_refine.py``). Per image and stride:

1. refined anchors: the first-stage box deltas of every anchor, times ``TRAIN.BBOX_STDS``,
   decoded on that anchor (``nonlinear_pred``; the +1 pixel convention of the whole pipeline;
   float32, log-size deltas clipped at :data:`MAX_LOG_SCALE`, where the original lets a box
   become infinite);
2. labels: each refined anchor against the crop's faces (the ``gt_boxes`` input, rows with a
   class < 0 are padding) by IoU with ``TRAIN.CASCADE_OVERLAP = [negative, positive]``: max IoU
   < negative -> 0, >= positive -> 1, otherwise -1; with ``TRAIN.RPN_FORCE_POSITIVE`` each
   face's best refined anchors are positive too (as the first stage's matcher,
   :class:`rcnn.processing.matcher.IoUMatcher`); no face in the crop -> every label 0;
3. box targets: the matched face relative to the *refined* anchor
   (``nonlinear_transform / BBOX_STDS``), so the stage learns a correction of the first
   stage's box; computed for the positive anchors only (the others have weight 0, their
   targets are 0);
4. sampling: the stage's own class scores pick the hardest ``RPN_BATCH_SIZE`` anchors (OHEM,
   :class:`rcnn.processing.sampler.OHEMSampler`, as the original does whatever
   ``RPN_ENABLE_OHEM`` says); box weights are 1 on the kept positives.

With ``USE_BLUR`` the box head has a fifth value per anchor; the gt boxes carry no blur value,
so a cascade stage's blur target and weight are 0 (the original reshapes the 5-value deltas
as 4-value ones and mislabels every anchor): the blur value comes from the first stage.

Everything is vectorised over the anchors of an image; the op loops over the images of the
batch only (each has its own number of faces). No gradient flows through it: its inputs enter
through ``BlockGrad`` and its backward writes zeros.

Op inputs (``op_type`` :data:`CASCADE_REFINE_OP_TYPE`)::

    cls_score     (B, 2, A*H*W)     the cascade stage's class scores, anchor-major
    bbox_pred_t0  (B, L*A, H, W)    the first stage's box head output (L = 4, or 5 with blur)
    gt_boxes      (B, M, 5)         x1 y1 x2 y2 class per face, padding rows -1

Op outputs::

    label         (B, A*H*W)        1 face, 0 background, -1 ignored (after OHEM)
    bbox_target   (B, L*A, H*W)     channel a*L + k at position y*W + x
    bbox_weight   (B, L*A, H*W)     1 on dx dy dw dh of the kept positives, 0 elsewhere
    pos_count     (B, 1)            kept positives per image
"""
import json

import mxnet as mx
import numpy as np

from cython_ext.bbox import bbox_overlaps_cython
from rcnn.model_layout import BOX_LEN, GT_BOX_COLUMNS
from rcnn.processing.bbox_transform import nonlinear_transform
from rcnn.processing.generate_anchor import anchors_plane
from rcnn.processing.matcher import IoUMatcher
from rcnn.processing.sampler import OHEMSampler

__all__ = ['CASCADE_REFINE_OP_TYPE', 'MAX_LOG_SCALE', 'CascadeRefiner', 'refine_anchors',
           'label_refined']

CASCADE_REFINE_OP_TYPE = 'retinaface_cascade_refine'
#: refined anchors compared with the faces near them at a time (their IoU block)
PRUNE_BLOCK = 512
#: largest log-size delta decoded (a box side grows at most ~ 62x): keeps boxes finite
MAX_LOG_SCALE = float(np.log(1000.0 / 16.0))


def refine_anchors(anchors, deltas, bbox_stds):
    """First-stage boxes: ``deltas * bbox_stds`` decoded on ``anchors`` (``nonlinear_pred``,
    in float32; log-size deltas are clipped at :data:`MAX_LOG_SCALE` so that no box is
    infinite).

    Args:
        anchors: (N, 4) float x1 y1 x2 y2, or (..., N, 4) with ``deltas`` of the same shape.
        deltas: (..., N, 4) float dx dy dw dh, as the network gives them.
        bbox_stds: 4 floats (``TRAIN.BBOX_STDS``).
    Returns:
        (..., N, 4) float32 boxes x1 y1 x2 y2.
    """
    anchors = np.asarray(anchors, dtype=np.float32)
    deltas = np.asarray(deltas, dtype=np.float32) * np.asarray(bbox_stds, dtype=np.float32)
    widths = anchors[..., 2] - anchors[..., 0] + 1.0
    heights = anchors[..., 3] - anchors[..., 1] + 1.0
    ctr_x = anchors[..., 0] + 0.5 * (widths - 1.0)
    ctr_y = anchors[..., 1] + 0.5 * (heights - 1.0)
    pred_ctr_x = deltas[..., 0] * widths + ctr_x
    pred_ctr_y = deltas[..., 1] * heights + ctr_y
    half_w = 0.5 * (np.exp(np.minimum(deltas[..., 2], MAX_LOG_SCALE)) * widths - 1.0)
    half_h = 0.5 * (np.exp(np.minimum(deltas[..., 3], MAX_LOG_SCALE)) * heights - 1.0)
    return np.stack([pred_ctr_x - half_w, pred_ctr_y - half_h,
                     pred_ctr_x + half_w, pred_ctr_y + half_h], axis=-1)


def _best_faces(boxes, faces):
    """(N, 4) boxes x (K, 4) faces, K >= 1 -> (max IoU (N,) float32, matched face (N,) int64).

    Only an intersecting face has a non-zero IoU: the boxes are taken in blocks of
    :data:`PRUNE_BLOCK` consecutive ones (neighbours on the feature map, so their refined
    boxes cover a small region) and each block is compared with the faces touching the
    bounding box of its boxes. The faces kept keep their order, so ties go to the lowest face
    index as in a dense argmax; a box touching no face gets IoU 0 and face 0.
    """
    boxes = np.ascontiguousarray(boxes, dtype=np.float32)
    faces = np.ascontiguousarray(faces, dtype=np.float32)
    max_iou = np.zeros(len(boxes), dtype=np.float32)
    matched = np.zeros(len(boxes), dtype=np.int64)
    starts = np.arange(0, len(boxes), PRUNE_BLOCK)
    if len(starts) == 0:
        return max_iou, matched
    low = np.minimum.reduceat(boxes[:, :2], starts, axis=0)       # (blocks, 2) x1 y1
    high = np.maximum.reduceat(boxes[:, 2:], starts, axis=0)      # (blocks, 2) x2 y2
    touches = ((faces[None, :, 0] <= high[:, None, 0]) & (faces[None, :, 2] >= low[:, None, 0]) &
               (faces[None, :, 1] <= high[:, None, 1]) & (faces[None, :, 3] >= low[:, None, 1]))
    for block, start in enumerate(starts):
        near = np.flatnonzero(touches[block])
        if near.size == 0:
            continue
        rows = slice(start, start + PRUNE_BLOCK)
        overlaps = bbox_overlaps_cython(boxes[rows], faces[near])
        best = overlaps.argmax(axis=1)
        max_iou[rows] = overlaps[np.arange(len(best)), best]
        matched[rows] = near[best]
    return max_iou, matched


def label_refined(refined, faces, negative_overlap, positive_overlap, force_positive=False):
    """Labels and matched faces of refined anchors (module docstring, step 2).

    Args:
        refined: (N, 4) float boxes.
        faces: (K, 4+) float face boxes (K may be 0).
        negative_overlap, positive_overlap: ``TRAIN.CASCADE_OVERLAP``.
        force_positive: ``TRAIN.RPN_FORCE_POSITIVE``.
    Returns:
        (labels (N,) float32 in {1, 0, -1}, matched face (N,) int64, or None without faces).
    """
    if len(faces) == 0:
        return np.zeros(len(refined), dtype=np.float32), None
    refined = np.asarray(refined, dtype=np.float32)
    faces = np.ascontiguousarray(np.asarray(faces, dtype=np.float32)[:, :4])
    max_iou, matched = _best_faces(refined, faces)
    labels = np.full(len(refined), -1, dtype=np.float32)
    labels[max_iou < negative_overlap] = 0
    if force_positive:
        IoUMatcher._force_positive(refined, faces, labels)
    labels[max_iou >= positive_overlap] = 1
    return labels, matched


class CascadeRefiner(object):
    """The op's computation on NumPy arrays (module docstring), for one stride.

    Args:
        base_anchors: (A, 4) float32 anchors of cell (0, 0) of this stride (dense anchors
            included), as the first stage's labels use them.
        stride: the feature stride.
        overlaps: ``(negative, positive)``, ``TRAIN.CASCADE_OVERLAP``.
        bbox_stds: ``TRAIN.BBOX_STDS``.
        sampler: :class:`OHEMSampler` of ``RPN_BATCH_SIZE`` / ``RPN_FG_FRACTION``.
        force_positive: ``TRAIN.RPN_FORCE_POSITIVE``.
    """

    def __init__(self, base_anchors, stride, overlaps, bbox_stds, sampler, force_positive=False):
        self.base_anchors = np.asarray(base_anchors, dtype=np.float32).reshape(-1, 4)
        self.stride = int(stride)
        self.negative_overlap, self.positive_overlap = (float(v) for v in overlaps)
        if not 0 <= self.negative_overlap <= self.positive_overlap <= 1:
            raise ValueError('TRAIN.CASCADE_OVERLAP must be [negative, positive] with '
                             '0 <= negative <= positive <= 1, got %s' % list(overlaps))
        self.bbox_stds = np.asarray(bbox_stds, dtype=np.float64).reshape(BOX_LEN)
        self.sampler = sampler
        self.force_positive = bool(force_positive)
        self._planes = {}

    @property
    def num_anchors(self):
        return len(self.base_anchors)

    def anchors(self, height, width):
        """(H*W*A, 4) float32 anchors of an H x W map, position-major, anchor-minor."""
        key = (int(height), int(width))
        if key not in self._planes:
            self._planes = {key: anchors_plane(height, width, self.stride,
                                               self.base_anchors).reshape(-1, 4)}
        return self._planes[key]

    def __call__(self, cls_score, bbox_pred_t0, gt_boxes):
        """Labels, box targets / weights and positive counts of a batch.

        Args:
            cls_score: (B, 2, A*H*W) the stage's class scores.
            bbox_pred_t0: (B, L*A, H, W) first-stage box deltas, L = 4 or 5.
            gt_boxes: (B, M, 5) faces, padding rows with a class < 0.
        Returns:
            label (B, A*H*W), bbox_target (B, L*A, H*W), bbox_weight (B, L*A, H*W),
            pos_count (B, 1), all float32.
        """
        batch, channels, height, width = bbox_pred_t0.shape
        num_anchors = self.num_anchors
        box_len = channels // num_anchors
        if box_len * num_anchors != channels or box_len < BOX_LEN:
            raise ValueError('%s: stride %d box deltas have %d channels, not a multiple >= %d '
                             'of %d anchors' % (CASCADE_REFINE_OP_TYPE, self.stride, channels,
                                                BOX_LEN, num_anchors))
        positions = height * width
        anchors = self.anchors(height, width)
        # (B, A, L, H, W) -> (B, H*W*A, 4): position-major, anchor-minor, like the anchors
        deltas = bbox_pred_t0.reshape(batch, num_anchors, box_len, positions)[:, :, :BOX_LEN]
        deltas = deltas.transpose(0, 3, 1, 2).reshape(batch, positions * num_anchors, BOX_LEN)
        refined = refine_anchors(anchors, deltas, self.bbox_stds)
        labels = np.empty((batch, positions * num_anchors), dtype=np.float32)
        targets = np.zeros((batch, positions * num_anchors, BOX_LEN), dtype=np.float32)
        for image in range(batch):
            faces = gt_boxes[image]
            faces = faces[faces[:, 4] >= 0, :4]
            labels[image], matched = label_refined(refined[image], faces, self.negative_overlap,
                                                   self.positive_overlap, self.force_positive)
            # only positives carry a box weight: the other targets are never read
            positive = np.flatnonzero(labels[image] == 1)
            if matched is not None and len(positive):
                with np.errstate(invalid='ignore', over='ignore', divide='ignore'):
                    encoded = nonlinear_transform(refined[image, positive],
                                                  faces[matched[positive]]) / self.bbox_stds
                targets[image, positive] = np.nan_to_num(encoded, nan=0.0, posinf=0.0,
                                                         neginf=0.0)
        # position-major (H*W, A) -> the graph's anchor-major order a*H*W + p
        labels = labels.reshape(batch, positions, num_anchors).transpose(0, 2, 1)
        labels = labels.reshape(batch, num_anchors * positions)
        fg_scores = cls_score[:, 1, :] - cls_score[:, 0, :]
        labels, anchor_weight = self.sampler.select(fg_scores, labels)
        bbox_target = np.zeros((batch, num_anchors, box_len, positions), dtype=np.float32)
        bbox_target[:, :, :BOX_LEN] = targets.reshape(
            batch, positions, num_anchors, BOX_LEN).transpose(0, 2, 3, 1)
        bbox_weight = np.zeros_like(bbox_target)
        bbox_weight[:, :, :BOX_LEN] = anchor_weight.reshape(batch, num_anchors, 1, positions)
        pos_count = anchor_weight.sum(axis=1, keepdims=True, dtype=np.float32)
        return (labels, bbox_target.reshape(batch, num_anchors * box_len, positions),
                bbox_weight.reshape(batch, num_anchors * box_len, positions), pos_count)


class _CascadeRefineOp(mx.operator.CustomOp):
    def __init__(self, refiner):
        super(_CascadeRefineOp, self).__init__()
        self.refiner = refiner

    def forward(self, is_train, req, in_data, out_data, aux):
        results = self.refiner(*(array.asnumpy() for array in in_data))
        for index, value in enumerate(results):
            self.assign(out_data[index], req[index],
                        mx.nd.array(value, ctx=out_data[index].context))

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        for index, grad in enumerate(in_grad):
            self.assign(grad, req[index], 0)


@mx.operator.register(CASCADE_REFINE_OP_TYPE)
class _CascadeRefineProp(mx.operator.CustomOpProp):
    """Op parameters are strings (MXNet passes them so): ``base_anchors`` and the lists JSON."""

    def __init__(self, stride, base_anchors, overlaps, bbox_stds, rpn_batch_size, fg_fraction,
                 force_positive='False'):
        super(_CascadeRefineProp, self).__init__(need_top_grad=False)
        sampler = OHEMSampler(int(rpn_batch_size), float(fg_fraction))
        self.refiner = CascadeRefiner(np.array(json.loads(base_anchors), dtype=np.float32),
                                      int(stride), json.loads(overlaps), json.loads(bbox_stds),
                                      sampler, force_positive == 'True')

    def list_arguments(self):
        return ['cls_score', 'bbox_pred_t0', 'gt_boxes']

    def list_outputs(self):
        return ['label', 'bbox_target', 'bbox_weight', 'pos_count']

    def infer_shape(self, in_shape):
        score, deltas, gt_boxes = (tuple(s) for s in in_shape)
        name = CASCADE_REFINE_OP_TYPE
        if len(score) != 3 or score[1] != 2:
            raise ValueError('%s: cls_score must be (B, 2, N), got %s' % (name, score))
        if len(deltas) != 4 or deltas[0] != score[0]:
            raise ValueError('%s: bbox_pred_t0 must be (B, L*A, H, W) with B = %d, got %s'
                             % (name, score[0], deltas))
        num_anchors = self.refiner.num_anchors
        if score[2] != num_anchors * deltas[2] * deltas[3] or deltas[1] % num_anchors:
            raise ValueError('%s: cls_score %s and bbox_pred_t0 %s do not fit %d anchors per '
                             'position' % (name, score, deltas, num_anchors))
        if gt_boxes and (len(gt_boxes) != 3 or gt_boxes[2] != GT_BOX_COLUMNS):
            raise ValueError('%s: gt_boxes must be (B, M, %d), got %s'
                             % (name, GT_BOX_COLUMNS, gt_boxes))
        batch, positions = score[0], deltas[2] * deltas[3]
        targets = (batch, deltas[1], positions)
        return ([score, deltas, gt_boxes],
                [(batch, score[2]), targets, targets, (batch, 1)], [])

    def create_operator(self, ctx, shapes, dtypes):
        return _CascadeRefineOp(self.refiner)
