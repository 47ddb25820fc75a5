"""The two channel orders of the max-out class heads (``USE_MAXOUT``, ``MAXOUT_ORIGINAL_ORDER``).

Facts from the original's ``get_out`` (insightface ``RetinaFace/rcnn/symbol/symbol_common.py``
of the released models; the same in ``detection/retinaface`` master): for ``maxout_stat`` 1 /
2 it builds, per anchor ``a``, a conv ``face_rpn_cls_score_stride{s}_anchor{a}_bg`` (3 / 1
channels, max taken over 3) and ``..._fg`` (1 / 3), appends them to one list in the order
``bg_a, fg_a`` and concatenates the list; the softmax reads the concatenation reshaped to
``(0, 2, -1)``. MXNet's reshape keeps memory order, so row ``r`` at anchor ``j`` (index
``j*H*W + p``) reads concatenated channel ``r*A + j``. The tables below are that, written out
by hand: which per-anchor score each softmax entry compares.
"""
import math

import mxnet as mx
import numpy as np
import pytest

from rcnn.config import generate_config
from rcnn.model_layout import ModelLayout
from rcnn.symbol import get_symbol_test, get_symbol_train, label_shapes
from rcnn.symbol.heads import (MAXOUT_BACKGROUND, MAXOUT_FACE, cls_score_head,
                               deploy_outputs)

#: (A, original order) -> ((row 0 per anchor j), (row 1 per anchor j)) of the (0, 2, -1)
#: reshaped class score, each entry (anchor, 'bg' | 'fg') of the per-anchor conv it holds
PAIRING = {
    (2, False): (((0, 'bg'), (1, 'bg')),
                 ((0, 'fg'), (1, 'fg'))),
    (4, False): (((0, 'bg'), (1, 'bg'), (2, 'bg'), (3, 'bg')),
                 ((0, 'fg'), (1, 'fg'), (2, 'fg'), (3, 'fg'))),
    # the original: concatenated [bg_0, fg_0, bg_1, fg_1, ...]
    (2, True): (((0, 'bg'), (0, 'fg')),
                ((1, 'bg'), (1, 'fg'))),
    (4, True): (((0, 'bg'), (0, 'fg'), (1, 'bg'), (1, 'fg')),
                ((2, 'bg'), (2, 'fg'), (3, 'bg'), (3, 'fg'))),
}
#: anchor tables with 2 and 4 anchors per position
ANCHOR_TABLES = {2: 'RAC_SSH', 4: 'RAC_SSH2'}


def _cfg(**overrides):
    cfg, _ = generate_config('mnet', 'retinaface', overrides)
    return cfg


def _conv_name(stride, anchor, kind):
    return 'face_rpn_cls_score_stride%d_anchor%d_%s' % (stride, anchor, kind)


def _code(anchor, kind):
    """A distinct score for each per-anchor conv: 10a + 1 background, 10a + 2 face."""
    return 10.0 * anchor + (1.0 if kind == 'bg' else 2.0)


# ------------------------------------------------------------------- the head on its own
@pytest.mark.parametrize('original_order', [False, True])
@pytest.mark.parametrize('form', [MAXOUT_BACKGROUND, MAXOUT_FACE])
@pytest.mark.parametrize('num_anchors', [2, 4])
def test_each_per_anchor_score_lands_where_the_order_says(num_anchors, form, original_order):
    """Zero weights, biases giving each conv's max a distinct value (the max candidate in the
    middle): the (0, 2, -1) reshape of the head holds them as PAIRING says."""
    height, width = 3, 2
    sym = cls_score_head(mx.sym.var('feature'), 8, num_anchors, form,
                         original_order=original_order)
    reshaped = mx.sym.Reshape(sym, shape=(0, 2, -1))
    feature_shape = (1, 5, height, width)
    arg_shapes, _, _ = reshaped.infer_shape(feature=feature_shape)
    args = {'feature': mx.nd.array(np.random.RandomState(0).randn(*feature_shape))}
    for name, shape in zip(reshaped.list_arguments(), arg_shapes):
        if name.endswith('_weight'):
            args[name] = mx.nd.zeros(shape)
        elif name.endswith('_bias'):
            anchor = int(name.split('_anchor')[1].split('_')[0])
            code = _code(anchor, name.split('_')[-2])
            candidates = [code - 5.0, code, code - 7.0] if shape[0] == 3 else [code]
            args[name] = mx.nd.array(candidates)
    scores = reshaped.bind(mx.cpu(), args).forward()[0].asnumpy()
    assert scores.shape == (1, 2, num_anchors * height * width)
    cells = height * width
    for row, per_anchor in enumerate(PAIRING[(num_anchors, original_order)]):
        for j, (anchor, kind) in enumerate(per_anchor):
            np.testing.assert_array_equal(scores[0, row, j * cells:(j + 1) * cells],
                                          _code(anchor, kind))


