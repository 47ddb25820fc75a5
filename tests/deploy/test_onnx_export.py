"""ONNX export: rewrites, export of the released mnet.25 and of a freshly built deploy graph,
and the onnxruntime backend. Outputs are compared with MXNet running the original graph."""
import json

import numpy as np
import pytest

onnx = pytest.importorskip('onnx', reason='optional extra (requirements-deploy.txt)')
ort = pytest.importorskip('onnxruntime', reason='optional extra (requirements-deploy.txt)')
mx = pytest.importorskip('mxnet')

from rcnn.deploy import onnx_export  # noqa: E402

TOL = 1e-4
DEPLOY_OUTPUTS = ['face_rpn_%s_stride%d' % (kind, stride) for stride in (32, 16, 8)
                  for kind in ('cls_prob_reshape', 'bbox_pred', 'landmark_pred')]


def _mxnet_outputs(sym, arg_params, aux_params, data):
    """Plain Module forward of ``sym`` -> list of numpy outputs (symbol order)."""
    module = mx.mod.Module(sym, data_names=['data'], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[('data', data.shape)], for_training=False)
    module.set_params(arg_params, aux_params)
    module.forward(mx.io.DataBatch([mx.nd.array(data)]), is_train=False)
    return [out.asnumpy() for out in module.get_outputs()]


def _ort_outputs(path, data, names):
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return session.run(names, {'data': data})


def _assert_close(reference, candidate, names):
    for name, ref, got in zip(names, reference, candidate):
        assert got.shape == ref.shape, name
        scale = max(1.0, float(np.abs(ref).max()))
        err = float(np.abs(got - ref).max()) / scale
        assert err <= TOL, '%s differs from MXNet by %.3g' % (name, err)


def _random_params(sym, data_shape, seed=0):
    """Weights with fan-in scaling, BN gamma in [0.5, 1.5] (never 1, so fix_gamma matters),
    positive moving variances."""
    rng = np.random.RandomState(seed)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=data_shape)
    arg_params, aux_params = {}, {}
    for name, shape in zip(sym.list_arguments(), arg_shapes):
        if name == 'data':
            continue
        if name.endswith('_weight'):
            value = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        elif name.endswith('_gamma'):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0, 0.1, shape)
        arg_params[name] = mx.nd.array(value.astype(np.float32))
    for name, shape in zip(sym.list_auxiliary_states(), aux_shapes):
        value = rng.uniform(0.5, 1.5, shape) if name.endswith('_var') else rng.normal(0, 0.1, shape)
        aux_params[name] = mx.nd.array(value.astype(np.float32))
    return arg_params, aux_params


def _tiny_head(fix_gamma='True'):
    """conv -> BatchNorm(fix_gamma) -> score conv -> Reshape (0,2,-1,0) -> SoftmaxActivation
    (channel) -> Reshape (0,4,-1,0): the released score head in miniature."""
    data = mx.sym.Variable('data')
    conv = mx.sym.Convolution(data, num_filter=8, kernel=(3, 3), pad=(1, 1), name='c1')
    bn = mx.sym.BatchNorm(conv, fix_gamma=fix_gamma == 'True', eps=2e-5, name='bn1')
    score = mx.sym.Convolution(bn, num_filter=4, kernel=(1, 1), name='score')
    reshaped = mx.sym.Reshape(score, shape=(0, 2, -1, 0), name='score_reshape')
    prob = mx.sym.SoftmaxActivation(reshaped, mode='channel', name='prob')
    return mx.sym.Reshape(prob, shape=(0, 4, -1, 0), name='prob_reshape')


def _numpy_tiny_head(data, arg, aux, fix_gamma):
    """Independent NumPy reference of :func:`_tiny_head` (inference BatchNorm)."""
    def conv(x, w, b, pad):
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        k = w.shape[2]
        h, wd = x.shape[2] - k + 1, x.shape[3] - k + 1
        out = np.zeros((x.shape[0], w.shape[0], h, wd))
        for dy in range(k):
            for dx in range(k):
                out += np.einsum('bchw,oc->bohw', x[:, :, dy:dy + h, dx:dx + wd], w[:, :, dy, dx])
        return out + b[None, :, None, None]
    p = {k: v.asnumpy().astype(np.float64) for k, v in list(arg.items()) + list(aux.items())}
    x = conv(data.astype(np.float64), p['c1_weight'], p['c1_bias'], 1)
    gamma = np.ones_like(p['bn1_gamma']) if fix_gamma else p['bn1_gamma']
    x = ((x - p['bn1_moving_mean'][None, :, None, None])
         / np.sqrt(p['bn1_moving_var'][None, :, None, None] + 2e-5)
         * gamma[None, :, None, None] + p['bn1_beta'][None, :, None, None])
    score = conv(x, p['score_weight'], p['score_bias'], 0)
    b, _, h, w = score.shape
    pairs = score.reshape(b, 2, 2 * h, w)
    e = np.exp(pairs - pairs.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).reshape(b, 4, h, w)


