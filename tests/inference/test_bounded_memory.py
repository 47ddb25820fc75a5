"""Bounded memory in a long detect() loop over new image sizes: every cache
keyed by the input shape is bounded, and bounding it changes no result. The RSS curve itself
is measured by bench/bench_memory.py (a benchmark, not a timed test)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, shared_path
from rcnn.processing.generate_anchor import DEFAULT_MAX_ANCHOR_PLANES, AnchorCache
from rcnn.processing.generate_anchor import anchors_plane

BASE = {32: np.array([[-248, -248, 263, 263], [-120, -120, 135, 135]], np.float32),
        16: np.array([[-56, -56, 71, 71], [-24, -24, 39, 39]], np.float32),
        8: np.array([[-8, -8, 15, 15], [0, 0, 7, 7]], np.float32)}


def test_anchor_cache_is_bounded_and_recomputes_identically():
    cache = AnchorCache(BASE)
    first = cache.get(8, 30, 40).copy()
    for size in range(1, 200):
        for stride in BASE:
            cache.get(stride, size, size + 1)
    assert len(cache) == DEFAULT_MAX_ANCHOR_PLANES == 24
    again = cache.get(8, 30, 40)
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(again, anchors_plane(30, 40, 8, BASE[8]).reshape(-1, 4))
    # least recently used goes first
    small = AnchorCache(BASE, max_planes=2)
    a = small.get(8, 3, 4)
    small.get(8, 5, 5)
    assert small.get(8, 3, 4) is a                  # touched: now the most recent
    small.get(8, 6, 6)
    assert small.get(8, 3, 4) is a and len(small) == 2
    assert len(AnchorCache(BASE, max_planes=None)._planes) == 0
    with pytest.raises(ValueError, match='max_planes'):
        AnchorCache(BASE, max_planes=0)


def test_executor_rebasing_keeps_results():
    """A fresh base executor every ``rebase_after`` derived ones gives the results of
    independent binds, shape after shape."""
    from rcnn.inference.mxnet_backend import MXNetBackend
    from rcnn.checkpoint.params import load_checkpoint
    sym, arg_params, aux_params = load_checkpoint(
        str(shared_path('models', 'mnet.25') / 'mnet.25'), 0)
    rng = np.random.RandomState(5)
    shapes = [(1, 3, 96, 128), (1, 3, 64, 96), (1, 3, 32, 64), (1, 3, 80, 48), (1, 3, 64, 96),
              (1, 3, 128, 128), (1, 3, 40, 40), (1, 3, 96, 128)]
    inputs = {s: rng.uniform(0, 255, s).astype(np.float32) for s in set(shapes)}
    backend = MXNetBackend(sym, arg_params, aux_params, max_shapes=2, rebase_after=2)
    for shape in shapes:
        fresh = MXNetBackend(sym, arg_params, aux_params).forward(inputs[shape])
        for got, want in zip(backend.forward(inputs[shape]), fresh):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # bases: 96x128 (first), 96x128 again after 2 derived (at 80x48), 128x128 (larger)
    assert backend.num_rebases == 3
    assert len(backend._executors) == 2
    with pytest.raises(ValueError, match='rebase_after'):
        MXNetBackend(sym, arg_params, aux_params, rebase_after=0)


def test_mkldnn_cache_is_bounded_unless_the_user_set_it(mnet25_prefix):
    code = ('import os; from retinaface import RetinaFace; '
            'RetinaFace(%r, 0, ctx_id=-1); print(os.environ["MXNET_MKLDNN_CACHE_NUM"])'
            % mnet25_prefix)
    env = {k: v for k, v in os.environ.items() if k != 'MXNET_MKLDNN_CACHE_NUM'}
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=str(ROOT), env=env, timeout=300)
    assert out.stdout.split()[-1] == '1024', out.stderr
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=str(ROOT), env=dict(env, MXNET_MKLDNN_CACHE_NUM='-1'), timeout=300)
    assert out.stdout.split()[-1] == '-1', out.stderr


def test_onnxruntime_session_keeps_no_per_shape_memory_plan(mnet25_prefix, tmp_path):
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnx')
    from retinaface import RetinaFace
    os.environ.setdefault('RETINAFACE_CACHE_DIR', str(tmp_path / 'onnx'))
    detector = RetinaFace(mnet25_prefix, 0, ctx_id=-1, backend='onnxruntime')
    assert detector.backend.session.get_session_options().enable_mem_pattern is False