@pytest.mark.parametrize('use_maxout', [1, 2])
def test_both_orders_have_the_same_parameters(use_maxout):
    """The original's names and shapes whichever the order: only the concatenation differs."""
    def params(original_order):
        cfg = _cfg(USE_MAXOUT=use_maxout, MAXOUT_ORIGINAL_ORDER=original_order)
        sym = get_symbol_train('mnet', cfg)
        inputs = dict(label_shapes(sym, (1, 3, 64, 64), cfg), data=(1, 3, 64, 64))
        arg_shapes, _, _ = sym.infer_shape(**inputs)
        return {n: s for n, s in zip(sym.list_arguments(), arg_shapes) if n not in inputs}

    fixed, original = params(False), params(True)
    assert fixed == original
    assert original[_conv_name(8, 1, 'bg') + '_weight'] == (3, 64, 1, 1)
    assert original[_conv_name(8, 1, 'fg') + '_weight'] == (1, 64, 1, 1)
    if use_maxout == 2:
        assert original[_conv_name(32, 0, 'bg') + '_weight'] == (1, 64, 1, 1)
        assert original[_conv_name(32, 0, 'fg') + '_weight'] == (3, 64, 1, 1)


def test_the_order_needs_max_out_heads():
    """Without USE_MAXOUT the plain class head is the same graph in both settings."""
    fixed = get_symbol_test('mnet', _cfg(MAXOUT_ORIGINAL_ORDER=False)).tojson()
    assert get_symbol_test('mnet', _cfg(MAXOUT_ORIGINAL_ORDER=True)).tojson() == fixed


# ------------------------------------------------------------------- whole graphs
def _random_args(sym, shapes, rng):
    """Fan-in scaled weights, small biases, BatchNorm gammas near 1; data in [0, 1)."""
    arg_shapes, _, aux_shapes = sym.infer_shape(**shapes)
    args = {}
    for name, shape in zip(sym.list_arguments(), arg_shapes):
        if name == 'data':
            value = rng.uniform(0, 1, shape)
        elif name in shapes:
            value = np.zeros(shape)
        elif name.endswith('_weight'):
            value = rng.normal(0, math.sqrt(2.0 / np.prod(shape[1:])), shape)
        elif name.endswith('_gamma'):
            value = rng.uniform(0.8, 1.2, shape)
        else:
            value = rng.normal(0, 0.1, shape)
        args[name] = value
    aux = {name: np.ones(shape) if name.endswith('_var') else np.zeros(shape)
           for name, shape in zip(sym.list_auxiliary_states(), aux_shapes)}
    return args, aux


def _forward(sym, args, aux, shapes):
    executor = sym.simple_bind(mx.cpu(), grad_req='null', **shapes)
    for name, array in executor.arg_dict.items():
        array[:] = args[name]
    for name, array in executor.aux_dict.items():
        array[:] = aux[name]
    return {name: out.asnumpy()
            for name, out in zip(sym.list_outputs(), executor.forward(is_train=False))}


@pytest.fixture(scope='module', params=[(2, False), (2, True), (4, False), (4, True)],
                ids=lambda p: 'A%d-%s' % (p[0], 'original' if p[1] else 'fixed'))
