"""Checkpoints as the original ``train.py`` writes them load and detect as the released files.

The original trained mnet from a Gluon-exported MobileNet-0.25: its saved deploy graph keeps
the backbone's BatchNorm statistics as ``mobilenet0_batchnormK_running_mean/var`` and the
params file matches. The released mnet.25 says ``_moving_`` in the graph and ``_running_`` in
the params. Here the released graph and params are rewritten with the ``_running_`` spelling
(by plain string replacement, independent of the loader) and must give exactly the released
model's detections on the real photos, in every backend and through INT8 quantization.
"""
import json

import cv2
import mxnet as mx
import numpy as np
import pytest

from conftest import shared_path
from rcnn.checkpoint.params import ParamMismatchError, load_checkpoint
from rcnn.utils.param_names import fit_names, other_spelling

MOVING, RUNNING = '_moving_', '_running_'
BACKBONE = 'mobilenet0_'
#: graph spelling, params spelling: which names say _running_ (else _moving_)
VARIANTS = {
    # what the original train.py writes from a Gluon backbone: backbone _running_ in both
    'original_train': (lambda n: n.startswith(BACKBONE), lambda n: n.startswith(BACKBONE)),
    # every BatchNorm statistic _running_ in both files
    'all_running': (lambda n: True, lambda n: True),
    # the other direction: the graph says _running_, the params _moving_
    'graph_running_params_moving': (lambda n: True, lambda n: False),
}
DETECT_THRESHOLD = 0.02


def _spelled(name, running):
    """``name`` with its BatchNorm statistic spelled _running_ (or _moving_)."""
    if not name.endswith(('_mean', '_var')):
        return name
    moving = name.replace(RUNNING, MOVING)
    return moving.replace(MOVING, RUNNING) if running else moving


def write_respelled(src_prefix, out_prefix, graph_running, params_running, epoch=0):
    """Copy a checkpoint, spelling the BatchNorm statistics of the graph and of the params as
    the two predicates say. Returns the number of graph names spelled _running_."""
    with open(src_prefix + '-symbol.json') as handle:
        graph = json.load(handle)
    count = 0
    for node in graph['nodes']:
        if node['op'] == 'null' and node['name'].endswith(('_moving_mean', '_moving_var')):
            node['name'] = _spelled(node['name'], graph_running(node['name']))
            count += RUNNING in node['name']
    with open(out_prefix + '-symbol.json', 'w') as handle:
        json.dump(graph, handle)
    saved = mx.nd.load('%s-%04d.params' % (src_prefix, epoch))
    respelled = {}
    for key, value in saved.items():
        kind, name = key.split(':', 1)
        if kind == 'aux':
            name = _spelled(name, params_running(name.replace(RUNNING, MOVING)))
        respelled['%s:%s' % (kind, name)] = value
    mx.nd.save('%s-%04d.params' % (out_prefix, epoch), respelled)
    return count


@pytest.fixture(scope='module')
def released_prefix():
    return str(shared_path('models', 'mnet.25') / 'mnet.25')


@pytest.fixture(scope='module')
def variant_prefixes(released_prefix, tmp_path_factory):
    folder = tmp_path_factory.mktemp('respelled')
    prefixes = {}
    for name, (graph_running, params_running) in VARIANTS.items():
        prefix = str(folder / name)
        write_respelled(released_prefix, prefix, graph_running, params_running)
        prefixes[name] = prefix
    return prefixes


@pytest.fixture(scope='module')
def photos():
    paths = sorted(shared_path('data', 'dlib_faces').glob('*/images/*/*.jpg'))
    assert len(paths) >= 9
    return [(path.name, cv2.imread(str(path))) for path in paths]


@pytest.fixture(scope='module')
def released_detections(released_prefix, photos):
    from retinaface import RetinaFace
    detector = RetinaFace(released_prefix, 0, ctx_id=-1)
    return {name: detector.detect(image, DETECT_THRESHOLD, [1.0, 0.5], do_flip=True)
            for name, image in photos}