@pytest.mark.parametrize('fix_gamma', ['True', 'False'])
def test_tiny_head_export_equals_numpy_reference(tmp_path, fix_gamma):
    sym = _tiny_head(fix_gamma)
    arg, aux = _random_params(sym, (1, 3, 12, 10))
    path = onnx_export.export_onnx(sym, arg, aux, str(tmp_path / 'tiny.onnx'),
                                   input_shape=(1, 3, 12, 10), dynamic=True)
    data = np.random.RandomState(1).uniform(-1, 1, (2, 3, 9, 14)).astype(np.float32)
    got = _ort_outputs(path, data, ['prob_reshape'])[0]
    expected = _numpy_tiny_head(data, arg, aux, fix_gamma == 'True')
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # and the rewritten MXNet graph computes the same as the original
    new_sym, new_arg, new_aux = onnx_export.make_exportable(sym, arg, aux)
    ops = [n['op'] for n in json.loads(new_sym.tojson())['nodes']]
    assert 'SoftmaxActivation' not in ops and 'softmax' in ops
    np.testing.assert_allclose(_mxnet_outputs(new_sym, new_arg, new_aux, data)[0], expected, atol=1e-5)


def test_softmax_instance_mode_is_refused():
    data = mx.sym.Variable('data')
    sym = mx.sym.SoftmaxActivation(mx.sym.Convolution(data, num_filter=2, kernel=(1, 1), name='c'),
                                   mode='instance', name='inst')
    with pytest.raises(ValueError, match="'inst'.*mode='instance'"):
        onnx_export.make_exportable(sym, {}, {})


def test_missing_parameters_are_named(tmp_path):
    sym = _tiny_head()
    arg, aux = _random_params(sym, (1, 3, 8, 8))
    del arg['score_weight']
    with pytest.raises(KeyError, match='score_weight'):
        onnx_export.export_onnx(sym, arg, aux, str(tmp_path / 'x.onnx'), input_shape=(1, 3, 8, 8))


def test_bad_input_shape_is_rejected():
    with pytest.raises(ValueError, match='input shape'):
        onnx_export.parse_input_shape('1,3,480')
    with pytest.raises(ValueError, match='input shape'):
        onnx_export.parse_input_shape('1,4,480,640')


@pytest.fixture(scope='module')
def released_export(tmp_path_factory, request):
    from conftest import shared_path
    prefix = str(shared_path('models', 'mnet.25') / 'mnet.25')
    path = str(tmp_path_factory.mktemp('onnx') / 'mnet25.onnx')
    onnx_export.export_checkpoint(prefix, 0, path, input_shape=(1, 3, 480, 640), dynamic=True,
                                  verify=False)
    return prefix, path


def test_released_mnet25_export_matches_mxnet(released_export):
    from rcnn.checkpoint.params import load_checkpoint
    prefix, path = released_export
    model = onnx.load(path)
    assert [i.name for i in model.graph.input] == ['data']          # weights are initializers
    assert [o.name for o in model.graph.output] == DEPLOY_OUTPUTS
    assert model.graph.input[0].type.tensor_type.shape.dim[2].dim_param == 'height'
    softmax = [n for n in model.graph.node if n.op_type == 'Softmax']
    assert len(softmax) == 3 and all(a.i == 1 for n in softmax for a in n.attribute if a.name == 'axis')

    sym, arg, aux = load_checkpoint(prefix, 0)
    rng = np.random.RandomState(0)
    # 640x480 and, through the dynamic axes, batch 2 at a size that is not a multiple of 32
    for shape in [(1, 3, 480, 640), (2, 3, 331, 517)]:
        data = rng.uniform(0, 255, shape).astype(np.float32)
        reference = _mxnet_outputs(sym, arg, aux, data)
        _assert_close(reference, _ort_outputs(path, data, DEPLOY_OUTPUTS), DEPLOY_OUTPUTS)


def test_released_mnet25_fixed_shape_export_via_cli(tmp_path, mnet25_prefix, capsys):
    from tools import export_onnx as cli
    out = tmp_path / 'fixed.onnx'
    assert cli.main(['--prefix', mnet25_prefix, '--epoch', '0', '--out', str(out),
                     '--input-shape', '1,3,256,320']) == 0
    printed = capsys.readouterr().out
    assert 'OK: every output within' in printed and printed.count('face_rpn_') == 9
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 256, 320]


