"""Every model switch of the original, as a change of the training graph against the base preset.

Each expectation is written from the original's graph code (insightface ``RetinaFace/rcnn/
symbol/symbol_common.py`` of the released models; ``detection/retinaface`` master for
``LR_MODE``): which layers its switch adds, removes or reshapes, by the names and shapes its
``conv_act_layer`` / ``conv_deformable`` / ``get_out`` give them. Shapes are read from the
graph at a small input; channel counts are facts of the backbones (mnet: 32 channels at stride
4, 64 neck / module channels; resnet: 128 at stride 4, 256 neck, 512 module channels).
"""
import json

import mxnet as mx
import numpy as np
import pytest

from rcnn.config import generate_config
from rcnn.model_layout import ModelLayout
from rcnn.symbol import get_symbol_test, get_symbol_train, label_shapes
from rcnn.symbol.deformable import (deformable_conv_bn, modulated_conv_bn,
                                    sampled_modulated_conv)
from rcnn.symbol.heads import MAXOUT_BACKGROUND, MAXOUT_FACE, cls_score_head
from rcnn.symbol.layers import conv_bn

SMALL = (1, 3, 128, 128)
#: neck channels, detection-module width, stride-4 backbone channels, and the layer names of
#: the stride-32/16/8 detection modules and 3x3 aggregation convs of each network
NET = {
    'mnet': dict(neck=64, width=64, c4=32, modules=['rf_c3_det', 'rf_c2_det', 'rf_c1_det'],
                 aggr=['rf_c2_aggr', 'rf_c1_aggr'], lateral4='rf_c0_lateral',
                 aggr4='rf_c0_aggr', module4='rf_c0_det', down64='rf_c4', module64='rf_c4_det'),
    'resnet': dict(neck=256, width=512, c4=128,
                   modules=['ssh_m3_det', 'ssh_m2_det', 'ssh_m1_det'],
                   aggr=['ssh_c2_aggr', 'ssh_c1_aggr'], lateral4='ssh_m0_red_conv',
                   aggr4='ssh_c0_aggr', module4='ssh_m0_det', down64='ssh_c4',
                   module64='ssh_m4_det'),
}
_SSH_CONVS = ('_conv1', '_context_conv1', '_context_conv2', '_context_conv3_1',
              '_context_conv3_2')


def _cfg(network, **overrides):
    cfg, _ = generate_config(network, 'retinaface', overrides)
    return cfg


def _params(sym, cfg, data_shape=SMALL):
    """name -> shape of every parameter (not data, not labels)."""
    inputs = dict(label_shapes(sym, data_shape, cfg), data=data_shape)
    arg_shapes, _, _ = sym.infer_shape(**inputs)
    return {n: tuple(s) for n, s in zip(sym.list_arguments(), arg_shapes) if n not in inputs}


def _change(network, **overrides):
    """(added, removed, reshaped) parameters of the training graph against the preset's:
    added / removed name -> shape, reshaped name -> (base shape, new shape)."""
    base_cfg, cfg = _cfg(network), _cfg(network, **overrides)
    base = _params(get_symbol_train(network, base_cfg), base_cfg)
    new = _params(get_symbol_train(network, cfg), cfg)
    added = {n: s for n, s in new.items() if n not in base}
    removed = {n: s for n, s in base.items() if n not in new}
    reshaped = {n: (base[n], s) for n, s in new.items() if n in base and base[n] != s}
    return added, removed, reshaped


def _conv_bn(name, out, cin, k=3):
    """The original's conv_act_layer: ``{name}_weight``, ``_bias``, ``_bn_gamma``, ``_bn_beta``."""
    return {name + '_weight': (out, cin, k, k), name + '_bias': (out,),
            name + '_bn_gamma': (out,), name + '_bn_beta': (out,)}


def _ssh(name, width, cin):
    """The original's ssh_detection_module(num_filter=width): conv1 to width/2, the context
    convs to width/4."""
    half, quarter = width // 2, width // 4
    params = _conv_bn(name + '_conv1', half, cin)
    params.update(_conv_bn(name + '_context_conv1', quarter, cin))
    for conv in ('_context_conv2', '_context_conv3_1', '_context_conv3_2'):
        params.update(_conv_bn(name + conv, quarter, quarter))
    return params


def _heads(stride, anchors, cin, box=4, landmark=10):
    params = {}
    for head, values in (('cls_score', 2), ('bbox_pred', box), ('landmark_pred', landmark)):
        name = 'face_rpn_%s_stride%d' % (head, stride)
        params.update({name + '_weight': (values * anchors, cin, 1, 1),
                       name + '_bias': (values * anchors,)})
    return params


