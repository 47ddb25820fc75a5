"""The released mnet.25 exported with --layout insightface, loaded by the real insightface
package (in its own virtualenv, .venv-insightface, built by `make setup-insightface`), finds the same faces
on the dlib val photos as our detector on the same letterboxed input."""
import json
import os
import subprocess

import cv2
import numpy as np
import pytest

from conftest import ROOT, shared_path
from test_retinaface import iou_matrix, read_val_labels

pytest.importorskip('onnx', reason='optional extra (requirements-deploy.txt)')
pytest.importorskip('onnxruntime', reason='optional extra (requirements-deploy.txt)')

INSIGHTFACE_PYTHON = ROOT / '.venv-insightface' / 'bin' / 'python'
RUNNER = ROOT / 'tests' / 'deploy' / 'insightface_runner.py'
DET_SIZE = (640, 640)          # width, height, as the package takes it
THRESHOLD = 0.5


def letterbox(image, det_size):
    """The package's detector input, written from its documented behaviour: resize keeping
    the aspect ratio to fit ``det_size`` (width, height), pad with zeros bottom/right.
    Returns the (height, width, 3) input and the scale."""
    width, height = det_size
    if image.shape[0] / image.shape[1] > height / width:
        new_h, new_w = height, int(height / (image.shape[0] / image.shape[1]))
    else:
        new_w, new_h = width, int(width * image.shape[0] / image.shape[1])
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
    return canvas, new_h / image.shape[0]


@pytest.fixture(scope='module')
def package_results(tmp_path_factory):
    if not INSIGHTFACE_PYTHON.exists():
        pytest.skip('optional insightface environment %s not found: `make setup-insightface` '
                    'builds it (CI does)' % INSIGHTFACE_PYTHON)
    prefix = str(shared_path('models', 'mnet.25') / 'mnet.25')
    val = shared_path('data', 'dlib_faces', 'val')
    from rcnn.deploy.insightface_layout import export_insightface_checkpoint
    tmp = tmp_path_factory.mktemp('insightface')
    images = sorted(str(val / 'images' / name) for name in read_val_labels(val / 'label.txt'))
    results = {}
    for kind, size in (('dynamic', None), ('static', DET_SIZE[::-1])):
        app_dir = tmp / kind
        app_dir.mkdir()
        model = str(app_dir / 'det_mnet25.onnx')
        diffs = export_insightface_checkpoint(prefix, 0, model, input_size=size)
        assert diffs['score'] < 1e-5 and diffs['box'] < 0.01 and diffs['kps'] < 0.01, diffs
        out = tmp / ('%s.json' % kind)
        env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH',)}
        proc = subprocess.run([str(INSIGHTFACE_PYTHON), str(RUNNER), model, str(app_dir),
                               str(DET_SIZE[0]), str(DET_SIZE[1]), str(out)] + images,
                              capture_output=True, text=True, timeout=600, env=env,
                              cwd=str(tmp))
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[kind] = json.loads(out.read_text())
    return prefix, images, results


@pytest.fixture(scope='module')
def ours(package_results):
    from retinaface import RetinaFace
    prefix, images, _ = package_results
    detector = RetinaFace(prefix, 0, ctx_id=-1)
    found = {}
    for path in images:
        canvas, scale = letterbox(cv2.imread(path), DET_SIZE)
        faces, points = detector.detect(canvas, threshold=THRESHOLD)
        faces[:, :4] /= scale
        found[path] = (faces, points / scale)
    return found


def _assert_matches(ours, theirs_boxes, theirs_kps):
    faces, points = ours
    boxes = np.asarray(theirs_boxes, dtype=np.float64).reshape(-1, 5)
    kps = np.asarray(theirs_kps, dtype=np.float64).reshape(-1, 5, 2)
    assert len(boxes) == len(faces)
    if not len(faces):
        return 0.0, 0.0
    iou = iou_matrix(faces, boxes)
    match = iou.argmax(axis=1)
    assert len(set(match.tolist())) == len(match)
    assert iou[np.arange(len(faces)), match].min() >= 0.95
    score_diff = np.abs(faces[:, 4] - boxes[match, 4]).max()
    point_diff = np.abs(points - kps[match]).max()
    assert score_diff <= 1e-3
    assert point_diff <= 1.5
    return score_diff, point_diff


@pytest.mark.parametrize('kind', ['dynamic', 'static'])
@pytest.mark.parametrize('route', ['detect', 'app'])
def test_package_finds_our_faces(package_results, ours, kind, route):
    _, images, results = package_results
    result = results[kind]
    assert result['version'] == '2.1'
    assert result['model_class'] == 'SCRFD'          # the package's detector class
    assert result['app_models'] == ['detection']
    total = 0
    for path in images:
        found = result[route][path]
        _assert_matches(ours[path], found['boxes'], found['kps'])
        total += len(found['boxes'])
    # the val photos hold 25 labelled faces; mnet.25 finds most of them at 640x640
    assert total >= 15


def test_letterbox_matches_the_package_scale():
    image = np.zeros((375, 500, 3), dtype=np.uint8)
    canvas, scale = letterbox(image, (640, 640))
    assert canvas.shape == (640, 640, 3) and scale == 480 / 375
    canvas, scale = letterbox(np.zeros((800, 565, 3), np.uint8), (640, 640))
    assert scale == 640 / 800
