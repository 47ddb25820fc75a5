"""Every layout of the family through MXNet and onnxruntime, on the real mnet graphs.

For each layout the ``mnet`` deploy graph of its switches (``rcnn.symbol.get_symbol_test``)
gets the released mnet.25's weights for every parameter whose name and shape match (the
backbone, and the neck and heads the layout leaves unchanged) and fresh seeded weights for the
rest; saved as a checkpoint with its recipe, it is exported with
:func:`rcnn.deploy.onnx_export.export_checkpoint` (one layout with tools/export_onnx.py), and
RetinaFace on a real photo must return the same faces through MXNet and through onnxruntime,
and through OpenCV's dnn module unless the layout has an operator it lacks (then it is refused
in one line naming the operator).
"""
import json

import numpy as np
import pytest

onnx = pytest.importorskip('onnx', reason='optional extra (requirements-deploy.txt)')
ort = pytest.importorskip('onnxruntime', reason='optional extra (requirements-deploy.txt)')
mx = pytest.importorskip('mxnet')
cv2 = pytest.importorskip('cv2')

from rcnn.deploy import onnx_export, runtime_support  # noqa: E402
from test_onnx_export import _assert_close, _mxnet_outputs, _ort_outputs  # noqa: E402

#: name -> (the original's switches, strides coarse to fine, anchors per position, face
#: columns, values per landmark point (0: no landmarks)), from the original's tables
LAYOUTS = {
    'retina': ({'RPN_ANCHOR_CFG': 'RAC_RETINA'}, (64, 32, 16, 8, 4), 3, 5, 2),
    'ssh2_dense': ({'RPN_ANCHOR_CFG': 'RAC_SSH2', 'DENSE_ANCHOR': True}, (32, 16, 8), 8, 5, 2),
    'boxes_only': ({'FACE_LANDMARK': False}, (32, 16, 8), 2, 5, 0),
    'blur_occlusion': ({'USE_BLUR': True, 'USE_OCCLUSION': True}, (32, 16, 8), 2, 6, 3),
    'dcn1': ({'USE_DCN': 1}, (32, 16, 8), 2, 5, 2),
    'dcn2': ({'USE_DCN': 2}, (32, 16, 8), 2, 5, 2),
    'maxout1': ({'USE_MAXOUT': 1}, (32, 16, 8), 2, 5, 2),
    'maxout2': ({'USE_MAXOUT': 2}, (32, 16, 8), 2, 5, 2),
    'shared_heads': ({'SHARE_WEIGHT_BBOX': True, 'SHARE_WEIGHT_LANDMARK': True}, (32, 16, 8),
                     2, 5, 2),
}
#: layouts that keep the released features and (at the stride that finds it) class head:
#: they must find the photo's face
RELEASED_HEADS = ('boxes_only', 'blur_occlusion', 'maxout1')
#: OpenCV's dnn module has no deformable convolution (ONNX DeformConv)
OPENCV_REFUSED = ('dcn1', 'dcn2')
EXPORT_SHAPE = (1, 3, 192, 256)
THRESHOLD = 0.55
#: detections this close to the threshold may pass on one runtime only
MARGIN = 1e-3


def fresh_value(name, shape, rng):
    """Seeded weights: fan-in scaled, offset convolutions giving offsets under a pixel,
    BatchNorm gammas in [0.5, 1.5], positive variances."""
    if name.endswith('_weight'):
        value = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        if 'offset' in name:
            value *= 0.05
        if 'cls_score' in name:
            # face logits of a few units: scores spread over (0, 1), none saturated at 1.0,
            # so that no two overlapping boxes tie and NMS keeps the same ones on both runtimes
            value *= 0.3
        return value
    if name.endswith('_gamma'):
        return rng.uniform(0.5, 1.5, shape)
    if name.endswith('_var'):
        return rng.uniform(0.5, 1.5, shape)
    return rng.normal(0, 0.1, shape)


