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

Mode 1 (``test_widerface.py --mode 1``: five pyramid scales, each flipped, box voting, threshold
0.02) in one subprocess with MXNet's default threads, on the real dlib val photos and the shared
group photos (1024 px wide): images/s of today's serial path (``detect()``, one forward per
scale and flip, MXNet) and of the new schedules (:func:`rcnn.inference.pyramid.detect_pyramid`:
flips batched, scales in parallel threads with onnxruntime), each run on every image in turn,
interleaved round by round so a changing machine load hits them alike. Every row gives its
speed relative to the serial MXNet path and the largest box difference from it (the outputs
must agree).

Usage: ``python -m bench.bench_detect [--quick] [--only-mode1]``.
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


#: mode-1 schedules: (name, backend, backend threads, serial, flip_batch, scale_workers)
MODE1_SCHEDULES = [
    ('serial detect(), mxnet (today\'s path, baseline)', 'mxnet', None, True, True, 1),
    ('flip batch, mxnet', 'mxnet', None, False, True, 1),
    ('serial detect(), onnxruntime', 'onnxruntime', None, True, True, 1),
    ('flip batch, onnxruntime', 'onnxruntime', None, False, True, 1),
    ('2 scale workers, onnxruntime 1 thread each', 'onnxruntime', 1, False, False, 2),
    ('flip batch + 2 scale workers, onnxruntime 1 thread each', 'onnxruntime', 1, False, True, 2),
]


def _mode1_images(count):
    import cv2
    paths = sorted((SHARED / 'data' / 'dlib_faces' / 'val' / 'images').rglob('*.jpg'))
    paths += [SHARED / 'images' / name for name in ('bald_guys.jpg', 'dogs.jpg')]
    images = []
    for path in paths[:count]:
        image = cv2.imread(str(path))
        if image is None:
            raise FileNotFoundError('cannot read %s' % path)
        if image.shape[1] > 1024:
            height = int(round(image.shape[0] * 1024.0 / image.shape[1]))
            image = cv2.resize(image, (1024, height), interpolation=cv2.INTER_AREA)
        images.append(image)
    return images


def mode1_child_rows(rounds, num_images):
    """Mode-1 images/s of every schedule, interleaved (see the module docstring)."""
    import time

    import numpy as np
    from rcnn.inference.pyramid import detect_pyramid
    from retinaface import RetinaFace
    from test_widerface import scales_for_image

    images = _mode1_images(num_images)
    detectors = {}
    for _, backend, threads, _, _, _ in MODE1_SCHEDULES:
        if (backend, threads) not in detectors:
            detectors[backend, threads] = RetinaFace(_prefix(), 0, ctx_id=-1, vote=True,
                                                     backend=backend, threads=threads)

    def run_schedule(schedule, image):
        _, backend, threads, serial, flip_batch, scale_workers = schedule
        detector = detectors[backend, threads]
        scales, do_flip = scales_for_image(image.shape[0], image.shape[1], 1)
        if serial:
            return detector.detect(image, 0.02, scales, do_flip)[0]
        return detect_pyramid(detector, image, 0.02, scales, do_flip, flip_batch=flip_batch,
                              scale_workers=scale_workers)[0]

    reference = [run_schedule(MODE1_SCHEDULES[0], image) for image in images]   # + warm-up
    seconds = {schedule[0]: [] for schedule in MODE1_SCHEDULES}
    max_diff = {schedule[0]: 0.0 for schedule in MODE1_SCHEDULES}
    for schedule in MODE1_SCHEDULES[1:]:
        run_schedule(schedule, images[0])                                    # warm-up
    for _ in range(rounds):
        for schedule in MODE1_SCHEDULES:
            t0 = time.perf_counter()
            faces = [run_schedule(schedule, image) for image in images]
            seconds[schedule[0]].append(time.perf_counter() - t0)
            for got, want in zip(faces, reference):
                diff = np.inf if got.shape != want.shape else float(np.abs(got - want).max(
                    initial=0.0))
                max_diff[schedule[0]] = max(max_diff[schedule[0]], diff)
    base = float(np.median(seconds[MODE1_SCHEDULES[0][0]]))
    rows = []
    for schedule in MODE1_SCHEDULES:
        median = float(np.median(seconds[schedule[0]]))
        rows.append({'name': 'mode 1: ' + schedule[0],
                     'images_per_s': round(len(images) / median, 3),
                     'speedup_vs_serial_mxnet': round(base / median, 2),
                     'max_abs_diff_vs_serial': max_diff[schedule[0]],
                     'images': len(images), 'rounds': rounds,
                     'round_s': [round(v, 2) for v in seconds[schedule[0]]]})
    return rows


def _run_mode1(rounds, num_images):
    command = [sys.executable, '-m', 'bench.bench_detect', '--mode1-child', '--rounds',
               str(rounds), '--images', str(num_images)]
    result = subprocess.run(command, cwd=str(ROOT), capture_output=True, text=True,
                            timeout=3600)
    lines = [l for l in result.stdout.splitlines() if l.startswith(_ROW_MARK)]
    if result.returncode != 0 or not lines:
        raise RuntimeError('mode-1 benchmark subprocess failed:\n%s' % result.stderr[-2000:])
    return json.loads(lines[-1][len(_ROW_MARK):])


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


def run(quick=False, only_mode1=False):
    """Rows for every setting (see the module docstring)."""
    if not (SHARED / 'models' / 'mnet.25' / 'mnet.25-symbol.json').is_file():
        raise FileNotFoundError('the released mnet.25 is not in %s' % SHARED)
    repeat = 10 if quick else 60
    settings = [] if only_mode1 else SETTINGS[:2] if quick else SETTINGS
    rows = []
    for threads, engine in settings:
        rows.extend(_run_setting(threads, engine, repeat))
    rows.extend(_run_mode1(rounds=1 if quick else 3, num_images=2 if quick else 4))
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
    parser.add_argument('--only-mode1', action='store_true',
                        help='only the mode-1 (pyramid + flips) comparison')
    parser.add_argument('--mode1-child', action='store_true',
                        help='internal: time the mode-1 schedules here, print rows as JSON')
    parser.add_argument('--rounds', type=int, default=3, help='with --mode1-child: rounds')
    parser.add_argument('--images', type=int, default=4, help='with --mode1-child: images')
    args = parser.parse_args(argv)
    if args.mode1_child:
        rows = mode1_child_rows(args.rounds, args.images)
        print(_ROW_MARK + json.dumps(rows), flush=True)
        return 0
    if args.child:
        rows = child_rows(args.threads, args.engine or None, args.repeat)
        print(_ROW_MARK + json.dumps(rows), flush=True)
        return 0
    print_rows(run(quick=args.quick, only_mode1=args.only_mode1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
