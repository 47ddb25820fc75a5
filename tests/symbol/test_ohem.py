"""OHEM selection (the sampler): crafted cases with known kept anchors, a per-image reference,
the random sampler beside it, the graph op wrapping the selection."""
import mxnet as mx
import numpy as np
import pytest
from easydict import EasyDict

from rcnn.config import config as base_config
from rcnn.processing.sampler import OHEMSampler, RandomSampler
from rcnn.symbol.ohem import ohem_select, ohem_symbol


def _cfg():
    return base_config


def _scattered(rng, values, labels):
    """Place (values, labels) at a fixed random permutation; returns arrays and the permutation."""
    perm = rng.permutation(len(values))
    fg = np.empty(len(values), np.float32)
    lab = np.empty(len(values), np.float32)
    fg[perm] = values
    lab[perm] = labels
    return fg, lab, perm


def test_hardest_64_positives_and_192_highest_negatives():
    rng = np.random.RandomState(1)
    # 100 positives with fg scores 99..0, 300 negatives with scores 0..299, 50 ignored
    pos_scores = np.arange(100)[::-1].astype(np.float32) * 0.5
    neg_scores = np.arange(300).astype(np.float32) * 0.25 - 10
    ign_scores = np.full(50, 1000.0, np.float32)
    values = np.concatenate([pos_scores, neg_scores, ign_scores])
    labels = np.concatenate([np.ones(100), np.zeros(300), -np.ones(50)])
    fg, lab, perm = _scattered(rng, values, labels)

    sampled, weight = ohem_select(fg[None], lab[None], _cfg())
    # hardest positives = lowest scores = the last 64 of pos_scores (ids 36..99)
    expected_pos = set(perm[36:100].tolist())
    # highest-scored negatives = the last 192 of neg_scores (ids 100+108 .. 100+299)
    expected_neg = set(perm[100 + 108:400].tolist())
    assert set(np.flatnonzero(sampled[0] == 1).tolist()) == expected_pos
    assert set(np.flatnonzero(sampled[0] == 0).tolist()) == expected_neg
    assert np.count_nonzero(sampled[0] == -1) == 450 - 256
    assert set(np.flatnonzero(weight[0] == 1).tolist()) == expected_pos
    assert weight.sum() == 64
    assert np.all(sampled[0][perm[400:]] == -1)  # ignored anchors stay ignored


def test_all_negative_image_keeps_256_negatives():
    rng = np.random.RandomState(2)
    values = np.linspace(-5, 5, 1000).astype(np.float32)
    fg, lab, perm = _scattered(rng, values, np.zeros(1000))
    sampled, weight = ohem_select(fg[None], lab[None], _cfg())
    assert set(np.flatnonzero(sampled[0] == 0).tolist()) == set(perm[1000 - 256:].tolist())
    assert np.count_nonzero(sampled[0] == 1) == 0
    assert np.count_nonzero(sampled[0] == -1) == 1000 - 256
    assert not weight.any()


def test_few_positives_all_kept_and_negatives_fill_the_batch():
    labels = np.zeros(500, np.float32)
    labels[[3, 40, 41, 400]] = 1
    labels[[7, 8]] = -1
    fg = np.arange(500, dtype=np.float32)
    sampled, weight = ohem_select(fg[None], labels[None], _cfg())
    assert np.flatnonzero(sampled[0] == 1).tolist() == [3, 40, 41, 400]
    kept_neg = np.flatnonzero(sampled[0] == 0)
    assert len(kept_neg) == 252
    negatives = [i for i in range(499, -1, -1) if labels[i] == 0]
    assert kept_neg.tolist() == sorted(negatives[:252])
    assert np.flatnonzero(weight[0]).tolist() == [3, 40, 41, 400]


def test_fewer_candidates_than_the_quota_keeps_them_all():
    labels = np.array([1, 0, 0, -1, 0, 1], np.float32)
    fg = np.array([0.1, 0.2, -3.0, 9.0, 4.0, -1.0], np.float32)
    sampled, weight = ohem_select(fg[None], labels[None], _cfg())
    assert sampled[0].tolist() == [1, 0, 0, -1, 0, 1]
    assert weight[0].tolist() == [1, 0, 0, 0, 0, 1]


def test_ties_break_by_lower_index():
    # 70 positives all scored 0 -> indices 0..63 kept; 300 negatives scored 1 -> first 192 kept
    labels = np.concatenate([np.ones(70), np.zeros(300)]).astype(np.float32)
    fg = np.concatenate([np.zeros(70), np.ones(300)]).astype(np.float32)
    sampled, _ = ohem_select(fg[None], labels[None], _cfg())
    assert np.flatnonzero(sampled[0] == 1).tolist() == list(range(64))
    assert np.flatnonzero(sampled[0] == 0).tolist() == list(range(70, 70 + 192))


def test_batch_rows_are_independent():
    rng = np.random.RandomState(3)
    fg = rng.randn(4, 3000).astype(np.float32)
    labels = rng.choice([-1, 0, 1], size=(4, 3000), p=[0.1, 0.85, 0.05]).astype(np.float32)
    labels[1] = np.where(labels[1] == 1, 0, labels[1])  # an image with no positive
    sampled, weight = ohem_select(fg, labels, _cfg())
    for row in range(4):
        one_sampled, one_weight = ohem_select(fg[row:row + 1], labels[row:row + 1], _cfg())
        np.testing.assert_array_equal(sampled[row], one_sampled[0])
        np.testing.assert_array_equal(weight[row], one_weight[0])