def _assert_same_detections(detector, photos, reference, atol, score_atol=1e-6):
    total = 0
    for name, image in photos:
        faces, points = detector.detect(image, DETECT_THRESHOLD, [1.0, 0.5], do_flip=True)
        ref_faces, ref_points = reference[name]
        assert faces.shape == ref_faces.shape, name
        np.testing.assert_allclose(faces[:, :4], ref_faces[:, :4], atol=atol, rtol=0, err_msg=name)
        np.testing.assert_allclose(faces[:, 4], ref_faces[:, 4], atol=score_atol, rtol=0,
                                   err_msg=name)
        np.testing.assert_allclose(points, ref_points, atol=atol, rtol=0, err_msg=name)
        total += len(faces)
    assert total >= 20      # the photos hold faces: the comparison is not vacuous


# ------------------------------------------------------------------ the naming rule, by hand

def test_other_spelling_by_hand():
    assert other_spelling('bn1_running_mean') == 'bn1_moving_mean'
    assert other_spelling('bn1_moving_var') == 'bn1_running_var'
    assert other_spelling('bn1_gamma') is None
    assert other_spelling('running_mean_weight') is None


def test_fit_names_renames_only_to_fill_a_wanted_name():
    given = {'a_running_mean': 1, 'b_moving_var': 2, 'c_moving_mean': 3, 'c_running_mean': 4,
             'w': 5}
    wanted = ['a_moving_mean', 'b_running_var', 'c_moving_mean', 'w']
    fitted, renamed, missing = fit_names(wanted, given)
    assert fitted == {'a_moving_mean': 1, 'b_running_var': 2, 'c_moving_mean': 3,
                      'c_running_mean': 4, 'w': 5}
    assert sorted(renamed) == [('a_running_mean', 'a_moving_mean'),
                               ('b_moving_var', 'b_running_var')]
    assert missing == []
    # both spellings wanted: neither is invented from the other
    fitted, renamed, missing = fit_names(['d_moving_mean', 'd_running_mean'],
                                         {'d_running_mean': 1})
    assert renamed == [] and missing == ['d_moving_mean']
    assert fit_names(['x_weight'], {'x_bias': 1})[2] == ['x_weight']


# ------------------------------------------------------------------ the rewritten mnet.25

def test_respelled_files_really_use_running_names(released_prefix, variant_prefixes):
    released = mx.sym.load(released_prefix + '-symbol.json').list_auxiliary_states()
    assert not [n for n in released if RUNNING in n]
    for name, prefix in variant_prefixes.items():
        graph_aux = mx.sym.load(prefix + '-symbol.json').list_auxiliary_states()
        params = mx.nd.load(prefix + '-0000.params')
        graph_running = sum(RUNNING in n for n in graph_aux)
        params_running = sum(RUNNING in k for k in params)
        expected = {'original_train': (54, 54), 'all_running': (94, 94),
                    'graph_running_params_moving': (94, 0)}[name]
        assert (graph_running, params_running) == expected, name


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_respelled_checkpoint_loads_with_the_graph_spelling(variant, variant_prefixes,
                                                            released_prefix):
    sym, arg, aux = load_checkpoint(variant_prefixes[variant], 0)
    assert set(sym.list_auxiliary_states()) <= set(aux)
    _, released_arg, released_aux = load_checkpoint(released_prefix, 0)
    for name in sym.list_auxiliary_states():
        np.testing.assert_array_equal(aux[name].asnumpy(),
                                      released_aux[name.replace(RUNNING, MOVING)].asnumpy())
    assert set(arg) == set(released_arg)


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_respelled_checkpoint_detects_as_the_released_files(variant, variant_prefixes, photos,
                                                            released_detections):
    from retinaface import RetinaFace
    detector = RetinaFace(variant_prefixes[variant], 0, ctx_id=-1)
    _assert_same_detections(detector, photos, released_detections, atol=1e-4)