def graphs(request):
    """USE_MAXOUT 2 (both head forms) mnet graphs of one order: ``(cfg, layout, deploy
    outputs with every per-anchor max-out score, train outputs, original order)`` for the
    same parameters."""
    num_anchors, original_order = request.param
    cfg = _cfg(USE_MAXOUT=2, MAXOUT_ORIGINAL_ORDER=original_order,
               RPN_ANCHOR_CFG=ANCHOR_TABLES[num_anchors])
    layout = ModelLayout.from_config(cfg)
    assert layout.num_anchors == num_anchors
    data_shape = (1, 3, 64, 64)
    deploy = get_symbol_test('mnet', cfg)
    internals = deploy.get_internals()
    per_anchor = [internals[name] for name in internals.list_outputs()
                  if '_cls_score_stride' in name and '_anchor' in name
                  and (name.endswith('_max_output') or name.endswith('_bg_output')
                       or name.endswith('_fg_output'))]
    deploy = mx.sym.Group([deploy] + per_anchor)
    train = get_symbol_train('mnet', cfg)
    train_shapes = dict(label_shapes(train, data_shape, cfg), data=data_shape)
    args, aux = _random_args(train, train_shapes, np.random.RandomState(7))
    deploy_args = {name: args[name] for name in deploy.list_arguments()}
    return (cfg, layout, _forward(deploy, deploy_args, aux, {'data': data_shape}),
            _forward(train, args, aux, train_shapes), original_order)


def _per_anchor_score(outputs, stride, anchor, kind, channels):
    """(H, W) score of one per-anchor conv: its max when it has 3 candidates."""
    name = _conv_name(stride, anchor, kind)
    if channels == 3:
        return outputs[name + '_max_output'][0, 0]
    return outputs[name + '_output'][0, 0]


