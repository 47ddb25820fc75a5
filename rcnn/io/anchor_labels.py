"""Anchor labels for the RetinaFace training graph: the labels, box / landmark targets and
weights of every anchor of one image (:func:`label_anchors`; ``assign_anchor_fpn`` is its
original name, kept as an alias).

NumPy only (no MXNet): the loader's worker processes run it.

Anchors (:func:`label_anchors`)
    For each stride s of ``cfg.RPN_FEAT_STRIDE`` (32, 16, 8) and a class-score map of H x W cells,
    the anchors are ``anchors_plane(H, W, s, base anchors of s)`` ordered position-major,
    anchor-minor. An anchor reaching more than ``ALLOWED_BORDER`` pixels outside the input
    (``im_info``) is left out: label -1, zero targets and weights (every preset uses 9999, which
    keeps them all).
    Faces whose class is -1 are dropped. Each anchor is matched to the face of largest IoU
    (+1 pixel convention; the lowest face index on ties, face 0 when it overlaps none):
    IoU >= ``TRAIN.RPN_POSITIVE_OVERLAP`` -> label 1, < ``TRAIN.RPN_NEGATIVE_OVERLAP`` -> 0,
    otherwise -1; every label is 0 without faces. With ``TRAIN.RPN_FORCE_POSITIVE`` the anchors
    holding a face's best (positive) IoU are positive too (the best over every anchor, those
    left out by ``ALLOWED_BORDER`` included).

    Targets are computed for every anchor against its matched face (zeros without faces):
    ``nonlinear_transform / TRAIN.BBOX_STDS`` and ``landmark_transform / TRAIN.LANDMARK_STD``
    (points in order, x then y). Box weights are 1 on positives; landmark weights are 1 on
    positives whose matched face has landmarks (visibility of its first point >= 0).

    ``TRAIN.RPN_ENABLE_OHEM == 0`` (the OHEM operator of the graph is off): positives are randomly
    capped at ``RPN_FG_FRACTION * RPN_BATCH_SIZE`` (64) and negatives at ``RPN_BATCH_SIZE`` minus
    the positives left, the others becoming -1, drawn with ``rng``. ``select_stride > 0`` then
    sets every label of the other strides to -1 (their weights are left as they are, as in the
    original).

    Speed: the IoU of a stride is computed densely (Cython kernel) when it has at most
    :data:`DENSE_PAIRS` anchor-face pairs; above, the feature map is cut into tiles of
    :data:`TILE_CELLS` x :data:`TILE_CELLS` cells and each tile is compared only with the faces
    that can touch its anchors. Both paths give the same labels and matches bit for bit.

Output layout, per stride s (the shapes the training graph's inputs have)::

    {prefix}_label_stride{s}            (1, A*H*W)    index a*H*W + y*W + x
    {prefix}_bbox_target_stride{s}      (1, 4A, H*W)  channel a*4 + k at position y*W + x
    {prefix}_bbox_weight_stride{s}      (1, 4A, H*W)
    {prefix}_landmark_target_stride{s}  (1, 10A, H*W) channel a*10 + 2*point + (0 x | 1 y)
    {prefix}_landmark_weight_stride{s}  (1, 10A, H*W)
"""
import numpy as np

from cython_ext.bbox import bbox_overlaps_cython
from rcnn.config import OHEM_OFF
from rcnn.model_layout import BOX_LEN, LANDMARK_LEN, NUM_LANDMARKS
from rcnn.model_layout import label_name
from rcnn.model_layout import label_names as layout_label_names
from rcnn.processing.box_coder import BoxCoder
from rcnn.processing.generate_anchor import AnchorCache, generate_anchors_fpn

__all__ = ['label_anchors', 'assign_anchor_fpn', 'label_names', 'best_faces', 'DENSE_PAIRS',
           'TILE_CELLS']

DENSE_PAIRS = 200000       # anchor-face pairs of one stride computed densely
TILE_CELLS = 16            # tile side in feature cells for the pruned IoU
TILE_MARGIN = 2.0          # pixels of slack when pruning faces per tile (only ever keeps more)
BBOX_PRED_LEN = BOX_LEN              # aliases of the model layout's lengths
LANDMARK_PRED_LEN = LANDMARK_LEN

_anchor_caches = {}           # base anchors -> AnchorCache, in this process
_MAX_ANCHOR_CACHES = 4
_MAX_PLANES = 48


# ----------------------------------------------------------------------------
# Anchors and their best face
# ----------------------------------------------------------------------------

def _anchor_planes(feat_hw, cfg):
    """Anchor planes of every stride, cached per process (:class:`AnchorCache`).

    Args:
        feat_hw: tuple of (H, W) per stride of ``cfg.RPN_FEAT_STRIDE``.
    Returns:
        list of (H, W, A, 4) float32 planes (read-only), one per stride.
    """
    base_anchors = generate_anchors_fpn(dense_anchor=bool(cfg.get('DENSE_ANCHOR', False)),
                                        cfg=cfg)
    strides = tuple(int(s) for s in cfg.RPN_FEAT_STRIDE)
    key = (strides, tuple(a.tobytes() for a in base_anchors))
    cache = _anchor_caches.get(key)
    if cache is None:
        if len(_anchor_caches) >= _MAX_ANCHOR_CACHES:
            _anchor_caches.clear()
        cache = AnchorCache(dict(zip(strides, base_anchors)), max_planes=_MAX_PLANES)
        _anchor_caches[key] = cache
    return [cache.plane(stride, height, width)
            for (height, width), stride in zip(feat_hw, strides)]


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