# ------------------------------------------------------------------- anchor tables (strides)
@pytest.mark.parametrize('network', ['mnet', 'resnet'])
def test_rac_ssh3_adds_the_stride4_level_and_four_anchors(network):
    """len(RPN_ANCHOR_CFG) == 4: c0 lateral (1x1 of the last stride-4 map), c1 upsampled, c0
    aggr (3x3), a c0 detection module and stride-4 heads; ratios (1, 1.5): 4 anchors."""
    n = NET[network]
    added, removed, reshaped = _change(network, RPN_ANCHOR_CFG='RAC_SSH3')
    expected = _conv_bn(n['lateral4'], n['neck'], n['c4'], k=1)
    expected.update(_conv_bn(n['aggr4'], n['neck'], n['neck']))
    expected.update(_ssh(n['module4'], n['width'], n['neck']))
    expected.update(_heads(4, 4, n['width']))
    assert added == expected
    assert removed == {}
    expected_reshaped = {}
    for stride in (32, 16, 8):
        for name, shape in _heads(stride, 4, n['width']).items():
            expected_reshaped[name] = (tuple([shape[0] // 2]) + shape[1:], shape)
    assert reshaped == expected_reshaped


@pytest.mark.parametrize('network', ['mnet', 'resnet'])
def test_rac_retina_adds_strides_4_and_64_with_three_anchors(network):
    """len(RPN_ANCHOR_CFG) == 5: the stride-4 level and c4 = 3x3 stride-2 conv of the c3
    lateral, each with a detection module; three scales per stride: 3 anchors."""
    n = NET[network]
    added, removed, reshaped = _change(network, RPN_ANCHOR_CFG='RAC_RETINA')
    expected = _conv_bn(n['lateral4'], n['neck'], n['c4'], k=1)
    expected.update(_conv_bn(n['aggr4'], n['neck'], n['neck']))
    expected.update(_conv_bn(n['down64'], n['neck'], n['neck']))
    expected.update(_ssh(n['module4'], n['width'], n['neck']))
    expected.update(_ssh(n['module64'], n['width'], n['neck']))
    expected.update(_heads(4, 3, n['width']))
    expected.update(_heads(64, 3, n['width']))
    assert added == expected and removed == {}
    assert reshaped['face_rpn_cls_score_stride32_weight'] == ((4, n['width'], 1, 1),
                                                              (6, n['width'], 1, 1))
    assert len(reshaped) == 3 * 6
    cfg = _cfg(network, RPN_ANCHOR_CFG='RAC_RETINA')
    sym = get_symbol_test(network, cfg)
    assert sym.list_outputs() == [n + '_output' for n in ModelLayout.from_config(cfg)
                                  .deploy_output_names()]
    _, out_shapes, _ = sym.infer_shape(data=(1, 3, 640, 640))
    assert [s[2:] for s in out_shapes[::3]] == [(10, 10), (20, 20), (40, 40), (80, 80),
                                                 (160, 160)]


def test_stride64_reads_the_stride32_lateral_through_a_stride2_conv():
    """c4 = conv_act_layer(c3, 'rf_c4', 3x3, stride 2) on the rf_c3_lateral output."""
    sym = get_symbol_test('mnet', _cfg('mnet', RPN_ANCHOR_CFG='RAC_RETINA'))
    nodes = json.loads(sym.tojson())['nodes']
    conv = next(node for node in nodes if node['name'] == 'rf_c4')
    assert (conv['attrs']['stride'], conv['attrs']['kernel']) == ('(2, 2)', '(3, 3)')
    assert nodes[conv['inputs'][0][0]]['name'] == 'rf_c3_lateral_relu'


def test_stride4_taps_the_last_stride4_backbone_maps():
    """The original's get_sym_conv takes, per stride, the last layer of that stride."""
    for network, tap in (('mnet', 'mobilenet0_relu6'), ('resnet', 'stage2_unit1_relu2')):
        n = NET[network]
        sym = get_symbol_test(network, _cfg(network, RPN_ANCHOR_CFG='RAC_SSH3'))
        nodes = json.loads(sym.tojson())['nodes']
        lateral = next(node for node in nodes if node['name'] == n['lateral4'])
        assert nodes[lateral['inputs'][0][0]]['name'] == tap


@pytest.mark.parametrize('network', ['mnet', 'resnet'])
def test_released_names_of_strides_32_16_8_stay_in_every_table(network):
    base_cfg = _cfg(network)
    base = set(_params(get_symbol_train(network, base_cfg), base_cfg))
    for table in ('RAC_SSH2', 'RAC_SSH3', 'RAC_RETINA'):
        cfg = _cfg(network, RPN_ANCHOR_CFG=table)
        assert base <= set(_params(get_symbol_train(network, cfg), cfg)), table


# ------------------------------------------------------------------------- anchors per position
@pytest.mark.parametrize('overrides, anchors', [({'RPN_ANCHOR_CFG': 'RAC_SSH2'}, 4),
                                                ({'DENSE_ANCHOR': True}, 4)])
def test_anchor_count_sets_every_head_width(overrides, anchors):
    added, removed, reshaped = _change('mnet', **overrides)
    assert added == {} and removed == {}
    expected = {}
    for stride in (32, 16, 8):
        for name, shape in _heads(stride, anchors, 64).items():
            expected[name] = ((shape[0] * 2 // anchors,) + shape[1:], shape)
    assert reshaped == expected


# --------------------------------------------------------------------------------- USE_DCN
@pytest.mark.parametrize('network', ['mnet', 'resnet'])
def test_dcn1_adds_a_deformable_conv_after_each_detection_module(network):
    """conv_deformable (USE_DCN == 1) on {module}_concat_dcn: an 18-channel 3x3 offset conv
    {name}_conv_offset and a DeformableConvolution {name}_conv with bias, then {name}_bn."""
    n, width = NET[network], NET[network]['width']
    added, removed, reshaped = _change(network, USE_DCN=1)
    expected = {}
    for module in n['modules']:
        name = module + '_concat_dcn'
        expected.update({name + '_conv_offset_weight': (18, width, 3, 3),
                         name + '_conv_offset_bias': (18,),
                         name + '_conv_weight': (width, width, 3, 3), name + '_conv_bias': (width,),
                         name + '_bn_gamma': (width,), name + '_bn_beta': (width,)})
    assert (added, removed, reshaped) == (expected, {}, {})


def _dcn2_params(name, out, cin):
    """conv_deformable (USE_DCN == 2): a zero-initialised 27-channel offset/mask conv
    {name}_conv2_offset and a ModulatedDeformableConvolution {name}_conv2 without bias."""
    return {name + '_conv2_offset_weight': (27, cin, 3, 3), name + '_conv2_offset_bias': (27,),
            name + '_conv2_weight': (out, cin, 3, 3),
            name + '_bn_gamma': (out,), name + '_bn_beta': (out,)}


@pytest.mark.parametrize('network', ['mnet', 'resnet'])
def test_dcn2_makes_every_3x3_stride1_conv_deformable(network):
    """conv_act_layer with USE_DCN > 1: every 3x3 stride-1 non-separable conv -- the
    aggregation convs and every conv of the detection modules -- plus the _concat_dcn layer;
    1x1 laterals and heads stay."""
    n = NET[network]
    width, neck = n['width'], n['neck']
    added, removed, reshaped = _change(network, USE_DCN=2)
    expected_added, expected_removed = {}, {}
    convs = {name: (neck, neck) for name in n['aggr']}
    for module in n['modules']:
        convs[module + '_conv1'] = (width // 2, neck)
        convs[module + '_context_conv1'] = (width // 4, neck)
        for conv in ('_context_conv2', '_context_conv3_1', '_context_conv3_2'):
            convs[module + conv] = (width // 4, width // 4)
        convs[module + '_concat_dcn'] = (width, width)
    for name, (out, cin) in convs.items():
        expected_added.update(_dcn2_params(name, out, cin))
        if not name.endswith('_concat_dcn'):
            expected_removed.update({name + '_weight': (out, cin, 3, 3), name + '_bias': (out,)})
            del expected_added[name + '_bn_gamma'], expected_added[name + '_bn_beta']
    assert added == expected_added
    assert removed == expected_removed
    assert reshaped == {}


def test_dcn2_offset_convs_start_at_zero_with_lr_x01():
    graph = json.loads(get_symbol_train('mnet', _cfg('mnet', USE_DCN=2)).tojson())
    offsets = [node for node in graph['nodes']
               if node['op'] == 'null' and '_conv2_offset_' in node['name']]
    assert len(offsets) == 2 * (3 * 6 + 2)      # weight + bias of 6 per module x 3, 2 aggr
    for node in offsets:
        assert node['attrs']['__lr_mult__'] == '0.1', node['name']
        assert json.loads(node['attrs']['__init__'])[0] == 'zero', node['name']


def _bind_forward(sym, args, shapes):
    executor = sym.simple_bind(mx.cpu(), grad_req='null', **shapes)
    for name, array in executor.arg_dict.items():
        array[:] = args[name]
    for name, array in executor.aux_dict.items():
        array[:] = 1.0 if name.endswith('_var') else 0.0
    return executor.forward(is_train=False)[0].asnumpy()


def test_zero_offsets_dcn1_equals_the_plain_convolution():
    rng = np.random.RandomState(0)
    data = mx.sym.var('data')
    deformable = deformable_conv_bn(data, 'x', 8)
    plain = mx.sym.Activation(mx.sym.BatchNorm(
        mx.sym.Convolution(data, kernel=(3, 3), pad=(1, 1), num_filter=8, name='x_conv'),
        fix_gamma=False, eps=2e-5, name='x_bn'), act_type='relu')
    shapes = {'data': (2, 5, 9, 7)}
    args = {'data': rng.randn(2, 5, 9, 7), 'x_conv_weight': rng.randn(8, 5, 3, 3),
            'x_conv_bias': rng.randn(8), 'x_conv_offset_weight': 0.0, 'x_conv_offset_bias': 0.0,
            'x_bn_gamma': rng.rand(8) + 0.5, 'x_bn_beta': rng.randn(8)}
    np.testing.assert_allclose(_bind_forward(deformable, args, shapes),
                               _bind_forward(plain, args, shapes), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('sampled', [False, True])
def test_zero_offsets_dcn2_equals_the_plain_convolution(sampled):
    """Zero offset conv -> offsets 0 and masks 2 * sigmoid(0) = 1: the plain 3x3 conv (whose
    bias is 0, the deformable layer has none)."""
    rng = np.random.RandomState(1)
    data = mx.sym.var('data')
    deformable = modulated_conv_bn(data, 'x', 8, relu=False, sampled=sampled)
    plain = conv_bn(data, 'x', 8, (3, 3), relu=False)
    shapes = {'data': (2, 5, 9, 7)}
    weight = rng.randn(8, 5, 3, 3)
    args = {'data': rng.randn(2, 5, 9, 7), 'x_conv2_weight': weight, 'x_weight': weight,
            'x_bias': 0.0, 'x_conv2_offset_weight': 0.0, 'x_conv2_offset_bias': 0.0,
            'x_bn_gamma': rng.rand(8) + 0.5, 'x_bn_beta': rng.randn(8)}
    np.testing.assert_allclose(_bind_forward(deformable, args, shapes),
                               _bind_forward(plain, args, shapes), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('size', [(9, 7), (1, 1), (2, 3)])
def test_sampled_dcn2_equals_mxnets_operator_with_random_offsets_and_masks(size):
    rng = np.random.RandomState(2)
    data, offset, mask, weight = (mx.sym.var(n) for n in ('data', 'offset', 'mask', 'w'))
    ours = sampled_modulated_conv(data, offset, mask, weight, 6, 'x')
    operator = mx.contrib.sym.ModulatedDeformableConvolution(
        data=data, offset=offset, mask=mask, weight=weight, num_filter=6, kernel=(3, 3),
        pad=(1, 1), no_bias=True)
    height, width = size
    args = {'data': mx.nd.array(rng.randn(2, 4, height, width)),
            'offset': mx.nd.array(2.0 * rng.randn(2, 18, height, width)),
            'mask': mx.nd.array(2.0 * rng.rand(2, 9, height, width)),
            'w': mx.nd.array(rng.randn(6, 4, 3, 3))}
    np.testing.assert_allclose(ours.bind(mx.cpu(), args).forward()[0].asnumpy(),
                               operator.bind(mx.cpu(), args).forward()[0].asnumpy(),
                               rtol=1e-4, atol=1e-4)


def test_sampled_dcn2_gradients_match_finite_differences():
    """MXNet's operator has no CPU backward to compare with: the directional derivative of
    sum(R * out) along a random direction of each input, by central differences."""
    rng = np.random.RandomState(5)
    data, offset, mask, weight = (mx.sym.var(n) for n in ('data', 'offset', 'mask', 'w'))
    sym = sampled_modulated_conv(data, offset, mask, weight, 3, 'x')
    # offsets k + [0.2, 0.8]: no tap within eps of a pixel row or column, where bilinear
    # sampling has a kink that central differences would straddle
    offsets = rng.randint(-2, 2, (1, 18, 5, 4)) + rng.uniform(0.2, 0.8, (1, 18, 5, 4))
    values = {'data': rng.randn(1, 2, 5, 4), 'offset': offsets,
              'mask': 2.0 * rng.rand(1, 9, 5, 4), 'w': rng.randn(3, 2, 3, 3)}
    head = rng.randn(1, 3, 5, 4)

    def objective(arrays):
        out = sym.bind(mx.cpu(), {k: mx.nd.array(v) for k, v in arrays.items()}).forward()[0]
        return float((out.asnumpy().astype(np.float64) * head).sum())

    grads = {k: mx.nd.zeros(v.shape) for k, v in values.items()}
    executor = sym.bind(mx.cpu(), {k: mx.nd.array(v) for k, v in values.items()},
                        args_grad=grads)
    executor.forward(is_train=True)
    executor.backward(mx.nd.array(head))
    eps = 1e-3
    for name, value in values.items():
        direction = rng.randn(*value.shape)
        plus = dict(values, **{name: value + eps * direction})
        minus = dict(values, **{name: value - eps * direction})
        numeric = (objective(plus) - objective(minus)) / (2 * eps)
        analytic = float((grads[name].asnumpy() * direction).sum())
        assert analytic == pytest.approx(numeric, rel=2e-2, abs=1e-2), name


def test_dcn2_training_graph_computes_the_deploy_graph_with_random_offsets():
    """The training graph's sampled DCN v2 and the deploy graph's operator, same weights."""
    cfg = _cfg('mnet', USE_DCN=2)
    train, deploy = get_symbol_train('mnet', cfg), get_symbol_test('mnet', cfg)
    assert 'ModulatedDeformableConvolution' not in train.tojson()
    assert 'ModulatedDeformableConvolution' in get_symbol_train('mnet', cfg, native_dcn=True) \
        .tojson()
    name = 'face_rpn_cls_score_stride8_output'
    train_head, deploy_head = train.get_internals()[name], deploy.get_internals()[name]
    rng = np.random.RandomState(3)
    shapes = {'data': (1, 3, 64, 64)}
    arg_shapes, _, _ = deploy_head.infer_shape(**shapes)
    args = {n: rng.randn(*s) * (0.3 if '_offset_' in n else 0.2)
            for n, s in zip(deploy_head.list_arguments(), arg_shapes)}
    args['data'] = rng.uniform(0, 255, shapes['data'])
    np.testing.assert_allclose(_bind_forward(train_head, args, shapes),
                               _bind_forward(deploy_head, args, shapes), rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------------------- heads
def test_maxout1_replaces_the_finest_class_head_by_per_anchor_convs():
    """maxout_stat 1 at RPN_FEAT_STRIDE[-1]: per anchor a 3-channel _bg conv and a 1-channel
    _fg conv."""
    added, removed, reshaped = _change('mnet', USE_MAXOUT=1)
    name = 'face_rpn_cls_score_stride8'
    assert removed == {name + '_weight': (4, 64, 1, 1), name + '_bias': (4,)}
    expected = {}
    for anchor in range(2):
        for kind, count in (('bg', 3), ('fg', 1)):
            prefix = '%s_anchor%d_%s' % (name, anchor, kind)
            expected.update({prefix + '_weight': (count, 64, 1, 1), prefix + '_bias': (count,)})
    assert added == expected and reshaped == {}


def test_maxout2_adds_the_face_maxout_at_the_other_strides():
    """maxout_stat 2 at the strides but the finest: 1 background and 3 face channels."""
    added, removed, _ = _change('mnet', USE_MAXOUT=2)
    assert sorted(removed) == sorted('face_rpn_cls_score_stride%d_%s' % (s, p)
                                     for s in (32, 16, 8) for p in ('weight', 'bias'))
    assert added['face_rpn_cls_score_stride32_anchor1_bg_weight'] == (1, 64, 1, 1)
    assert added['face_rpn_cls_score_stride32_anchor1_fg_weight'] == (3, 64, 1, 1)
    assert added['face_rpn_cls_score_stride8_anchor0_bg_weight'] == (3, 64, 1, 1)
    assert len(added) == 3 * 2 * 2 * 2


@pytest.mark.parametrize('form', [MAXOUT_BACKGROUND, MAXOUT_FACE])
def test_maxout_scores_are_the_max_per_anchor_background_first(form):
    """Channel a: background of anchor a, channel A + a: its face score (the decoder's and the
    (0, 2, -1) reshape's layout), the 3 candidates reduced by max."""
    rng = np.random.RandomState(4)
    feature = rng.randn(1, 5, 3, 4)
    sym = cls_score_head(mx.sym.var('feature'), 8, 2, form)
    args = {'feature': mx.nd.array(feature)}
    expected = np.zeros((1, 4, 3, 4))
    arg_shapes, _, _ = sym.infer_shape(feature=feature.shape)
    for name, shape in zip(sym.list_arguments(), arg_shapes):
        if name != 'feature':
            args[name] = mx.nd.array(rng.randn(*shape))
    for anchor in range(2):
        for kind, channel in (('bg', anchor), ('fg', 2 + anchor)):
            prefix = 'face_rpn_cls_score_stride8_anchor%d_%s' % (anchor, kind)
            weight = args[prefix + '_weight'].asnumpy()[:, :, 0, 0]
            bias = args[prefix + '_bias'].asnumpy()
            scores = np.einsum('kc,bchw->bkhw', weight, feature) + bias[None, :, None, None]
            expected[:, channel] = scores.max(axis=1)
    np.testing.assert_allclose(sym.bind(mx.cpu(), args).forward()[0].asnumpy(), expected,
                               rtol=1e-5, atol=1e-5)


def test_shared_heads_replace_the_per_stride_head_parameters():
    added, removed, reshaped = _change('mnet', SHARE_WEIGHT_BBOX=True, SHARE_WEIGHT_LANDMARK=True)
    assert sorted(removed) == sorted('face_rpn_%s_stride%d_%s' % (h, s, p)
                                     for h in ('cls_score', 'bbox_pred', 'landmark_pred')
                                     for s in (32, 16, 8) for p in ('weight', 'bias'))
    assert added == {'face_rpn_cls_score_share_weight': (4, 64, 1, 1),
                     'face_rpn_cls_score_share_bias': (4,),
                     'face_rpn_bbox_pred_share_weight': (8, 64, 1, 1),
                     'face_rpn_bbox_pred_share_bias': (8,),
                     'face_rpn_landmark_pred_share_weight': (20, 64, 1, 1),
                     'face_rpn_landmark_pred_share_bias': (20,)}
    assert reshaped == {}
    added, removed, _ = _change('mnet', SHARE_WEIGHT_LANDMARK=True)
    assert sorted(added) == ['face_rpn_landmark_pred_share_bias',
                             'face_rpn_landmark_pred_share_weight']


@pytest.mark.parametrize('network', ['mnet', 'resnet'])
def test_rf_head_module_replaces_the_ssh_modules(network):
    """retina_detection_module: three chained 3x3 convs to width/2, output conv1 ++ (conv2 +
    conv3)."""
    n = NET[network]
    width, neck = n['width'], n['neck']
    added, removed, reshaped = _change(network, HEAD_MODULE='RF')
    expected_removed, expected_added = {}, {}
    for module in n['modules']:
        expected_removed.update(_ssh(module, width, neck))
        expected_added.update(_conv_bn(module + '_conv1', width // 2, neck))
        expected_added.update(_conv_bn(module + '_conv2', width // 2, width // 2))
        expected_added.update(_conv_bn(module + '_conv3', width // 2, width // 2))
    # conv1 exists in both modules: reshaped where its output width differs, else unchanged
    common = set(expected_added) & set(expected_removed)
    assert {n: s for n, s in added.items()} == {n: s for n, s in expected_added.items()
                                                 if n not in common}
    assert removed == {n: s for n, s in expected_removed.items() if n not in common}
    assert reshaped == {n: (expected_removed[n], expected_added[n]) for n in common
                        if expected_removed[n] != expected_added[n]}


def test_context_filter_ratio_widens_the_detection_modules():
    added, removed, reshaped = _change('mnet', CONTEXT_FILTER_RATIO=2)
    assert added == {} and removed == {}
    assert reshaped['rf_c1_det_conv1_weight'] == ((32, 64, 3, 3), (64, 64, 3, 3))
    assert reshaped['rf_c1_det_context_conv2_weight'] == ((16, 16, 3, 3), (32, 32, 3, 3))
    assert reshaped['face_rpn_landmark_pred_stride8_weight'] == ((20, 64, 1, 1), (20, 128, 1, 1))


# ------------------------------------------------------------------ head lengths and outputs
@pytest.mark.parametrize('network', ['mnet', 'resnet'])
def test_without_landmarks_no_landmark_head_labels_or_losses(network):
    added, removed, reshaped = _change(network, FACE_LANDMARK=False)
    width = NET[network]['width']
    assert removed == {'face_rpn_landmark_pred_stride%d_%s' % (s, p): shape
                       for s in (32, 16, 8)
                       for p, shape in (('weight', (20, width, 1, 1)), ('bias', (20,)))}
    assert added == {} and reshaped == {}
    cfg = _cfg(network, FACE_LANDMARK=False)
    sym = get_symbol_train(network, cfg)
    assert sym.list_outputs() == ['face_rpn_%s_stride%d_output' % (kind, s) for s in (32, 16, 8)
                                  for kind in ('cls_prob', 'label', 'bbox_loss', 'bbox_weight')]
    assert [n for n in sym.list_arguments() if n.startswith('face_') and 'stride' in n
            and not n.startswith('face_rpn')] == \
        ['face_%s_stride%d' % (k, s) for s in (32, 16, 8)
         for k in ('label', 'bbox_target', 'bbox_weight')]
    assert len(get_symbol_test(network, cfg).list_outputs()) == 6


@pytest.mark.parametrize('overrides, box, landmark', [({'USE_BLUR': True}, 5, 10),
                                                      ({'USE_OCCLUSION': True}, 4, 15)])
def test_blur_and_occlusion_widen_the_box_and_landmark_heads(overrides, box, landmark):
    """get_out: bbox_pred_len 5 with USE_BLUR, landmark_pred_len 15 with USE_OCCLUSION."""
    added, removed, reshaped = _change('mnet', **overrides)
    expected = {}
    for stride in (32, 16, 8):
        for name, shape in _heads(stride, 2, 64, box, landmark).items():
            base = _heads(stride, 2, 64)[name]
            if base != shape:
                expected[name] = (base, shape)
    assert (added, removed, reshaped) == ({}, {}, expected)
    cfg = _cfg('mnet', **overrides)
    shapes = dict(label_shapes(get_symbol_train('mnet', cfg), (1, 3, 64, 64), cfg))
    assert shapes['face_bbox_target_stride8'] == (1, 2 * box, 64)
    assert shapes['face_landmark_weight_stride8'] == (1, 2 * landmark, 64)


def _loss_attrs(sym):
    nodes = json.loads(sym.tojson())['nodes']
    return {node['name']: float(node['attrs']['grad_scale']) for node in nodes
            if node['op'] == 'MakeLoss'}


def test_lr_mode1_grad_scales_follow_the_loss_scale_variant():
    """LR_MODE 1: the May 2019 get_out (the released models' code) scales the count-divided
    losses by 0.25 and 0.1 * LANDMARK_LR_MULT, master by 0.5 and 0.2 * LANDMARK_LR_MULT."""
    for variant, box, landmark in (('release', 0.25, 0.1), ('master', 0.5, 0.2)):
        cfg = _cfg('mnet', LR_MODE=1, LOSS_SCALE=variant)
        scales = _loss_attrs(get_symbol_train('mnet', cfg))
        assert scales['face_rpn_bbox_loss_stride8'] == box
        assert scales['face_rpn_landmark_loss_stride8'] == pytest.approx(landmark * 2.5)


@pytest.mark.parametrize('ohem', [2, 0])
def test_lr_mode1_divides_the_losses_by_the_positive_count(ohem):
    """master get_out, LR_MODE 1: smooth_l1 / (sum(pos_count) + 0.001), grad scales 0.5 and
    0.2 * LANDMARK_LR_MULT (mnet 2.5 -> 0.5). The count: the positives OHEM kept, or without
    OHEM (where the original has none) the positive labels."""
    cfg = _cfg('mnet', LR_MODE=1, RPN_ENABLE_OHEM=ohem, LOSS_SCALE='master')
    sym = get_symbol_train('mnet', cfg)
    scales = _loss_attrs(sym)
    assert scales['face_rpn_bbox_loss_stride8'] == 0.5
    assert scales['face_rpn_landmark_loss_stride8'] == pytest.approx(0.2 * 2.5)
    data_shape = (2, 3, 64, 64)
    shapes = dict(label_shapes(sym, data_shape, cfg), data=data_shape)
    executor = sym.simple_bind(mx.cpu(), grad_req='null', **shapes)
    rng = np.random.RandomState(6)
    for name, array in executor.arg_dict.items():
        array[:] = rng.choice([-1, 0, 1], array.shape, p=[0.1, 0.6, 0.3]) \
            if name.startswith('face_label') else rng.randn(*array.shape) * 0.1
    for name, array in executor.aux_dict.items():
        array[:] = 1.0 if name.endswith('_var') else 0.0
    outputs = dict(zip(sym.list_outputs(), executor.forward(is_train=True)))
    sampled = outputs['face_rpn_label_stride8_output'].asnumpy()
    internals = sym.get_internals()
    diff_name = 'face_rpn_bbox_loss_stride8__output'
    smooth = internals[diff_name].bind(mx.cpu(), {n: executor.arg_dict[n] for n in
                                                  internals[diff_name].list_arguments()},
                                       aux_states={n: executor.aux_dict[n] for n in
                                                   internals[diff_name]
                                                   .list_auxiliary_states()}
                                       ).forward()[0].asnumpy()
    count = (sampled == 1).sum() + 0.001
    assert (sampled == 1).sum() > 0
    np.testing.assert_allclose(outputs['face_rpn_bbox_loss_stride8_output'].asnumpy(),
                               smooth / count, rtol=1e-5, atol=1e-7)


def test_lr_mode0_keeps_the_release_scales():
    scales = _loss_attrs(get_symbol_train('mnet', _cfg('mnet')))
    assert scales['face_rpn_bbox_loss_stride8'] == pytest.approx(1 / 256.0)
    assert scales['face_rpn_landmark_loss_stride8'] == pytest.approx(0.4 * 2.5 / 256.0)


# ------------------------------------------------------------------------------ backbones
@pytest.mark.parametrize('depth, units', [(101, (3, 4, 23, 3)), (152, (3, 8, 36, 3))])
def test_resnet_depth_sets_the_model_zoo_units(depth, units):
    cfg = _cfg('resnet', RESNET_DEPTH=depth)
    names = get_symbol_test('resnet', cfg).list_arguments()
    for stage, count in enumerate(units, start=1):
        assert 'stage%d_unit%d_conv2_weight' % (stage, count) in names
        assert 'stage%d_unit%d_conv2_weight' % (stage, count + 1) not in names
    base = set(get_symbol_test('resnet', _cfg('resnet')).list_arguments())
    assert base <= set(names)


# ------------------------------------------------------------- every layout builds and runs
LAYOUTS = [{}, {'RPN_ANCHOR_CFG': 'RAC_SSH2'}, {'RPN_ANCHOR_CFG': 'RAC_SSH3'},
           {'RPN_ANCHOR_CFG': 'RAC_RETINA'}, {'DENSE_ANCHOR': True}, {'USE_DCN': 1},
           {'USE_DCN': 2}, {'USE_MAXOUT': 2}, {'SHARE_WEIGHT_BBOX': True},
           {'HEAD_MODULE': 'RF'}, {'FACE_LANDMARK': False}, {'USE_BLUR': True},
           {'USE_OCCLUSION': True}, {'LR_MODE': 1},
           {'USE_DCN': 2, 'RPN_ANCHOR_CFG': 'RAC_RETINA'}]


def _init(executor, rng):
    for name, array in executor.arg_dict.items():
        if name.startswith('face_label'):
            array[:] = rng.choice([-1, 0, 1], array.shape, p=[0.1, 0.7, 0.2])
        elif name.endswith('_gamma') or name.startswith(('face_bbox_w', 'face_landmark_w')):
            array[:] = 1.0
        else:
            array[:] = rng.randn(*array.shape) * (30.0 if name == 'data' else 0.05)
    for name, array in executor.aux_dict.items():
        array[:] = 1.0 if name.endswith('_var') else 0.0


#: the resnet graph differs from mnet's in its backbone taps and module widths only: its
#: runs (a second each to fill 25M parameters) cover the taps and the paper configuration
RESNET_LAYOUTS = [{}, {'RPN_ANCHOR_CFG': 'RAC_SSH3'},
                  {'USE_DCN': 2, 'RPN_ANCHOR_CFG': 'RAC_RETINA'}]


def _layout_id(overrides):
    return ','.join('%s=%s' % item for item in sorted(overrides.items())) or 'base'


@pytest.mark.parametrize('network, overrides',
                         [('mnet', o) for o in LAYOUTS] + [('resnet', o) for o in RESNET_LAYOUTS],
                         ids=lambda v: v if isinstance(v, str) else _layout_id(v))
def test_every_layout_deploys_and_trains_on_a_small_input(network, overrides):
    cfg = _cfg(network, **overrides)
    layout = ModelLayout.from_config(cfg)
    rng = np.random.RandomState(7)
    deploy = get_symbol_test(network, cfg)
    assert deploy.list_outputs() == [n + '_output' for n in layout.deploy_output_names()]
    executor = deploy.simple_bind(mx.cpu(), grad_req='null', data=(1, 3, 64, 64))
    _init(executor, rng)
    for out, name in zip(executor.forward(is_train=False), layout.deploy_output_names()):
        array = out.asnumpy()
        stride = int(name.rsplit('stride', 1)[1])
        assert array.shape[2:] == (max(1, 64 // stride),) * 2, name
        assert np.all(np.isfinite(array)), name
    train = get_symbol_train(network, cfg)
    assert train.list_outputs() == [n + '_output' for n in layout.train_output_names()]
    shapes = dict(label_shapes(train, (1, 3, 64, 64), cfg), data=(1, 3, 64, 64))
    executor = train.simple_bind(mx.cpu(), grad_req='write', **shapes)
    _init(executor, rng)
    outputs = [out.asnumpy() for out in executor.forward(is_train=True)]
    executor.backward()
    assert all(np.all(np.isfinite(out)) for out in outputs)
    stride = layout.strides[-1]
    grad = executor.grad_dict['face_rpn_bbox_pred_stride%d_weight' % stride
                              if 'SHARE_WEIGHT_BBOX' not in overrides
                              else 'face_rpn_bbox_pred_share_weight'].asnumpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_module_width_off_the_originals_multiple_of_4_is_refused_by_the_config():
    """ssh_detection_module / retina_detection_module: assert num_filter % 4 == 0."""
    from rcnn.config import ConfigError
    with pytest.raises(ConfigError, match='multiple of 4'):
        generate_config('mnet', 'retinaface', {'HEAD_FILTER_NUM': 30})
    with pytest.raises(ConfigError, match='multiple of 4'):
        generate_config('mnet', 'retinaface', {'CONTEXT_FILTER_RATIO': 0})
