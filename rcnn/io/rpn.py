"""Anchor labels for the RetinaFace training graph, and one training sample per image.

NumPy / OpenCV only (no MXNet): this module also holds the loop of the loader's worker processes.

Anchors (:func:`assign_anchor_fpn`)
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

Training sample (:func:`load_training_sample`): a random crop of a record
(:func:`rcnn.io.image.get_crop_image1`) and its labels, with the random stream fixed by
``(seed, epoch, position in the epoch)``; an image that cannot be read is replaced by another
record drawn from the same stream.

Loader worker (:func:`sample_worker_loop`): the body of the CropLoader's worker processes, which
write each sample into a batch buffer in shared memory (:func:`batch_buffer_layout`). It lives
here because a worker must import nothing that imports MXNet.
"""
import ctypes
import logging
import os
import queue
import signal
import traceback

import cv2
import numpy as np

from cython_ext.bbox import bbox_overlaps_cython
from rcnn.io.image import ImageReadError, get_crop_image1
from rcnn.model_layout import BOX_LEN, LANDMARK_LEN, NUM_LANDMARKS
from rcnn.model_layout import DATA_NAME, label_name
from rcnn.model_layout import label_names as layout_label_names
from rcnn.processing.box_coder import BoxCoder
from rcnn.processing.generate_anchor import AnchorCache, generate_anchors_fpn

logger = logging.getLogger(__name__)

__all__ = ['assign_anchor_fpn', 'label_names', 'gt_label_from_record', 'crop_and_label',
           'load_training_sample', 'sample_rng', 'epoch_order', 'batch_buffer_layout',
           'batch_buffer_views', 'write_sample', 'tune_malloc_for_worker', 'sample_worker_loop',
           'DENSE_PAIRS', 'TILE_CELLS', 'MAX_REPLACEMENTS']

DENSE_PAIRS = 200000       # anchor-face pairs of one stride computed densely
TILE_CELLS = 16            # tile side in feature cells for the pruned IoU
TILE_MARGIN = 2.0          # pixels of slack when pruning faces per tile (only ever keeps more)
MAX_REPLACEMENTS = 10      # unreadable images replaced in a row before giving up
BBOX_PRED_LEN = BOX_LEN              # aliases of the model layout's lengths
LANDMARK_PRED_LEN = LANDMARK_LEN
_SEED_TAG_ORDER = 1
_SEED_TAG_SAMPLE = 2
_WORKER_POLL_S = 1.0
_M_TRIM_THRESHOLD = -1        # glibc mallopt parameters
_M_MMAP_THRESHOLD = -3

_anchor_caches = {}           # base anchors -> AnchorCache, in this process
_MAX_ANCHOR_CACHES = 4
_MAX_PLANES = 48


def _config(cfg):
    if cfg is None:
        from rcnn.config import config as cfg
    return cfg


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


# ----------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------

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


def label_names(cfg=None, prefix='face'):
    """Names of the label arrays in the loader's order: per stride label, bbox target/weight,
    landmark target/weight (the last two only with ``cfg.FACE_LANDMARK``)."""
    cfg = _config(cfg)
    return layout_label_names(cfg.RPN_FEAT_STRIDE, landmarks=bool(cfg.get('FACE_LANDMARK', True)),
                              prefix=prefix)


