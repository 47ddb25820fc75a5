"""``RetinaFace.detect`` latency at 640x480 with the released mnet.25, scale 1.0.

For each setting (1 and 2 OMP threads, MXNet's default threaded engine and ``NaiveEngine``) a
fresh subprocess is started, because MXNet reads ``OMP_NUM_THREADS`` and ``MXNET_ENGINE_TYPE``
when it is imported. Each subprocess times:

* ``detect``: the whole call, threshold 0.5;
* ``preprocess``: image check + BGR uint8 -> (1, 3, H, W) RGB float32;
* ``forward``: the backend's forward (bound executor, input copy, outputs to numpy);
* ``postprocess``: decoding of the passing anchors + NMS;
* ``bare Module forward``: the released graph through a plain ``mx.mod.Module`` as the original
  pipeline ran it (``nd.array`` of the input, ``DataBatch``, ``forward``, ``asnumpy`` of the 9
  outputs), for comparison.

The image is ``bald_guys.jpg`` (a group photo) resized to 640x480.
Usage: ``python -m bench.bench_detect [--quick]``.
"""
import argparse
import json
import os
import subprocess
import sys

from bench.common import ROOT, SHARED, measure, print_rows

IMAGE_NAME = 'bald_guys.jpg'
IMAGE_SIZE = (640, 480)          # width, height
SETTINGS = [(1, None), (2, None), (1, 'NaiveEngine'), (2, 'NaiveEngine')]
_ROW_MARK = 'BENCH_ROWS '


def _prefix():
    return str(SHARED / 'models' / 'mnet.25' / 'mnet.25')


def child_rows(threads, engine, repeat):
    """Timings in this process (mxnet imported here, after the parent set the environment)."""
    import cv2
    import mxnet as mx
    import numpy as np
    from rcnn.utils.checkpoint import load_checkpoint
    from retinaface import RetinaFace, as_bgr_image

    image = cv2.resize(cv2.imread(str(SHARED / 'images' / IMAGE_NAME)), IMAGE_SIZE,
                       interpolation=cv2.INTER_AREA)
    detector = RetinaFace(_prefix(), 0, ctx_id=-1)
    tag = 'threads=%d engine=%s' % (threads, engine or 'threaded')
    extra = {'threads': threads, 'engine': engine or 'ThreadedEnginePerDevice',
             'image': '%dx%d' % IMAGE_SIZE}
    num_faces = len(detector.detect(image, threshold=0.5)[0])
    data = detector.prepare_input(image, False)
    outputs = detector.backend.forward(data)
    rows = [
        measure('detect 640x480 %s: total' % tag,
                lambda: detector.detect(image, threshold=0.5), repeat=repeat, warmup=3,
                faces=num_faces, **extra),
        measure('detect 640x480 %s: preprocess' % tag,
                lambda: detector.prepare_input(as_bgr_image(image), False), repeat=repeat,
                warmup=3, **extra),
        measure('detect 640x480 %s: forward' % tag,
                lambda: detector.backend.forward(data), repeat=repeat, warmup=3, **extra),
        measure('detect 640x480 %s: postprocess' % tag,
                lambda: detector.merge([detector.decode_pass(outputs, image.shape, 1.0, False,
                                                             0.5)]),
                repeat=repeat, warmup=3, **extra),
    ]
    sym, arg_params, aux_params = load_checkpoint(_prefix(), 0)
    module = mx.mod.Module(sym, data_names=['data'], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[('data', data.shape)], for_training=False)
    module.set_params(arg_params, aux_params)

    def bare_forward():
        module.forward(mx.io.DataBatch(data=[mx.nd.array(data)]), is_train=False)
        return [out.asnumpy() for out in module.get_outputs()]

    np.testing.assert_allclose(bare_forward()[6], outputs[6], rtol=1e-4, atol=1e-5)
    rows.append(measure('bare Module forward 640x480 %s (original pipeline)' % tag,
                        bare_forward, repeat=repeat, warmup=3, **extra))
    return rows


def _run_setting(threads, engine, repeat):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop('MXNET_ENGINE_TYPE', None)
    if engine:
        env['MXNET_ENGINE_TYPE'] = engine
    command = [sys.executable, '-m', 'bench.bench_detect', '--child', '--threads', str(threads),
               '--engine', engine or '', '--repeat', str(repeat)]
    result = subprocess.run(command, cwd=str(ROOT), env=env, capture_output=True, text=True,
                            timeout=600)
    lines = [l for l in result.stdout.splitlines() if l.startswith(_ROW_MARK)]
    if result.returncode != 0 or not lines:
        raise RuntimeError('benchmark subprocess (threads=%d, engine=%s) failed:\n%s'
                           % (threads, engine, result.stderr[-2000:]))
    return json.loads(lines[-1][len(_ROW_MARK):])


def run(quick=False):
    """Rows for every setting (see the module docstring)."""
    if not (SHARED / 'models' / 'mnet.25' / 'mnet.25-symbol.json').is_file():
        raise FileNotFoundError('the released mnet.25 is not in %s' % SHARED)
    repeat = 10 if quick else 60
    settings = SETTINGS[:2] if quick else SETTINGS
    rows = []
    for threads, engine in settings:
        rows.extend(_run_setting(threads, engine, repeat))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='fewer repetitions, 1-2 settings')
    parser.add_argument('--child', action='store_true',
                        help='internal: time in this process and print the rows as JSON')
    parser.add_argument('--threads', type=int, default=1, help='with --child: OMP threads set')
    parser.add_argument('--engine', default='', help='with --child: MXNET_ENGINE_TYPE set')
    parser.add_argument('--repeat', type=int, default=60, help='with --child: timed calls')
    args = parser.parse_args(argv)
    if args.child:
        rows = child_rows(args.threads, args.engine or None, args.repeat)
        print(_ROW_MARK + json.dumps(rows), flush=True)
        return 0
    print_rows(run(quick=args.quick))
    return 0


if __name__ == '__main__':
    sys.exit(main())
