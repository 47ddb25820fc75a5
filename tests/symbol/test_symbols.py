"""RetinaFace graphs against the released graphs, and the training losses.

The released ``mnet.25`` and ``R50`` symbol files in ../shared are the specification: our graphs
must have their parameter names, shapes and attributes and compute their outputs.
"""
import copy
import json

import cv2
import mxnet as mx
import numpy as np
import pytest

from conftest import shared_path
from rcnn.config import generate_config
from rcnn.symbol import (deploy_output_names, feature_shapes, get_symbol_test, get_symbol_train,
                         label_names, label_shapes)
from rcnn.symbol.symbol_common import smooth_l1_loss
from rcnn.checkpoint.params import check_params, load_checkpoint

RELEASED = {'mnet': ('mnet.25', 'mnet.25-symbol.json'), 'resnet': ('R50', 'R50-symbol.json')}
STRIDES = (32, 16, 8)
TRAIN_OUTPUT_TEMPLATES = ('face_rpn_cls_prob_stride%d', 'face_rpn_label_stride%d',
                          'face_rpn_bbox_loss_stride%d', 'face_rpn_bbox_weight_stride%d',
                          'face_rpn_landmark_loss_stride%d', 'face_rpn_landmark_weight_stride%d')


def _cfg(network, **train):
    cfg, _ = generate_config(network, 'retinaface')
    cfg.TRAIN.update(train)
    return cfg


def _released_symbol(network):
    folder, name = RELEASED[network]
    return mx.sym.load(str(shared_path('models', folder, name)))


def _param_shapes(sym, data_shape=(1, 3, 640, 640)):
    arg_shapes, _, aux_shapes = sym.infer_shape_partial(data=data_shape)
    inputs = {'data'} | set(label_names(STRIDES))
    args = {n: tuple(s) for n, s in zip(sym.list_arguments(), arg_shapes) if n not in inputs}
    return args, dict(zip(sym.list_auxiliary_states(), (tuple(s) for s in aux_shapes)))


def _real_image(width, height):
    """The real test photo, resized to (height, width), as (1, 3, H, W) RGB float pixels."""
    image = cv2.imread(str(shared_path('images', 'Tom_Cruise_avp_2014_4.jpg')))
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return image[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)


def _forward(sym, arg, aux, data):
    executor = sym.bind(mx.cpu(), dict(arg, data=mx.nd.array(data)), aux_states=aux,
                        grad_req='null')
    return [out.asnumpy() for out in executor.forward(is_train=False)]


# ---------------------------------------------------------------- structure vs the releases
@pytest.mark.parametrize('network', ['mnet', 'resnet'])
@pytest.mark.parametrize('kind', ['deploy', 'train'])
def test_parameter_names_and_shapes_equal_the_release(network, kind):
    released_args, released_aux = _param_shapes(_released_symbol(network))
    builder = get_symbol_test if kind == 'deploy' else get_symbol_train
    args, aux = _param_shapes(builder(network, _cfg(network)))
    assert sorted(set(args) ^ set(released_args)) == []
    assert sorted(set(aux) ^ set(released_aux)) == []
    assert {n: s for n, s in args.items() if s != released_args[n]} == {}
    assert {n: s for n, s in aux.items() if s != released_aux[n]} == {}


def _variable_attrs(sym):
    graph = json.loads(sym.tojson())
    return {node['name']: node.get('attrs', {}) for node in graph['nodes'] if node['op'] == 'null'}


@pytest.mark.parametrize('network', ['mnet', 'resnet'])
def test_learning_rate_weight_decay_and_init_attributes_equal_the_release(network):
    released = _variable_attrs(_released_symbol(network))
    ours = _variable_attrs(get_symbol_test(network, _cfg(network)))
    checked = 0
    for name, attrs in released.items():
        if name == 'data':
            continue
        mine = ours[name]
        for key in ('__lr_mult__', '__wd_mult__'):
            assert float(mine.get(key, 1.0)) == float(attrs.get(key, 1.0)), (name, key)
        # the mnet backbone comes from a Gluon export whose "ones"/"zeros" init attributes
        # are what MXNet's initializer does by default for gamma/beta/moving statistics
        if not name.startswith('mobilenet0_'):
            assert mine.get('__init__') == attrs.get('__init__'), name
            checked += 1
    assert checked > 100


