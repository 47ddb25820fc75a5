"""The original's training recipe in effect: optimizer semantics, colour jitter per network,
loss-scale variants, pretrained backbones (symbolic and Gluon files) and LAYER_FIX freezing.

The end-to-end runs (marked slow) start train.py from the released mnet.25 or from locally
built random-weight backbones (no download) for one or two iterations on the dlib photos.
"""
import json
import re

import mxnet as mx
import numpy as np
import pytest

from rcnn.config import generate_config
from rcnn.core.optimizer import init_module_optimizer
from rcnn.core.pretrained import PretrainedError, load_pretrained, read_pretrained
from rcnn.core.param_policy import frozen_param_names, layer_fix_candidates
from rcnn.symbol import get_symbol_train
from rcnn.symbol.symbol_mnet import mobilenet_backbone
from rcnn.symbol.symbol_resnet import resnet_backbone
from rcnn.checkpoint.params import load_params

from conftest import train_in_process
from test_train import dlib_args, run_train, train_argv, train_cmd

LABEL_INPUT = re.compile(r'^face_(label|bbox_|landmark_)')


# ------------------------------------------------------------------------------ presets
def test_colour_jitter_and_layer_fix_per_network():
    mnet, _ = generate_config('mnet', 'retinaface')
    resnet, _ = generate_config('resnet', 'retinaface')
    # sample_config.py: network.mnet.COLOR_MODE = 1, LAYER_FIX = True; the base keeps 2 / False
    assert (mnet.COLOR_MODE, mnet.LAYER_FIX) == (1, True)
    assert (resnet.COLOR_MODE, resnet.LAYER_FIX) == (2, False)
    for cfg in (mnet, resnet):
        assert cfg.TRAIN.GRAPH_LR_WD_MULT is False and cfg.TRAIN.LOSS_SCALE == 'release'


def test_mnet_colour_mode_scales_every_pixel_by_one_factor():
    from rcnn.io.image import color_aug
    cfg, _ = generate_config('mnet', 'retinaface')
    image = np.random.default_rng(0).uniform(10, 200, (20, 30, 3)).astype(np.float32)
    out = color_aug(image.copy(), cfg.COLOR_JITTERING, cfg.COLOR_MODE, np.random.default_rng(1))
    ratio = out / image
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-6)   # brightness only
    assert ratio.flat[0] != 1.0 and abs(ratio.flat[0] - 1) <= 0.125


# ------------------------------------------------------------------------------ loss scales
def _make_loss_scales(network, variant):
    cfg, _ = generate_config(network, 'retinaface')
    cfg.TRAIN.LOSS_SCALE = variant
    nodes = json.loads(get_symbol_train(network, cfg).tojson())['nodes']
    scales = {}
    for node in nodes:
        if node['op'] == 'MakeLoss':
            head = 'box' if 'bbox' in node['name'] else 'landmark'
            scales.setdefault(head, set()).add(float(node['attrs']['grad_scale']))
    return scales


# hand-computed: release 1/256 and 0.4*L/256; master 0.25*B/256 and 0.4*L*0.25*B/256
# (mnet: L 2.5, B 16; resnet: L 2.0, B 8)
@pytest.mark.parametrize('network, variant, box, landmark', [
    ('mnet', 'release', 1 / 256.0, 1 / 256.0),
    ('mnet', 'master', 1 / 64.0, 1 / 64.0),
    ('resnet', 'release', 1 / 256.0, 1 / 320.0),
    ('resnet', 'master', 1 / 128.0, 1 / 160.0)])
def test_make_loss_grad_scales_of_both_variants(network, variant, box, landmark):
    scales = _make_loss_scales(network, variant)
    assert len(scales['box']) == 1 and len(scales['landmark']) == 1   # the same at every stride
    assert scales['box'].pop() == pytest.approx(box, rel=1e-6)
    assert scales['landmark'].pop() == pytest.approx(landmark, rel=1e-6)