def _inside_border(planes, strides, im_info, cfg):
    """(N,) bool, anchors within ``ALLOWED_BORDER`` of the input, or None when all are."""
    im_info = np.asarray(im_info, dtype=np.float64).reshape(-1)
    height, width = im_info[0], im_info[1]
    masks, clipped = [], False
    for stride, plane in zip(strides, planes):
        border = float(cfg.RPN_ANCHOR_CFG[str(stride)].get('ALLOWED_BORDER', 9999))
        anchors = plane.reshape(-1, 4)
        mask = ((anchors[:, 0] >= -border) & (anchors[:, 1] >= -border) &
                (anchors[:, 2] < width + border) & (anchors[:, 3] < height + border))
        clipped = clipped or not mask.all()
        masks.append(mask)
    return np.concatenate(masks) if clipped else None


def _force_positive(anchors, gt_boxes, labels):
    """RPN_FORCE_POSITIVE: anchors holding a face's best IoU (when > 0) become positive."""
    overlaps = bbox_overlaps_cython(anchors, gt_boxes[:, :4])
    best_per_face = overlaps.max(axis=0)
    holds_best = (overlaps == best_per_face[None, :]) & (best_per_face[None, :] > 0)
    labels[holds_best.any(axis=1)] = 1


def _subsample(labels, train_cfg, rng):
    """Cap positives and negatives at random (RPN_ENABLE_OHEM == 0), in place."""
    num_fg = int(train_cfg.RPN_FG_FRACTION * train_cfg.RPN_BATCH_SIZE)
    fg_inds = np.flatnonzero(labels == 1)
    if len(fg_inds) > num_fg:
        labels[rng.choice(fg_inds, size=len(fg_inds) - num_fg, replace=False)] = -1
    num_bg = train_cfg.RPN_BATCH_SIZE - int(np.sum(labels == 1))
    bg_inds = np.flatnonzero(labels == 0)
    if len(bg_inds) > num_bg:
        labels[rng.choice(bg_inds, size=len(bg_inds) - num_bg, replace=False)] = -1


def _anchor_labels(anchors, planes, gt_boxes, train_cfg):
    """Labels (N,) float32 and matched face (N,) int64 of every anchor (K >= 1 faces)."""
    max_iou, matched = best_faces(planes, gt_boxes)
    labels = np.full(len(anchors), -1, dtype=np.float32)
    labels[max_iou < train_cfg.RPN_NEGATIVE_OVERLAP] = 0
    if train_cfg.get('RPN_FORCE_POSITIVE', False):
        _force_positive(anchors, gt_boxes, labels)
    labels[max_iou >= train_cfg.RPN_POSITIVE_OVERLAP] = 1
    return labels, matched


def _stride_layout(values, height, width, num_anchors, per_anchor):
    """(H*W*A, per_anchor) position-major rows -> (1, per_anchor*A, H*W)."""
    return np.ascontiguousarray(
        values.reshape(height * width, num_anchors * per_anchor).T)[np.newaxis]


def label_names(cfg, prefix='face'):
    """Names of the label arrays in the loader's order: per stride label, bbox target/weight,
    landmark target/weight (the last two only with ``cfg.FACE_LANDMARK``)."""
    return layout_label_names(cfg.RPN_FEAT_STRIDE, landmarks=bool(cfg.get('FACE_LANDMARK', True)),
                              prefix=prefix)


