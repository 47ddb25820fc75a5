"""Online hard example mining of anchors (the original's ``rpn_fpn_ohem3``, mode 1).

Per image and stride, with ``fg score = score[face] - score[background]``:

1. positives (label > 0): if there are more than ``int(RPN_FG_FRACTION * RPN_BATCH_SIZE)``
   (64), keep the 64 with the **lowest** fg score (the hardest) and ignore (-1) the others;
2. negatives (label 0): keep the ``RPN_BATCH_SIZE - n_fg`` (256 - kept positives) with the
   **highest** fg score and ignore the others (with no positive, 256 negatives are kept);
3. the anchor weight is 1 on the kept positives, 0 elsewhere (it multiplies the box and
   landmark weights, so dropped positives get no regression loss).

Labels -1 stay -1. Ties are broken by anchor index (the lower index is kept first).

* :func:`ohem_select` -- the selection in NumPy over the whole batch ``(B, N)``: no per-image
  loop, and O(N) per row (a partial sort finds the k-th key; no full sort);
* :func:`ohem_symbol` -- the training-graph operator: a ``CustomOp`` (``op_type='retinaface_ohem'``)
  running :func:`ohem_select` on the batch. No gradient flows through it (its inputs go through
  ``BlockGrad`` and its backward writes zeros).

Why a NumPy CustomOp and not in-graph MXNet operators: an in-graph version (ranks from a double
``argsort``, 4 sorts per stride) was measured at 43 ms per batch of 16 at stride 8 (16 x 12,800
anchors, 2 CPU cores) against 4.4 ms for this op, and MXNet's CPU argsort is not stable, so it
could not break ties by index. ``bench/bench_network.py`` measures the op.
"""
import mxnet as mx
import numpy as np

from rcnn.config import OHEM_MODE_HARDEST

__all__ = ['OHEM_OP_TYPE', 'ohem_counts', 'ohem_select', 'ohem_symbol']

OHEM_OP_TYPE = 'retinaface_ohem'


def ohem_counts(cfg):
    """``(max_fg, batch)``: at most ``max_fg`` positives, ``batch`` sampled anchors per image.

    Raises ValueError for an OHEM mode other than 1 (hardest examples).
    """
    mode = int(cfg.TRAIN.OHEM_MODE)
    if mode != OHEM_MODE_HARDEST:
        raise ValueError('cfg.TRAIN.OHEM_MODE=%d is not supported: only mode 1 (hardest '
                         'positives and negatives) is implemented' % mode)
    batch = int(cfg.TRAIN.RPN_BATCH_SIZE)
    max_fg = int(cfg.TRAIN.RPN_FG_FRACTION * batch)
    if batch <= 0 or not 0 <= max_fg <= batch:
        raise ValueError('bad OHEM sizes: RPN_BATCH_SIZE=%r, RPN_FG_FRACTION=%r'
                         % (cfg.TRAIN.RPN_BATCH_SIZE, cfg.TRAIN.RPN_FG_FRACTION))
    return max_fg, batch


def _keep_smallest(keys, candidate, counts):
    """Per row, mark the ``counts[b]`` candidates with the smallest keys.

    O(N) per row: the ``counts[b]``-th smallest candidate key is found with a partial sort
    (``np.partition``) of at most ``max(counts)`` entries; keys below it are kept, and among
    keys equal to it the lowest indices fill the remaining quota.

    Args:
        keys: (B, N) float array.
        candidate: (B, N) bool, the entries that may be kept.
        counts: (B,) int, how many to keep per row (fewer when a row has fewer candidates).
    Returns:
        (B, N) bool.
    """
    num_rows, num_cols = keys.shape
    keys = np.where(candidate, keys, np.inf)
    counts = np.minimum(np.asarray(counts, dtype=np.int64), candidate.sum(axis=1))
    if num_cols == 0 or counts.max(initial=0) <= 0:
        return np.zeros(keys.shape, dtype=bool)
    depth = int(counts.max())
    smallest = np.sort(np.partition(keys, depth - 1, axis=1)[:, :depth], axis=1)
    threshold = smallest[np.arange(num_rows), np.maximum(counts - 1, 0)][:, None]
    below = candidate & (keys < threshold)
    equal = candidate & (keys == threshold)
    quota = (counts - below.sum(axis=1))[:, None]
    keep = below | (equal & (np.cumsum(equal, axis=1) <= quota))
    keep[counts <= 0] = False
    return keep