def test_deploy_face_probability_is_the_softmax_of_the_pair_the_order_says(graphs):
    cfg, layout, deploy, _, original_order = graphs
    a = layout.num_anchors
    for stride in layout.strides:
        finest = stride == layout.strides[-1]
        channels = {'bg': 3 if finest else 1, 'fg': 1 if finest else 3}
        prob = deploy['face_rpn_cls_prob_reshape_stride%d_output' % stride][0]
        assert prob.shape[0] == 2 * a
        row0, row1 = PAIRING[(a, original_order)]
        for j in range(a):
            low = _per_anchor_score(deploy, stride, *row0[j], channels[row0[j][1]])
            high = _per_anchor_score(deploy, stride, *row1[j], channels[row1[j][1]])
            expected = 1.0 / (1.0 + np.exp(low - high))
            np.testing.assert_allclose(prob[a + j], expected, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(prob[j], 1.0 - expected, rtol=1e-4, atol=1e-6)
        # not saturated: the comparison says something
        assert ((prob > 0.02) & (prob < 0.98)).mean() > 0.5


def test_training_softmax_is_the_deploy_probability(graphs):
    """The training graph's face_rpn_cls_prob_stride{s} (B, 2, A*H*W) is the deploy graph's
    (B, 2A, H, W) probability in the (0, 2, -1) layout, for either order."""
    _, layout, deploy, train, _ = graphs
    for stride in layout.strides:
        trained = train['face_rpn_cls_prob_stride%d_output' % stride]
        deployed = deploy['face_rpn_cls_prob_reshape_stride%d_output' % stride]
        assert trained.shape == (1, 2, deployed.shape[1] // 2 * deployed.shape[2]
                                 * deployed.shape[3])
        np.testing.assert_allclose(trained, deployed.reshape(trained.shape), rtol=1e-4,
                                   atol=1e-6)


def test_the_two_orders_give_different_probabilities():
    """Same parameters, different orders: the switch changes what the softmax pairs."""
    data_shape = (1, 3, 64, 64)
    outputs = []
    for original_order in (False, True):
        cfg = _cfg(USE_MAXOUT=1, MAXOUT_ORIGINAL_ORDER=original_order)
        deploy = get_symbol_test('mnet', cfg)
        args, aux = _random_args(deploy, {'data': data_shape}, np.random.RandomState(3))
        outputs.append(_forward(deploy, args, aux, {'data': data_shape}))
    name = 'face_rpn_cls_prob_reshape_stride8_output'
    assert np.abs(outputs[0][name] - outputs[1][name]).max() > 0.05
    coarse = 'face_rpn_cls_prob_reshape_stride32_output'
    np.testing.assert_allclose(outputs[0][coarse], outputs[1][coarse], rtol=1e-5)


# ------------------------------------------------------------------- the detector
FACE_LOGIT = 10.0
CELL = (3, 5)           # a stride-8 cell whose sample (24, 40) no coarser stride reads


def _hand_anchor(side, cell, stride):
    """The original's anchor of side ``side`` (base 16, ratio 1) shifted to ``cell``."""
    y, x = cell
    cx, cy = 7.5 + x * stride, 7.5 + y * stride
    half = 0.5 * (side - 1)
    return np.array([cx - half, cy - half, cx + half, cy + half])


def _sampling_checkpoint(prefix, cfg, probe):
    """A deploy checkpoint of ``cfg``'s heads (:func:`deploy_outputs`) on features that sample
    the input pixel (s*y, s*x) per stride; every weight and bias 0 except candidate 0 of the
    per-anchor conv ``probe`` (stride 8), which sees the red channel with FACE_LOGIT / 255."""
    from rcnn.checkpoint.params import save_checkpoint
    from rcnn.recipe import write_recipe
    layout = ModelLayout.from_config(cfg)
    data = mx.sym.var('data')
    features = {s: mx.sym.Pooling(data, kernel=(1, 1), stride=(s, s), pool_type='max',
                                  name='sample_stride%d' % s) for s in layout.strides}
    sym = deploy_outputs(features, cfg, layout)
    arg_shapes, _, _ = sym.infer_shape(data=(1, 3, 64, 64))
    params = {name: np.zeros(shape, np.float32)
              for name, shape in zip(sym.list_arguments(), arg_shapes) if name != 'data'}
    params[probe + '_weight'][0, 0] = FACE_LOGIT / 255.0
    save_checkpoint(str(prefix), 0, sym, {k: mx.nd.array(v) for k, v in params.items()}, {})
    write_recipe(str(prefix), cfg, 'mnet')
    return str(prefix)


#: (original order, per-anchor conv seeing the red pixel) -> the anchor found there (None:
#: no face), from PAIRING for A = 2: a face is found where the conv is a row-1 entry
DETECTED = {
    (False, (0, 'bg')): None, (False, (0, 'fg')): 0,
    (False, (1, 'bg')): None, (False, (1, 'fg')): 1,
    (True, (0, 'bg')): None, (True, (0, 'fg')): None,
    (True, (1, 'bg')): 0, (True, (1, 'fg')): 1,
}
#: stride-8 anchor sides of RAC_SSH: scales (2, 1) of base 16
STRIDE8_SIDES = (32, 16)


@pytest.mark.parametrize('original_order,probe', sorted(DETECTED),
                         ids=['%s-anchor%d_%s' % ('original' if o else 'fixed', a, k)
                              for o, (a, k) in sorted(DETECTED)])
def test_the_detector_reads_the_face_channel_the_order_gives(tmp_path, original_order, probe):
    from retinaface import RetinaFace
    cfg = _cfg(USE_MAXOUT=2, MAXOUT_ORIGINAL_ORDER=original_order)
    prefix = _sampling_checkpoint(tmp_path / 'maxout', cfg, _conv_name(8, *probe))
    image = np.zeros((64, 96, 3), np.uint8)
    image[CELL[0] * 8, CELL[1] * 8] = (0, 0, 255)            # BGR red
    faces, _ = RetinaFace(prefix, 0, ctx_id=-1).detect(image, threshold=0.9)
    anchor = DETECTED[(original_order, probe)]
    if anchor is None:
        assert len(faces) == 0, faces
        return
    assert faces.shape == (1, 5)
    np.testing.assert_allclose(faces[0, 4], 1.0 / (1.0 + math.exp(-FACE_LOGIT)), rtol=1e-5)
    np.testing.assert_allclose(faces[0, :4], _hand_anchor(STRIDE8_SIDES[anchor], CELL, 8),
                               atol=1e-3)