def test_respelled_checkpoint_on_onnxruntime(variant_prefixes, photos, released_detections,
                                             tmp_path, monkeypatch):
    """Export (checked against MXNet, SoftmaxActivation(mode=channel) included) and detect."""
    pytest.importorskip('onnxruntime')
    from rcnn.deploy import onnx_export
    from retinaface import RetinaFace
    prefix = variant_prefixes['original_train']
    _, rows = onnx_export.export_checkpoint(prefix, 0, str(tmp_path / 'x.onnx'),
                                            input_shape=(1, 3, 480, 640), dynamic=True)
    assert max(row['max_err'] for row in rows) < 1e-4
    monkeypatch.setenv('RETINAFACE_CACHE_DIR', str(tmp_path / 'cache'))
    detector = RetinaFace(prefix, 0, ctx_id=-1, backend='onnxruntime', threads=1)
    # onnxruntime vs MXNet: float rounding of a different kernel order, as for the released files
    _assert_same_detections(detector, photos, released_detections, atol=1e-3, score_atol=1e-5)


def test_respelled_checkpoint_quantizes_as_the_released_files(variant_prefixes, released_prefix,
                                                              photos, tmp_path):
    mx_features = mx.runtime.Features()
    if not mx_features.is_enabled('MKLDNN'):
        pytest.skip('this MXNet build has no MKLDNN (INT8 kernels)')
    from rcnn.deploy import quantize
    from retinaface import RetinaFace
    calib = [str(shared_path('data', 'dlib_faces', 'train', 'images'))]
    outputs = {}
    for name, prefix in (('released', released_prefix),
                         ('respelled', variant_prefixes['all_running'])):
        out = str(tmp_path / name)
        quantize.quantize_prefix(prefix, 0, out, calib, input_size=(320, 256), calib_mode='naive')
        outputs[name] = RetinaFace(out, 0, ctx_id=-1)
    reference = {name: outputs['released'].detect(image, DETECT_THRESHOLD, [1.0, 0.5],
                                                  do_flip=True) for name, image in photos}
    _assert_same_detections(outputs['respelled'], photos, reference, atol=1e-4)


# ------------------------------------------------------------------ pairs no rename fixes

def test_disagreeing_graph_and_params_are_refused_with_the_names(released_prefix, tmp_path):
    prefix = str(tmp_path / 'broken')
    write_respelled(released_prefix, prefix, lambda n: n.startswith(BACKBONE),
                    lambda n: n.startswith(BACKBONE))
    saved = mx.nd.load(prefix + '-0000.params')
    del saved['aux:mobilenet0_batchnorm3_running_var']        # gone under either spelling
    saved['arg:face_rpn_bbox_pred_stride8_kernel'] = saved.pop('arg:face_rpn_bbox_pred_stride8_weight')
    mx.nd.save(prefix + '-0000.params', saved)
    with pytest.raises(ParamMismatchError) as info:
        load_checkpoint(prefix, 0)
    message = str(info.value)
    assert info.value.missing == ['arg:face_rpn_bbox_pred_stride8_weight',
                                  'aux:mobilenet0_batchnorm3_running_var']
    assert 'arg:face_rpn_bbox_pred_stride8_kernel' in info.value.unexpected
    for text in ('broken-0000.params', 'broken-symbol.json', 'missing',
                 'arg:face_rpn_bbox_pred_stride8_weight', 'aux:mobilenet0_batchnorm3_running_var',
                 'arg:face_rpn_bbox_pred_stride8_kernel'):
        assert text in message
    assert '\n' not in message
    from retinaface import RetinaFace
    with pytest.raises(ValueError, match='mobilenet0_batchnorm3_running_var'):
        RetinaFace(prefix, 0, ctx_id=-1)


def test_both_spellings_wanted_are_not_invented(released_prefix, tmp_path):
    """A graph asking for one BatchNorm's statistics under both spellings cannot be served
    from a file holding one of them: refused, the absent name listed."""
    prefix = str(tmp_path / 'twice')
    write_respelled(released_prefix, prefix, lambda n: False, lambda n: False)
    graph = json.load(open(prefix + '-symbol.json'))
    for node in graph['nodes']:
        if node['name'] == 'mobilenet0_batchnorm1_moving_mean':
            node['name'] = 'mobilenet0_batchnorm0_running_mean'   # bn1 now reads bn0's other name
    json.dump(graph, open(prefix + '-symbol.json', 'w'))
    with pytest.raises(ParamMismatchError) as info:
        load_checkpoint(prefix, 0)
    assert info.value.missing == ['aux:mobilenet0_batchnorm0_running_mean']