def released_plus_fresh(sym, released_arg, released_aux, seed=0):
    """(arg_params, aux_params, names taken from the release) for ``sym``."""
    from rcnn.checkpoint.params import is_graph_input
    rng = np.random.RandomState(seed)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=EXPORT_SHAPE)
    taken = []

    def pick(names, shapes, released):
        params = {}
        for name, shape in zip(names, shapes):
            if is_graph_input(name):
                continue
            if name in released and released[name].shape == tuple(shape):
                params[name] = released[name].copy()
                taken.append(name)
            else:
                params[name] = mx.nd.array(fresh_value(name, shape, rng).astype(np.float32))
        return params
    arg = pick(sym.list_arguments(), arg_shapes, released_arg)
    aux = pick(sym.list_auxiliary_states(), aux_shapes, released_aux)
    return arg, aux, taken


@pytest.fixture(scope='module')
def released(request):
    from conftest import shared_path
    from rcnn.checkpoint.params import load_checkpoint
    prefix = str(shared_path('models', 'mnet.25') / 'mnet.25')
    _, arg, aux = load_checkpoint(prefix, 0)
    return arg, aux


@pytest.fixture(scope='module')
def photo():
    from conftest import shared_path
    return cv2.imread(str(shared_path('images', 'Tom_Cruise_avp_2014_4.jpg')))


def build_checkpoint(prefix, switches, released):
    from rcnn.checkpoint.params import save_checkpoint
    from rcnn.config import generate_config
    from rcnn.recipe import write_recipe
    from rcnn.symbol import get_symbol_test
    cfg, _ = generate_config('mnet', 'retinaface', overrides=switches)
    sym = get_symbol_test('mnet', cfg)
    arg, aux, taken = released_plus_fresh(sym, *released)
    save_checkpoint(prefix, 0, sym, arg, aux)
    write_recipe(prefix, cfg, 'mnet', switches)
    return sym, arg, aux, taken


def confident(faces, landmarks):
    """The detections clear of the threshold, and their landmarks."""
    keep = faces[:, 4] >= THRESHOLD + MARGIN
    return faces[keep], None if landmarks is None else landmarks[keep]


def pair_up(reference, candidate, score_tol=1e-4):
    """Index into ``candidate`` (N, 5+) of the face matching each ``reference`` face: among
    those of about the same score (the order of near-equal scores may differ between
    runtimes), the nearest box."""
    order = np.argsort(candidate[:, 4])
    scores = candidate[order, 4]
    matches = np.empty(len(reference), np.int64)
    for index, face in enumerate(reference):
        low, high = np.searchsorted(scores, [face[4] - score_tol, face[4] + score_tol])
        # none of about the same score: the nearest score, for the comparison to report
        near = order[low:high] if high > low else order[[min(low, len(order) - 1)]]
        matches[index] = near[np.abs(candidate[near, :4] - face[:4]).max(axis=1).argmin()]
    return matches


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_layout_detects_the_same_faces_through_mxnet_and_onnxruntime(tmp_path, released,
                                                                       photo, name):
    from retinaface import RetinaFace
    _, strides, anchors, face_columns, point_values = LAYOUTS[name]
    prefix = str(tmp_path / name)
    sym, arg, aux, taken = build_checkpoint(prefix, LAYOUTS[name][0], released)
    # the backbone always comes from the release
    assert 'mobilenet0_conv0_weight' in taken and 'mobilenet0_conv26_weight' in taken

    path = str(tmp_path / (name + '.onnx'))
    onnx_export.export_checkpoint(prefix, 0, path, input_shape=EXPORT_SHAPE, dynamic=True,
                                  verify=False)
    names = [out.name for out in onnx.load(path).graph.output]
    assert names == [onnx_export.onnx_output_name(n) for n in sym.list_outputs()]
    data = np.random.RandomState(3).uniform(0, 255, EXPORT_SHAPE).astype(np.float32)
    _assert_close(_mxnet_outputs(sym, arg, aux, data), _ort_outputs(path, data, names), names)

    by_mxnet = RetinaFace(prefix, 0, ctx_id=-1)
    by_onnx = RetinaFace(path, 0, ctx_id=-1, backend='onnxruntime')
    assert by_onnx.layout == by_mxnet.layout
    assert list(by_onnx._feat_stride_fpn) == list(strides)
    assert by_mxnet.layout.num_anchors == anchors
    faces = assert_same_faces(by_mxnet, by_onnx, photo, face_columns, point_values)
    if name in RELEASED_HEADS:
        assert faces[0, 4] > 0.9            # the released heads find the face


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_layout_detects_the_same_faces_through_opencv_or_is_refused(tmp_path, monkeypatch,
                                                                    released, photo, name):
    from retinaface import RetinaFace
    if not hasattr(cv2, 'dnn'):
        pytest.skip('this OpenCV build has no DNN module')
    monkeypatch.setenv('RETINAFACE_CACHE_DIR', str(tmp_path / 'cache'))
    _, _, _, face_columns, point_values = LAYOUTS[name]
    prefix = str(tmp_path / name)
    build_checkpoint(prefix, LAYOUTS[name][0], released)
    by_opencv = RetinaFace(prefix, 0, ctx_id=-1, backend='opencv')
    if name in OPENCV_REFUSED:
        with pytest.raises(runtime_support.UnsupportedOperatorError) as refused:
            by_opencv.detect(photo, threshold=THRESHOLD)
        message = str(refused.value)
        assert '\n' not in message and 'DeformConv' in message, message
        return
    assert_same_faces(RetinaFace(prefix, 0, ctx_id=-1), by_opencv, photo, face_columns,
                      point_values)