def assign_anchor_fpn(feat_shape, gt_label, im_info, landmark=False, prefix='face',
                      select_stride=0, cfg=None, rng=None):
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
        cfg: config; defaults to ``rcnn.config.config``.
        rng: numpy Generator for the random subsampling (RPN_ENABLE_OHEM == 0 only).
    Returns:
        dict name -> float32 array, layouts in the module docstring.
    """
    cfg = _config(cfg)
    if cfg.get('USE_BLUR', False):
        raise ValueError('assign_anchor_fpn: cfg.USE_BLUR is not supported')
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
    if cfg.TRAIN.RPN_ENABLE_OHEM == 0:
        _subsample(labels, cfg.TRAIN, np.random.default_rng() if rng is None else rng)
    return _per_stride_outputs(planes, strides, labels, bbox_targets, landmark_targets,
                               has_landmarks, landmark, prefix, select_stride)


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


# ----------------------------------------------------------------------------
# One training sample
# ----------------------------------------------------------------------------

def gt_label_from_record(roi_rec, with_landmarks=True):
    """``gt_label`` for :func:`assign_anchor_fpn` from a (cropped) record.

    Faces of class 0 are left out. Returns ``{'gt_boxes': (K, 5) float32 x1 y1 x2 y2 class}``
    plus ``'gt_landmarks'`` (K, 5, 3) float32 (all -1 when the record has no landmarks).
    """
    classes = np.asarray(roi_rec['gt_classes']).reshape(-1)
    keep = classes != 0
    gt_boxes = np.empty((int(keep.sum()), 5), dtype=np.float32)
    gt_boxes[:, :4] = np.asarray(roi_rec['boxes'], dtype=np.float32).reshape(-1, 4)[keep]
    gt_boxes[:, 4] = classes[keep]
    gt_label = {'gt_boxes': gt_boxes}
    if with_landmarks:
        if 'landmarks' in roi_rec:
            gt_label['gt_landmarks'] = np.asarray(
                roi_rec['landmarks'], dtype=np.float32).reshape(-1, NUM_LANDMARKS, 3)[keep]
        else:
            gt_label['gt_landmarks'] = np.full((len(gt_boxes), NUM_LANDMARKS, 3), -1, dtype=np.float32)
    return gt_label


def crop_and_label(roi_rec, feat_shapes, cfg=None, rng=None):
    """Random crop of one record and its anchor labels.

    Args:
        roi_rec: roidb record (see :func:`rcnn.io.image.get_crop_image1`).
        feat_shapes: per stride, the class-score shape (..., H, W) for the crop size.
        cfg: config; rng: numpy Generator (crop, colour, then label subsampling).
    Returns:
        (im_tensor (1, 3, S, S) float32, labels dict (see :func:`assign_anchor_fpn`),
        cropped record).
    """
    cfg = _config(cfg)
    rng = np.random.default_rng() if rng is None else rng
    ims, records = get_crop_image1([roi_rec], cfg=cfg, rng=rng)
    with_landmarks = bool(cfg.get('FACE_LANDMARK', True))
    labels = assign_anchor_fpn(feat_shapes, gt_label_from_record(records[0], with_landmarks),
                               records[0]['im_info'], landmark=with_landmarks, prefix='face',
                               cfg=cfg, rng=rng)
    return ims[0], labels, records[0]


def sample_rng(seed, epoch, position, attempt=0):
    """Generator of one sample: a function of (seed, epoch, position in the epoch, attempt)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [int(seed), _SEED_TAG_SAMPLE, int(epoch), int(position), int(attempt)])))


def epoch_order(seed, epoch, num_records, shuffle):
    """Record order of an epoch: a permutation drawn from (seed, epoch), or 0..n-1."""
    if not shuffle:
        return np.arange(num_records)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [int(seed), _SEED_TAG_ORDER, int(epoch)])))
    return rng.permutation(num_records)


def load_training_sample(roidb, index, feat_shapes, cfg, seed, epoch, position):
    """Crop + labels of ``roidb[index]``, replacing an unreadable image by another record.

    Attempt 0 uses ``index``; attempt i >= 1 draws a replacement index from
    ``sample_rng(seed, epoch, position, i)``, whose stream then also drives the crop.

    Returns:
        (im_tensor (1, 3, S, S), labels dict, used index, failures) where failures is a list of
        (index, path, message) for every image that could not be read.
    Raises:
        ImageReadError: MAX_REPLACEMENTS + 1 images in a row could not be read.
    """
    failures = []
    for attempt in range(MAX_REPLACEMENTS + 1):
        rng = sample_rng(seed, epoch, position, attempt)
        if attempt > 0:
            index = int(rng.integers(len(roidb)))
        try:
            im_tensor, labels, _ = crop_and_label(roidb[index], feat_shapes, cfg, rng)
            return im_tensor, labels, index, failures
        except ImageReadError as err:
            failures.append((index, roidb[index]['image'], str(err)))
    paths = list(dict.fromkeys(path for _, path, _ in failures))     # unique, in order
    raise ImageReadError('%d images in a row could not be read (%s), giving up: check the data '
                         'set' % (len(failures), ', '.join(paths)))


