"""Cascade graphs: what CASCADE / CASCADE_MODE add to the mnet preset's graphs, against facts read
in the original (insightface master ``rcnn/symbol/symbol_common.py`` ``get_out`` and
``train.py`` ``save_model``), never by importing it:

* per stride ``s`` and stage ``k``: a 1x1 conv ``face_rpn_cls_score_stride{s}_cas{k}`` with
  ``2A`` filters, always (its scores feed the refine op); with ``s`` in CASCADE_BBOX_STRIDES a
  1x1 conv ``face_rpn_bbox_pred_stride{s}_cas{k}`` with ``bbox_pred_len * A`` filters;
* the stage body: mode 0 the first heads' input (``rpn_relu``); modes 1 and 2
  ``head_module(...)`` called as for the first heads (same arguments, so the same parameters
  and shapes) under the name ``RF_head_stride{s}_cas``; mode 2 on ``conv_feat + rpn_relu``;
  mode 3 that module concatenated with ``rpn_cls_score``, ``rpn_bbox_pred`` and
  ``rpn_landmark_pred`` (so the stage convs see C + 2A + 4A + 10A channels);
* losses: ``SoftmaxOutput`` ``face_rpn_cls_prob_stride{s}_cas{k}`` (grad_scale lr_mult,
  normalization 'valid', use_ignore, ignore_label -1, multi_output) with its label, for ``s``
  in CASCADE_CLS_STRIDES; ``MakeLoss`` ``face_rpn_bbox_loss_stride{s}_cas{k}`` with grad_scale
  ``bbox_lr_mode0`` (the first stage's box scale) under LR_MODE 0, ``0.5 * lr_mult`` under
  LR_MODE 1, with its weights, for ``s`` in CASCADE_BBOX_STRIDES;
* the first stage is untouched; the loader adds a ``gt_boxes`` label;
* deploy: per stride the three first-stage outputs, then per stage the stage's class
  probabilities (reshaped to (B, 2A, H, W) like the first stage's) and box deltas.
"""
import json

import mxnet as mx
import numpy as np
import pytest

from rcnn.config import generate_config
from rcnn.model_layout import ModelLayout
from rcnn.symbol import get_symbol_test, get_symbol_train

STRIDES = (32, 16, 8)
A = 2                       # anchors per position of the mnet preset
SSH_CHANNELS = 64           # the mnet detection modules' output
FIRST_MODULES = {32: 'rf_c3_det', 16: 'rf_c2_det', 8: 'rf_c1_det'}
SIDE = 64


def _cfg(**overrides):
    cfg, _ = generate_config('mnet', 'retinaface', overrides)
    return cfg


def _arg_shapes(sym):
    shapes, _, _ = sym.infer_shape_partial(data=(1, 3, SIDE, SIDE))
    return dict(zip(sym.list_arguments(), shapes))


def _aux_names(sym):
    return set(sym.list_auxiliary_states())


def _nodes(sym):
    return {node['name']: node for node in json.loads(sym.tojson())['nodes']}


@pytest.fixture(scope='module')
def base_train():
    return get_symbol_train('mnet', _cfg())


def _expected_stage_params(stride, stage, body_channels, bbox=True, box_len=4):
    name = 'face_rpn_%s_stride%d_cas%d'
    expected = {name % ('cls_score', stride, stage) + '_weight': (2 * A, body_channels, 1, 1),
                name % ('cls_score', stride, stage) + '_bias': (2 * A,)}
    if bbox:
        expected[name % ('bbox_pred', stride, stage) + '_weight'] = (box_len * A, body_channels,
                                                                    1, 1)
        expected[name % ('bbox_pred', stride, stage) + '_bias'] = (box_len * A,)
    return expected


def _module_copy(base_shapes, stride):
    """The parameters of the stride's first detection module, renamed to the cascade's."""
    first = FIRST_MODULES[stride]
    return {'RF_head_stride%d_cas' % stride + name[len(first):]: shape
            for name, shape in base_shapes.items() if name.startswith(first + '_')}


