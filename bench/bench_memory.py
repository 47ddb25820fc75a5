"""Memory of a long-running ``detect()`` loop over random image sizes (RSS curve per backend).

A service (or a WIDER FACE test run) sees a new image size at almost every call. Every cache
keyed by the input shape -- the anchor planes of ``rcnn.inference.postprocess``, MXNet's bound
executors, the MKLDNN primitive caches inside MXNet, onnxruntime's per-shape memory patterns --
must therefore be bounded, or the process grows without limit.

For each backend a fresh subprocess (so nothing is shared and MXNet's environment is read anew)
runs ``detect()`` with the released mnet.25 on ``bald_guys.jpg`` resized to a random height and
width in [200, 1200] px (threshold 0.5, scale 1.0; the first call at 1200x1200, so the
largest executor is bound during warm-up), ``--warmup`` calls first, then ``--calls``
calls, sampling the resident set size (``/proc/self/statm``) every ``--every`` calls. It prints
the RSS after warm-up, at the end, the growth between them (the target: < 50 MB over 2,000
calls), the maximum, the growth per 1,000 calls over the second half (least-squares slope: the
trend that would continue; RSS also swings by tens of MB from call to call as executors are
bound and dropped), and a checksum of every detection.

``--baseline`` adds, in the same run, each backend with the unbounded caches of the earlier
code (``AnchorCache(max_planes=None)``; MXNet: ``MXNET_MKLDNN_CACHE_NUM=-1``, no executor
rebasing, no ``malloc_trim``; onnxruntime: memory patterns on) for comparison; its detections must equal the bounded run's
(same sizes, same seed: compare ``detections_sha1``).

Usage: ``python -m bench.bench_memory [--quick] [--calls 2000] [--baseline]``.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

from bench.common import ROOT, SHARED, print_rows

IMAGE_NAME = 'bald_guys.jpg'
SIZE_RANGE = (200, 1200)
_ROW_MARK = 'BENCH_ROWS '


def _prefix():
    return str(SHARED / 'models' / 'mnet.25' / 'mnet.25')


def rss_mb():
    """Resident set size of this process in MB (from /proc/self/statm)."""
    with open('/proc/self/statm') as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf('SC_PAGE_SIZE') / 1e6


def child_row(backend, calls, warmup, every, seed, unbounded):
    """Run the loop in this process; returns one result row."""
    import cv2
    import numpy as np
    from retinaface import RetinaFace
    from rcnn.processing.generate_anchor import AnchorCache

    base = cv2.imread(str(SHARED / 'images' / IMAGE_NAME))
    detector = RetinaFace(_prefix(), 0, ctx_id=-1, backend=backend, threads=1)
    if unbounded:
        detector.anchor_cache = AnchorCache(detector.anchor_cache.base_anchors, max_planes=None)
        if backend == 'mxnet':
            detector.backend.rebase_after = None
            detector.backend.trim_memory = False
        else:        # onnxruntime with its per-shape memory patterns
            from rcnn.deploy.onnx_export import create_session
            detector.backend.session = create_session(detector.backend.onnx_path, 1)
    rng = np.random.default_rng(seed)
    digest = hashlib.sha1()
    curve = []
    start = time.perf_counter()
    num_faces = 0
    for call in range(warmup + calls):
        height, width = (int(v) for v in rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1, size=2))
        if call == 0:        # the largest input first: its executor's memory is the peak
            height = width = SIZE_RANGE[1]
        image = cv2.resize(base, (width, height), interpolation=cv2.INTER_LINEAR)
        faces, landmarks = detector.detect(image, threshold=0.5)
        num_faces += len(faces)
        digest.update(faces.tobytes())
        digest.update(landmarks.tobytes())
        done = call + 1 - warmup
        if done >= 0 and done % every == 0:
            curve.append((done, round(rss_mb(), 1)))
            print('RSS after %d calls: %.1f MB' % curve[-1], file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    half = np.array([point for point in curve if point[0] >= calls // 2], dtype=np.float64)
    slope = float(np.polyfit(half[:, 0], half[:, 1], 1)[0]) * 1000.0 if len(half) > 2 else 0.0
    return {'name': 'detect() RSS, %d random sizes %d-%d px, %s%s'
                    % (calls, SIZE_RANGE[0], SIZE_RANGE[1], backend,
                       ' (unbounded caches, earlier code)' if unbounded else ''),
            'backend': backend, 'unbounded': unbounded, 'warmup_calls': warmup, 'calls': calls,
            'rss_after_warmup_mb': curve[0][1], 'rss_end_mb': curve[-1][1],
            'growth_mb': round(curve[-1][1] - curve[0][1], 1),
            'growth_per_1000_calls_second_half_mb': round(slope, 1),
            'rss_max_mb': max(mb for _, mb in curve),
            'mkldnn_cache_num': os.environ.get('MXNET_MKLDNN_CACHE_NUM'),
            'faces': num_faces, 'detections_sha1': digest.hexdigest()[:16],
            'ms_per_call': round(seconds / (warmup + calls) * 1000.0, 1), 'curve': curve}


def _run_child(backend, calls, warmup, every, seed, unbounded):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    if unbounded:
        env['MXNET_MKLDNN_CACHE_NUM'] = '-1'
        env['RETINAFACE_MALLOC_TRIM'] = '0'
    command = [sys.executable, '-m', 'bench.bench_memory', '--child', '--backend', backend,
               '--calls', str(calls), '--warmup', str(warmup), '--every', str(every),
               '--seed', str(seed)] + (['--unbounded'] if unbounded else [])
    result = subprocess.run(command, cwd=str(ROOT), env=env, capture_output=True, text=True,
                            timeout=3600)
    lines = [l for l in result.stdout.splitlines() if l.startswith(_ROW_MARK)]
    if result.returncode != 0 or not lines:
        raise RuntimeError('memory benchmark subprocess (%s) failed:\n%s'
                           % (backend, result.stderr[-2000:]))
    return json.loads(lines[-1][len(_ROW_MARK):])


def _onnxruntime_available():
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def run(quick=False, calls=None, warmup=None, every=None, seed=0, baseline=None,
        backends=None):
    """Rows per backend (see the module docstring)."""
    if not (SHARED / 'models' / 'mnet.25' / 'mnet.25-symbol.json').is_file():
        raise FileNotFoundError('the released mnet.25 is not in %s' % SHARED)
    calls = calls or (200 if quick else 2000)
    warmup = warmup if warmup is not None else (50 if quick else 200)
    every = every or max(1, calls // 20)
    baseline = (not quick) if baseline is None else baseline
    if backends is None:
        backends = ['mxnet'] + (['onnxruntime'] if _onnxruntime_available() else [])
    rows = [_run_child(backend, calls, warmup, every, seed, False) for backend in backends]
    if baseline:
        rows += [_run_child(backend, calls, warmup, every, seed, True) for backend in backends]
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='200 calls after 50 warm-up calls')
    parser.add_argument('--calls', type=int, default=None, help='measured calls (default 2000)')
    parser.add_argument('--warmup', type=int, default=None, help='warm-up calls (default 200)')
    parser.add_argument('--every', type=int, default=None, help='RSS sample interval in calls')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random sizes')
    parser.add_argument('--backend', action='append', default=None,
                        help='mxnet and/or onnxruntime (repeatable; default both if installed)')
    parser.add_argument('--baseline', action='store_true', default=None,
                        help='also run MXNet with the unbounded caches (default unless --quick)')
    parser.add_argument('--child', action='store_true', help='internal: one backend in-process')
    parser.add_argument('--unbounded', action='store_true', help='internal, with --child')
    args = parser.parse_args(argv)
    if args.child:
        row = child_row(args.backend[0], args.calls, args.warmup, args.every, args.seed,
                        args.unbounded)
        print(_ROW_MARK + json.dumps(row), flush=True)
        return 0
    rows = run(args.quick, args.calls, args.warmup, args.every, args.seed, args.baseline,
               args.backend)
    print_rows([{k: v for k, v in row.items() if k != 'curve'} for row in rows])
    for row in rows:
        print('%s: RSS curve (calls after warm-up, MB): %s' % (row['name'], row['curve']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
