"""Export, runtime check, INT8 and OpenCV for every model layout: 5 strides, 4 anchors, dense
anchors, boxes only, blur + occlusion, DCN v1 and v2 (small graphs of tests/deploy/
layout_graphs.py saved with their recipe). The layout comes from the checkpoint's files; the
outputs are compared with MXNet running the checkpoint's own graph."""
import json

import numpy as np
import pytest

onnx = pytest.importorskip('onnx', reason='optional extra (requirements-deploy.txt)')
ort = pytest.importorskip('onnxruntime', reason='optional extra (requirements-deploy.txt)')
mx = pytest.importorskip('mxnet')

from rcnn.deploy import onnx_export, runtime_support  # noqa: E402
from rcnn.deploy.checkpoint_layout import (LayoutMismatchError, checkpoint_layout,  # noqa: E402
                                           layout_to_dict, onnx_model_layout)
from rcnn.model_layout import ModelLayout  # noqa: E402
from layout_graphs import LAYOUT_OVERRIDES, save_layout_checkpoint  # noqa: E402
from test_onnx_export import _assert_close, _mxnet_outputs, _ort_outputs  # noqa: E402

#: the layout each set of switches must give, from the original's tables: RAC_RETINA has
#: strides 64..4 with 3 scales, RAC_SSH2 two scales x two ratios, DENSE_ANCHOR doubles the
#: anchors, USE_BLUR adds a box value, USE_OCCLUSION a value per landmark point
EXPECTED_LAYOUTS = {
    'five_strides': ModelLayout((64, 32, 16, 8, 4), 3, 4, 10),
    'four_anchors': ModelLayout((32, 16, 8), 4, 4, 10),
    'boxes_only': ModelLayout((32, 16, 8), 2, 4, 0),
    'blur_occlusion': ModelLayout((32, 16, 8), 2, 5, 15),
    'dense_anchor': ModelLayout((32, 16, 8), 4, 4, 10),
    'dcn_v1': ModelLayout((32, 16, 8), 2, 4, 10),
    'dcn_v2': ModelLayout((32, 16, 8), 2, 4, 10),
    'strides_8_to_128': ModelLayout((128, 64, 32, 16, 8), 1, 4, 10),
}
DEFORMABLE = ('dcn_v1', 'dcn_v2')
INPUT = (1, 3, 128, 160)
#: layouts the insightface package reads (strides 8, 16, 32 with 2 anchors; 8..128 with 1)
PACKAGE_READABLE = ('boxes_only', 'blur_occlusion', 'dcn_v1', 'dcn_v2', 'strides_8_to_128')


def expected_output_names(layout):
    """Written out from the detector's naming: per stride, coarse to fine, the class
    probabilities, the boxes and (with landmarks) the landmarks."""
    names = []
    for stride in layout.strides:
        names += ['face_rpn_cls_prob_reshape_stride%d' % stride,
                  'face_rpn_bbox_pred_stride%d' % stride]
        if layout.landmark_len:
            names.append('face_rpn_landmark_pred_stride%d' % stride)
    return names


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp('layouts')
    prefixes = {}
    for name in LAYOUT_OVERRIDES:
        prefixes[name] = str(root / name)
        save_layout_checkpoint(prefixes[name], name)
    return prefixes


@pytest.fixture(scope='module')
def exports(checkpoints, tmp_path_factory):
    root = tmp_path_factory.mktemp('onnx')
    return {name: onnx_export.export_checkpoint(prefix, 0, str(root / (name + '.onnx')),
                                                input_shape=INPUT, dynamic=True,
                                                verify=False)[0]
            for name, prefix in checkpoints.items()}


def test_every_layout_is_covered():
    assert sorted(EXPECTED_LAYOUTS) == sorted(LAYOUT_OVERRIDES)


@pytest.mark.parametrize('name', sorted(EXPECTED_LAYOUTS))
def test_layout_is_read_from_the_checkpoint(checkpoints, name):
    from rcnn.checkpoint.params import load_checkpoint
    sym, _, _ = load_checkpoint(checkpoints[name], 0)
    assert checkpoint_layout(checkpoints[name], sym) == EXPECTED_LAYOUTS[name]


