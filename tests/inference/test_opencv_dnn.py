"""OpenCV DNN route: the exported released mnet.25 in cv2.dnn.readNetFromONNX (the pinned
OpenCV) equals onnxruntime, and RetinaFace(backend='opencv') finds MXNet's faces."""
import cv2
import numpy as np
import pytest

from conftest import shared_path
from test_retinaface import assert_same_faces, read_val_labels

pytest.importorskip('onnx', reason='optional extra (requirements-deploy.txt)')
ort = pytest.importorskip('onnxruntime', reason='optional extra (requirements-deploy.txt)')

from rcnn.deploy import onnx_export  # noqa: E402
from rcnn.model_layout import deploy_output_names as output_names  # noqa: E402

NAMES = output_names((32, 16, 8))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv('RETINAFACE_CACHE_DIR', str(tmp_path / 'cache'))
    return tmp_path / 'cache'


def _photo_input(height, width):
    """A real photo resized to height x width as (1, 3, H, W) raw RGB pixels."""
    image = cv2.imread(str(shared_path('images', 'Tom_Cruise_avp_2014_4.jpg')))
    image = cv2.resize(image, (width, height))
    return np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)


def test_static_export_in_opencv_equals_onnxruntime(mnet25_prefix, tmp_path):
    for height, width in ((480, 640), (375, 500)):
        path = str(tmp_path / ('mnet-%dx%d.onnx' % (height, width)))
        onnx_export.export_checkpoint(mnet25_prefix, 0, path, input_shape=(1, 3, height, width),
                                      verify=False)
        data = _photo_input(height, width)
        net = cv2.dnn.readNetFromONNX(path)
        net.setInput(data)
        got = net.forward(NAMES)
        expected = ort.InferenceSession(path, providers=['CPUExecutionProvider']).run(
            NAMES, {'data': data})
        for name, a, b in zip(NAMES, got, expected):
            assert a.shape == b.shape, name
            assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(b).max()), name


def test_dynamic_export_is_refused_by_the_pinned_opencv(mnet25_prefix, tmp_path, cache_dir):
    """The limit the README states: OpenCV 4.11 evaluates Shape at load time. If a newer pinned
    OpenCV loads the dynamic file, this fails: then the per-size export can go."""
    path = str(tmp_path / 'dynamic.onnx')
    onnx_export.export_checkpoint(mnet25_prefix, 0, path, dynamic=True, verify=False)
    with pytest.raises(cv2.error):
        cv2.dnn.readNetFromONNX(path)
    from rcnn.inference.opencv_backend import OpenCVBackend
    with pytest.raises(ValueError, match='dynamic input size.*--static'):
        OpenCVBackend(path)


def test_fixed_onnx_file_refuses_other_sizes(mnet25_prefix, tmp_path):
    from rcnn.inference.opencv_backend import OpenCVBackend
    path = str(tmp_path / 'fixed.onnx')
    onnx_export.export_checkpoint(mnet25_prefix, 0, path, input_shape=(1, 3, 320, 320),
                                  verify=False)
    backend = OpenCVBackend.from_checkpoint(path, None)
    outputs = backend.forward(_photo_input(320, 320))
    assert [o.shape[2:] for o in outputs[::3]] == [(10, 10), (20, 20), (40, 40)]
    with pytest.raises(ValueError, match='320x320 inputs only, got 480x640'):
        backend.forward(np.zeros((1, 3, 480, 640), np.float32))
    with pytest.raises(ValueError, match='CPU only'):
        OpenCVBackend.from_checkpoint(path, None, ctx_id=0)


def test_opencv_backend_finds_the_mxnet_faces(mnet25_prefix, cache_dir):
    from retinaface import RetinaFace
    val = shared_path('data', 'dlib_faces', 'val')
    reference = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    detector = RetinaFace(mnet25_prefix, 0, ctx_id=-1, backend='opencv')
    total = 0
    for name in sorted(read_val_labels(val / 'label.txt')):
        image = cv2.imread(str(val / 'images' / name))
        faces, points = detector.detect(image, threshold=0.5, scales=[1.0], do_flip=True)
        ref_faces, ref_points = reference.detect(image, threshold=0.5, scales=[1.0], do_flip=True)
        assert_same_faces(faces, points, ref_faces, ref_points, atol=2e-3)
        total += len(faces)
    assert total >= 15
    # one export per input size, cached on disk and reused by a new detector
    exports = sorted(p.name for p in cache_dir.iterdir())
    assert len(exports) == len({cv2.imread(str(val / 'images' / n)).shape
                                for n in read_val_labels(val / 'label.txt')})
    RetinaFace(mnet25_prefix, 0, ctx_id=-1, backend='opencv').detect(
        cv2.imread(str(val / 'images' / sorted(read_val_labels(val / 'label.txt'))[0])))
    assert sorted(p.name for p in cache_dir.iterdir()) == exports