def assert_same_faces(reference, other, photo, face_columns, point_values):
    """Both detectors find the same confident faces on ``photo``; returns the reference's."""
    faces, landmarks = confident(*reference.detect(photo, threshold=THRESHOLD))
    got_faces, got_landmarks = confident(*other.detect(photo, threshold=THRESHOLD))
    assert faces.shape[1] == face_columns and len(faces) > 0
    assert got_faces.shape == faces.shape
    matches = pair_up(faces, got_faces)
    assert len(set(matches.tolist())) == len(faces)
    got_faces = got_faces[matches]
    got_landmarks = None if got_landmarks is None else got_landmarks[matches]
    np.testing.assert_allclose(got_faces[:, 4], faces[:, 4], atol=1e-4)
    np.testing.assert_allclose(got_faces[:, :4], faces[:, :4], atol=1e-2)
    if face_columns == 6:                     # the raw blur value
        np.testing.assert_allclose(got_faces[:, 5], faces[:, 5], atol=1e-3)
    if point_values == 0:
        assert landmarks is None and got_landmarks is None
    else:
        assert landmarks.shape == (len(faces), 5, point_values)
        np.testing.assert_allclose(got_landmarks[..., :2], landmarks[..., :2], atol=1e-2)
        if point_values == 3:                 # the raw visibility value
            np.testing.assert_allclose(got_landmarks[..., 2], landmarks[..., 2], atol=1e-3)
    return faces


@pytest.mark.slow
def test_export_tool_checks_the_paper_layout_on_the_mnet_graph(tmp_path, released, capsys):
    """tools/export_onnx.py on the five-stride, DCN v2 mnet graph: exported at opset 19 and
    checked against MXNet at its inputs."""
    from tools import export_onnx as cli
    prefix = str(tmp_path / 'paper')
    build_checkpoint(prefix, {'RPN_ANCHOR_CFG': 'RAC_RETINA', 'USE_DCN': 2}, released)
    out = tmp_path / 'paper.onnx'
    assert cli.main(['--prefix', prefix, '--out', str(out), '--dynamic',
                     '--input-shape', '1,3,128,128']) == 0
    printed = capsys.readouterr().out
    assert 'OK: every output within' in printed and 'opset 19' in printed
    model = onnx.load(str(out))
    assert any(node.op_type == 'DeformConv' for node in model.graph.node)
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    assert json.loads(metadata['retinaface.layout'])['strides'] == [64, 32, 16, 8, 4]
