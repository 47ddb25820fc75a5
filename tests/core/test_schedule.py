"""The lr schedule built from --lr_step: the three factor patterns, by hand-computed values."""
import mxnet as mx
import numpy as np
import pytest

from rcnn.core.schedule import (LRSchedule, StepFactorScheduler, epochs_to_iterations,
                                parse_lr_step, step_factors)


def test_three_steps_decay_by_ten_each():
    # 100 images, batch 10 -> 10 iterations per epoch; steps at 550, 680, 800
    sched = LRSchedule.from_epochs(0.01, '55,68,80', begin_epoch=0, num_images=100, batch_size=10)
    assert sched.steps == [550, 680, 800]
    expected = {0: 0.01, 549: 0.01, 550: 0.001, 679: 0.001, 680: 0.0001, 799: 0.0001}
    for iteration, lr in expected.items():
        assert sched.lr_at(iteration) == pytest.approx(lr, rel=1e-12), iteration
    assert sched.end_iteration == 800
    assert [it for it in range(900) if sched.changes_at(it)] == [550, 680, 800]


def test_eight_steps_warm_up_then_decay():
    # resnet preset; 20 images, batch 4 -> 5 iterations per epoch
    sched = LRSchedule.from_epochs(0.001, '1,2,3,4,5,55,68,80', 0, 20, 4)
    assert sched.steps == [5, 10, 15, 20, 25, 275, 340, 400]
    assert sched.lr_at(4) == pytest.approx(0.001)
    assert sched.lr_at(5) == pytest.approx(0.0015849)
    assert sched.lr_at(12) == pytest.approx(0.001 * 2.51190801)        # 1.5849 squared
    # five warm-up steps: x 1.5849^5 = x 10.00 (to 4 digits)
    assert sched.lr_at(25) == pytest.approx(0.0100002, rel=1e-4)
    assert sched.lr_at(274) == sched.lr_at(25)
    assert sched.lr_at(275) == pytest.approx(0.00100002, rel=1e-4)
    assert sched.lr_at(340) == pytest.approx(0.000100002, rel=1e-4)
    assert sched.end_iteration == 400


def test_five_steps_use_their_own_factors():
    sched = LRSchedule.from_epochs(0.1, '10,20,30,40,50', 0, 10, 10)  # 1 iteration per epoch
    values = [sched.lr_at(it) for it in (9, 10, 20, 30, 40, 50)]
    assert values == pytest.approx([0.1, 0.05, 0.025, 0.01, 0.001, 0.0001])


def test_begin_epoch_drops_past_steps_and_shifts_the_rest():
    # starting at epoch 60: only 68 and 80 remain, 8 and 20 epochs ahead, factors 0.1
    steps = epochs_to_iterations([55, 68, 80], begin_epoch=60, num_images=50, batch_size=10)
    assert steps == [40, 100]
    sched = LRSchedule.from_epochs(0.01, '55,68,80', 60, 50, 10)
    assert sched.lr_at(39) == pytest.approx(0.01) and sched.lr_at(40) == pytest.approx(0.001)


def test_steps_round_down_like_the_original():
    # 8 images, batch 16: epoch 55 -> int(27.5) = 27
    assert epochs_to_iterations([55, 68, 80], 0, 8, 16) == [27, 34, 40]


def test_factor_patterns():
    assert step_factors(8) == [1.5849] * 5 + [0.1] * 3
    assert step_factors(5) == [0.5, 0.5, 0.4, 0.1, 0.1]
    assert step_factors(3) == [0.1] * 3
    assert step_factors(1) == [0.1]


@pytest.mark.parametrize('bad', ['55,x', '68,55', '5,5', '-1,3'])
def test_bad_lr_step_is_refused_naming_the_flag(bad):
    with pytest.raises(ValueError, match='--lr_step'):
        parse_lr_step(bad)


def test_mxnet_optimizer_applies_the_schedule_per_update():
    """Plain SGD (no momentum/wd) on a gradient of ones: each update moves the weight by its lr."""
    sched = LRSchedule(0.5, [2, 4], [0.1, 0.1])
    opt = mx.optimizer.SGD(learning_rate=0.5, momentum=0.0, wd=0.0,
                           lr_scheduler=sched.scheduler(), begin_num_update=1)
    updater = mx.optimizer.get_updater(opt)
    weight = mx.nd.zeros((1,))
    grad = mx.nd.ones((1,))
    moves = []
    for _ in range(5):  # iterations 1..5 (resumed after one iteration)
        before = weight.asscalar()
        updater(0, grad, weight)
        moves.append(before - weight.asscalar())
    np.testing.assert_allclose(moves, [0.5, 0.05, 0.05, 0.005, 0.005], rtol=1e-6)


def test_scheduler_is_picklable_for_kvstore_servers():
    import pickle
    sched = pickle.loads(pickle.dumps(StepFactorScheduler(0.01, [3], [0.1])))
    assert sched(3) == pytest.approx(0.01) and sched(4) == pytest.approx(0.001)


def test_rebased_steps_keep_their_epochs_on_data_of_another_size():
    """Epochs 55 / 68 / 80 at 100 iterations per epoch, resumed at epoch 10 (iteration 1000)
    on half the images (50 per epoch): the steps come at 1000 + 45 x 50, 1000 + 58 x 50, ..."""
    from rcnn.core.schedule import rebase_steps
    assert rebase_steps([5500, 6800, 8000], 1000, 100, 50) == [3250, 3900, 4500]
    # steps already passed stay where they were; twice the data doubles the distance
    assert rebase_steps([500, 5500], 1000, 100, 200) == [500, 1000 + 9000]
    assert rebase_steps([], 10, 1, 1) == []
    import pytest
    with pytest.raises(ValueError, match='positive'):
        rebase_steps([5], 0, 0, 3)