@pytest.mark.parametrize('network', ['mnet', 'resnet'])
def test_deploy_outputs_and_shapes_at_640(network):
    sym = get_symbol_test(network, _cfg(network))
    assert sym.list_outputs() == [n + '_output' for n in deploy_output_names(STRIDES)]
    _, out_shapes, _ = sym.infer_shape(data=(1, 3, 640, 640))
    expected = []
    for size in (20, 40, 80):
        expected += [(1, 4, size, size), (1, 8, size, size), (1, 20, size, size)]
    assert [tuple(s) for s in out_shapes] == expected


@pytest.mark.parametrize('network', ['mnet', 'resnet'])
def test_training_inputs_outputs_and_16800_anchors_at_640(network):
    cfg = _cfg(network)
    sym = get_symbol_train(network, cfg)
    assert feature_shapes(sym, (1, 3, 640, 640)) == {32: (20, 20), 16: (40, 40), 8: (80, 80)}
    labels = label_shapes(sym, (2, 3, 640, 640), cfg)
    assert [n for n, _ in labels] == label_names(STRIDES)
    assert sum(shape[1] for name, shape in labels if name.startswith('face_label')) == 16800
    assert dict(labels)['face_bbox_target_stride16'] == (2, 8, 1600)
    assert dict(labels)['face_landmark_weight_stride8'] == (2, 20, 6400)
    assert set(label_names(STRIDES)) | {'data'} <= set(sym.list_arguments())
    assert sym.list_outputs() == [t % s + '_output' for s in STRIDES for t in TRAIN_OUTPUT_TEMPLATES]
    _, out_shapes, _ = sym.infer_shape(data=(2, 3, 640, 640), **dict(labels))
    assert [tuple(s) for s in out_shapes[:6]] == [(2, 2, 800), (2, 800), (2, 8, 400), (2, 8, 400),
                                                  (2, 20, 400), (2, 20, 400)]


# ---------------------------------------------------------------- numbers vs the releases
def test_released_mnet25_weights_give_the_released_outputs(mnet25_prefix):
    released, arg, aux = load_checkpoint(mnet25_prefix, 0)
    ours = get_symbol_test('mnet', _cfg('mnet'))
    check_params(ours, arg, aux)
    data = _real_image(544, 800)
    expected = _forward(released, arg, aux, data)
    got = _forward(ours, arg, aux, data)
    assert max(out.shape[2] for out in got) == 100  # 800 / 8
    for name, want, have in zip(deploy_output_names(STRIDES), expected, got):
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-4, err_msg=name)
    # the released model finds the face: a confident face probability at stride 32
    assert expected[0][:, 2:].max() > 0.9


def test_released_mnet25_weights_load_into_the_training_graph(mnet25_prefix):
    _, arg, aux = load_checkpoint(mnet25_prefix, 0)
    check_params(get_symbol_train('mnet', _cfg('mnet')), arg, aux)


def _random_params(sym, data_shape, rng):
    """Well-conditioned random parameters: unit-scale activations through 50 layers."""
    arg_shapes, _, aux_shapes = sym.infer_shape(data=data_shape)
    arg = {}
    for name, shape in zip(sym.list_arguments(), arg_shapes):
        if name == 'data':
            continue
        if name.endswith('_weight'):
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0, np.sqrt(1.0 / fan_in), shape)
        elif name.endswith('_gamma'):
            value = rng.uniform(0.5, 1.0, shape)
        else:  # beta, bias
            value = rng.uniform(-0.1, 0.1, shape)
        arg[name] = mx.nd.array(value.astype(np.float32))
    aux = {}
    for name, shape in zip(sym.list_auxiliary_states(), aux_shapes):
        if name.startswith('bn_data'):  # normalise raw 0..255 pixels
            value = np.full(shape, 120.0 if name.endswith('mean') else 70.0 ** 2)
        elif name.endswith('_moving_mean'):
            value = rng.uniform(-0.2, 0.2, shape)
        else:
            value = rng.uniform(0.8, 1.6, shape)
        aux[name] = mx.nd.array(np.asarray(value, dtype=np.float32))
    return arg, aux