@pytest.mark.parametrize('name', sorted(EXPECTED_LAYOUTS))
def test_onnxruntime_equals_mxnet(checkpoints, exports, name):
    from rcnn.checkpoint.params import load_checkpoint
    layout = EXPECTED_LAYOUTS[name]
    model = onnx.load(exports[name])
    names = expected_output_names(layout)
    assert [out.name for out in model.graph.output] == names
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    assert json.loads(metadata['retinaface.layout']) == layout_to_dict(layout)
    assert onnx_model_layout(exports[name]) == layout
    assert any(node.op_type == 'DeformConv' for node in model.graph.node) == (name in DEFORMABLE)

    sym, arg, aux = load_checkpoint(checkpoints[name], 0)
    rng = np.random.RandomState(4)
    # raw pixels, the detector's input; a second batch and size through the dynamic axes
    for shape in [INPUT, (2, 3, 150, 230)]:
        data = rng.uniform(0, 255, shape).astype(np.float32)
        reference = _mxnet_outputs(sym, arg, aux, data)
        got = _ort_outputs(exports[name], data, names)
        _assert_close(reference, got, names)


@pytest.mark.parametrize('name', ['five_strides', 'dcn_v2'])
def test_export_tool_checks_every_layout(checkpoints, tmp_path, capsys, name):
    from tools import export_onnx as cli
    out = tmp_path / (name + '.onnx')
    assert cli.main(['--prefix', checkpoints[name], '--out', str(out), '--dynamic',
                     '--input-shape', '1,3,128,128']) == 0
    printed = capsys.readouterr().out
    assert 'OK: every output within' in printed
    assert ('opset 19' in printed) == (name in DEFORMABLE)
    # every output at both check inputs
    assert printed.count('face_rpn_') == 2 * len(expected_output_names(EXPECTED_LAYOUTS[name]))


def test_graph_and_recipe_that_disagree_are_refused(checkpoints, tmp_path):
    """A four-anchor recipe beside a two-anchor graph: one line naming both files."""
    import shutil
    from rcnn.checkpoint.files import params_path, recipe_path, symbol_path
    prefix = str(tmp_path / 'mixed')
    shutil.copyfile(symbol_path(checkpoints['boxes_only']), symbol_path(prefix))
    shutil.copyfile(params_path(checkpoints['boxes_only'], 0), params_path(prefix, 0))
    shutil.copyfile(recipe_path(checkpoints['four_anchors']), recipe_path(prefix))
    with pytest.raises(LayoutMismatchError) as caught:
        onnx_export.export_checkpoint(prefix, 0, str(tmp_path / 'x.onnx'), input_shape=INPUT)
    message = str(caught.value)
    assert '\n' not in message and 'mixed-symbol.json' in message and 'mixed-recipe.json' in message
    assert 'face_rpn_landmark_pred_stride32' in message


def test_released_layout_without_recipe_is_net3(mnet25_prefix):
    from rcnn.checkpoint.params import load_checkpoint
    sym, _, _ = load_checkpoint(mnet25_prefix, 0)
    assert checkpoint_layout(mnet25_prefix, sym) == ModelLayout((32, 16, 8), 2, 4, 10)


# ---------------------------------------------------------------------------- OpenCV
@pytest.mark.parametrize('name', sorted(EXPECTED_LAYOUTS))
def test_opencv_equals_onnxruntime_or_refuses(checkpoints, tmp_path, name):
    cv2 = pytest.importorskip('cv2')
    from rcnn.inference.opencv_backend import OpenCVBackend
    path = str(tmp_path / (name + '-static.onnx'))
    onnx_export.export_checkpoint(checkpoints[name], 0, path, input_shape=INPUT, verify=False)
    if name in DEFORMABLE:
        with pytest.raises(runtime_support.UnsupportedOperatorError) as caught:
            OpenCVBackend(path)
        assert 'DeformConv' in str(caught.value) and '\n' not in str(caught.value)
        return
    names = expected_output_names(EXPECTED_LAYOUTS[name])
    net = cv2.dnn.readNetFromONNX(path)
    data = np.random.RandomState(6).uniform(0, 255, INPUT).astype(np.float32)
    net.setInput(data)
    _assert_close(_ort_outputs(path, data, names), net.forward(names), names)


def test_opencv_backend_of_a_deformable_checkpoint_refuses(checkpoints, tmp_path):
    pytest.importorskip('cv2')
    from rcnn.inference.opencv_backend import OpenCVBackend
    backend = OpenCVBackend(checkpoints['dcn_v1'], epoch=0, cache_dir=str(tmp_path))
    data = np.zeros(INPUT, np.float32)
    with pytest.raises(runtime_support.UnsupportedOperatorError, match='OpenCV.*DeformConv'):
        backend.forward(data)


