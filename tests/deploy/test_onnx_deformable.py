"""Deformable convolutions (DCN v1 / v2) exported to ONNX DeformConv: onnxruntime against MXNet
with offsets that push samples across the input border, zero offsets against a plain
convolution, and the refusal of the runtimes without DeformConv."""
import json

import numpy as np
import pytest

onnx = pytest.importorskip('onnx', reason='optional extra (requirements-deploy.txt)')
ort = pytest.importorskip('onnxruntime', reason='optional extra (requirements-deploy.txt)')
mx = pytest.importorskip('mxnet')

from rcnn.deploy import onnx_deformable, onnx_export, runtime_support  # noqa: E402
from test_onnx_export import _assert_close, _mxnet_outputs, _ort_outputs  # noqa: E402

TAPS = 9          # 3x3 kernel


def _dcn_graph(version, stride=1, dilate=1, groups=1, no_bias=True):
    """conv -> [offset (and mask) conv] -> deformable conv -> nearest x2 UpSampling cropped to
    the conv's size, plus the deformable conv's own output."""
    data = mx.sym.Variable('data')
    feature = mx.sym.Activation(mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), pad=(1, 1),
                                                   name='c1'), act_type='relu')
    pad = dilate
    conv_args = dict(num_filter=6, kernel=(3, 3), pad=(pad, pad), stride=(stride, stride),
                     dilate=(dilate, dilate), num_deformable_group=groups, no_bias=no_bias,
                     name='dcn')
    offset_args = dict(kernel=(3, 3), pad=(pad, pad), stride=(stride, stride),
                       dilate=(dilate, dilate), name='offset')
    if version == 1:
        offset = mx.sym.Convolution(feature, num_filter=2 * TAPS * groups, **offset_args)
        dcn = mx.sym.contrib.DeformableConvolution(feature, offset, **conv_args)
    else:
        both = mx.sym.Convolution(feature, num_filter=3 * TAPS * groups, **offset_args)
        offset = mx.sym.slice_axis(both, axis=1, begin=0, end=2 * TAPS * groups)
        mask = 2 * mx.sym.sigmoid(mx.sym.slice_axis(both, axis=1, begin=2 * TAPS * groups,
                                                    end=3 * TAPS * groups))
        dcn = mx.sym.contrib.ModulatedDeformableConvolution(feature, offset, mask, **conv_args)
    up = mx.sym.UpSampling(dcn, scale=stride, sample_type='nearest', num_filter=6, name='up')
    cropped = mx.sym.Crop(up, feature, name='cropped')
    return mx.sym.Group([dcn, cropped])


def _params(sym, offset_scale, seed=0):
    rng = np.random.RandomState(seed)
    arg_shapes, _, _ = sym.infer_shape(data=(1, 3, 16, 16))
    params = {}
    for name, shape in zip(sym.list_arguments(), arg_shapes):
        if name == 'data':
            continue
        value = rng.normal(0, 0.5, shape)
        if name.startswith('offset'):
            value *= offset_scale
        params[name] = mx.nd.array(value.astype(np.float32))
    return params


def _names(sym):
    return [onnx_export.onnx_output_name(name) for name in sym.list_outputs()]


@pytest.mark.parametrize('version', [1, 2])
@pytest.mark.parametrize('stride,dilate,groups,no_bias', [(1, 1, 1, True), (2, 1, 2, False),
                                                          (1, 2, 1, False)])
def test_deformable_export_equals_mxnet(tmp_path, version, stride, dilate, groups, no_bias):
    sym = _dcn_graph(version, stride, dilate, groups, no_bias)
    params = _params(sym, offset_scale=2.0)    # offsets of several pixels: samples leave the input
    path = onnx_export.export_onnx(sym, params, {}, str(tmp_path / 'dcn.onnx'),
                                   input_shape=(1, 3, 16, 16), dynamic=True)
    model = onnx.load(path)
    assert onnx_export.model_opset(model) == onnx_deformable.DEFORM_CONV_OPSET
    deform = [node for node in model.graph.node if node.op_type == 'DeformConv']
    assert len(deform) == 1
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in deform[0].attribute}
    assert attrs['strides'] == [stride] * 2 and attrs['dilations'] == [dilate] * 2
    assert attrs['offset_group'] == groups and attrs['pads'] == [dilate] * 4
    rng = np.random.RandomState(1)
    for shape in [(1, 3, 16, 16), (2, 3, 13, 19)]:
        data = rng.uniform(-1, 1, shape).astype(np.float32)
        reference = _mxnet_outputs(sym, params, {}, data)
        _assert_close(reference, _ort_outputs(path, data, _names(sym)), _names(sym))