@pytest.mark.parametrize('mode, module, body_channels', [
    (0, False, SSH_CHANNELS),
    (1, True, SSH_CHANNELS),
    (2, True, SSH_CHANNELS),
    (3, True, SSH_CHANNELS + 2 * A + 4 * A + 10 * A),
])
def test_parameters_added_per_mode(base_train, mode, module, body_channels):
    sym = get_symbol_train('mnet', _cfg(CASCADE=1, CASCADE_MODE=mode))
    base, shapes = _arg_shapes(base_train), _arg_shapes(sym)
    assert {n: shapes[n] for n in base} == base            # nothing removed or reshaped
    expected = {'gt_boxes': ()}
    for stride in STRIDES:
        expected.update(_expected_stage_params(stride, 0, body_channels))
        if module:
            expected.update(_module_copy(base, stride))
    added = {n: s for n, s in shapes.items() if n not in base}
    assert set(added) == set(expected)
    assert {n: s for n, s in added.items() if n != 'gt_boxes'} == \
        {n: s for n, s in expected.items() if n != 'gt_boxes'}
    # the cascade module's BatchNorms bring their moving statistics
    new_aux = _aux_names(sym) - _aux_names(base_train)
    assert bool(new_aux) == module and all('_cas_' in n for n in new_aux)


def _loss_attrs(sym, name):
    attrs = _nodes(sym)[name]['attrs']
    return {k: attrs[k] for k in ('grad_scale', 'normalization', 'use_ignore', 'ignore_label',
                                  'multi_output') if k in attrs}


def test_outputs_and_grad_scales_of_one_stage(base_train):
    cfg = _cfg(CASCADE=1)
    sym = get_symbol_train('mnet', cfg)
    base_outputs = base_train.list_outputs()
    outputs = sym.list_outputs()
    assert outputs[:len(base_outputs)] == base_outputs
    added = [n[:-len('_output')] for n in outputs[len(base_outputs):]]
    assert added == ['face_rpn_%s_stride%d_cas0' % (kind, s) for s in STRIDES
                     for kind in ('cls_prob', 'label', 'bbox_loss', 'bbox_weight')]
    assert added == ModelLayout.from_config(cfg).train_output_names()[len(base_outputs):]
    first_box_scale = float(_nodes(sym)['face_rpn_bbox_loss_stride8']['attrs']['grad_scale'])
    for stride in STRIDES:
        cls = _loss_attrs(sym, 'face_rpn_cls_prob_stride%d_cas0' % stride)
        assert float(cls.pop('grad_scale')) == 1.0
        assert cls == {'normalization': 'valid', 'use_ignore': 'True', 'ignore_label': '-1',
                       'multi_output': 'True'}
        box = _nodes(sym)['face_rpn_bbox_loss_stride%d_cas0' % stride]
        assert box['op'] == 'MakeLoss'
        assert float(box['attrs']['grad_scale']) == pytest.approx(first_box_scale)
        assert _nodes(sym)['face_rpn_bbox_loss_stride%d_cas0_' % stride]['attrs']['scalar'] \
            == '3.0'


def test_master_loss_scale_and_lr_mode_1_box_scales():
    master = get_symbol_train('mnet', _cfg(CASCADE=1, **{'TRAIN.LOSS_SCALE': 'master'}))
    cfg = _cfg()
    bbox_lr_mode0 = 0.25 * 1.0 * cfg.TRAIN.BATCH_IMAGES / cfg.TRAIN.RPN_BATCH_SIZE
    assert float(_nodes(master)['face_rpn_bbox_loss_stride16_cas0']['attrs']['grad_scale']) == \
        pytest.approx(bbox_lr_mode0)
    lr_mode1 = get_symbol_train('mnet', _cfg(CASCADE=1, LR_MODE=1))
    node = _nodes(lr_mode1)['face_rpn_bbox_loss_stride16_cas0']
    assert float(node['attrs']['grad_scale']) == 0.5
    # the loss is divided by the kept positives (+ 0.01) before MakeLoss
    ops = {n['op'] for n in json.loads(lr_mode1.tojson())['nodes']}
    assert 'broadcast_div' in ops