def test_unknown_loss_scale_is_refused():
    cfg, _ = generate_config('mnet', 'retinaface')
    cfg.TRAIN.LOSS_SCALE = 'v3'
    with pytest.raises(ValueError, match="release, master"):
        get_symbol_train('mnet', cfg)


# ------------------------------------------------------------------------------ optimizer
def _tiny_module():
    data = mx.sym.var('data')
    bias = mx.sym.var('c_bias', lr_mult=2.0, wd_mult=0.0)
    conv = mx.sym.Convolution(data, bias=bias, num_filter=2, kernel=(1, 1), name='c')
    out = mx.sym.BatchNorm(conv, fix_gamma=False, name='bn')
    mod = mx.mod.Module(mx.sym.MakeLoss(mx.sym.sum(out)), data_names=['data'], label_names=None)
    mod.bind(data_shapes=[('data', (1, 1, 2, 2))])
    mod.init_params(mx.init.One())
    return mod


@pytest.mark.parametrize('graph_multipliers, expected', [
    (False, {'c_weight': (1, 1), 'c_bias': (1, 1), 'bn_gamma': (1, 1), 'bn_beta': (1, 1)}),
    (True, {'c_weight': (1, 1), 'c_bias': (2, 0), 'bn_gamma': (1, 1), 'bn_beta': (1, 0)})])
def test_sgd_instance_ignores_graph_multipliers_unless_asked(graph_multipliers, expected):
    """MXNet's own _get_lrs/_get_wds on the installed optimizer, per parameter index."""
    mod = _tiny_module()
    init_module_optimizer(mod, 'local', {'learning_rate': 0.1, 'wd': 0.5, 'momentum': 0.9,
                                         'rescale_grad': 1.0}, graph_multipliers)
    opt = mod._optimizer
    names = mod._exec_group.param_names
    got = {name: (round(opt._get_lrs([i])[0] / 0.1, 6), round(opt._get_wds([i])[0] / 0.5, 6))
           for i, name in enumerate(names)}
    assert got == expected


def _one_step(tmp_path, dlib_faces, mnet25_prefix, capsys, name, wd, *extra):
    """One SGD step of train.py, run in this process (a process of its own would spend longer
    importing MXNet than the step takes)."""
    prefix = tmp_path / name
    proc = train_in_process(train_argv(prefix, '--pretrained', mnet25_prefix, '--max_iters', '1',
                                       '--workers', '0', '--lr', '0.01', '--wd', str(wd), *extra,
                                       *dlib_args(dlib_faces, tmp_path)), capsys)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {k: v.asnumpy() for k, v in load_params(str(prefix), 1)[0].items()}, proc.stdout


def _graph_multipliers(sym):
    """lr/wd multipliers MXNet's Optimizer gives a named parameter of ``sym`` when created by
    name (optimizer.py set_lr_mult / set_wd_mult): attributes, else lr 1 and wd 1 for *_weight /
    *_gamma, 0 for everything else."""
    attrs = sym.attr_dict()
    result = {}
    for name in sym.list_arguments():
        lr = float(attrs.get(name, {}).get('__lr_mult__', 1.0))
        wd = 1.0 if name.endswith(('_weight', '_gamma')) else 0.0
        wd = float(attrs.get(name, {}).get('__wd_mult__', wd))
        result[name] = (lr, wd)
    return result


