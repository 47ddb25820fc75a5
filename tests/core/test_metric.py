"""Training metrics and the per-batch callbacks on crafted outputs."""
import logging

import mxnet as mx
import numpy as np
import pytest

from rcnn.core.callback import NonFiniteLossError, Speedometer, check_finite_outputs
from rcnn.core.metric import (RPNAcc, RPNL1Loss, RPNLandMarkL1Loss, build_train_metrics,
                              loss_output_indices)


def nd(values):
    return mx.nd.array(np.asarray(values, dtype=np.float32))


def test_accuracy_ignores_label_minus_one():
    # 1 image, 5 anchors; face probability (channel 1) per anchor
    face = np.array([0.9, 0.2, 0.6, 0.4, 0.7])
    prob = np.stack([1 - face, face])[None]          # (1, 2, 5)
    label = np.array([[1, 0, 0, -1, -1]])             # anchors 3, 4 ignored
    metric = RPNAcc(0, 1, name='acc')
    metric.update(None, [nd(prob), nd(label)])
    # kept anchors 0, 1, 2: predictions 1, 0, 1 vs labels 1, 0, 0 -> 2 of 3
    assert metric.get() == ('acc', pytest.approx(2 / 3))
    # preds 1,0,1,0,1 vs labels 0,0,1,1,1 -> anchors 1, 2, 4 right: 3 of 5
    metric.update(None, [nd(prob), nd([[0, 0, 1, 1, 1]])])
    assert metric.get()[1] == pytest.approx(5 / 8)


def test_accuracy_rejects_mismatched_shapes():
    metric = RPNAcc(0, 1)
    with pytest.raises(ValueError, match='RPNAcc'):
        metric.update(None, [nd(np.zeros((1, 2, 5))), nd(np.zeros((1, 4)))])


def test_box_loss_is_per_weighted_anchor():
    loss = np.zeros((1, 8, 3), np.float32)      # A = 2 anchors x 4 values, 3 positions
    weight = np.zeros_like(loss)
    weight[0, 0:4, 1] = 1                        # anchor 0 at position 1
    weight[0, 4:8, 2] = 1                        # anchor 1 at position 2
    loss[0, 0:4, 1] = [0.5, 0.25, 0.0, 0.25]
    loss[0, 4:8, 2] = [1.0, 0.0, 0.0, 0.0]
    metric = RPNL1Loss(0, 1, name='l1')
    metric.update(None, [nd(loss), nd(weight)])
    assert metric.get()[1] == pytest.approx(2.0 / 2)


def test_landmark_loss_counts_ten_values_per_anchor():
    loss = np.zeros((2, 20, 4), np.float32)
    weight = np.zeros_like(loss)
    weight[1, 10:20, 3] = 1                      # one anchor with landmarks
    loss[1, 10:20, 3] = 0.3
    metric = RPNLandMarkL1Loss(0, 1)
    metric.update(None, [nd(loss), nd(weight)])
    assert metric.name == 'RPNLandMarkL1Loss'
    assert metric.get()[1] == pytest.approx(3.0)


def test_composite_reads_the_six_outputs_of_each_stride():
    strides = (32, 16, 8)
    outputs = []
    for k, _ in enumerate(strides):
        n = 4
        prob = np.zeros((1, 2, n), np.float32)
        prob[0, 1, :] = 1.0                      # predicts face everywhere
        label = np.array([[1, 1, 0, -1][:k + 1] + [-1] * (n - k - 1)], np.float32)
        box_loss = np.full((1, 4, n), k + 1, np.float32)
        box_weight = np.zeros((1, 4, n), np.float32)
        box_weight[0, :, 0] = 1
        lmk_loss = np.full((1, 10, n), 10 * (k + 1), np.float32)
        lmk_weight = np.zeros((1, 10, n), np.float32)
        lmk_weight[0, :, :2] = 1
        outputs += [prob, label, box_loss, box_weight, lmk_loss, lmk_weight]
    metrics = build_train_metrics(strides)
    metrics.update(None, [nd(o) for o in outputs])
    values = dict(metrics.get_name_value())
    assert list(values) == ['RPNAcc_s32', 'RPNL1Loss_s32', 'RPNLandMarkL1Loss_s32',
                            'RPNAcc_s16', 'RPNL1Loss_s16', 'RPNLandMarkL1Loss_s16',
                            'RPNAcc_s8', 'RPNL1Loss_s8', 'RPNLandMarkL1Loss_s8']
    # stride 32 keeps label [1]; 16 keeps [1, 1]; 8 keeps [1, 1, 0] -> 1, 1, 2/3
    assert values['RPNAcc_s32'] == 1.0 and values['RPNAcc_s16'] == 1.0
    assert values['RPNAcc_s8'] == pytest.approx(2 / 3)
    # box: loss k+1 on all 4n values / 1 weighted anchor = 16 (k + 1)
    assert values['RPNL1Loss_s16'] == pytest.approx(4 * 4 * 2)
    # landmarks: 10 (k+1) * 40 values / 2 anchors
    assert values['RPNLandMarkL1Loss_s8'] == pytest.approx(10 * 3 * 40 / 2)
    assert loss_output_indices(3) == [0, 2, 4, 6, 8, 10, 12, 14, 16]


def _outputs_with(value_at=None, devices=2):
    outs = [[mx.nd.ones((1, 4)) for _ in range(devices)] for _ in range(18)]
    if value_at is not None:
        idx, dev, value = value_at
        arr = np.ones((1, 4), np.float32)
        arr[0, 2] = value
        outs[idx][dev] = mx.nd.array(arr)
    return outs


def test_nan_guard_names_the_batch_and_the_output():
    names = ['out%d' % i for i in range(18)]
    check_finite_outputs(_outputs_with(), loss_output_indices(3), names, 0, 1, 0)
    with pytest.raises(NonFiniteLossError) as info:
        check_finite_outputs(_outputs_with((8, 1, np.nan)), loss_output_indices(3), names,
                             epoch=3, batch_in_epoch=17, iteration=123)
    message = str(info.value)
    assert 'epoch 3, batch 17 (iteration 123)' in message and 'out8' in message
    assert (info.value.epoch, info.value.iteration) == (3, 123)
    with pytest.raises(NonFiniteLossError, match='out16'):
        check_finite_outputs(_outputs_with((16, 0, np.inf)), loss_output_indices(3), names,
                             0, 1, 0)
    # labels / weights (odd indices) are not watched
    check_finite_outputs(_outputs_with((5, 0, np.nan)), loss_output_indices(3), names, 0, 1, 0)


def test_speedometer_logs_every_frequent_iterations_and_resets_the_window(caplog):
    metric = RPNL1Loss(0, 1, name='l1')
    weight = nd(np.ones((1, 4, 1)))
    speed = Speedometer(batch_size=4, frequent=2)
    lines = []
    with caplog.at_level(logging.INFO, logger='rcnn.core.callback'):
        for iteration, loss_value in enumerate([1.0, 3.0, 10.0, 20.0], start=1):
            metric.update(None, [nd(np.full((1, 4, 1), loss_value / 4)), weight])
            lines.append(speed(0, iteration, iteration, metric, 0.01, 0.0, 0.0))
    assert lines[0] is None and lines[2] is None
    assert 'Iter[2]' in lines[1] and 'l1=2.000000' in lines[1]      # mean of 1 and 3
    assert 'Iter[4]' in lines[3] and 'l1=15.000000' in lines[3]     # window reset: 10, 20
    assert 'samples/sec' in lines[3] and 'lr=0.01' in lines[3]
    assert sum('Iter[' in r.message for r in caplog.records) == 2
