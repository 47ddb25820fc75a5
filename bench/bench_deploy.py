"""Deployment speed at 640x480 with the released mnet.25: MXNet engines, onnxruntime, OpenCV DNN,
INT8, batch.

Rows (each thread count / engine runs in its own subprocess, with the environment set before
MXNet or onnxruntime is imported):

* ``mxnet forward (original-style)``: the released graph in a plain ``mx.mod.Module`` bound at
  1x3x480x640, MXNet's default threaded engine, outputs fetched with ``asnumpy`` (what the
  original ``detect()`` does), at 1 and 2 OpenMP threads;
* the same under ``MXNET_ENGINE_TYPE=NaiveEngine``;
* ``onnxruntime forward``: the graph exported by :mod:`rcnn.deploy.onnx_export` (weights as
  initializers) at 1 and 2 intra-op threads, plus one row with the weights left as graph inputs
  (what a plain export gives: BatchNorm is then not folded);
* ``mxnet int8 forward``: MKLDNN INT8 checkpoint (:mod:`rcnn.deploy.quantize`, entropy
  calibration on the dlib train photos) under both engines;
* when ``retinaface.py`` is present: end-to-end ``detect()`` (threshold 0.5, scale 1.0, on
  ``bald_guys.jpg`` resized to 640x480) with MXNet (default and NaiveEngine), onnxruntime,
  OpenCV DNN (``backend='opencv'``, ``cv2.setNumThreads``) and the INT8 checkpoint under NaiveEngine, at 1 and 2 threads, each followed by
  ``detect_batch`` images/s at batch 1/4/8 (the same image repeated: one shape, exact results).

Benchmarks report; they never assert timings.
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import SHARED, measure, print_rows  # noqa: E402
from rcnn.processing.pixels import PixelTransform  # noqa: E402

WIDTH, HEIGHT = 640, 480
BATCH_SIZES = (1, 4, 8)
THREADS = (1, 2)


def _mnet25_prefix():
    prefix = SHARED / 'models' / 'mnet.25' / 'mnet.25'
    if not Path(str(prefix) + '-symbol.json').exists():
        raise FileNotFoundError('released mnet.25 not found under %s (../shared is absent)' % SHARED)
    return str(prefix)


def _bench_image():
    """A real 640x480 BGR photo (bald_guys.jpg resized: many faces, so post-processing works)."""
    import cv2
    path = SHARED / 'images' / 'bald_guys.jpg'
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError('%s not readable' % path)
    return cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


def _input_batch(batch=1):
    image = _bench_image()
    data = PixelTransform().network_input(image)      # the released models' raw RGB input
    return np.ascontiguousarray(np.repeat(data, batch, axis=0))


# ----------------------------------------------------------------------------- workers

def _mxnet_forward_fn(prefix, epoch):
    import mxnet as mx
    from rcnn.checkpoint.params import load_checkpoint
    sym, arg_params, aux_params = load_checkpoint(prefix, epoch)
    module = mx.mod.Module(sym, data_names=['data'], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[('data', (1, 3, HEIGHT, WIDTH))], for_training=False)
    module.set_params(arg_params, aux_params)
    batch = mx.io.DataBatch([mx.nd.array(_input_batch())])

    def forward():
        module.forward(batch, is_train=False)
        return [out.asnumpy() for out in module.get_outputs()]
    return forward


def _onnx_forward_fn(onnx_path, threads):
    from rcnn.inference.onnx_backend import OnnxRuntimeBackend
    backend = OnnxRuntimeBackend(onnx_path, threads=threads)
    data = _input_batch()
    return lambda: backend.forward(data)


def _make_detector(prefix, epoch, backend, threads):
    """RetinaFace on ``backend``; the onnxruntime backend object is put in place directly when
    rcnn.inference does not register it (yet)."""
    import rcnn.inference
    from retinaface import RetinaFace
    if backend == 'mxnet' or backend in rcnn.inference.BACKENDS:
        return RetinaFace(prefix, epoch, ctx_id=-1, network='net3', backend=backend, threads=threads)
    from rcnn.inference.onnx_backend import OnnxRuntimeBackend
    detector = RetinaFace(prefix, epoch, ctx_id=-1, network='net3')
    detector.backend = OnnxRuntimeBackend(prefix, epoch=epoch, threads=threads)
    return detector


def _worker(spec):
    """Run one measurement spec (inside a subprocess) and return its rows."""
    repeat, threads = spec['repeat'], spec['threads']
    extra = {'threads': threads, 'engine': os.environ.get('MXNET_ENGINE_TYPE', 'ThreadedEnginePerDevice')}
    kind = spec['kind']
    if kind == 'mxnet_forward':
        fn = _mxnet_forward_fn(spec['prefix'], spec['epoch'])
        return [measure(spec['name'], fn, repeat=repeat, warmup=3, **extra)]
    if kind == 'onnx_forward':
        extra['engine'] = 'onnxruntime'
        return [measure(spec['name'], _onnx_forward_fn(spec['onnx'], threads), repeat=repeat,
                        warmup=3, **extra)]
    if kind == 'detect':
        detector = _make_detector(spec['prefix'], spec['epoch'], spec['backend'], threads)
        image = _bench_image()
        extra['backend'] = spec['backend']
        if extra['backend'] in ('onnxruntime', 'opencv'):
            extra['engine'] = extra['backend']
        rows = [measure(spec['name'], lambda: detector.detect(image, 0.5, [1.0]), repeat=repeat,
                        warmup=3, **extra)]
        if spec.get('batch'):
            for size in BATCH_SIZES:
                images = [image] * size
                row = measure('%s detect_batch x%d' % (spec['name'], size),
                              lambda: detector.detect_batch(images, 0.5, [1.0], max_batch=size),
                              repeat=max(3, repeat // size), warmup=1, batch=size, **extra)
                row['images_per_s'] = round(size * 1000.0 / row['median_ms'], 1)
                rows.append(row)
        return rows
    raise ValueError('unknown benchmark kind %r' % kind)


def _run_worker(spec, env_extra):
    env = dict(os.environ)
    env.update({'OMP_NUM_THREADS': str(spec['threads']), 'MKL_NUM_THREADS': str(spec['threads'])})
    env.pop('MXNET_ENGINE_TYPE', None)
    env.update(env_extra)
    env['PYTHONPATH'] = str(ROOT) + os.pathsep + env.get('PYTHONPATH', '')
    proc = subprocess.run([sys.executable, '-m', 'bench.bench_deploy', '--worker', json.dumps(spec)],
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return [{'name': spec['name'], 'error': proc.stderr.strip().splitlines()[-1:]}]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- set-up

def _export_onnx_variants(prefix, workdir):
    """(initializer export, weights-as-inputs copy) paths, or None when onnx is missing."""
    try:
        import onnx
    except ImportError:
        return None
    from rcnn.inference.onnx_backend import cached_onnx_path
    fast = cached_onnx_path(prefix, 0, cache_dir=workdir)    # what the onnxruntime backend uses
    model = onnx.load(fast)
    for init in model.graph.initializer:
        model.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type,
                                                                    list(init.dims)))
    slow = os.path.join(workdir, 'mnet25-weights-as-inputs.onnx')
    onnx.save(model, slow)
    return fast, slow


def _quantize_int8(prefix, workdir):
    from rcnn.deploy import quantize
    calib = SHARED / 'data' / 'dlib_faces' / 'train' / 'images'
    out = os.path.join(workdir, 'mnet25-int8')
    quantize.quantize_prefix(prefix, 0, out, [str(calib)], input_size=(WIDTH, HEIGHT),
                             calib_mode='entropy')
    return out


def _have_retinaface():
    return (ROOT / 'retinaface.py').exists()


def run(quick=False):
    prefix = _mnet25_prefix()
    repeat = 10 if quick else 50
    rows = []
    with tempfile.TemporaryDirectory(prefix='bench_deploy_') as workdir:
        onnx_paths = _export_onnx_variants(prefix, workdir)
        int8_prefix = _quantize_int8(prefix, workdir)
        naive = {'MXNET_ENGINE_TYPE': 'NaiveEngine'}
        for threads in THREADS:
            base = {'threads': threads, 'repeat': repeat, 'epoch': 0}
            rows += _run_worker(dict(base, kind='mxnet_forward', prefix=prefix,
                                     name='mxnet forward (original-style), %d thr' % threads), {})
            rows += _run_worker(dict(base, kind='mxnet_forward', prefix=prefix,
                                     name='mxnet forward NaiveEngine, %d thr' % threads), naive)
            if onnx_paths:
                rows += _run_worker(dict(base, kind='onnx_forward', onnx=onnx_paths[0],
                                         name='onnxruntime forward, %d thr' % threads), {})
                if threads == 1:
                    rows += _run_worker(dict(base, kind='onnx_forward', onnx=onnx_paths[1],
                                             name='onnxruntime forward, weights as inputs, 1 thr'), {})
            rows += _run_worker(dict(base, kind='mxnet_forward', prefix=int8_prefix,
                                     name='mxnet int8 forward, %d thr' % threads), {})
            rows += _run_worker(dict(base, kind='mxnet_forward', prefix=int8_prefix,
                                     name='mxnet int8 forward NaiveEngine, %d thr' % threads), naive)
            if _have_retinaface():
                # (label, checkpoint, backend, engine environment)
                detect_configs = [('mxnet', prefix, 'mxnet', {}),
                                  ('mxnet NaiveEngine', prefix, 'mxnet', naive),
                                  ('mxnet int8 NaiveEngine', int8_prefix, 'mxnet', naive)]
                if onnx_paths:      # the backend finds the export in the cache
                    detect_configs.insert(2, ('onnxruntime', prefix, 'onnxruntime',
                                              {'RETINAFACE_CACHE_DIR': workdir}))
                    # OpenCV DNN on the fixed-size export of the input size (made in warm-up)
                    detect_configs.insert(3, ('opencv', prefix, 'opencv',
                                              {'RETINAFACE_CACHE_DIR': workdir}))
                for label, checkpoint, backend, engine_env in detect_configs:
                    rows += _run_worker(dict(
                        base, kind='detect', prefix=checkpoint, backend=backend,
                        batch=True,
                        name='detect() %s, %d thr' % (label, threads)), engine_env)
    return rows


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == '--worker':
        print(json.dumps(_worker(json.loads(sys.argv[2]))))
    else:
        print_rows(run(quick='--quick' in sys.argv))