@pytest.mark.slow
@pytest.mark.parametrize('graph_flag', [False, True])
def test_first_sgd_step_decays_every_unfrozen_parameter_by_lr_wd_p0(tmp_path, dlib_faces,
                                                                      mnet25_prefix, graph_flag,
                                                                      capsys):
    """Two 1-iteration fine-tunes from mnet.25, same seed, --wd 0 and --wd W: at the first SGD
    step (zero momentum) p_W - p_0 = -lr * lr_mult * wd_mult * W * p0. The original's SGD instance:
    lr_mult = wd_mult = 1 for every unfrozen parameter; --graph_lr_wd_mult: the graph's."""
    lr, decay = 0.01, 1.0
    extra = ['--graph_lr_wd_mult'] if graph_flag else []
    p_0, _ = _one_step(tmp_path, dlib_faces, mnet25_prefix, capsys, 'wd0', 0.0, *extra)
    p_w, log = _one_step(tmp_path, dlib_faces, mnet25_prefix, capsys, 'wdW', decay, *extra)
    released, _ = load_params(mnet25_prefix, 0)
    released = {k: v.asnumpy() for k, v in released.items()}
    cfg, _ = generate_config('mnet', 'retinaface')
    sym = get_symbol_train('mnet', cfg)
    params = [n for n in sym.list_arguments() if n != 'data' and not LABEL_INPUT.match(n)]
    frozen = params[:6]
    mults = _graph_multipliers(sym) if graph_flag else {n: (1.0, 1.0) for n in params}
    summary = re.search(r'optimizer multipliers: (.*)', log).group(1)
    for name in params:
        p0 = released[name]
        if name in frozen:
            np.testing.assert_array_equal(p_w[name], p0)
            np.testing.assert_array_equal(p_0[name], p0)
            continue
        lr_mult, wd_mult = mults[name]
        expected = -lr * lr_mult * wd_mult * decay * p0
        np.testing.assert_allclose(p_w[name] - p_0[name], expected, rtol=1e-3,
                                   atol=2e-6 * float(np.abs(p0).max()) + 1e-9, err_msg=name)
    if graph_flag:
        # hand-picked: head bias lr x2 wd 0 (no decay at all), lateral bias lr x2 wd 1,
        # BatchNorm beta wd 0, weights and gammas lr x1 wd 1
        assert mults['face_rpn_cls_score_stride8_bias'] == (2.0, 0.0)
        assert mults['rf_c3_lateral_bias'] == (2.0, 1.0)
        assert mults['mobilenet0_batchnorm5_beta'] == (1.0, 0.0)
        assert mults['rf_c1_det_conv1_weight'] == (1.0, 1.0)
        assert 'at lr x2' in summary
    else:
        assert summary == '%d trainable parameters: %d at lr x1, wd x1' % (
            len(params) - 6, len(params) - 6)
        np.testing.assert_array_less(0, np.abs(p_w['face_rpn_cls_score_stride8_bias']
                                               - p_0['face_rpn_cls_score_stride8_bias']).max())


# ------------------------------------------------------------------------------ pretrained
def _random_gluon(name, rng, size=64, **kwargs):
    from mxnet.gluon.model_zoo import vision
    net = getattr(vision, name)(pretrained=False, **kwargs)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, size, size)))               # settle the deferred shapes
    for key, param in net._collect_params_with_prefix().items():
        shape = param.shape
        if key.endswith('running_var'):
            value = rng.uniform(0.5, 2.0, shape)
        elif key.endswith(('running_mean', 'beta', 'bias')):
            value = rng.normal(0, 0.1, shape)
        elif key.endswith('gamma'):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        param.set_data(mx.nd.array(value))
    return net


def _gluon_features(net, image):
    out = mx.nd.array(image)
    for index in range(len(net.features) - 2):         # up to the global pooling
        out = net.features[index](out)
    return out.asnumpy()


def _graph_features(feature, arg_params, aux_params, image):
    args = {n: arg_params[n] for n in feature.list_arguments() if n != 'data'}
    args['data'] = mx.nd.array(image)
    aux = {n: aux_params[n] for n in feature.list_auxiliary_states()}
    return feature.bind(mx.cpu(), args, aux_states=aux).forward(is_train=False)[0].asnumpy()


@pytest.mark.parametrize('gluon_name, network, backbone', [
    ('mobilenet0_25', 'mnet', mobilenet_backbone), ('resnet50_v2', 'resnet', resnet_backbone)])