def test_resnet_random_r50_weights_give_the_released_graph_outputs():
    released = _released_symbol('resnet')
    ours = get_symbol_test('resnet', _cfg('resnet'))
    data = _real_image(256, 352)
    arg, aux = _random_params(released, data.shape, np.random.RandomState(0))
    check_params(ours, arg, aux, data_shapes={'data': data.shape})
    expected = _forward(released, arg, aux, data)
    got = _forward(ours, arg, aux, data)
    for name, want, have in zip(deploy_output_names(STRIDES), expected, got):
        assert np.std(want) > 1e-3, name  # the comparison is not between constants
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(),
                                   err_msg=name)


# ---------------------------------------------------------------- losses
def test_smooth_l1_value_and_gradient_on_crafted_numbers():
    pred = np.array([[0.05, -0.05, 0.5, -2.0, 0.3, 7.0]], np.float32)
    target = np.array([[0.0, 0.0, 0.0, 0.0, 0.2, 1.0]], np.float32)
    weight = np.array([[1.0, 1.0, 1.0, 0.5, 1.0, 0.0]], np.float32)
    # x = (pred - target) * weight = 0.05, -0.05, 0.5, -1.0, 0.1, 0
    # loss: 4.5 x^2 when |x| < 1/9, else |x| - 1/18
    expected_loss = [0.01125, 0.01125, 0.5 - 1 / 18.0, 1.0 - 1 / 18.0, 0.045, 0.0]
    # d loss / d pred = grad_scale * weight * (9 x or sign(x))
    expected_grad = 0.25 * np.array([0.45, -0.45, 1.0, -0.5, 0.9, 0.0])
    sym = smooth_l1_loss(mx.sym.var('pred'), mx.sym.var('target'), mx.sym.var('weight'),
                         grad_scale=0.25, name='loss')
    args = {k: mx.nd.array(v) for k, v in (('pred', pred), ('target', target), ('weight', weight))}
    grads = {'pred': mx.nd.zeros(pred.shape)}
    executor = sym.bind(mx.cpu(), args, args_grad=grads,
                        grad_req={'pred': 'write', 'target': 'null', 'weight': 'null'})
    loss = executor.forward(is_train=True)[0].asnumpy()
    executor.backward()
    np.testing.assert_allclose(loss[0], expected_loss, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grads['pred'].asnumpy()[0], expected_grad, rtol=1e-5, atol=1e-7)


def _bind_training(sym, cfg, data_shape, rng, positive_rate=0.05):
    shapes = dict(label_shapes(sym, data_shape, cfg), data=data_shape)
    executor = sym.simple_bind(mx.cpu(), grad_req='write', **shapes)
    for name, array in executor.arg_dict.items():
        if name == 'data':
            array[:] = rng.uniform(0, 255, array.shape)
        elif name.startswith('face_label'):
            array[:] = rng.choice([-1, 0, 1], size=array.shape,
                                  p=[0.05, 0.95 - positive_rate, positive_rate])
        elif name in shapes:  # targets and weights
            array[:] = rng.uniform(-1, 1, array.shape) if 'target' in name else 1.0
        elif name.endswith('_gamma'):
            array[:] = 1.0
        elif name.endswith(('_beta', '_bias')):
            array[:] = 0.0
        else:
            array[:] = rng.normal(0, np.sqrt(1.0 / np.prod(array.shape[1:])), array.shape)
    for name, array in executor.aux_dict.items():
        array[:] = 1.0 if name.endswith('_var') else 0.0
    if 'bn_data_moving_var' in executor.aux_dict:
        executor.aux_dict['bn_data_moving_mean'][:] = 120.0
        executor.aux_dict['bn_data_moving_var'][:] = 70.0 ** 2
    return executor, shapes