def test_two_stages_and_class_heads_at_some_strides_only():
    cfg = _cfg(CASCADE=2, CASCADE_MODE=1, CASCADE_CLS_STRIDES=[8], CASCADE_BBOX_STRIDES=[32, 16])
    sym = get_symbol_train('mnet', cfg)
    shapes = _arg_shapes(sym)
    for stride in STRIDES:
        for stage in (0, 1):
            expected = _expected_stage_params(stride, stage, SSH_CHANNELS, bbox=stride != 8)
            assert {n: shapes[n] for n in expected} == expected
        assert 'face_rpn_bbox_pred_stride8_cas%d_weight' % stage not in shapes
    # one cascade module per stride, shared by the stages
    assert sum(n.endswith('_cas_conv1_weight') for n in shapes) == 3
    added = [n[:-len('_output')] for n in sym.list_outputs()[18:]]
    assert added == ['face_rpn_bbox_loss_stride32_cas0', 'face_rpn_bbox_weight_stride32_cas0',
                     'face_rpn_bbox_loss_stride32_cas1', 'face_rpn_bbox_weight_stride32_cas1',
                     'face_rpn_bbox_loss_stride16_cas0', 'face_rpn_bbox_weight_stride16_cas0',
                     'face_rpn_bbox_loss_stride16_cas1', 'face_rpn_bbox_weight_stride16_cas1',
                     'face_rpn_cls_prob_stride8_cas0', 'face_rpn_label_stride8_cas0',
                     'face_rpn_cls_prob_stride8_cas1', 'face_rpn_label_stride8_cas1']
    assert added == ModelLayout.from_config(cfg).train_output_names()[18:]


def test_gt_boxes_is_a_label_of_the_layout():
    layout = ModelLayout.from_config(_cfg(CASCADE=1))
    assert layout.label_names()[-1] == 'gt_boxes'
    assert 'gt_boxes' not in ModelLayout.from_config(_cfg()).label_names()


def test_mode_2_refuses_a_neck_of_other_width_than_the_detection_module():
    # resnet (as released): 256-channel neck, 512-channel detection modules
    cfg, _ = generate_config('resnet', 'retinaface', {'CASCADE': 1, 'CASCADE_MODE': 2})
    with pytest.raises(ValueError, match='CASCADE_MODE=2 adds the neck level'):
        get_symbol_train('resnet', cfg)