def test_dcn_v1_border_rule_is_mxnet_not_onnx():
    """A v1 sample at y = -0.5 is zero in MXNet, half the first row in ONNX's own rule; one at
    y = H - 0.5 is the last row in MXNet, half of it in ONNX's. The export gives MXNet's."""
    data = mx.sym.Variable('data')
    offset = mx.sym.Variable('offset_in')
    weight = np.zeros((1, 1, 1, 1), np.float32) + 1.0
    sym = mx.sym.contrib.DeformableConvolution(data, offset, num_filter=1, kernel=(1, 1),
                                               no_bias=True, name='dcn')
    graph = mx.sym.Group([sym])
    image = np.arange(1, 13, dtype=np.float32).reshape(1, 1, 3, 4)
    shifts = np.zeros((1, 2, 3, 4), np.float32)
    shifts[0, 0, 0, :] = -0.5           # row 0 sampled at y = -0.5
    shifts[0, 0, 2, :] = 0.5            # row 2 sampled at y = 2.5 (H = 3)
    ex = graph.bind(mx.cpu(), {'data': mx.nd.array(image), 'offset_in': mx.nd.array(shifts),
                               'dcn_weight': mx.nd.array(weight)})
    mxnet_out = ex.forward()[0].asnumpy()
    np.testing.assert_allclose(mxnet_out[0, 0, 0], 0.0)                 # the facts, by hand
    np.testing.assert_allclose(mxnet_out[0, 0, 2], image[0, 0, 2])
    np.testing.assert_allclose(mxnet_out[0, 0, 1], image[0, 0, 1])

    # offsets as a second graph input
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    onnx_deformable.register()
    proto = MXNetGraph().create_onnx_graph_proto(
        graph, {'dcn_weight': mx.nd.array(weight)}, in_shapes=[(1, 1, 3, 4), (1, 2, 3, 4)],
        in_types=[onnx.TensorProto.FLOAT] * 2, opset_version=13)
    model = onnx.helper.make_model(proto, opset_imports=[onnx.helper.make_opsetid('', 13)])
    onnx_deformable.upgrade_to_deform_opset(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    got = session.run(None, {'data': image, 'offset_in': shifts})[0]
    np.testing.assert_allclose(got, mxnet_out, atol=1e-6)


@pytest.mark.parametrize('version', [1, 2])
def test_zero_offsets_equal_the_plain_convolution(tmp_path, version):
    """Offsets 0 (and, for v2, mask 2 * sigmoid(0) = 1): the exported deformable graph computes
    the plain 3x3 convolution with the same weights."""
    sym = _dcn_graph(version)
    params = _params(sym, offset_scale=0.0)
    params = {k: (v * 0 if k.startswith('offset') else v) for k, v in params.items()}
    path = onnx_export.export_onnx(sym, params, {}, str(tmp_path / 'dcn0.onnx'),
                                   input_shape=(1, 3, 16, 16), dynamic=True)
    data_sym = mx.sym.Variable('data')
    feature = mx.sym.Activation(mx.sym.Convolution(data_sym, num_filter=4, kernel=(3, 3),
                                                   pad=(1, 1), name='c1'), act_type='relu')
    plain = mx.sym.Convolution(feature, num_filter=6, kernel=(3, 3), pad=(1, 1), no_bias=True,
                               name='dcn')
    data = np.random.RandomState(2).uniform(-1, 1, (1, 3, 11, 14)).astype(np.float32)
    expected = _mxnet_outputs(plain, {k: v for k, v in params.items()
                                      if k in plain.list_arguments()}, {}, data)[0]
    got = _ort_outputs(path, data, _names(sym))[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_attributes_by_hand():
    assert onnx_deformable.deform_conv_attributes(
        {'kernel': '(3, 3)', 'pad': '(2, 1)', 'stride': '(2, 2)', 'dilate': '(2, 1)',
         'num_deformable_group': '4', 'num_group': '1'}) == {
        'kernel_shape': (3, 3), 'strides': (2, 2), 'dilations': (2, 1), 'pads': (2, 1, 2, 1),
        'group': 1, 'offset_group': 4}
    assert onnx_deformable.deform_conv_attributes({'kernel': '(3, 3)'}) == {
        'kernel_shape': (3, 3), 'strides': (1, 1), 'dilations': (1, 1), 'pads': (0, 0, 0, 0),
        'group': 1, 'offset_group': 1}
    with pytest.raises(ValueError, match='layout NHWC'):
        onnx_deformable.deform_conv_attributes({'kernel': '(3, 3)', 'layout': 'NHWC'})


def test_graphs_without_deformable_convolution_keep_their_opset(tmp_path):
    data = mx.sym.Variable('data')
    sym = mx.sym.Convolution(data, num_filter=2, kernel=(1, 1), name='c')
    params = {'c_weight': mx.nd.ones((2, 3, 1, 1)), 'c_bias': mx.nd.zeros((2,))}
    path = onnx_export.export_onnx(sym, params, {}, str(tmp_path / 'plain.onnx'),
                                   input_shape=(1, 3, 4, 4))
    model = onnx.load(path)
    assert onnx_export.model_opset(model) == onnx_export.DEFAULT_OPSET
    assert model.ir_version == onnx_export.IR_VERSION


@pytest.fixture(scope='module')
def deform_onnx(tmp_path_factory):
    sym = _dcn_graph(2)
    path = str(tmp_path_factory.mktemp('dcn') / 'dcn-16x16.onnx')
    return onnx_export.export_onnx(sym, _params(sym, 1.0), {}, path, input_shape=(1, 3, 16, 16))


def test_opencv_really_lacks_deformconv(deform_onnx):
    """The fact the refusal rests on: OpenCV's importer fails on the DeformConv graph."""
    cv2 = pytest.importorskip('cv2')
    with pytest.raises(cv2.error):
        cv2.dnn.readNetFromONNX(deform_onnx)


def test_opencv_refusal_is_one_line_naming_the_operator(deform_onnx):
    with pytest.raises(runtime_support.UnsupportedOperatorError) as caught:
        runtime_support.check_runtime(deform_onnx, 'opencv')
    message = str(caught.value)
    assert '\n' not in message
    assert 'OpenCV' in message and 'DeformConv' in message and 'node dcn' in message
    runtime_support.check_runtime(deform_onnx, 'onnxruntime')     # runs there: no refusal


def test_opencv_backend_refuses_a_deformable_model(deform_onnx):
    from rcnn.inference.opencv_backend import OpenCVBackend
    with pytest.raises(runtime_support.UnsupportedOperatorError, match='DeformConv'):
        OpenCVBackend(deform_onnx)


def test_exporter_graph_json_has_both_ops():
    """Both MXNet op names the translations are registered for are the ops mx.contrib builds."""
    ops = {node['op'] for version in (1, 2)
           for node in json.loads(_dcn_graph(version).tojson())['nodes']}
    assert set(onnx_deformable.MXNET_OPS) <= ops


def test_mxnet_exporter_has_no_deformable_translation_of_its_own():
    """The fact the translations rest on: MXNet 1.9.1's exporter translates neither op (checked
    in a fresh process, before :func:`onnx_deformable.register` adds them)."""
    import subprocess
    import sys
    code = ('import mxnet.onnx\n'
            'from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph\n'
            'ops = {op for table in MXNetGraph.registry_.values() for op in table}\n'
            'assert "Convolution" in ops\n'
            'print(sorted(op for op in ops if "Deformable" in op))\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == '[]'


def test_deformable_graph_asked_at_opset_12_comes_out_at_19(tmp_path):
    sym = _dcn_graph(1)
    params = _params(sym, offset_scale=1.0)
    path = onnx_export.export_onnx(sym, params, {}, str(tmp_path / 'dcn12.onnx'),
                                   input_shape=(1, 3, 16, 16), opset=12)
    assert onnx_export.model_opset(onnx.load(path)) == onnx_deformable.DEFORM_CONV_OPSET
    data = np.random.RandomState(3).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    _assert_close(_mxnet_outputs(sym, params, {}, data), _ort_outputs(path, data, _names(sym)),
                  _names(sym))
