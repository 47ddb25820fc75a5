"""Run every benchmark, print one table and write ``bench/results.json``.

Usage: ``python -m bench.run_all [--quick] [--only detect,data] [--out bench/results.json]``
(``make bench`` runs it). Benchmarks report; they never fail the test suite. A module whose
inputs are missing (e.g. ``../shared`` absent) or that raises is reported and skipped.
"""
import argparse
import importlib
import json
import logging
import os
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import print_rows  # noqa: E402

# module name -> what it measures (order = order of the report)
SUITES = [
    ('bench_detect', 'detect() latency at 640x480, split pre/forward/post, vs bare forward'),
    ('bench_options', 'detect() options (rotations, tiles, low-res, auto) beside plain detect()'),
    ('bench_deploy', 'ONNX runtime / NaiveEngine / INT8 forward, batch throughput'),
    ('bench_train', 'training throughput and step split'),
    ('bench_validation', 'validation during training: s per epoch, throughput with/without'),
    ('bench_network', 'OHEM op and forward+backward per image'),
    ('bench_data', 'loader throughput, crop and anchor labelling'),
    ('bench_kernels', 'NMS and IoU kernels'),
    ('bench_evaluation', 'WIDER FACE evaluation on the full val ground truth'),
    ('bench_reader', 'dataset reader on a 12,880-entry label file'),
    ('bench_memory', 'RSS of 2,000 detect() calls on random sizes, per backend, vs unbounded'),
]


def machine_info():
    import numpy
    info = {'python': platform.python_version(), 'platform': platform.platform(),
            'processor': platform.processor() or platform.machine(), 'cpu_count': os.cpu_count(),
            'numpy': numpy.__version__,
            'threads': {k: os.environ.get(k) for k in ('OMP_NUM_THREADS', 'MXNET_ENGINE_TYPE')},
            'date': time.strftime('%Y-%m-%d %H:%M:%S')}
    try:
        import mxnet
        info['mxnet'] = mxnet.__version__
    except ImportError:
        info['mxnet'] = None
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    info['cpu_model'] = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='fewer repetitions and smaller inputs (a smoke run)')
    parser.add_argument('--only', default='',
                        help='comma-separated suite names to run (e.g. detect,data); default all')
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results.json'),
                        help='where to write the JSON results (default bench/results.json)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')

    wanted = {'bench_' + s.strip().replace('bench_', '') for s in args.only.split(',') if s.strip()}
    results = {'machine': machine_info(), 'quick': args.quick, 'suites': {}}
    for module_name, description in SUITES:
        if wanted and module_name not in wanted:
            continue
        print('== %s: %s' % (module_name, description), flush=True)
        entry = {'description': description}
        t0 = time.perf_counter()
        try:
            module = importlib.import_module('bench.' + module_name)
            rows = module.run(quick=args.quick)
            print_rows(rows)
            entry['rows'] = rows
        except Exception as exc:  # a broken benchmark is reported, not fatal
            entry['error'] = '%s: %s' % (type(exc).__name__, exc)
            entry['traceback'] = traceback.format_exc()
            print('   skipped: %s' % entry['error'], flush=True)
        entry['seconds'] = round(time.perf_counter() - t0, 1)
        results['suites'][module_name] = entry
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(results, f, indent=2, default=str)
    os.replace(tmp, args.out)
    print('wrote %s' % args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