@pytest.mark.parametrize('network', ['mnet', 'resnet'])
def test_training_forward_backward_batch2_and_no_gradient_to_labels(network):
    cfg = _cfg(network)
    sym = get_symbol_train(network, cfg)
    executor, shapes = _bind_training(sym, cfg, (2, 3, 320, 320), np.random.RandomState(5))
    outputs = [out.asnumpy() for out in executor.forward(is_train=True)]
    executor.backward()
    assert len(outputs) == 18
    for out in outputs:
        assert np.all(np.isfinite(out))
    for name in label_names(STRIDES):
        assert not executor.grad_dict[name].asnumpy().any(), name
    assert np.abs(executor.grad_dict['data'].asnumpy()).max() > 0
    for stride in STRIDES:
        for head in ('cls_score', 'bbox_pred', 'landmark_pred'):
            grad = executor.grad_dict['face_rpn_%s_stride%d_weight' % (head, stride)].asnumpy()
            assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0, (head, stride)
        sampled = outputs[STRIDES.index(stride) * 6 + 1]
        assert np.all((sampled == 1).sum(axis=1) <= 64)
        assert np.all((sampled >= 0).sum(axis=1) <= 256)


# hand-computed (box, landmark) grad scales at RPN_BATCH_SIZE 256, LANDMARK_LR_MULT 5,
# BATCH_IMAGES 16: release 1/256 and 0.4*5/256; master 0.25*16/256 = 1/64 and 0.4*5/64
@pytest.mark.parametrize('variant, box_scale, landmark_scale',
                         [('release', 1 / 256.0, 2 / 256.0), ('master', 1 / 64.0, 2 / 64.0)])
def test_ohem_weights_follow_the_anchor_layout_and_feed_the_losses(variant, box_scale,
                                                                   landmark_scale):
    """All 128 stride-8 anchors of a 64x64 input positive: OHEM keeps 64; the box/landmark
    weights and losses must be non-zero exactly on the kept anchors' channels a*V+k at p, and
    the gradients reaching the heads are scaled by the variant's grad scales."""
    cfg = _cfg('mnet')
    cfg.LANDMARK_LR_MULT = 5.0
    cfg.TRAIN.BATCH_IMAGES = 16
    cfg.TRAIN.LOSS_SCALE = variant
    train = get_symbol_train('mnet', cfg)
    internals = train.get_internals()
    preds = [mx.sym.BlockGrad(internals['face_rpn_%s_stride8_output' % head])
             for head in ('bbox_pred', 'landmark_pred')]
    sym = mx.sym.Group([train] + preds)
    executor, _ = _bind_training(sym, cfg, (1, 3, 64, 64), np.random.RandomState(6))
    executor.arg_dict['face_label_stride8'][:] = 1.0
    outputs = [out.asnumpy() for out in executor.forward(is_train=True)]
    executor.backward()
    num_anchors, positions = 2, 64
    sampled = outputs[13][0]  # stride 8 is the third stride: outputs 12..17
    kept = sampled == 1
    assert kept.sum() == 64 and np.all(sampled[~kept] == -1)
    kept = kept.reshape(num_anchors, positions)  # label index a*H*W + p
    for loss_idx, pred, values, head, grad_scale in (
            (14, outputs[18], 4, 'bbox', box_scale),
            (16, outputs[19], 10, 'landmark', landmark_scale)):
        weight = outputs[loss_idx + 1][0].reshape(num_anchors, values, positions)
        expected_weight = np.repeat(kept[:, None, :], values, axis=1).astype(np.float32)
        np.testing.assert_array_equal(weight, expected_weight)
        target = executor.arg_dict['face_%s_target_stride8' % head].asnumpy()[0]
        expected_weight = expected_weight.reshape(num_anchors * values, positions)
        x = (pred[0].reshape(num_anchors * values, positions) - target) * expected_weight
        expected_loss = np.where(np.abs(x) < 1 / 9.0, 4.5 * x * x, np.abs(x) - 1 / 18.0)
        np.testing.assert_allclose(outputs[loss_idx][0], expected_loss, rtol=1e-5, atol=1e-6)
        slope = np.where(np.abs(x) < 1 / 9.0, 9.0 * x, np.sign(x))
        expected_bias_grad = (grad_scale * expected_weight * slope).sum(axis=1)
        bias_grad = executor.grad_dict['face_rpn_%s_pred_stride8_bias' % head].asnumpy()
        np.testing.assert_allclose(bias_grad, expected_bias_grad, rtol=1e-4, atol=1e-7)