def test_fresh_deploy_graph_export_matches_mxnet(tmp_path):
    symbol_mod = pytest.importorskip('rcnn.symbol', reason='deploy graph builder not available')
    from rcnn.config import generate_config
    cfg, _ = generate_config('mnet', 'retinaface')
    sym = symbol_mod.get_symbol_test('mnet', cfg)
    shape = (1, 3, 224, 288)
    arg, aux = _random_params(sym, shape)
    path = onnx_export.export_onnx(sym, arg, aux, str(tmp_path / 'fresh.onnx'), input_shape=shape,
                                   dynamic=True)
    names = [onnx_export.onnx_output_name(n) for n in sym.list_outputs()]
    assert sorted(names) == sorted(DEPLOY_OUTPUTS)
    rng = np.random.RandomState(3)
    # inputs in [-1, 1]: with random weights, raw-pixel inputs give logits in the thousands,
    # where float32 rounding alone (in either runtime) moves the probabilities by ~1e-4
    for data_shape in [shape, (2, 3, 200, 330)]:
        data = rng.uniform(-1, 1, data_shape).astype(np.float32)
        _assert_close(_mxnet_outputs(sym, arg, aux, data), _ort_outputs(path, data, names), names)


def test_verify_reports_a_wrong_export(tmp_path):
    """verify_onnx must fail when the ONNX graph computes something else (here: weights changed)."""
    sym = _tiny_head('False')
    arg, aux = _random_params(sym, (1, 3, 8, 8))
    path = onnx_export.export_onnx(sym, arg, aux, str(tmp_path / 'tiny.onnx'), input_shape=(1, 3, 8, 8))
    changed = dict(arg)
    changed['score_weight'] = arg['score_weight'] * 1.5
    with pytest.raises(onnx_export.ExportMismatchError, match='prob_reshape'):
        onnx_export.verify_onnx(path, sym, changed, aux,
                                onnx_export.verification_inputs((1, 3, 8, 8), False))


def test_onnxruntime_backend_outputs_and_cache(tmp_path, mnet25_prefix):
    from rcnn.inference.onnx_backend import OnnxRuntimeBackend
    from rcnn.checkpoint.params import load_checkpoint
    backend = OnnxRuntimeBackend(mnet25_prefix, epoch=0, threads=1, cache_dir=str(tmp_path))
    cached = list(tmp_path.glob('*.onnx'))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    data = np.random.RandomState(5).uniform(0, 255, (1, 3, 200, 260)).astype(np.float32)
    outputs = backend.forward(data)
    sym, arg, aux = load_checkpoint(mnet25_prefix, 0)
    reference = _mxnet_outputs(sym, arg, aux, data)
    # the released graph lists its outputs in exactly the order forward() promises
    assert [onnx_export.onnx_output_name(n) for n in sym.list_outputs()] == DEPLOY_OUTPUTS
    _assert_close(reference, outputs, DEPLOY_OUTPUTS)

    again = OnnxRuntimeBackend(mnet25_prefix, epoch=0, threads=2, cache_dir=str(tmp_path))
    assert again.onnx_path == str(cached[0]) and cached[0].stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        again.forward(data[0])
    with pytest.raises(FileNotFoundError, match='epoch'):
        OnnxRuntimeBackend(str(tmp_path / 'absent.onnx'))


def onnxruntime_detector(prefix, cache_dir, threads=1):
    """RetinaFace on the onnxruntime backend, its ONNX export cached under ``cache_dir``."""
    from retinaface import RetinaFace
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('RETINAFACE_CACHE_DIR', str(cache_dir))
        return RetinaFace(prefix, 0, ctx_id=-1, network='net3', backend='onnxruntime',
                          threads=threads)


def test_detect_equal_across_backends(tmp_path, mnet25_prefix):
    """Same boxes (within 1e-3 px), scores and landmarks on real photos, at a low threshold,
    two scales and flips."""
    pytest.importorskip('retinaface', reason='retinaface.py (inference) not available')
    import cv2
    from conftest import shared_path
    from retinaface import RetinaFace
    reference = RetinaFace(mnet25_prefix, 0, ctx_id=-1, network='net3')
    candidate = onnxruntime_detector(mnet25_prefix, tmp_path)
    paths = sorted(shared_path('data', 'dlib_faces').glob('val/images/*/*.jpg'))
    paths.append(shared_path('images', 'bald_guys.jpg'))
    total = 0
    for path in paths:
        image = cv2.imread(str(path))
        faces, points = candidate.detect(image, 0.05, [1.0, 0.5], do_flip=True)
        ref_faces, ref_points = reference.detect(image, 0.05, [1.0, 0.5], do_flip=True)
        assert faces.shape == ref_faces.shape, path.name
        np.testing.assert_allclose(faces[:, :4], ref_faces[:, :4], atol=1e-3)
        np.testing.assert_allclose(faces[:, 4], ref_faces[:, 4], atol=1e-5)
        np.testing.assert_allclose(points, ref_points, atol=1e-3)
        total += len(faces)
    assert total > 50