def ohem_select(fg_scores, labels, cfg):
    """Select the hardest anchors of each image (vectorised over the batch, O(N) per row).

    Args:
        fg_scores: (B, N) float, score[face] - score[background] per anchor.
        labels: (B, N) anchor labels, 1 (or > 0) face, 0 background, -1 ignored.
        cfg: config (``TRAIN.RPN_BATCH_SIZE``, ``TRAIN.RPN_FG_FRACTION``, ``TRAIN.OHEM_MODE``).
    Returns:
        sampled_labels: (B, N) float32, the kept labels, -1 elsewhere.
        anchor_weight: (B, N) float32, 1 on the kept positives, 0 elsewhere.
    """
    max_fg, batch = ohem_counts(cfg)
    fg_scores = np.asarray(fg_scores, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.float32)
    if fg_scores.ndim != 2 or fg_scores.shape != labels.shape:
        raise ValueError('fg_scores and labels must both be (B, N), got %s and %s'
                         % (fg_scores.shape, labels.shape))
    num_rows = labels.shape[0]
    positive = labels > 0
    keep_pos = _keep_smallest(fg_scores, positive, np.full(num_rows, max_fg))
    num_bg = batch - keep_pos.sum(axis=1)
    keep_neg = _keep_smallest(-fg_scores, labels == 0, num_bg)
    sampled_labels = np.where(keep_pos, labels, np.where(keep_neg, 0.0, -1.0))
    return sampled_labels.astype(np.float32), keep_pos.astype(np.float32)


class _OHEMOp(mx.operator.CustomOp):
    """NumPy OHEM over the whole batch; outputs (sampled_labels, anchor_weight)."""

    def __init__(self, cfg):
        super(_OHEMOp, self).__init__()
        self.cfg = cfg

    def forward(self, is_train, req, in_data, out_data, aux):
        cls_score = in_data[0].asnumpy()
        labels = in_data[1].asnumpy()
        sampled, weight = ohem_select(cls_score[:, 1, :] - cls_score[:, 0, :], labels, self.cfg)
        self.assign(out_data[0], req[0], mx.nd.array(sampled, ctx=out_data[0].context))
        self.assign(out_data[1], req[1], mx.nd.array(weight, ctx=out_data[1].context))

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        for index, grad in enumerate(in_grad):
            self.assign(grad, req[index], 0)


@mx.operator.register(OHEM_OP_TYPE)
class _OHEMProp(mx.operator.CustomOpProp):
    def __init__(self, rpn_batch_size='256', fg_fraction='0.25', ohem_mode='1'):
        super(_OHEMProp, self).__init__(need_top_grad=False)
        from easydict import EasyDict
        self.cfg = EasyDict(TRAIN=EasyDict(RPN_BATCH_SIZE=int(rpn_batch_size),
                                           RPN_FG_FRACTION=float(fg_fraction),
                                           OHEM_MODE=int(ohem_mode)))

    def list_arguments(self):
        return ['cls_score', 'labels']

    def list_outputs(self):
        return ['sampled_labels', 'anchor_weight']

    def infer_shape(self, in_shape):
        score_shape = tuple(in_shape[0])
        if len(score_shape) != 3 or score_shape[1] != 2:
            raise ValueError('%s: cls_score must be (B, 2, N), got %s' % (OHEM_OP_TYPE, score_shape))
        label_shape = (score_shape[0], score_shape[2])
        if in_shape[1] and tuple(in_shape[1]) != label_shape:
            raise ValueError('%s: labels must be %s for scores %s, got %s'
                             % (OHEM_OP_TYPE, label_shape, score_shape, tuple(in_shape[1])))
        return [score_shape, label_shape], [label_shape, label_shape], []

    def create_operator(self, ctx, shapes, dtypes):
        return _OHEMOp(self.cfg)


def ohem_symbol(cls_score, labels, cfg, name='ohem'):
    """OHEM operator for the training graph.

    Args:
        cls_score: symbol (B, 2, N), channel 0 background, 1 face.
        labels: symbol (B, N), 1 face, 0 background, -1 ignored.
        cfg: config giving the sizes (see :func:`ohem_counts`).
        name: operator name.
    Returns:
        ``(sampled_labels, anchor_weight)`` symbols, both (B, N) float32, no gradient.
    """
    ohem_counts(cfg)
    op = mx.sym.Custom(cls_score=mx.sym.BlockGrad(cls_score, name='%s_score_nograd' % name),
                       labels=mx.sym.BlockGrad(labels, name='%s_label_nograd' % name),
                       op_type=OHEM_OP_TYPE, name=name,
                       rpn_batch_size=int(cfg.TRAIN.RPN_BATCH_SIZE),
                       fg_fraction=float(cfg.TRAIN.RPN_FG_FRACTION),
                       ohem_mode=int(cfg.TRAIN.OHEM_MODE))
    return op[0], op[1]
