"""Training metrics per feature stride, read from the training graph's outputs.

The outputs follow the recipe's :class:`rcnn.model_layout.ModelLayout`: per stride (coarse to
fine) :attr:`ModelLayout.train_output_kinds`, six with landmarks, four without::

    class probabilities   (B, 2, A*H*W)    channel 1 = face
    sampled anchor labels (B, A*H*W)       1 face, 0 background, -1 ignored
    box smooth-L1 loss    (B, 4A, H*W)     already multiplied by the box weights (5A: blur)
    box weights           (B, 4A, H*W)     > 0 on the anchors that carry a box loss
    landmark loss         (B, 10A, H*W)    (15A with occlusion; absent without landmarks)
    landmark weights      (B, 10A, H*W)

``RPNAcc_s{s}``: share of non-ignored anchors whose arg-max class equals the label.
``RPNL1Loss_s{s}`` / ``RPNLandMarkL1Loss_s{s}`` (the latter only with landmarks): summed loss
per weighted anchor (weighted values / the layout's values per anchor: 4 or 5 for boxes, 10 or
15 for landmarks), i.e. the mean smooth-L1 loss of one positive anchor's box or landmarks. With
``LR_MODE`` 1 the graph already divides its losses by the valid-anchor count, and the losses are
averaged per batch instead (the original's ``num_inst = 1``).
"""
import mxnet as mx
import numpy as np

from rcnn.model_layout import (BOX_LEN, FEATURE_STRIDES, LANDMARK_LEN, OUTPUTS_PER_STRIDE,
                               ModelLayout)

__all__ = ['OUTPUTS_PER_STRIDE', 'RPNAcc', 'RPNL1Loss', 'RPNLandMarkL1Loss',
           'build_train_metrics', 'loss_output_indices', 'as_layout']


class RPNAcc(mx.metric.EvalMetric):
    """Anchor classification accuracy over the anchors whose label is not -1.

    Args:
        pred_idx: index of the class-probability output ``(B, 2, N)``.
        label_idx: index of the label output ``(B, N)``.
    """

    def __init__(self, pred_idx, label_idx, name='RPNAcc'):
        super(RPNAcc, self).__init__(name)
        self.pred_idx = pred_idx
        self.label_idx = label_idx

    def update(self, labels, preds):
        prob = preds[self.pred_idx].asnumpy()
        label = preds[self.label_idx].asnumpy()
        if prob.ndim != 3 or prob.shape[1] != 2 or label.shape != (prob.shape[0], prob.shape[2]):
            raise ValueError('%s: expected probabilities (B, 2, N) and labels (B, N), got %s and %s'
                             % (self.name, prob.shape, label.shape))
        predicted = prob.argmax(axis=1)
        kept = label != -1
        correct = int(np.count_nonzero(predicted[kept] == label[kept]))
        count = int(np.count_nonzero(kept))
        self.sum_metric += correct
        self.global_sum_metric += correct
        self.num_inst += count
        self.global_num_inst += count


class RPNL1Loss(mx.metric.EvalMetric):
    """Smooth-L1 loss per weighted anchor.

    Args:
        loss_idx: index of the loss output (weighted smooth-L1 values).
        weight_idx: index of the weight output, same shape.
        values_per_anchor: regression values of one anchor (4 or 5 boxes, 10 or 15 landmarks).
        per_batch: average per update (batch) instead of per weighted anchor (``LR_MODE`` 1).
    """

    def __init__(self, loss_idx, weight_idx, name='RPNL1Loss',
                 values_per_anchor=BOX_LEN, per_batch=False):
        super(RPNL1Loss, self).__init__(name)
        self.loss_idx = loss_idx
        self.weight_idx = weight_idx
        self.values_per_anchor = values_per_anchor
        self.per_batch = bool(per_batch)

    def update(self, labels, preds):
        loss = preds[self.loss_idx].asnumpy()
        weight = preds[self.weight_idx].asnumpy()
        if loss.shape != weight.shape:
            raise ValueError('%s: loss %s and weight %s shapes differ'
                             % (self.name, loss.shape, weight.shape))
        total = float(loss.sum(dtype=np.float64))
        anchors = 1.0 if self.per_batch else \
            np.count_nonzero(weight > 0) / float(self.values_per_anchor)
        self.sum_metric += total
        self.global_sum_metric += total
        self.num_inst += anchors
        self.global_num_inst += anchors


class RPNLandMarkL1Loss(RPNL1Loss):
    """Landmark smooth-L1 loss per weighted anchor (10 values per anchor, 15 with occlusion)."""

    def __init__(self, loss_idx, weight_idx, name='RPNLandMarkL1Loss',
                 values_per_anchor=LANDMARK_LEN, per_batch=False):
        super(RPNLandMarkL1Loss, self).__init__(loss_idx, weight_idx, name=name,
                                                values_per_anchor=values_per_anchor,
                                                per_batch=per_batch)


def as_layout(layout):
    """A :class:`ModelLayout`: ``layout`` itself, or the ``net3`` layout of a sequence of
    strides, or of that many of the ``net3`` strides' count (an int)."""
    if isinstance(layout, ModelLayout):
        return layout
    if isinstance(layout, int):
        if layout != len(FEATURE_STRIDES):
            raise ValueError('a stride count stands for the %d net3 strides, got %d; pass a '
                             'ModelLayout' % (len(FEATURE_STRIDES), layout))
        return ModelLayout(FEATURE_STRIDES)
    return ModelLayout(layout)


def build_train_metrics(layout, lr_mode=0):
    """CompositeEvalMetric with, per stride of ``layout`` (a :class:`ModelLayout`, or the
    strides of a ``net3`` layout), ``RPNAcc_s{s}``, ``RPNL1Loss_s{s}`` and, with landmarks,
    ``RPNLandMarkL1Loss_s{s}``; ``lr_mode`` 1 averages the losses per batch."""
    layout = as_layout(layout)
    per_batch = int(lr_mode) != 0
    metrics = mx.metric.CompositeEvalMetric()
    for k, stride in enumerate(layout.strides):
        def index(kind, k=k):
            return layout.train_output_index(k, kind)
        metrics.add(RPNAcc(index('face_rpn_cls_prob'), index('face_rpn_label'),
                           name='RPNAcc_s%d' % stride))
        metrics.add(RPNL1Loss(index('face_rpn_bbox_loss'), index('face_rpn_bbox_weight'),
                              name='RPNL1Loss_s%d' % stride, values_per_anchor=layout.box_len,
                              per_batch=per_batch))
        if layout.landmarks:
            metrics.add(RPNLandMarkL1Loss(index('face_rpn_landmark_loss'),
                                          index('face_rpn_landmark_weight'),
                                          name='RPNLandMarkL1Loss_s%d' % stride,
                                          values_per_anchor=layout.landmark_len,
                                          per_batch=per_batch))
    return metrics


def loss_output_indices(layout):
    """Indices of the outputs that must stay finite: probabilities, box and landmark losses
    (``layout``: a :class:`ModelLayout`, ``net3`` strides, or the net3 stride count)."""
    layout = as_layout(layout)
    kinds = [k for k in ('face_rpn_cls_prob', 'face_rpn_bbox_loss', 'face_rpn_landmark_loss')
             if k in layout.train_output_kinds]
    return [layout.train_output_index(k, kind) for k in range(len(layout.strides))
            for kind in kinds]
