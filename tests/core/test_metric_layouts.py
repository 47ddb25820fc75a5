"""Training metrics of every layout: outputs per stride from the ``ModelLayout`` (four without
landmarks), any number of strides, 5 box / 15 landmark values per anchor, ``LR_MODE`` 1."""
import mxnet as mx
import numpy as np
import pytest

from rcnn.config import generate_config
from rcnn.core.metric import build_train_metrics, loss_output_indices
from rcnn.core.training_setup import TrainMetrics
from rcnn.model_layout import ModelLayout


def nd(values):
    return mx.nd.array(np.asarray(values, dtype=np.float32))


def _stride_outputs(k, box_len, landmark_len, n=4, anchors=1):
    """Outputs of stride index k: face predicted everywhere, labels [1, 0, -1, -1]; one
    weighted anchor at position 0 whose box values lose k + 1 each (weights 1, blur 0.1) and,
    with landmarks, two weighted anchors."""
    prob = np.zeros((1, 2, anchors * n), np.float32)
    prob[0, 1] = 1.0
    label = np.array([[1, 0, -1, -1]], np.float32)
    box_loss = np.zeros((1, box_len * anchors, n), np.float32)
    box_weight = np.zeros_like(box_loss)
    box_weight[0, :4, 0] = 1
    box_weight[0, 4:box_len, 0] = 0.1
    box_loss[0, :box_len, 0] = k + 1
    outputs = [prob, label, box_loss, box_weight]
    if landmark_len:
        lmk_loss = np.zeros((1, landmark_len * anchors, n), np.float32)
        lmk_weight = np.zeros_like(lmk_loss)
        lmk_weight[0, :, :2] = 1
        lmk_loss[0, :, :2] = 2.0
        outputs += [lmk_loss, lmk_weight]
    return outputs


def test_without_landmarks_four_outputs_per_stride_and_no_landmark_metric():
    layout = ModelLayout((32, 16, 8), landmark_len=0)
    outputs = sum((_stride_outputs(k, 4, 0) for k in range(3)), [])
    metrics = build_train_metrics(layout)
    metrics.update(None, [nd(o) for o in outputs])
    values = dict(metrics.get_name_value())
    assert list(values) == ['RPNAcc_s32', 'RPNL1Loss_s32', 'RPNAcc_s16', 'RPNL1Loss_s16',
                            'RPNAcc_s8', 'RPNL1Loss_s8']
    assert values['RPNAcc_s16'] == pytest.approx(0.5)
    # stride index k: 4 values of k + 1 on one anchor
    assert [values['RPNL1Loss_s%d' % s] for s in (32, 16, 8)] == pytest.approx([4, 8, 12])
    assert loss_output_indices(layout) == [0, 2, 4, 6, 8, 10]


def test_five_strides_blur_and_occlusion_values_per_anchor():
    cfg, _ = generate_config('mnet', 'retinaface', overrides={
        'RPN_ANCHOR_CFG': 'RAC_RETINA', 'USE_BLUR': True, 'USE_OCCLUSION': True})
    layout = ModelLayout.from_config(cfg)
    outputs = sum((_stride_outputs(k, 5, 15) for k in range(5)), [])
    metrics = TrainMetrics.from_config(cfg)()
    metrics.update(None, [nd(o) for o in outputs])
    values = dict(metrics.get_name_value())
    assert list(values) == ['%s_s%d' % (name, s) for s in (64, 32, 16, 8, 4)
                            for name in ('RPNAcc', 'RPNL1Loss', 'RPNLandMarkL1Loss')]
    # 5 weighted box values (the blur's weight 0.1 counts) = one anchor: loss 5 (k + 1)
    assert values['RPNL1Loss_s4'] == pytest.approx(5 * 5)
    # 2 anchors x 15 weighted values of loss 2: 60 / 2
    assert values['RPNLandMarkL1Loss_s64'] == pytest.approx(30)
    assert loss_output_indices(layout) == [6 * k + i for k in range(5) for i in (0, 2, 4)]


def test_lr_mode_one_averages_per_batch():
    layout = ModelLayout((32, 16, 8))
    outputs = sum((_stride_outputs(k, 4, 10) for k in range(3)), [])
    metrics = build_train_metrics(layout, lr_mode=1)
    for _ in range(2):
        metrics.update(None, [nd(o) for o in outputs])
    values = dict(metrics.get_name_value())
    assert values['RPNL1Loss_s8'] == pytest.approx(12)             # 4 x 3 per batch
    assert values['RPNLandMarkL1Loss_s32'] == pytest.approx(40)    # 20 values x 2 per batch


def test_a_stride_count_other_than_net3s_is_refused():
    with pytest.raises(ValueError, match='ModelLayout'):
        loss_output_indices(5)