def test_gluon_model_zoo_file_maps_onto_our_backbone(tmp_path, gluon_name, network, backbone):
    """save_parameters file (structural names) -> our names: the backbone computes what the
    Gluon network's feature extractor computes."""
    rng = np.random.RandomState(0)
    net = _random_gluon(gluon_name, rng)
    path = str(tmp_path / ('%s.params' % gluon_name))
    net.save_parameters(path)
    assert all('.' in key for key in mx.nd.load(path))        # structural names
    arg_params, aux_params, form, _ = read_pretrained(path, 0, network)
    assert form == 'Gluon parameter file'
    image = rng.uniform(0, 255, (1, 3, 64, 64)).astype(np.float32)
    ours = _graph_features(backbone(mx.sym.var('data'))[32], arg_params, aux_params, image)
    reference = _gluon_features(net, image)
    assert ours.shape == reference.shape
    # BatchNorm eps: Gluon 1e-5, the resnet graph 2e-5 (as the model-zoo resnet-50 symbol)
    np.testing.assert_allclose(ours, reference, rtol=1e-3, atol=1e-3 * np.abs(reference).max())


def _graph_shapes(network):
    cfg, _ = generate_config(network, 'retinaface')
    sym = get_symbol_train(network, cfg)
    arg_shapes, _, aux_shapes = sym.infer_shape_partial(data=(1, 3, 640, 640))
    args = {n: s for n, s in zip(sym.list_arguments(), arg_shapes)
            if n != 'data' and not LABEL_INPUT.match(n)}
    return args, dict(zip(sym.list_auxiliary_states(), aux_shapes))


def test_symbolic_model_zoo_checkpoint_loads_the_backbone_and_ignores_the_classifier(tmp_path):
    """A model-zoo style resnet-50 (bn_data, conv0, stageN_unitM_*, bn1, fc1) saved as a
    symbolic checkpoint: every backbone array loaded, fc1 ignored, neck and heads fresh."""
    body = resnet_backbone(mx.sym.var('data'))[32]
    pooled = mx.sym.Pooling(body, global_pool=True, kernel=(7, 7), pool_type='avg')
    classifier = mx.sym.FullyConnected(mx.sym.flatten(pooled), num_hidden=10, name='fc1')
    arg_shapes, _, aux_shapes = classifier.infer_shape(data=(1, 3, 224, 224))
    rng = np.random.RandomState(1)
    arg = {n: mx.nd.array(rng.normal(0, 0.01, s)) for n, s in
           zip(classifier.list_arguments(), arg_shapes) if n != 'data'}
    aux = {n: mx.nd.array(rng.uniform(0.5, 1, s)) for n, s in
           zip(classifier.list_auxiliary_states(), aux_shapes)}
    prefix = str(tmp_path / 'resnet-50')
    mx.model.save_checkpoint(prefix, 0, classifier, arg, aux)
    graph_args, graph_aux = _graph_shapes('resnet')
    result = load_pretrained(prefix, 0, 'resnet', graph_args, graph_aux)
    backbone = set(arg) - {'fc1_weight', 'fc1_bias'}
    assert set(result.loaded) == backbone | set(aux)
    assert result.ignored == ['fc1_bias', 'fc1_weight']
    assert set(result.fresh) == (set(graph_args) | set(graph_aux)) - set(result.loaded)
    assert all(not n.startswith(('bn', 'conv0', 'stage')) for n in result.fresh)
    for name in ('conv0_weight', 'stage4_unit3_conv3_weight'):
        np.testing.assert_array_equal(result.arg_params[name].asnumpy(), arg[name].asnumpy())
    assert '%d arrays loaded' % len(result.loaded) in result.summary()
    # resnet has no LAYER_FIX: nothing frozen
    cfg, _ = generate_config('resnet', 'retinaface')
    assert frozen_param_names(cfg.LAYER_FIX, list(graph_args), result.loaded) == []


def test_wrong_shapes_are_refused_naming_the_first_mismatching_array(tmp_path):
    net = _random_gluon('mobilenet1_0', np.random.RandomState(2), size=32)
    path = str(tmp_path / 'mobilenet1.0.params')
    net.save_parameters(path)
    graph_args, graph_aux = _graph_shapes('mnet')
    with pytest.raises(PretrainedError, match=re.escape(path) + r'.*mobilenet0_conv0_weight has '
                                              r'shape \(32, 3, 3, 3\), the graph needs '
                                              r'\(8, 3, 3, 3\)'):
        load_pretrained(path, 0, 'mnet', graph_args, graph_aux)


