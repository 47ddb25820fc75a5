"""The pipeline's schedules (flips batched, scales concurrent) give the faces of the serial
detect()."""
import threading

import numpy as np
import pytest

from conftest import shared_path

pytest.importorskip('mxnet')
cv2 = pytest.importorskip('cv2')

from rcnn.inference.pipeline import Schedule  # noqa: E402

#: small pyramid scales (the test stays fast); two of them share a shape class with flips
SCALES = [0.6, 1.0, 0.8]


@pytest.fixture(scope='module')
def prefix():
    return str(shared_path('models', 'mnet.25') / 'mnet.25')


@pytest.fixture(scope='module')
def mxnet_detector(prefix):
    from retinaface import RetinaFace
    return RetinaFace(prefix, 0, ctx_id=-1, network='net3', vote=True)


@pytest.fixture(scope='module')
def photo():
    """A real group photo (dlib val), several faces."""
    paths = sorted(shared_path('data', 'dlib_faces', 'val', 'images').rglob('*.jpg'))
    return cv2.imread(str(paths[0]))


class RecordingBackend(object):
    """Wraps a backend: records the batch shape of every forward and the most calls at once."""

    def __init__(self, backend, concurrent):
        self.backend = backend
        self.concurrent_forward = concurrent
        self.shapes = []
        self.running = self.most_running = 0
        self._lock = threading.Lock()

    def forward(self, data):
        with self._lock:
            self.shapes.append(data.shape)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            return self.backend.forward(data)
        finally:
            with self._lock:
                self.running -= 1


def scheduled(detector, image, threshold, scales, do_flip=False, flip_batch=False,
              scale_workers=1):
    """One image's faces with the passes scheduled as the WIDER test runs them."""
    return detector.detect_images([image], threshold, scales, do_flip,
                                  Schedule(flip_batch=flip_batch, scale_workers=scale_workers))[0]


def _assert_identical(got, want):
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert np.array_equal(a, b)


@pytest.mark.parametrize('vote', [True, False])
@pytest.mark.parametrize('flip_batch', [True, False])
def test_mxnet_pyramid_equals_serial_detect(mxnet_detector, photo, vote, flip_batch):
    mxnet_detector.vote = vote
    try:
        want = mxnet_detector.detect(photo, 0.02, SCALES, do_flip=True)
        got = scheduled(mxnet_detector, photo, 0.02, SCALES, do_flip=True,
                             flip_batch=flip_batch, scale_workers=2)
    finally:
        mxnet_detector.vote = True
    assert len(want[0]) > 5
    _assert_identical(got, want)


def test_flip_batch_runs_one_forward_of_2_per_scale(mxnet_detector, photo):
    real = mxnet_detector.backend
    mxnet_detector.backend = recorder = RecordingBackend(real, concurrent=False)
    try:
        scheduled(mxnet_detector, photo, 0.5, SCALES, do_flip=True, flip_batch=True,
                       scale_workers=2)
        batched = list(recorder.shapes)
        recorder.shapes.clear()
        scheduled(mxnet_detector, photo, 0.5, SCALES, do_flip=False, flip_batch=True)
        unflipped = list(recorder.shapes)
    finally:
        mxnet_detector.backend = real
    assert [s[0] for s in batched] == [2, 2, 2]
    height, width = photo.shape[:2]
    assert [s[2:] for s in batched] == [(round(height * s), round(width * s)) for s in SCALES]
    assert [s[0] for s in unflipped] == [1, 1, 1]
    assert recorder.most_running == 1           # the MXNet backend is never called concurrently


def test_onnxruntime_scales_run_concurrently_and_agree(prefix, photo, mxnet_detector, tmp_path):
    pytest.importorskip('onnxruntime', reason='optional extra (requirements-deploy.txt)')
    from test_onnx_export import onnxruntime_detector
    detector = onnxruntime_detector(prefix, tmp_path, threads=1)
    detector.vote = True
    want = detector.detect(photo, 0.02, SCALES, do_flip=True)
    real = detector.backend
    detector.backend = recorder = RecordingBackend(real, concurrent=True)
    try:
        for flip_batch in (False, True):
            got = scheduled(detector, photo, 0.02, SCALES, do_flip=True,
                                 flip_batch=flip_batch, scale_workers=3)
            _assert_identical(got, want)
    finally:
        detector.backend = real
    assert len(recorder.shapes) == 2 * len(SCALES) + len(SCALES)
    assert recorder.most_running >= 2
    # another runtime, the same faces to well under a thousandth of a pixel
    mxnet_faces = mxnet_detector.detect(photo, 0.02, SCALES, do_flip=True)[0]
    assert mxnet_faces.shape == want[0].shape
    np.testing.assert_allclose(want[0][:, :4], mxnet_faces[:, :4], atol=1e-3)


def test_bad_arguments(mxnet_detector, photo):
    with pytest.raises(ValueError, match='scale_workers'):
        scheduled(mxnet_detector, photo, 0.5, SCALES, scale_workers=0)
    with pytest.raises(ValueError, match='max_batch'):
        Schedule(max_batch=0)
    with pytest.raises(ValueError, match='threshold'):
        scheduled(mxnet_detector, photo, float('nan'), SCALES)
    with pytest.raises(ValueError, match='None'):
        scheduled(mxnet_detector, None, 0.5, SCALES)


def test_choose_engine_before_and_after_the_mxnet_import(monkeypatch):
    from rcnn.inference import mxnet_backend
    monkeypatch.delenv('MXNET_ENGINE_TYPE', raising=False)
    # mxnet is imported in this process: nothing changes, the current engine is reported
    assert mxnet_backend.choose_engine('naive', on_gpu=False) == 'ThreadedEnginePerDevice'
    assert 'MXNET_ENGINE_TYPE' not in __import__('os').environ
    with pytest.raises(ValueError, match='engine'):
        mxnet_backend.choose_engine('fast', on_gpu=False)
    # before the import (simulated): auto is naive on the CPU, threaded on a GPU, the user's
    # setting wins
    monkeypatch.delitem(__import__('sys').modules, 'mxnet')
    assert mxnet_backend.choose_engine('auto', on_gpu=False) == 'NaiveEngine'
    monkeypatch.delenv('MXNET_ENGINE_TYPE')
    assert mxnet_backend.choose_engine('auto', on_gpu=True) == 'ThreadedEnginePerDevice'
    monkeypatch.setenv('MXNET_ENGINE_TYPE', 'ThreadedEngine')
    assert mxnet_backend.choose_engine('auto', on_gpu=False) == 'ThreadedEngine'
    assert mxnet_backend.choose_engine('naive', on_gpu=False) == 'NaiveEngine'