def _per_image_reference(fg, labels, batch=256, fg_fraction=0.25):
    """The selection written as a loop over images with full stable sorts."""
    out = labels.copy()
    weight = np.zeros_like(labels)
    max_fg = int(batch * fg_fraction)
    for row in range(labels.shape[0]):
        pos = np.flatnonzero(labels[row] > 0)
        order = pos[np.argsort(fg[row, pos], kind='stable')]
        out[row, order[max_fg:]] = -1
        kept_pos = order[:max_fg]
        weight[row, kept_pos] = 1
        neg = np.flatnonzero(labels[row] == 0)
        # descending score, lower index first among equal scores
        neg_order = neg[np.lexsort((neg, -fg[row, neg]))]
        out[row, neg_order[batch - len(kept_pos):]] = -1
    return out, weight


@pytest.mark.parametrize('positive_rate', [0.0, 0.004, 0.02, 0.2])
def test_matches_per_image_reference(positive_rate):
    rng = np.random.RandomState(int(positive_rate * 1000) + 5)
    fg = np.round(rng.randn(6, 12800), 2).astype(np.float32)  # rounded: many ties
    labels = rng.choice([-1, 0, 1], size=(6, 12800),
                        p=[0.05, 0.95 - positive_rate, positive_rate]).astype(np.float32)
    sampled, weight = ohem_select(fg, labels, _cfg())
    ref_sampled, ref_weight = _per_image_reference(fg, labels)
    np.testing.assert_array_equal(sampled, ref_sampled)
    np.testing.assert_array_equal(weight, ref_weight)


def test_sizes_follow_the_config():
    fg = np.arange(200, dtype=np.float32)[None]
    labels = np.zeros((1, 200), np.float32)
    labels[0, :50] = 1
    sampled, _ = OHEMSampler(40, 0.5).select(fg, labels)
    assert np.flatnonzero(sampled[0] == 1).tolist() == list(range(20))
    assert np.flatnonzero(sampled[0] == 0).tolist() == list(range(180, 200))


def test_unsupported_mode_and_bad_shapes_raise():
    with pytest.raises(ValueError, match='OHEM_MODE'):
        OHEMSampler.from_config(EasyDict(TRAIN=EasyDict(OHEM_MODE=0, RPN_BATCH_SIZE=256,
                                                        RPN_FG_FRACTION=0.25)))
    with pytest.raises(ValueError, match='B, N'):
        ohem_select(np.zeros((1, 4)), np.zeros((1, 5)), _cfg())


def test_graph_op_matches_selection_and_passes_no_gradient():
    rng = np.random.RandomState(4)
    cfg = _cfg()
    scores = rng.randn(3, 2, 900).astype(np.float32)
    labels = rng.choice([-1, 0, 1], size=(3, 900), p=[0.1, 0.7, 0.2]).astype(np.float32)
    score_var, label_var = mx.sym.var('score'), mx.sym.var('label')
    sampled_sym, weight_sym = ohem_symbol(score_var, label_var, cfg)
    # a loss that depends on both outputs, so a gradient would flow if the op let it
    loss = mx.sym.MakeLoss(mx.sym.sum(sampled_sym * weight_sym) + mx.sym.sum(score_var * 0))
    group = mx.sym.Group([loss, mx.sym.BlockGrad(sampled_sym), mx.sym.BlockGrad(weight_sym)])
    args = {'score': mx.nd.array(scores), 'label': mx.nd.array(labels)}
    grads = {'score': mx.nd.ones(scores.shape), 'label': mx.nd.ones(labels.shape)}
    executor = group.bind(mx.cpu(), args, args_grad=grads)
    outputs = executor.forward(is_train=True)
    executor.backward()
    expected = ohem_select(scores[:, 1] - scores[:, 0], labels, cfg)
    np.testing.assert_array_equal(outputs[1].asnumpy(), expected[0])
    np.testing.assert_array_equal(outputs[2].asnumpy(), expected[1])
    assert not grads['score'].asnumpy().any()
    assert not grads['label'].asnumpy().any()


def test_random_sampler_caps_positives_then_fills_with_negatives():
    labels = np.zeros(1000, np.float32)
    labels[:100] = 1
    labels[100:150] = -1
    sampled = RandomSampler(40, 0.5)(labels.copy(), np.random.default_rng(0))
    assert np.sum(sampled == 1) == 20 and np.sum(sampled == 0) == 20
    assert np.all(sampled[100:150] == -1)                    # ignored anchors stay ignored
    kept_positive = np.flatnonzero(sampled == 1)
    assert np.all(kept_positive < 100)                       # only real positives are kept
    few = np.zeros(30, np.float32)
    few[:3] = 1                                              # fewer than the cap: all kept
    assert np.sum(RandomSampler(40, 0.5)(few, np.random.default_rng(0)) == 1) == 3
