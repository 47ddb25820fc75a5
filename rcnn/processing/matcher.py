"""The IoU matcher of anchor labelling: which face each anchor belongs to, and its label.

:class:`IoUMatcher` (NumPy + the Cython IoU kernel, no MXNet):

* every anchor is matched to the face of largest IoU (+1 pixel convention; the lowest face
  index on ties, face 0 when it overlaps none);
* IoU >= ``positive_overlap`` -> label 1, < ``negative_overlap`` -> 0, otherwise -1;
* with ``force_positive`` the anchors holding a face's best (non-zero) IoU are positive too
  (the best over every anchor, those left out by the border rule included);
* the border rule: an anchor reaching more than ``allowed_border[stride]`` pixels outside the
  input is left out (label -1, zero targets and weights; every preset uses 9999, which keeps
  them all).

Speed: the IoU of a stride is computed densely when it has at most :data:`DENSE_PAIRS`
anchor-face pairs; above, the feature map is cut into tiles of :data:`TILE_CELLS` x
:data:`TILE_CELLS` cells and each tile is compared only with the faces that can touch its
anchors. Both paths give the same labels and matches bit for bit.
"""
import numpy as np

from cython_ext.bbox import bbox_overlaps_cython

__all__ = ['IoUMatcher', 'best_faces', 'DENSE_PAIRS', 'TILE_CELLS']

DENSE_PAIRS = 200000       # anchor-face pairs of one stride computed densely
TILE_CELLS = 16            # tile side in feature cells for the pruned IoU
TILE_MARGIN = 2.0          # pixels of slack when pruning faces per tile (only ever keeps more)


def _best_faces_dense(anchors, gt_boxes):
    """(N, 4) anchors x (K, 4) faces -> (max IoU (N,) float32, matched face (N,) int64)."""
    overlaps = bbox_overlaps_cython(anchors, gt_boxes)
    matched = overlaps.argmax(axis=1)
    return overlaps[np.arange(len(anchors)), matched], matched


def _block_extents(low, high, block_starts):
    """Smallest low / largest high edge of consecutive blocks of rows or columns."""
    return np.minimum.reduceat(low, block_starts), np.maximum.reduceat(high, block_starts)


def _best_faces_tiled(plane, gt_boxes):
    """Same result as ``_best_faces_dense(plane.reshape(-1, 4), gt_boxes)``, pruned by tiles.

    A face can only have a non-zero IoU with an anchor it intersects; each tile of
    TILE_CELLS x TILE_CELLS cells is compared with the faces touching the bounding box of its
    anchors (with TILE_MARGIN pixels of slack). The faces kept keep their ascending order, so the
    first-index tie rule of a dense argmax is preserved; an anchor touching none gets face 0.
    """
    height, width, num_anchors, _ = plane.shape
    row_starts = np.arange(0, height, TILE_CELLS)
    col_starts = np.arange(0, width, TILE_CELLS)
    col_x1, col_x2 = _block_extents(plane[0, :, :, 0].min(axis=1), plane[0, :, :, 2].max(axis=1),
                                    col_starts)
    row_y1, row_y2 = _block_extents(plane[:, 0, :, 1].min(axis=1), plane[:, 0, :, 3].max(axis=1),
                                    row_starts)
    touches_x = ((gt_boxes[None, :, 0] < col_x2[:, None] + TILE_MARGIN) &
                 (gt_boxes[None, :, 2] > col_x1[:, None] - TILE_MARGIN))
    touches_y = ((gt_boxes[None, :, 1] < row_y2[:, None] + TILE_MARGIN) &
                 (gt_boxes[None, :, 3] > row_y1[:, None] - TILE_MARGIN))
    max_iou = np.zeros((height, width, num_anchors), dtype=np.float32)
    matched = np.zeros((height, width, num_anchors), dtype=np.int64)
    for tile_row, row0 in enumerate(row_starts):
        rows = slice(row0, row0 + TILE_CELLS)
        for tile_col, col0 in enumerate(col_starts):
            faces = np.flatnonzero(touches_y[tile_row] & touches_x[tile_col])
            if faces.size == 0:
                continue
            cols = slice(col0, col0 + TILE_CELLS)
            tile = plane[rows, cols]
            best_iou, best = _best_faces_dense(tile.reshape(-1, 4), gt_boxes[faces])
            tile_matched = np.where(best_iou > 0, faces[best], 0)
            max_iou[rows, cols] = best_iou.reshape(tile.shape[:3])
            matched[rows, cols] = tile_matched.reshape(tile.shape[:3])
    return max_iou.reshape(-1), matched.reshape(-1)