# ---------------------------------------------------------------------------- INT8
@pytest.mark.parametrize('name', sorted(EXPECTED_LAYOUTS))
def test_int8_quantization_of_every_layout(name):
    from rcnn.deploy import quantize
    if not mx.runtime.Features().is_enabled('MKLDNN'):
        pytest.skip('this MXNet build has no MKLDNN (INT8 kernels)')
    from layout_graphs import config_of, deploy_symbol, random_params
    rng = np.random.RandomState(7)
    calib = rng.uniform(0, 255, (4,) + INPUT[1:]).astype(np.float32)
    sym = deploy_symbol(config_of(name))
    # offsets of about a pixel, as trained ones: MXNet's DCN v1 border rule is discontinuous
    # (a sample at y = -0.01 reads zero, at y = 0 the first row), so with offsets of several
    # pixels on these small maps INT8's rounding of the input flips samples across it
    arg, aux = random_params(sym, offset_px=0.5)
    qsym, qarg, qaux = quantize.quantize_checkpoint(sym, arg, aux, calib_data=calib,
                                                    calib_mode='naive')
    assert qsym.list_outputs() == sym.list_outputs()
    nodes = json.loads(qsym.tojson())['nodes']
    quantized = [n for n in nodes if n['op'] == '_sg_mkldnn_conv'
                 and n.get('attrs', {}).get('quantized') == 'true']
    assert quantized
    if name in DEFORMABLE:
        # no INT8 kernel: the deformable convolution stays FP32, and so do its offset convs
        assert any(n['op'].startswith('_contrib_') and 'DeformableConvolution' in n['op']
                   for n in nodes)
        for holder in quantized:
            inner = {m['name'] for m in holder['subgraphs'][0]['nodes']}
            assert not any(member.endswith('_offset') for member in inner), holder['name']
    data = calib[:1]
    reference = _mxnet_outputs(sym, arg, aux, data)
    got = _mxnet_outputs(qsym, qarg, qaux, data)
    for output, ref, value in zip(sym.list_outputs(), reference, got):
        assert value.shape == ref.shape, output
        # INT8 of a calibrated input: within a few percent of the output's range
        assert np.abs(value - ref).max() <= 0.05 * max(1.0, np.abs(ref).max()), output


# ---------------------------------------------------------------------------- insightface
@pytest.mark.parametrize('name', sorted(EXPECTED_LAYOUTS))
def test_insightface_layout_decodes_like_the_detector_or_refuses(checkpoints, tmp_path, name):
    from rcnn.deploy.insightface_layout import export_insightface_checkpoint
    out = str(tmp_path / (name + '-insightface.onnx'))
    if name not in PACKAGE_READABLE:
        with pytest.raises(ValueError) as caught:
            export_insightface_checkpoint(checkpoints[name], 0, out, input_size=(256, 384))
        message = str(caught.value)
        assert '\n' not in message and 'insightface package reads' in message
        assert not (tmp_path / (name + '-insightface.onnx')).exists()
        return
    diffs = export_insightface_checkpoint(checkpoints[name], 0, out, input_size=(256, 384))
    layout = EXPECTED_LAYOUTS[name]
    assert sorted(diffs) == (['box', 'kps', 'score'] if layout.landmarks else ['box', 'score'])
    assert diffs['score'] < 1e-5 and diffs['box'] < 0.01 and diffs.get('kps', 0) < 0.01, diffs
    model = onnx.load(out)
    # the package picks its layout from the number of outputs: 6 / 9 for 3 strides, 10 / 15
    # for 5 strides, the larger with keypoints
    count = {(3, False): 6, (3, True): 9, (5, False): 10, (5, True): 15}
    assert len(model.graph.output) == count[len(layout.strides), layout.landmarks]