def label_anchors(feat_shape, gt_label, im_info, landmark=False, prefix='face',
                  select_stride=0, *, cfg, rng=None):
    """Anchor labels, box and landmark targets and weights of one image (module docstring).

    Args:
        feat_shape: per stride of ``cfg.RPN_FEAT_STRIDE``, the class-score shape
            (..., H, W) (only the last two numbers are used).
        gt_label: ``{'gt_boxes': (K, 5) float x1 y1 x2 y2 class, 'gt_landmarks': (K, 5, 3)}``;
            ``gt_landmarks`` is needed only when ``landmark``.
        im_info: [height, width, scale] of the network input (or a (1, 3) array), for the
            ``ALLOWED_BORDER`` test.
        landmark: also return landmark targets and weights.
        prefix: label name prefix.
        select_stride: when > 0, labels of every other stride become -1.
        cfg: config (keyword only), from ``rcnn.config.generate_config``.
        rng: numpy Generator for the random subsampling (RPN_ENABLE_OHEM == 0 only).
    Returns:
        dict name -> float32 array, layouts in the module docstring.
    """
    if cfg.get('USE_BLUR', False):
        raise ValueError('label_anchors: cfg.USE_BLUR is not supported')
    strides = [int(s) for s in cfg.RPN_FEAT_STRIDE]
    if len(feat_shape) != len(strides):
        raise ValueError('feat_shape has %d entries but cfg.RPN_FEAT_STRIDE lists %d strides'
                         % (len(feat_shape), len(strides)))
    feat_hw = tuple((int(shape[-2]), int(shape[-1])) for shape in feat_shape)
    planes = _anchor_planes(feat_hw, cfg)
    anchors = np.concatenate([plane.reshape(-1, 4) for plane in planes])
    inside = _inside_border(planes, strides, im_info, cfg)

    gt_boxes = np.asarray(gt_label['gt_boxes'], dtype=np.float32).reshape(-1, 5)
    keep = gt_boxes[:, 4] != -1
    gt_boxes = gt_boxes[keep]
    if landmark:
        gt_landmarks = np.asarray(gt_label['gt_landmarks'], dtype=np.float32).reshape(-1, NUM_LANDMARKS, 3)
        if len(gt_landmarks) != len(keep):
            raise ValueError('gt_landmarks has %d faces but gt_boxes %d'
                             % (len(gt_landmarks), len(keep)))
        gt_landmarks = gt_landmarks[keep]

    if len(gt_boxes):
        labels, matched = _anchor_labels(anchors, planes, gt_boxes, cfg.TRAIN)
    else:
        labels, matched = np.zeros(len(anchors), dtype=np.float32), None
    bbox_targets, landmark_targets, has_landmarks = _targets(
        anchors, gt_boxes, gt_landmarks if landmark else None, matched, BoxCoder.from_config(cfg))
    if inside is not None:
        outside = ~inside
        labels[outside] = -1
        bbox_targets[outside] = 0
        landmark_targets[outside] = 0
    if cfg.TRAIN.RPN_ENABLE_OHEM == OHEM_OFF:
        _subsample(labels, cfg.TRAIN, np.random.default_rng() if rng is None else rng)
    return _per_stride_outputs(planes, strides, labels, bbox_targets, landmark_targets,
                               has_landmarks, landmark, prefix, select_stride)


assign_anchor_fpn = label_anchors     # the original name


def _targets(anchors, gt_boxes, gt_landmarks, matched, coder):
    """Box and landmark targets of every anchor against its matched face.

    Args:
        anchors: (N, 4); gt_boxes: (K, 5); gt_landmarks: (K, 5, 3) or None (no landmarks);
        matched: (N,) face index per anchor, None when K == 0.
        coder: the :class:`rcnn.processing.box_coder.BoxCoder` of the recipe.
    Returns:
        bbox_targets (N, 4) float32, landmark_targets (N, 10) float32, has_landmarks (N,) bool
        (the matched face has landmarks); zeros / False without faces.
    """
    num = len(anchors)
    bbox_targets = np.zeros((num, BBOX_PRED_LEN), dtype=np.float32)
    landmark_targets = np.zeros((num, LANDMARK_PRED_LEN), dtype=np.float32)
    has_landmarks = np.zeros(num, dtype=bool)
    if matched is None:
        return bbox_targets, landmark_targets, has_landmarks
    bbox_targets[:] = coder.encode_boxes(anchors, gt_boxes[matched, :4])
    if gt_landmarks is not None:
        landmark_targets[:] = coder.encode_landmarks(anchors, gt_landmarks[:, :, :2][matched])
        has_landmarks = (gt_landmarks[:, 0, 2] >= 0)[matched]
    return bbox_targets, landmark_targets, has_landmarks


def _per_stride_outputs(planes, strides, labels, bbox_targets, landmark_targets, has_landmarks,
                        landmark, prefix, select_stride):
    """Split the concatenated per-anchor arrays by stride into the graph's layouts."""
    positive = labels == 1
    num = len(labels)
    bbox_weights = np.broadcast_to(positive.astype(np.float32)[:, None], (num, BBOX_PRED_LEN))
    landmark_weights = np.broadcast_to((positive & has_landmarks).astype(np.float32)[:, None],
                                       (num, LANDMARK_PRED_LEN))
    label_dict = {}
    start = 0
    for stride, plane in zip(strides, planes):
        height, width, num_anchors = plane.shape[:3]
        part = slice(start, start + height * width * num_anchors)
        start = part.stop
        stride_labels = labels[part].reshape(height, width, num_anchors).transpose(2, 0, 1)
        if select_stride > 0 and stride != select_stride:
            stride_labels = np.full_like(stride_labels, -1)
        def name(kind, stride=stride):
            return label_name(kind, stride, prefix)
        label_dict[name('label')] = np.ascontiguousarray(stride_labels).reshape(1, -1)
        layout = (height, width, num_anchors)
        label_dict[name('bbox_target')] = _stride_layout(
            bbox_targets[part], *layout, BBOX_PRED_LEN)
        label_dict[name('bbox_weight')] = _stride_layout(
            bbox_weights[part], *layout, BBOX_PRED_LEN)
        if landmark:
            label_dict[name('landmark_target')] = _stride_layout(
                landmark_targets[part], *layout, LANDMARK_PRED_LEN)
            label_dict[name('landmark_weight')] = _stride_layout(
                landmark_weights[part], *layout, LANDMARK_PRED_LEN)
    return label_dict