def test_non_finite_values_in_a_pretrained_file_are_refused_naming_the_array(tmp_path):
    graph_args, graph_aux = _graph_shapes('mnet')
    weight = np.zeros(graph_args['mobilenet0_conv1_weight'], np.float32)
    weight[0, 0, 0, 0] = np.nan
    path = str(tmp_path / 'nan.params')
    mx.nd.save(path, {'arg:mobilenet0_conv1_weight': mx.nd.array(weight)})
    with pytest.raises(PretrainedError, match=re.escape(path) + r'.*NaN/Inf.*'
                                              r'mobilenet0_conv1_weight'):
        load_pretrained(path, 0, 'mnet', graph_args, graph_aux)


def test_a_checkpoint_sharing_no_name_is_refused_naming_file_and_expected_names(tmp_path):
    prefix = str(tmp_path / 'other')
    mx.nd.save(prefix + '-0000.params', {'arg:fc_weight': mx.nd.zeros((2, 2)),
                                         'aux:bn_moving_var': mx.nd.ones(2)})
    graph_args, graph_aux = _graph_shapes('mnet')
    with pytest.raises(PretrainedError, match=re.escape(prefix + '-0000.params') +
                       r' shares no parameter name.*expected names such as '
                       r'mobilenet0_conv0_weight, mobilenet0_batchnorm0_gamma'):
        load_pretrained(prefix, 0, 'mnet', graph_args, graph_aux)
    with pytest.raises(FileNotFoundError, match='missing-0007.params not found'):
        load_pretrained(str(tmp_path / 'missing'), 7, 'mnet', graph_args, graph_aux)


def test_layer_fix_freezes_the_first_six_arrays_only_when_loaded():
    graph_args, _ = _graph_shapes('mnet')
    names = list(graph_args)
    first_six = ['mobilenet0_conv0_weight', 'mobilenet0_batchnorm0_gamma',
                 'mobilenet0_batchnorm0_beta', 'mobilenet0_conv1_weight',
                 'mobilenet0_batchnorm1_gamma', 'mobilenet0_batchnorm1_beta']
    assert layer_fix_candidates(names) == first_six            # no upsampling weights
    assert frozen_param_names(True, names, names) == first_six
    assert frozen_param_names(True, names, names[1:]) == first_six[1:]
    assert frozen_param_names(True, names, []) == []           # from scratch: nothing frozen
    assert frozen_param_names(False, names, names) == []
    assert layer_fix_candidates(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'x_upsampling_weight']) == \
        ['a', 'b', 'c', 'd', 'e', 'f', 'x_upsampling_weight']