def batch_buffer_layout(array_shapes):
    """Byte layout of one batch buffer holding float32 arrays back to back.

    Args:
        array_shapes: list of (name, shape), e.g. ``data`` then every label, batch axis first.
    Returns:
        (layout, total bytes); layout is a list of (name, shape, byte offset), offsets 64-byte
        aligned.
    """
    layout, offset = [], 0
    for name, shape in array_shapes:
        layout.append((name, tuple(int(v) for v in shape), offset))
        offset += int(np.prod(shape)) * 4
        offset = (offset + 63) // 64 * 64
    return layout, offset


def batch_buffer_views(buffer, layout):
    """dict name -> float32 ndarray view of ``buffer`` (a writable buffer) per ``layout``."""
    return {name: np.ndarray(shape, dtype=np.float32, buffer=buffer, offset=offset)
            for name, shape, offset in layout}


def write_sample(views, slot, im_tensor, labels):
    """Copy one sample (``(1, 3, S, S)`` tensor, labels with batch axis 1) into batch ``slot``."""
    for name, array in views.items():
        array[slot] = im_tensor[0] if name == DATA_NAME else labels[name][0]


def tune_malloc_for_worker():
    """Keep freed memory inside the process heap (glibc only; a no-op elsewhere).

    A labelled sample allocates and frees many arrays of 0.5 to 30 MB; with glibc's defaults they
    are mmap-ed and returned to the system each time, costing about 1,200 page faults (2 ms)
    per label computation alone. Raising the mmap threshold to 32 MB and the trim threshold to
    1 GB makes a worker reuse its memory instead. Returns True when the settings were applied.
    """
    try:
        libc = ctypes.CDLL('libc.so.6')
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) and
                    libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False


def sample_worker_loop(task_queue, result_queue, roidb, feat_shapes, cfg, seed, current_epoch,
                       parent_pid, buffer_names, layout):
    """Body of a loader worker process (started with the 'spawn' method; no MXNet here).

    The batch buffers are shared-memory blocks named ``buffer_names``, each laid out by
    ``layout`` (see :func:`batch_buffer_layout`); a sample is written straight into its slot.
    Tasks are ``(epoch, batch_no, slot, position, index, buffer_id)`` tuples, ``None`` to stop.
    Every task is answered on ``result_queue`` with ``(status, epoch, batch_no, slot, buffer_id,
    payload)``: ``'ok'`` with payload ``(used_index, failures)`` (see
    :func:`load_training_sample`), ``'skipped'`` (payload None) for a task of an epoch older than
    ``current_epoch.value``, or ``'error'`` with payload ``(one-line summary, traceback text)``.
    The loop also ends when the parent process is gone.
    """
    from multiprocessing import shared_memory

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C and stops us
    cv2.setNumThreads(1)
    tune_malloc_for_worker()
    blocks = [shared_memory.SharedMemory(name=name) for name in buffer_names]
    views = [batch_buffer_views(block.buf, layout) for block in blocks]
    try:
        while True:
            try:
                task = task_queue.get(timeout=_WORKER_POLL_S)
            except queue.Empty:
                if os.getppid() != parent_pid:
                    return
                continue
            if task is None:
                return
            epoch, batch_no, slot, position, index, buffer_id = task
            if epoch < current_epoch.value:
                result_queue.put(('skipped', epoch, batch_no, slot, buffer_id, None))
                continue
            try:
                im_tensor, labels, used_index, failures = load_training_sample(
                    roidb, index, feat_shapes, cfg, seed, epoch, position)
                write_sample(views[buffer_id], slot, im_tensor, labels)
                message = ('ok', epoch, batch_no, slot, buffer_id, (used_index, failures))
            except ImageReadError as err:      # gave up after too many unreadable images
                message = ('error', epoch, batch_no, slot, buffer_id,
                           (str(err), traceback.format_exc()))
            except Exception as err:  # noqa: BLE001 -- reported to the parent, which raises it
                message = ('error', epoch, batch_no, slot, buffer_id,
                           ('CropLoader worker failed on image %s: %s: %s' % (
                               roidb[index].get('image'), type(err).__name__, err),
                            traceback.format_exc()))
            result_queue.put(message)
    finally:
        del views
        for block in blocks:
            block.close()
        result_queue.cancel_join_thread()