@pytest.mark.parametrize('name', PACKAGE_READABLE)
def test_insightface_package_decodes_every_layout_like_the_detector(checkpoints, tmp_path, name):
    """The real package (its own virtualenv) reads the layout from the output count and
    decodes every anchor of one image; our detector's steps on MXNet's outputs agree."""
    import os
    import subprocess
    import cv2
    from conftest import ROOT
    from rcnn.checkpoint.params import load_checkpoint
    from rcnn.deploy.insightface_layout import export_insightface_checkpoint, reference_decode
    python = ROOT / '.venv-insightface' / 'bin' / 'python'
    if not python.exists():
        pytest.skip('optional insightface environment %s not found: `make setup-insightface` '
                    'builds it' % python)
    height, width = 256, 384
    model = str(tmp_path / 'det.onnx')
    export_insightface_checkpoint(checkpoints[name], 0, model, input_size=(height, width),
                                  verify=False)
    image = np.random.RandomState(8).randint(0, 256, (height, width, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'image.png'), image)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([str(python), str(ROOT / 'tests' / 'deploy' /
                                            'insightface_forward_runner.py'),
                           model, str(tmp_path / 'image.png'), str(tmp_path / 'out.json')],
                          capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads((tmp_path / 'out.json').read_text())
    layout = EXPECTED_LAYOUTS[name]
    assert theirs['model_class'] == 'SCRFD'
    assert theirs['strides'] == sorted(layout.strides)
    assert theirs['num_anchors'] == layout.num_anchors
    assert theirs['use_kps'] == layout.landmarks

    from rcnn.recipe import load_recipe
    sym, arg, aux = load_checkpoint(checkpoints[name], 0)
    data = image[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)     # RGB, raw pixels
    outputs = dict(zip([onnx_export.onnx_output_name(n) for n in sym.list_outputs()],
                       _mxnet_outputs(sym, arg, aux, data)))
    scores, boxes, points = reference_decode(outputs, height, width,
                                             load_recipe(checkpoints[name]), layout)
    np.testing.assert_allclose(np.asarray(theirs['scores']), scores, atol=1e-5)
    np.testing.assert_allclose(np.asarray(theirs['boxes']), boxes, atol=0.01)
    if layout.landmarks:
        np.testing.assert_allclose(np.asarray(theirs['kps']), points, atol=0.01)


# ---------------------------------------------------------------------------- the tools
def test_quantize_tool_on_a_deformable_checkpoint(checkpoints, tmp_path, capsys, dlib_faces):
    if not mx.runtime.Features().is_enabled('MKLDNN'):
        pytest.skip('this MXNet build has no MKLDNN (INT8 kernels)')
    from tools import quantize as cli
    out = str(tmp_path / 'dcn-int8')
    assert cli.main(['--prefix', checkpoints['dcn_v2'], '--out', out, '--calib-mode', 'naive',
                     '--calib', str(dlib_faces / 'train' / 'images'),
                     '--input-size', '160x128']) == 0
    printed = capsys.readouterr().out
    assert '_contrib_ModulatedDeformableConvolution x3' in printed     # one per stride, FP32
    from rcnn.checkpoint.params import load_checkpoint
    from rcnn.recipe import read_recipe
    sym, _, _ = load_checkpoint(out, 0)
    assert [onnx_export.onnx_output_name(n) for n in sym.list_outputs()] == \
        expected_output_names(EXPECTED_LAYOUTS['dcn_v2'])
    assert read_recipe(out) is not None                               # the layout travels


@pytest.mark.parametrize('tool', ['export', 'quantize'])
def test_tools_refuse_a_graph_its_recipe_does_not_describe(checkpoints, tmp_path, capsys, tool,
                                                           dlib_faces):
    import shutil
    from rcnn.checkpoint.files import params_path, recipe_path, symbol_path
    prefix = str(tmp_path / 'mixed')
    shutil.copyfile(symbol_path(checkpoints['five_strides']), symbol_path(prefix))
    shutil.copyfile(params_path(checkpoints['five_strides'], 0), params_path(prefix, 0))
    shutil.copyfile(recipe_path(checkpoints['boxes_only']), recipe_path(prefix))
    if tool == 'export':
        from tools import export_onnx as cli
        argv = ['--prefix', prefix, '--out', str(tmp_path / 'x.onnx')]
    else:
        from tools import quantize as cli
        argv = ['--prefix', prefix, '--out', str(tmp_path / 'q'), '--calib-mode', 'naive',
                '--calib', str(dlib_faces / 'train' / 'images'), '--input-size', '160x128']
    assert cli.main(argv) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and 'mixed-symbol.json' in lines[0] and 'Traceback' not in lines[0]
    assert 'mixed-recipe.json' in lines[0]


def test_export_tool_refuses_an_insightface_layout_the_package_cannot_read(checkpoints, tmp_path,
                                                                           capsys):
    from tools import export_onnx as cli
    out = tmp_path / 'det.onnx'
    assert cli.main(['--prefix', checkpoints['five_strides'], '--out', str(out),
                     '--layout', 'insightface']) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and 'insightface package reads' in lines[0]
    assert 'strides 4, 8, 16, 32, 64 and 3 anchors' in lines[0]
    assert not out.exists()


def test_onnx_layout_absent_or_malformed(tmp_path):
    model = onnx.helper.make_model(onnx.helper.make_graph([], 'empty', [], []))
    assert onnx_model_layout(model) is None
    entry = model.metadata_props.add()
    entry.key, entry.value = 'retinaface.layout', '{"strides": [32]}'
    with pytest.raises(ValueError, match='retinaface.layout'):
        onnx_model_layout(model)