def best_faces(planes, gt_boxes):
    """Max IoU and matched face of every anchor of every stride.

    Args:
        planes: list of (H, W, A, 4) anchor planes.
        gt_boxes: (K, 4+) float boxes, K >= 1.
    Returns:
        (max_iou (N,) float32, matched (N,) int64), N = sum of H*W*A, strides concatenated.
    """
    boxes = np.ascontiguousarray(gt_boxes[:, :4], dtype=np.float32)
    max_ious, matches = [], []
    for plane in planes:
        if plane.shape[0] * plane.shape[1] * plane.shape[2] * len(boxes) <= DENSE_PAIRS:
            max_iou, matched = _best_faces_dense(plane.reshape(-1, 4), boxes)
        else:
            max_iou, matched = _best_faces_tiled(plane, boxes)
        max_ious.append(max_iou)
        matches.append(matched)
    return np.concatenate(max_ious), np.concatenate(matches)


class IoUMatcher(object):
    """Anchor labels from IoU with the faces (module docstring).

    Args:
        positive_overlap: IoU from which an anchor is a face (1).
        negative_overlap: IoU below which an anchor is background (0).
        force_positive: also make each face's best anchors positive.
        allowed_border: {stride: pixels an anchor may reach outside the input}.
    """

    def __init__(self, positive_overlap, negative_overlap, force_positive=False,
                 allowed_border=None):
        self.positive_overlap = float(positive_overlap)
        self.negative_overlap = float(negative_overlap)
        self.force_positive = bool(force_positive)
        self.allowed_border = {int(s): float(v) for s, v in (allowed_border or {}).items()}

    @classmethod
    def from_config(cls, cfg):
        """``TRAIN.RPN_POSITIVE_OVERLAP``, ``TRAIN.RPN_NEGATIVE_OVERLAP``,
        ``TRAIN.RPN_FORCE_POSITIVE`` and each stride's ``RPN_ANCHOR_CFG[s]['ALLOWED_BORDER']``."""
        borders = {int(s): stride_cfg['ALLOWED_BORDER']
                   for s, stride_cfg in cfg.RPN_ANCHOR_CFG.items()}
        return cls(cfg.TRAIN.RPN_POSITIVE_OVERLAP, cfg.TRAIN.RPN_NEGATIVE_OVERLAP,
                   cfg.TRAIN.RPN_FORCE_POSITIVE, borders)

    def inside_border(self, planes, strides, height, width):
        """(N,) bool, anchors within the allowed border of a ``height x width`` input, or
        None when every anchor is."""
        masks, clipped = [], False
        for stride, plane in zip(strides, planes):
            border = self.allowed_border.get(int(stride), np.inf)
            anchors = plane.reshape(-1, 4)
            mask = ((anchors[:, 0] >= -border) & (anchors[:, 1] >= -border) &
                    (anchors[:, 2] < width + border) & (anchors[:, 3] < height + border))
            clipped = clipped or not mask.all()
            masks.append(mask)
        return np.concatenate(masks) if clipped else None

    def match(self, anchors, planes, gt_boxes):
        """Labels and matched faces.

        Args:
            anchors: (N, 4) float32, the planes' anchors concatenated.
            planes: list of (H, W, A, 4) anchor planes (the same anchors, per stride).
            gt_boxes: (K, 4+) float32 faces, K >= 1.
        Returns:
            (labels (N,) float32 in {1, 0, -1}, matched face (N,) int64).
        """
        max_iou, matched = best_faces(planes, gt_boxes)
        labels = np.full(len(anchors), -1, dtype=np.float32)
        labels[max_iou < self.negative_overlap] = 0
        if self.force_positive:
            self._force_positive(anchors, gt_boxes, labels)
        labels[max_iou >= self.positive_overlap] = 1
        return labels, matched

    @staticmethod
    def _force_positive(anchors, gt_boxes, labels):
        """Anchors holding a face's best IoU (when > 0) become positive, in place."""
        overlaps = bbox_overlaps_cython(anchors, np.ascontiguousarray(gt_boxes[:, :4]))
        best_per_face = overlaps.max(axis=0)
        holds_best = (overlaps == best_per_face[None, :]) & (best_per_face[None, :] > 0)
        labels[holds_best.any(axis=1)] = 1