def test_running_spelled_pretrained_checkpoint_feeds_the_training_graph(variant_prefixes,
                                                                       released_prefix):
    """``train.py --pretrained`` on a checkpoint saying _running_ (graph and params): every
    BatchNorm statistic reaches our training graph (which says _moving_), none is
    re-initialised."""
    from rcnn.config import generate_config
    from rcnn.core.train_options import CheckpointOptions
    from rcnn.core.training_setup import starting_params
    from rcnn.symbol import get_symbol_train
    from rcnn.checkpoint.params import is_graph_input
    cfg, _ = generate_config('mnet', 'retinaface')
    sym = get_symbol_train('mnet', cfg)
    arg_shapes, _, aux_shapes = sym.infer_shape_partial(data=(1, 3, 640, 640))
    arg_shapes = {n: tuple(s) for n, s in zip(sym.list_arguments(), arg_shapes)
                  if not is_graph_input(n)}
    aux_shapes = {n: tuple(s) for n, s in zip(sym.list_auxiliary_states(), aux_shapes)}
    assert not [n for n in aux_shapes if RUNNING in n]
    checkpoint = CheckpointOptions(prefix='unused', pretrained_epoch=0,
                                   pretrained=variant_prefixes['all_running'])
    arg, aux, loaded = starting_params('mnet', checkpoint, None, arg_shapes, aux_shapes)
    _, released_arg, released_aux = load_checkpoint(released_prefix, 0)
    assert set(aux) == set(aux_shapes) == set(released_aux)
    for name, value in aux.items():
        np.testing.assert_array_equal(value.asnumpy(), released_aux[name].asnumpy())
    assert set(arg) == set(released_arg) & set(arg_shapes)
    assert set(loaded) == set(arg) | set(aux)


def test_backends_take_arrays_in_the_other_spelling(variant_prefixes, released_prefix, tmp_path):
    """The graph says _running_, the arrays handed over say _moving_ (as ``load_params``
    gives them): the MXNet backend, the ONNX exporter and the quantizer each fit the names."""
    from rcnn.inference.mxnet_backend import MXNetBackend
    from rcnn.checkpoint.params import load_params
    sym = mx.sym.load(variant_prefixes['all_running'] + '-symbol.json')
    arg, aux = load_params(released_prefix, 0)
    assert not [n for n in aux if RUNNING in n]
    data = np.random.RandomState(0).uniform(0, 255, (1, 3, 96, 128)).astype(np.float32)
    released = MXNetBackend(*load_checkpoint(released_prefix, 0)).forward(data)
    for got, want in zip(MXNetBackend(sym, arg, aux).forward(data), released):
        np.testing.assert_array_equal(got, want)

    onnx_export = pytest.importorskip('rcnn.deploy.onnx_export')
    pytest.importorskip('onnxruntime')
    path = onnx_export.export_onnx(sym, arg, aux, str(tmp_path / 'x.onnx'),
                                   input_shape=(1, 3, 96, 128))
    outputs = onnx_export.onnxruntime_forward(path, data, threads=1)
    names = [onnx_export.onnx_output_name(n) for n in sym.list_outputs()]
    for name, want in zip(names, released):
        np.testing.assert_allclose(outputs[name], want, atol=1e-4, rtol=1e-4)

    if mx.runtime.Features().is_enabled('MKLDNN'):
        from rcnn.deploy import quantize
        photos = sorted(shared_path('data', 'dlib_faces').glob('train/images/*/*.jpg'))[:2]
        calib = quantize.load_calibration_batch([str(p) for p in photos], (160, 128))
        int8 = [MXNetBackend(*quantize.quantize_checkpoint(graph, arg_params, aux_params, calib,
                                                           calib_mode='naive')).forward(data)
                for graph, arg_params, aux_params in ((sym, arg, aux),
                                                      load_checkpoint(released_prefix, 0))]
        for got, want in zip(*int8):
            np.testing.assert_array_equal(got, want)