def test_class_gradient_is_softmax_minus_label_over_valid_anchors():
    """d loss / d cls_score_bias(channel k*A + a) = sum_p (prob - [label == k]) / #valid,
    over the non-ignored anchors a*H*W + p (SoftmaxOutput, ignore -1, 'valid' normalisation)."""
    cfg = _cfg('mnet')
    sym = get_symbol_train('mnet', cfg)
    executor, _ = _bind_training(sym, cfg, (2, 3, 128, 96), np.random.RandomState(7),
                                 positive_rate=0.3)
    outputs = [out.asnumpy() for out in executor.forward(is_train=True)]
    executor.backward()
    prob, label = outputs[0], outputs[1]  # stride 32: (B, 2, A*H*W), (B, A*H*W)
    num_anchors = 2
    valid = label >= 0
    onehot = np.stack([label == 0, label == 1], axis=1)
    per_anchor = ((prob - onehot) * valid[:, None, :]) / max(1, valid.sum())
    per_channel = per_anchor.reshape(2, 2, num_anchors, -1).sum(axis=(0, 3)).reshape(-1)
    grad = executor.grad_dict['face_rpn_cls_score_stride32_bias'].asnumpy()
    np.testing.assert_allclose(grad, per_channel, rtol=1e-4, atol=1e-6)


def test_without_ohem_labels_and_weights_pass_through():
    cfg = _cfg('mnet', RPN_ENABLE_OHEM=0)
    sym = get_symbol_train('mnet', cfg)
    assert 'Custom' not in sym.tojson()
    executor, _ = _bind_training(sym, cfg, (1, 3, 64, 64), np.random.RandomState(8),
                                 positive_rate=0.9)
    outputs = executor.forward(is_train=True)
    np.testing.assert_array_equal(outputs[13].asnumpy(),
                                  executor.arg_dict['face_label_stride8'].asnumpy())
    np.testing.assert_array_equal(outputs[15].asnumpy(),
                                  executor.arg_dict['face_bbox_weight_stride8'].asnumpy())


def test_bad_network_or_config_raises():
    with pytest.raises(ValueError, match='unknown network'):
        get_symbol_train('vgg', _cfg('mnet'))
    with pytest.raises(ValueError, match='RPN_ENABLE_OHEM'):
        get_symbol_train('mnet', _cfg('mnet', RPN_ENABLE_OHEM=1))
    with pytest.raises(ValueError, match='OHEM_MODE'):
        get_symbol_train('mnet', _cfg('mnet', OHEM_MODE=2))
    cfg = _cfg('mnet')
    cfg.RPN_FEAT_STRIDE = [64, 32, 16, 8]
    with pytest.raises(ValueError, match='RPN_FEAT_STRIDE'):
        get_symbol_test('mnet', cfg)
    cfg = copy.deepcopy(_cfg('resnet'))
    cfg.NUM_ANCHORS = 3
    with pytest.raises(ValueError, match='NUM_ANCHORS'):
        get_symbol_test('resnet', cfg)
    cfg = copy.deepcopy(_cfg('mnet'))
    cfg.RPN_ANCHOR_CFG = dict(cfg.RPN_ANCHOR_CFG, **{'2': cfg.RPN_ANCHOR_CFG['8']})
    cfg.RPN_FEAT_STRIDE = [32, 16, 8, 2]
    with pytest.raises(ValueError, match='factor-2 strides'):
        get_symbol_test('mnet', cfg)
