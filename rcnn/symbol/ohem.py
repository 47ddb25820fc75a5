"""Online hard example mining of anchors in the training graph (the original's
``rpn_fpn_ohem3``, mode 1).

The selection itself is :class:`rcnn.processing.sampler.OHEMSampler` (its rule: the hardest
``int(RPN_FG_FRACTION * RPN_BATCH_SIZE)`` positives by lowest fg score, the hardest negatives by
highest fg score up to ``RPN_BATCH_SIZE``, anchor weight 1 on the kept positives; ties by anchor
index). This module only wraps it as an operator:

* :func:`ohem_symbol` -- a ``CustomOp`` (``op_type='retinaface_ohem'``) running the sampler on
  the batch's ``cls_score`` (B, 2, N) and labels (B, N). Its outputs: the sampled labels
  (B, N), the anchor weight (B, N; 1 on the kept positives) and the positive count (B, 1; the
  kept positives of each image, the original's ``valid_count`` that ``LR_MODE = 1`` divides
  the box and landmark losses by). No gradient flows through it (its inputs go through
  ``BlockGrad`` and its backward writes zeros).

Why a NumPy CustomOp and not in-graph MXNet operators: an in-graph version (ranks from a double
``argsort``, 4 sorts per stride) was measured at 43 ms per batch of 16 at stride 8 (16 x 12,800
anchors, 2 CPU cores) against 4.4 ms for this op, and MXNet's CPU argsort is not stable, so it
could not break ties by index. ``bench/bench_network.py`` measures the op.
"""
import mxnet as mx

from rcnn.config import OHEM_MODE_HARDEST
from rcnn.processing.sampler import OHEMSampler, ohem_select

__all__ = ['OHEM_OP_TYPE', 'ohem_select', 'ohem_symbol']

OHEM_OP_TYPE = 'retinaface_ohem'


class _OHEMOp(mx.operator.CustomOp):
    """The sampler over the whole batch; outputs (sampled_labels, anchor_weight,
    positive_count)."""

    def __init__(self, sampler):
        super(_OHEMOp, self).__init__()
        self.sampler = sampler

    def forward(self, is_train, req, in_data, out_data, aux):
        cls_score = in_data[0].asnumpy()
        labels = in_data[1].asnumpy()
        sampled, weight = self.sampler.select(cls_score[:, 1, :] - cls_score[:, 0, :], labels)
        self.assign(out_data[0], req[0], mx.nd.array(sampled, ctx=out_data[0].context))
        self.assign(out_data[1], req[1], mx.nd.array(weight, ctx=out_data[1].context))
        count = weight.sum(axis=1, keepdims=True)
        self.assign(out_data[2], req[2], mx.nd.array(count, ctx=out_data[2].context))

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        for index, grad in enumerate(in_grad):
            self.assign(grad, req[index], 0)


@mx.operator.register(OHEM_OP_TYPE)
class _OHEMProp(mx.operator.CustomOpProp):
    def __init__(self, rpn_batch_size='256', fg_fraction='0.25', ohem_mode='1'):
        super(_OHEMProp, self).__init__(need_top_grad=False)
        if int(ohem_mode) != OHEM_MODE_HARDEST:
            raise ValueError('%s: ohem_mode %s is not supported (only %d)'
                             % (OHEM_OP_TYPE, ohem_mode, OHEM_MODE_HARDEST))
        self.sampler = OHEMSampler(int(rpn_batch_size), float(fg_fraction))

    def list_arguments(self):
        return ['cls_score', 'labels']

    def list_outputs(self):
        return ['sampled_labels', 'anchor_weight', 'positive_count']

    def infer_shape(self, in_shape):
        score_shape = tuple(in_shape[0])
        if len(score_shape) != 3 or score_shape[1] != 2:
            raise ValueError('%s: cls_score must be (B, 2, N), got %s' % (OHEM_OP_TYPE, score_shape))
        label_shape = (score_shape[0], score_shape[2])
        if in_shape[1] and tuple(in_shape[1]) != label_shape:
            raise ValueError('%s: labels must be %s for scores %s, got %s'
                             % (OHEM_OP_TYPE, label_shape, score_shape, tuple(in_shape[1])))
        return [score_shape, label_shape], [label_shape, label_shape, (score_shape[0], 1)], []

    def create_operator(self, ctx, shapes, dtypes):
        return _OHEMOp(self.sampler)


def ohem_symbol(cls_score, labels, cfg, name='ohem', positive_count=False):
    """OHEM operator for the training graph.

    Args:
        cls_score: symbol (B, 2, N), channel 0 background, 1 face.
        labels: symbol (B, N), 1 face, 0 background, -1 ignored.
        cfg: config giving the sizes (:meth:`OHEMSampler.from_config`).
        name: operator name.
        positive_count: also return the kept positives of each image.
    Returns:
        ``(sampled_labels, anchor_weight)`` symbols, both (B, N) float32, no gradient; with
        ``positive_count`` a third, (B, 1) float32.
    """
    OHEMSampler.from_config(cfg)          # a bad setting fails here, not in the first batch
    op = mx.sym.Custom(cls_score=mx.sym.BlockGrad(cls_score, name='%s_score_nograd' % name),
                       labels=mx.sym.BlockGrad(labels, name='%s_label_nograd' % name),
                       op_type=OHEM_OP_TYPE, name=name,
                       rpn_batch_size=int(cfg.TRAIN.RPN_BATCH_SIZE),
                       fg_fraction=float(cfg.TRAIN.RPN_FG_FRACTION),
                       ohem_mode=int(cfg.TRAIN.OHEM_MODE))
    if positive_count:
        return op[0], op[1], op[2]
    return op[0], op[1]
