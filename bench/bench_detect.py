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
0.02) on the real dlib val photos and the shared group photos (1024 px wide), default threads:
images/s of the serial path (``detect()``, one forward per scale and flip, MXNet's threaded
engine) and of the other schedules (MXNet's NaiveEngine, onnxruntime,
:class:`rcnn.inference.pipeline.Schedule`: flips batched, scales in parallel threads with
onnxruntime). Two persistent child processes (one per MXNet engine, which is fixed at import)
serve the runs; every schedule runs on all images in turn, round after round, so a changing
machine load hits them alike. Each row gives its speed relative to the serial path, whether its
faces are bit-identical to it and the largest box difference in pixels.

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
    from rcnn.checkpoint.params import load_checkpoint
    from retinaface import RetinaFace, as_bgr_image

    image = cv2.resize(cv2.imread(str(SHARED / 'images' / IMAGE_NAME)), IMAGE_SIZE,
                       interpolation=cv2.INTER_AREA)
    detector = RetinaFace(_prefix(), 0, ctx_id=-1)
    tag = 'threads=%d engine=%s' % (threads, engine or 'threaded')
    extra = {'threads': threads, 'engine': engine or 'ThreadedEnginePerDevice',
             'image': '%dx%d' % IMAGE_SIZE}
    num_faces = len(detector.detect(image, threshold=0.5)[0])
    data = detector.pixels.network_input(image, False, None)
    outputs = detector.backend.forward(data)
    rows = [
        measure('detect 640x480 %s: total' % tag,
                lambda: detector.detect(image, threshold=0.5), repeat=repeat, warmup=3,
                faces=num_faces, **extra),
        measure('detect 640x480 %s: preprocess' % tag,
                lambda: detector.pixels.network_input(as_bgr_image(image), False, None),
                repeat=repeat,
                warmup=3, **extra),
        measure('detect 640x480 %s: forward' % tag,
                lambda: detector.backend.forward(data), repeat=repeat, warmup=3, **extra),
        measure('detect 640x480 %s: postprocess' % tag,
                lambda: _postprocess(detector, outputs, image.shape[:2]),
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


#: mode-1 schedules: (name, MXNet engine of the process, backend, backend threads, serial,
#: flip_batch, scale_workers[, image worker processes]); the first is the baseline: serial,
#: MXNet's threaded engine and its own OMP thread default. With image workers the schedule
#: runs in an ImageWorkerPool (processes with their own detector, OMP_NUM_THREADS = threads),
#: as test_widerface.py --image-workers does.
MODE1_SCHEDULES = [
    ('serial detect(), mxnet threaded engine, MXNet\'s threads (baseline)', 'threaded',
     'mxnet', None, True, True, 1),
    ('flip batch, mxnet threaded engine', 'threaded', 'mxnet', None, False, True, 1),
    ('serial detect(), mxnet NaiveEngine', 'naive', 'mxnet', None, True, True, 1),
    ('flip batch, mxnet NaiveEngine', 'naive', 'mxnet', None, False, True, 1),
    ('serial detect(), onnxruntime', 'threaded', 'onnxruntime', None, True, True, 1),
    ('flip batch, onnxruntime', 'threaded', 'onnxruntime', None, False, True, 1),
    ('2 scale workers, onnxruntime 1 thread each', 'threaded', 'onnxruntime', 1, False, False,
     2),
    ('flip batch + 2 scale workers, onnxruntime 1 thread each', 'threaded', 'onnxruntime', 1,
     False, True, 2),
    ('1 process x 2 threads, mxnet NaiveEngine (test_widerface.py --image-workers 1)', 'naive',
     'mxnet', 2, False, False, 1, 1),
    ('2 image workers x 1 thread, mxnet threaded engine', 'threaded', 'mxnet', 1, False, False,
     1, 2),
    ('2 image workers x 1 thread, mxnet NaiveEngine (test_widerface.py default, 2 cores)',
     'naive', 'mxnet', 1, False, False, 1, 2),
    ('2 image workers x 1 thread, onnxruntime (--backend onnxruntime, 2 cores)', 'threaded',
     'onnxruntime', 1, False, False, 1, 2),
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


def _image_workers(schedule):
    """Image worker processes of a schedule (None: it runs in a server process)."""
    return schedule[7] if len(schedule) > 7 else None


def _postprocess(detector, outputs, image_shape):
    """Decode and merge one pass at scale 1, threshold 0.5, as ``detect()`` does."""
    from rcnn.inference.postprocess import merge_detections
    from rcnn.processing.detections import decode_detections
    dets = decode_detections(outputs, detector.strides, detector.anchor_cache, 0.5, image_shape,
                             score_decay=detector.score_decay, coder=detector.coder,
                             plan=detector.outputs)
    return merge_detections(dets, detector.nms_threshold, detector.vote)


def _detect_mode1(detector, schedule, image):
    """Faces (N, 5) of one image with a schedule's serial / flip batch / scale workers."""
    from rcnn.evaluation.protocols import PROTOCOLS
    from rcnn.inference.pipeline import Schedule
    serial, flip_batch, scale_workers = schedule[4:7]
    protocol = PROTOCOLS['pyramid']
    scales = protocol.scales(image.shape[0], image.shape[1])
    if serial:
        return detector.detect(image, protocol.threshold, scales, protocol.flip)[0]
    schedule = Schedule(flip_batch=flip_batch, scale_workers=scale_workers)
    return detector.detect_images([image], protocol.threshold, scales, protocol.flip,
                                  schedule)[0][0]


_POOL_IMAGES = {}


def _pool_task(detector, job):
    """In an image worker: faces of image ``index`` of the first ``count`` with a schedule."""
    index, count, schedule_index = job
    if count not in _POOL_IMAGES:
        _POOL_IMAGES[count] = _mode1_images(count)
    return _detect_mode1(detector, MODE1_SCHEDULES[schedule_index], _POOL_IMAGES[count][index])


class _PoolServer(object):
    """Runs a schedule in an ImageWorkerPool, answering as a _Server does."""

    def __init__(self, schedule_index, num_images):
        from rcnn.inference.image_workers import ImageWorkerPool
        _, engine, backend, threads = MODE1_SCHEDULES[schedule_index][:4]
        environ = {'OMP_NUM_THREADS': str(threads),
                   'MXNET_ENGINE_TYPE': 'NaiveEngine' if engine == 'naive' else
                   'ThreadedEnginePerDevice'}
        self.schedule_index, self.num_images = schedule_index, num_images
        self.pool = ImageWorkerPool(_image_workers(MODE1_SCHEDULES[schedule_index]),
                                    {'prefix': _prefix(), 'epoch': 0, 'ctx_id': -1,
                                     'vote': True, 'backend': backend, 'threads': threads},
                                    environ)
        self.pool.describe_detector()

    def run(self, index):
        import time
        assert index == self.schedule_index
        t0 = time.perf_counter()
        faces = list(self.pool.imap(_pool_task, [(i, self.num_images, index)
                                                 for i in range(self.num_images)]))
        return _answer(time.perf_counter() - t0, faces)

    def close(self):
        self.pool.close()


def _answer(seconds, faces):
    """A schedule's run: its seconds, the sha1 of each image's faces and their boxes."""
    import hashlib
    return {'seconds': seconds,
            'digests': [hashlib.sha1(f.tobytes()).hexdigest()[:16] for f in faces],
            'boxes': [f[:, :4].tolist() for f in faces]}


def mode1_server(engine, num_images):
    """Child process (MXNet engine ``engine``): reads schedule indices from stdin, runs that
    schedule on every image and answers one JSON line (seconds, sha1 of the faces per image)."""
    import time

    from retinaface import RetinaFace

    images = _mode1_images(num_images)
    detectors = {}
    for schedule in MODE1_SCHEDULES:
        _, sched_engine, backend, threads = schedule[:4]
        if _image_workers(schedule):
            continue
        if sched_engine == engine and (backend, threads) not in detectors:
            detectors[backend, threads] = RetinaFace(_prefix(), 0, ctx_id=-1, vote=True,
                                                     backend=backend, threads=threads)

    def run_schedule(schedule, image):
        return _detect_mode1(detectors[schedule[2], schedule[3]], schedule, image)

    print(_ROW_MARK + json.dumps({'ready': True}), flush=True)
    for line in sys.stdin:
        schedule = MODE1_SCHEDULES[int(line)]
        t0 = time.perf_counter()
        faces = [run_schedule(schedule, image) for image in images]
        print(_ROW_MARK + json.dumps(_answer(time.perf_counter() - t0, faces)), flush=True)


class _Server(object):
    def __init__(self, engine, num_images):
        env = dict(os.environ)
        env.pop('MXNET_ENGINE_TYPE', None)
        if engine == 'naive':
            env['MXNET_ENGINE_TYPE'] = 'NaiveEngine'
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'bench.bench_detect', '--mode1-server', engine, '--images',
             str(num_images)], cwd=str(ROOT), env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        self.answer()

    def answer(self):
        for line in self.process.stdout:
            if line.startswith(_ROW_MARK):
                return json.loads(line[len(_ROW_MARK):])
        raise RuntimeError('mode-1 benchmark child exited with %s' % self.process.wait())

    def run(self, index):
        self.process.stdin.write('%d\n' % index)
        self.process.stdin.flush()
        return self.answer()

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def mode1_rows(rounds, num_images):
    """Mode-1 images/s of every schedule, interleaved across processes (module docstring)."""
    import numpy as np
    servers = {}
    try:
        for index, schedule in enumerate(MODE1_SCHEDULES):
            key = index if _image_workers(schedule) else schedule[1]
            if key not in servers:
                servers[key] = (_PoolServer(index, num_images) if _image_workers(schedule)
                                else _Server(schedule[1], num_images))

        def server_of(index):
            return servers[index if _image_workers(MODE1_SCHEDULES[index]) else
                           MODE1_SCHEDULES[index][1]]

        results = {i: [] for i in range(len(MODE1_SCHEDULES))}
        for index in range(len(MODE1_SCHEDULES)):   # warm-up: binds, exports, caches
            server_of(index).run(index)
        for _ in range(rounds):
            for index in range(len(MODE1_SCHEDULES)):
                results[index].append(server_of(index).run(index))
    finally:
        for server in servers.values():
            server.close()
    base = results[0][0]
    base_median = float(np.median([r['seconds'] for r in results[0]]))
    rows = []
    for index, schedule in enumerate(MODE1_SCHEDULES):
        median = float(np.median([r['seconds'] for r in results[index]]))
        diff = 0.0
        for got, want in zip(results[index][0]['boxes'], base['boxes']):
            got, want = np.asarray(got), np.asarray(want)
            diff = max(diff, np.inf if got.shape != want.shape else
                       float(np.abs(got - want).max(initial=0.0)))
        rows.append({'name': 'mode 1: ' + schedule[0],
                     'images_per_s': round(num_images / median, 3),
                     'speedup_vs_baseline': round(base_median / median, 2),
                     'faces_bit_identical_to_baseline': results[index][0]['digests'] ==
                     base['digests'], 'max_box_diff_px': diff, 'images': num_images,
                     'rounds': rounds,
                     'round_s': [round(r['seconds'], 2) for r in results[index]]})
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


def run(quick=False, only_mode1=False):
    """Rows for every setting (see the module docstring)."""
    if not (SHARED / 'models' / 'mnet.25' / 'mnet.25-symbol.json').is_file():
        raise FileNotFoundError('the released mnet.25 is not in %s' % SHARED)
    repeat = 10 if quick else 60
    settings = [] if only_mode1 else SETTINGS[:2] if quick else SETTINGS
    rows = []
    for threads, engine in settings:
        rows.extend(_run_setting(threads, engine, repeat))
    rows.extend(mode1_rows(rounds=1 if quick else 3, num_images=2 if quick else 4))
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
    parser.add_argument('--mode1-server', default=None, choices=('threaded', 'naive'),
                        help='internal: serve mode-1 timings with this MXNet engine')
    parser.add_argument('--rounds', type=int, default=None,
                        help='with --only-mode1: rounds (default 3, --quick 1)')
    parser.add_argument('--images', type=int, default=None,
                        help='with --only-mode1: images per round (default 4, --quick 2)')
    args = parser.parse_args(argv)
    if args.mode1_server:
        mode1_server(args.mode1_server, args.images)
        return 0
    if args.only_mode1 and (args.rounds or args.images):
        print_rows(mode1_rows(args.rounds or (1 if args.quick else 3),
                              args.images or (2 if args.quick else 4)))
        return 0
    if args.child:
        rows = child_rows(args.threads, args.engine or None, args.repeat)
        print(_ROW_MARK + json.dumps(rows), flush=True)
        return 0
    print_rows(run(quick=args.quick, only_mode1=args.only_mode1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