# ---------------------------------------------------------------------------- deploy graph
@pytest.mark.parametrize('mode', [0, 1, 2, 3])
def test_deploy_outputs_interleave_the_stages_after_each_stride(mode):
    cfg = _cfg(CASCADE=1, CASCADE_MODE=mode)
    sym = get_symbol_test('mnet', cfg)
    names = [n[:-len('_output')] for n in sym.list_outputs()]
    expected = []
    for stride in STRIDES:
        expected += ['face_rpn_cls_prob_reshape_stride%d' % stride,
                     'face_rpn_bbox_pred_stride%d' % stride,
                     'face_rpn_landmark_pred_stride%d' % stride,
                     'face_rpn_cls_prob_reshape_stride%d_cas0' % stride,
                     'face_rpn_bbox_pred_stride%d_cas0' % stride]
    assert names == expected == ModelLayout.from_config(cfg).deploy_output_names()
    _, out_shapes, _ = sym.infer_shape(data=(1, 3, SIDE, SIDE))
    shapes = dict(zip(names, out_shapes))
    for stride in STRIDES:
        cells = (SIDE // stride, SIDE // stride)
        assert shapes['face_rpn_cls_prob_reshape_stride%d_cas0' % stride] == (1, 2 * A) + cells
        assert shapes['face_rpn_bbox_pred_stride%d_cas0' % stride] == (1, 4 * A) + cells
    # every deploy parameter is a training parameter of the same shape
    train_shapes = _arg_shapes(get_symbol_train('mnet', cfg))
    deploy_shapes, _, _ = sym.infer_shape(data=(1, 3, SIDE, SIDE))
    for name, shape in zip(sym.list_arguments(), deploy_shapes):
        if name != 'data':
            assert train_shapes[name] == shape, name


def _run(sym, params, image):
    args = dict(params['args'], data=mx.nd.array(image))
    exe = sym.bind(mx.cpu(), args={n: args[n] for n in sym.list_arguments()},
                   aux_states={n: params['aux'][n] for n in sym.list_auxiliary_states()})
    return [o.asnumpy() for o in exe.forward(is_train=False)]


def test_mode_0_stage_with_the_first_heads_weights_repeats_the_first_outputs():
    """Mode 0 reads the first heads' feature: with the first heads' weights copied into the
    stage's convs, the stage's outputs equal the first stage's; the first stage's outputs equal
    the plain graph's with the same weights."""
    cfg = _cfg(CASCADE=1, CASCADE_MODE=0)
    sym, plain = get_symbol_test('mnet', cfg), get_symbol_test('mnet', _cfg())
    arg_shapes, _, aux_shapes = sym.infer_shape(data=(1, 3, SIDE, SIDE))
    rng = np.random.RandomState(3)
    args = {n: mx.nd.array(rng.uniform(-0.3, 0.3, s)) for n, s in
            zip(sym.list_arguments(), arg_shapes) if n != 'data'}
    aux = {n: mx.nd.array(rng.uniform(0.5, 1.5, s)) for n, s in
           zip(sym.list_auxiliary_states(), aux_shapes)}
    for stride in STRIDES:
        for kind in ('cls_score', 'bbox_pred'):
            for part in ('weight', 'bias'):
                args['face_rpn_%s_stride%d_cas0_%s' % (kind, stride, part)] = \
                    args['face_rpn_%s_stride%d_%s' % (kind, stride, part)]
    image = rng.uniform(0, 255, (1, 3, SIDE, SIDE))
    outputs = _run(sym, {'args': args, 'aux': aux}, image)
    reference = _run(plain, {'args': args, 'aux': aux}, image)
    for index in range(len(STRIDES)):
        first = outputs[5 * index:5 * index + 3]
        cascade = outputs[5 * index + 3:5 * index + 5]
        for have, want in zip(first, reference[3 * index:3 * index + 3]):
            np.testing.assert_array_equal(have, want)
        np.testing.assert_allclose(cascade[0], first[0], rtol=1e-6)
        np.testing.assert_allclose(cascade[1], first[1], rtol=1e-6)


def test_cascade_metrics_read_their_stage_outputs():
    from rcnn.core.metric import cascade_loss_indices, cascade_metrics
    layout = ModelLayout.from_config(_cfg(CASCADE=1, CASCADE_CLS_STRIDES=[8],
                                          CASCADE_BBOX_STRIDES=[32]))
    metrics = cascade_metrics(layout)
    assert [m.name for m in metrics] == ['RPNL1LossCAS0_s32', 'RPNAccCAS0_s8']
    assert cascade_metrics(ModelLayout.from_config(_cfg())) == []
    names = layout.train_output_names()
    preds = [mx.nd.zeros((1, 2, 3)) for _ in names]
    # stride 8, stage 0: 3 anchors, labels 1 0 -1; the first two predicted right
    preds[names.index('face_rpn_cls_prob_stride8_cas0')] = mx.nd.array([[[0.2, 0.9, 0.5],
                                                                          [0.8, 0.1, 0.5]]])
    preds[names.index('face_rpn_label_stride8_cas0')] = mx.nd.array([[1, 0, -1]])
    # stride 32, stage 0: one weighted anchor (4 values) with a summed loss of 2
    weight = np.zeros((1, 8, 4), np.float32)
    weight[0, 0:4, 1] = 1
    loss = weight * 0.5
    preds[names.index('face_rpn_bbox_loss_stride32_cas0')] = mx.nd.array(loss)
    preds[names.index('face_rpn_bbox_weight_stride32_cas0')] = mx.nd.array(weight)
    for metric in metrics:
        metric.update(None, preds)
    assert metrics[0].get() == ('RPNL1LossCAS0_s32', pytest.approx(2.0))
    assert metrics[1].get() == ('RPNAccCAS0_s8', pytest.approx(1.0))
    assert [names[i] for i in cascade_loss_indices(layout)] == [
        'face_rpn_bbox_loss_stride32_cas0', 'face_rpn_cls_prob_stride8_cas0']


@pytest.mark.parametrize('mode, body_channels', [(0, 512), (1, 512),
                                                (3, 512 + 2 * A + 4 * A + 10 * A)])
def test_resnet_stage_convs_read_the_512_channel_modules(mode, body_channels):
    cfg, _ = generate_config('resnet', 'retinaface', {'CASCADE': 1, 'CASCADE_MODE': mode})
    shapes = _arg_shapes(get_symbol_train('resnet', cfg))
    for stride in STRIDES:
        expected = _expected_stage_params(stride, 0, body_channels)
        assert {n: shapes[n] for n in expected} == expected
    assert len(get_symbol_test('resnet', cfg).list_outputs()) == 5 * len(STRIDES)


def test_layout_indices_and_value_semantics_with_cascade():
    import pickle
    layout = ModelLayout.from_config(_cfg(CASCADE=2, CASCADE_BBOX_STRIDES=[16]))
    names = layout.train_output_names()
    assert layout.train_output_index(1, 'face_rpn_bbox_loss') == 8       # first stage unmoved
    assert names[layout.train_output_index(1, 'face_rpn_bbox_loss', stage=1)] == \
        'face_rpn_bbox_loss_stride16_cas1'
    assert names[layout.train_output_index(2, 'face_rpn_label', stage=0)] == \
        'face_rpn_label_stride8_cas0'
    assert layout.stride_deploy_output_names(32)[3:] == [
        'face_rpn_cls_prob_reshape_stride32_cas0', 'face_rpn_cls_prob_reshape_stride32_cas1']
    assert layout.stride_deploy_output_names(16)[3:] == [
        'face_rpn_cls_prob_reshape_stride16_cas0', 'face_rpn_bbox_pred_stride16_cas0',
        'face_rpn_cls_prob_reshape_stride16_cas1', 'face_rpn_bbox_pred_stride16_cas1']
    assert pickle.loads(pickle.dumps(layout)) == layout
    assert layout != ModelLayout.from_config(_cfg(CASCADE=2))
    assert 'cascade_bbox_strides=[16]' in repr(layout)
    # without cascade the stride lists are empty whatever the config says
    assert ModelLayout.from_config(_cfg()).cascade_cls_strides == ()


def test_mode_3_stage_conv_is_the_conv_of_the_concatenation():
    """Mode 3's stage convs see [module output, cls scores, box deltas, landmark deltas]
    concatenated on the channel axis (the original's ``mx.sym.concat``): checked against a
    NumPy 1x1 conv of the concatenated internal outputs."""
    cfg = _cfg(CASCADE=1, CASCADE_MODE=3)
    stride = 16
    internals = get_symbol_test('mnet', cfg).get_internals()
    names = ['RF_head_stride%d_cas_concat_relu' % stride] + [
        'face_rpn_%s_stride%d' % (kind, stride)
        for kind in ('cls_score', 'bbox_pred', 'landmark_pred')]
    stage = 'face_rpn_bbox_pred_stride%d_cas0' % stride
    group = mx.sym.Group([internals[n + '_output'] for n in names + [stage]])
    arg_shapes, _, aux_shapes = group.infer_shape(data=(1, 3, SIDE, SIDE))
    rng = np.random.RandomState(5)
    args = {n: mx.nd.array(rng.uniform(-0.3, 0.3, s))
            for n, s in zip(group.list_arguments(), arg_shapes)}
    aux = {n: mx.nd.array(rng.uniform(0.5, 1.5, s))
           for n, s in zip(group.list_auxiliary_states(), aux_shapes)}
    outputs = [o.asnumpy() for o in group.bind(mx.cpu(), args=args, aux_states=aux)
               .forward(is_train=False)]
    concat = np.concatenate(outputs[:4], axis=1)
    weight = args[stage + '_weight'].asnumpy()[:, :, 0, 0]
    assert weight.shape == (4 * A, concat.shape[1])
    expected = np.einsum('fc,bchw->bfhw', weight, concat) + \
        args[stage + '_bias'].asnumpy()[None, :, None, None]
    np.testing.assert_allclose(outputs[4], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('overrides', [dict(CASCADE_MODE=3, RPN_ANCHOR_CFG='RAC_SSH2'),
                                       dict(CASCADE_MODE=2, DENSE_ANCHOR=True)])
def test_a_training_step_runs_and_gives_finite_cascade_losses(overrides):
    """One forward / backward of the training graph on a 64-pixel batch of random labels
    (RAC_SSH2 with mode 3 is a channel split on which MXNet's MKLDNN Concat backward dies
    with SIGFPE: the stage convs must not concatenate)."""
    cfg = _cfg(CASCADE=1, **dict(overrides, **{'TRAIN.MAX_BBOX_PER_IMAGE': 4}))
    sym = get_symbol_train('mnet', cfg)
    layout = ModelLayout.from_config(cfg)
    from rcnn.symbol.symbol_common import label_shapes
    shapes = dict(label_shapes(sym, (2, 3, SIDE, SIDE), cfg), gt_boxes=(2, 4, 5))
    rng = np.random.RandomState(7)
    gt = np.full((2, 4, 5), -1, np.float32)
    gt[:, 0] = [8, 8, 40, 48, 1]
    labels = {}
    for name in layout.label_names():
        if name == 'gt_boxes':
            labels[name] = gt
        elif '_label_' in name:
            labels[name] = rng.choice([-1, 0, 1], size=shapes[name]).astype(np.float32)
        else:
            labels[name] = rng.rand(*shapes[name]).astype(np.float32)
    mod = mx.mod.Module(sym, data_names=['data'], label_names=layout.label_names(),
                        context=mx.cpu())
    mod.bind(data_shapes=[('data', (2, 3, SIDE, SIDE))],
             label_shapes=[(n, shapes[n]) for n in layout.label_names()])
    mod.init_params(mx.init.Xavier())
    batch = mx.io.DataBatch([mx.nd.array(rng.uniform(0, 255, (2, 3, SIDE, SIDE)))],
                            [mx.nd.array(labels[n]) for n in layout.label_names()])
    mod.forward_backward(batch)
    # the backward runs asynchronously: let it finish inside the test (MKLDNN reads the
    # environment while the fixtures' teardown rewrites it)
    mx.nd.waitall()
    outputs = dict(zip(sym.list_outputs(), mod.get_outputs()))
    for name in layout.train_output_names()[18:]:
        assert np.isfinite(outputs[name + '_output'].asnumpy()).all(), name


def test_mode_3_deploy_graph_exports_to_onnx_with_the_same_outputs(tmp_path):
    pytest.importorskip('onnxruntime')
    from rcnn.deploy.onnx_export import export_onnx, mxnet_forward, onnxruntime_forward
    cfg = _cfg(CASCADE=1, CASCADE_MODE=3)
    sym = get_symbol_test('mnet', cfg)
    shape = (1, 3, SIDE, SIDE)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=shape)
    rng = np.random.RandomState(2)
    args = {n: mx.nd.array(rng.uniform(-0.1, 0.1, s))
            for n, s in zip(sym.list_arguments(), arg_shapes) if n != 'data'}
    aux = {n: mx.nd.array(rng.uniform(0.5, 1.5, s))
           for n, s in zip(sym.list_auxiliary_states(), aux_shapes)}
    path = str(tmp_path / 'cascade.onnx')
    export_onnx(sym, args, aux, path, input_shape=shape)
    data = rng.uniform(0, 255, shape).astype(np.float32)
    reference, exported = mxnet_forward(sym, args, aux, data), onnxruntime_forward(path, data)
    assert list(exported) == ModelLayout.from_config(cfg).deploy_output_names()
    for name in reference:
        np.testing.assert_allclose(exported[name], reference[name], rtol=1e-4, atol=1e-5)


def test_the_nan_guard_watches_the_cascade_losses_of_a_cascade_layout():
    from rcnn.core.hooks import NonFiniteGuard
    layout = ModelLayout.from_config(_cfg(CASCADE=1))
    first_stage = list(NonFiniteGuard(ModelLayout.from_config(_cfg())).watched)
    guard = NonFiniteGuard(layout)
    names = layout.train_output_names()
    assert guard.watched[:len(first_stage)] == first_stage
    added = [names[i] for i in guard.watched if i not in first_stage]
    assert added == ['face_rpn_%s_stride%d_cas0' % (kind, s) for s in STRIDES
                     for kind in ('cls_prob', 'bbox_loss')]