@pytest.mark.slow
@pytest.mark.parametrize('form', ['gluon', 'symbolic'])
def test_train_py_starts_from_a_random_imagenet_mobilenet(tmp_path, dlib_faces, form):
    """train.py --pretrained with a Gluon save_parameters file or a symbolic export (aux
    *_running_mean/var): 135 backbone arrays loaded, the classifier ignored, the first six
    frozen (unchanged after two steps), the other loaded arrays trained from the file's values."""
    # the names a fresh process gives its first MobileNet (this one may have built others)
    net = _random_gluon('mobilenet0_25', np.random.RandomState(3), prefix='mobilenet0_')
    if form == 'gluon':
        source = str(tmp_path / 'mobilenet0.25-random.params')
        net.save_parameters(source)
        extra = ['--pretrained', source]
    else:
        net.hybridize()
        net(mx.nd.zeros((1, 3, 64, 64)))
        net.export(str(tmp_path / 'mobilenet025'), epoch=0)
        extra = ['--pretrained', str(tmp_path / 'mobilenet025'), '--pretrained_epoch', '0']
    expected = {'mobilenet0_' + p.name[len(net.prefix):].replace('running', 'moving'):
                p.data().asnumpy() for p in net.collect_params().values()}
    prefix = tmp_path / 'ft'
    proc = run_train(train_cmd(prefix, *extra, '--max_iters', '2', '--workers', '0',
                               *dlib_args(dlib_faces, tmp_path)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r'pretrained (Gluon parameter file|symbolic checkpoint) \S+: 135 arrays '
                     r'loaded, \d+ initialised fresh \(rf_c3_lateral_weight', proc.stdout)
    assert '2 ignored (mobilenet0_dense0_bias, mobilenet0_dense0_weight)' in proc.stdout
    first_six = ['mobilenet0_conv0_weight', 'mobilenet0_batchnorm0_gamma',
                 'mobilenet0_batchnorm0_beta', 'mobilenet0_conv1_weight',
                 'mobilenet0_batchnorm1_gamma', 'mobilenet0_batchnorm1_beta']
    assert 'frozen parameters (6): %s' % first_six in proc.stdout
    trained, _ = load_params(str(prefix), 1)
    for name in first_six:
        np.testing.assert_array_equal(trained[name].asnumpy(), expected[name])
    # trained from the file's values: two small SGD steps away from them
    moved = trained['mobilenet0_conv2_weight'].asnumpy() - expected['mobilenet0_conv2_weight']
    assert 0 < np.abs(moved).max() < 0.05 * np.abs(expected['mobilenet0_conv2_weight']).max()


def test_train_py_refuses_a_pretrained_file_sharing_no_name(tmp_path, dlib_faces, capsys):
    prefix = str(tmp_path / 'foreign')
    mx.nd.save(prefix + '-0000.params', {'arg:fc_weight': mx.nd.zeros((2, 2))})
    # refused during start-up: train.py's main in this process
    proc = train_in_process(train_argv(tmp_path / 'm', '--pretrained', prefix, '--max_iters',
                                       '1', '--workers', '0', *dlib_args(dlib_faces, tmp_path)),
                            capsys)
    assert proc.returncode == 2
    assert 'foreign-0000.params shares no parameter name' in proc.stderr
    assert 'mobilenet0_conv0_weight' in proc.stderr and 'Traceback' not in proc.stderr


# ------------------------------------------------------------------------------ flags, resume
def test_recipe_flags_set_the_config_and_a_resumed_run_keeps_its_recipe():
    import train
    from rcnn.config import build_config
    from rcnn.core.training_setup import run_overrides
    _, options = train.parse_args(['--network', 'resnet', '--graph_lr_wd_mult',
                                   '--loss_scale', 'master'])
    overrides = run_overrides(options.config_overrides, None)
    assert overrides == {'TRAIN.GRAPH_LR_WD_MULT': True, 'TRAIN.LOSS_SCALE': 'master'}
    cfg = build_config('resnet', 'retinaface', overrides.items())
    assert (cfg.TRAIN.GRAPH_LR_WD_MULT, cfg.TRAIN.LOSS_SCALE) == (True, 'master')
    _, options = train.parse_args(['--network', 'mnet'])
    cfg = build_config('mnet', 'retinaface', run_overrides(options.config_overrides, None).items())
    assert (cfg.TRAIN.GRAPH_LR_WD_MULT, cfg.TRAIN.LOSS_SCALE) == (False, 'release')
    # resuming: the record's recipe wins; records older than the switches used the graph's
    # multipliers and the release scales
    record = {'checkpoint': 3, 'graph_lr_wd_mult': False, 'loss_scale': 'master',
              'batch_size': 4, 'num_devices': 2}
    assert run_overrides(options.config_overrides, record) == {
        'TRAIN.GRAPH_LR_WD_MULT': False, 'TRAIN.LOSS_SCALE': 'master', 'TRAIN.BATCH_IMAGES': 2}
    assert run_overrides((), {'checkpoint': 3, 'batch_size': 8, 'num_devices': 1}) == {
        'TRAIN.GRAPH_LR_WD_MULT': True, 'TRAIN.LOSS_SCALE': 'release', 'TRAIN.BATCH_IMAGES': 8}
    _, options = train.parse_args(['--network', 'mnet', '--loss_scale', 'release'])
    with pytest.raises(ValueError, match='cannot resume checkpoint 3'):
        run_overrides(options.config_overrides, record)
