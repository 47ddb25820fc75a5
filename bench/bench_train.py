"""Training throughput of ``mnet`` at 640x640, batch 8, on the CPU, and how a step splits.

One step = wait for the loader's batch + forward/backward (OHEM included) + SGD update +
metric update, exactly the Module calls of ``rcnn.core.trainer.Trainer``. The OHEM share is
timed inside its CustomOp (``rcnn.symbol.ohem``), which runs during the forward pass.
Data: the real dlib photos of ``../shared/data/dlib_faces/train`` with their mirrored copies
(8 records = one batch), cropped and labelled by the CropLoader's worker processes.

Workers comparison (``--compare-workers``, part of ``run()``): images/s with 0, 1 and 2 loader
workers and with train.py's default (:mod:`rcnn.core.cpu_share`), in one process whose MXNet
thread settings are the default plan's (set before mxnet is imported). One module trains on
batches of one loader per setting in turn, in blocks of steps (the first steps of a block,
served from that loader's prefetched batches, are not timed), round after round, so a
changing machine load hits every setting alike.

Defaults comparison (``--compare-defaults``): the step loop in separate processes (MXNet reads
its thread settings once, at import), alternately: MXNet's own defaults (2 loader workers,
``OMP_NUM_THREADS`` unset, i.e. MXNet's own thread choice) and train.py's rule
(:mod:`rcnn.core.cpu_share`).

Usage: ``python -m bench.bench_train [--quick] [--workers N] [--compare-workers]
[--compare-defaults]``.
"""
import argparse
import logging
import os
import sys
import time

from rcnn.core import cpu_share  # standard library only
from rcnn.utils import machine

#: set (by compare_defaults) in a child that must keep MXNet's own thread defaults
_NO_PLAN_ENV = 'RETINAFACE_BENCH_MXNET_THREAD_DEFAULTS'
_ROW_MARK = 'BENCH_TRAIN_ROW '

if 'mxnet' not in sys.modules and not os.environ.get(_NO_PLAN_ENV):
    _PLAN = cpu_share.configure_from_argv([])   # the default plan's threads, as train.py sets them
else:
    _PLAN = cpu_share.plan_cpu_share(machine.usable_cores(), cpu_share.count_gpus())

import numpy as np  # noqa: E402

from bench.common import ROOT, SHARED, print_rows  # noqa: E402

BATCH = 8


def _dlib_roidb(cfg):
    from rcnn.dataset import RetinaFaceDataset
    path = SHARED / 'data' / 'dlib_faces'
    if not path.exists():
        raise FileNotFoundError('real data %s not found (../shared is absent)' % path)
    imdb = RetinaFaceDataset('train', None, str(path), cfg)
    roidb = imdb.append_flipped_images(imdb.gt_roidb())
    while len(roidb) < BATCH:
        roidb = roidb + roidb
    return roidb


class _OhemTimer(object):
    """Accumulates the wall time spent in the OHEM CustomOp's forward."""

    def __init__(self):
        from rcnn.symbol import ohem
        self.ohem = ohem
        self.original = ohem._OHEMOp.forward
        self.seconds = 0.0

    def __enter__(self):
        timer = self

        def timed_forward(op, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return timer.original(op, *args, **kwargs)
            finally:
                timer.seconds += time.perf_counter() - t0

        self.ohem._OHEMOp.forward = timed_forward
        return self

    def __exit__(self, *exc):
        self.ohem._OHEMOp.forward = self.original


def _build(cfg, roidb, workers):
    import mxnet as mx
    from rcnn.core.loader import CropLoader, feature_symbols
    from rcnn.core.metric import build_train_metrics
    from rcnn.core.optimizer import init_module_optimizer
    from rcnn.core.param_policy import XAVIER
    from rcnn.symbol import get_symbol_train

    sym = get_symbol_train('mnet', cfg)
    feat_sym = feature_symbols(sym, cfg)
    loader = CropLoader(feat_sym, roidb, BATCH, shuffle=True, cfg=cfg, num_workers=workers,
                        seed=0, prefetch=2)
    mod = mx.mod.Module(sym, data_names=['data'],
                        label_names=[d.name for d in loader.provide_label], context=[mx.cpu()])
    mod.bind(data_shapes=loader.provide_data, label_shapes=loader.provide_label)
    mx.random.seed(0)
    mod.init_params(mx.init.Xavier(**XAVIER))
    init_module_optimizer(mod, 'local', {'learning_rate': 0.01, 'momentum': 0.9, 'wd': 0.0005,
                                         'rescale_grad': 1.0}, cfg.TRAIN.GRAPH_LR_WD_MULT)
    return mod, loader, build_train_metrics(cfg.RPN_FEAT_STRIDE)


def _next_batch(loader):
    try:
        return next(loader)
    except StopIteration:
        loader.reset()
        return next(loader)


def compare_workers(quick=False):
    """Rows: images/s per loader worker count (0, 1, 2, default), interleaved blocks."""
    import mxnet as mx
    from rcnn.config import generate_config

    cfg, _ = generate_config('mnet', 'retinaface')
    cfg.TRAIN.BATCH_IMAGES = BATCH
    roidb = _dlib_roidb(cfg) * 4
    settings = [('0 workers (inline)', 0), ('1 worker', 1), ('2 workers', 2),
                ('default: %d worker(s), OMP_NUM_THREADS=%s' % (
                    _PLAN.workers, os.environ.get('OMP_NUM_THREADS')), _PLAN.workers)]
    mod, first_loader, metrics = _build(cfg, roidb, settings[0][1])
    loaders = {0: first_loader}
    skip, timed = 3, (2 if quick else 4)
    rounds = 1 if quick else 3
    seconds = {name: [] for name, _ in settings}
    try:
        for _, workers in settings:
            if workers not in loaders:
                from rcnn.core.loader import CropLoader
                loaders[workers] = CropLoader(first_loader.feat_sym, roidb, BATCH, shuffle=True,
                                              cfg=cfg, num_workers=workers, seed=0, prefetch=2)
        for _ in range(rounds):
            for name, workers in settings:
                loader = loaders[workers]
                for step in range(skip + timed):
                    if step == skip:
                        t0 = time.perf_counter()
                    batch = _next_batch(loader)
                    mod.forward_backward(batch)
                    mod.update()
                    mod.update_metric(metrics, batch.label)
                    mx.nd.waitall()
                seconds[name].append(time.perf_counter() - t0)
    finally:
        for loader in loaders.values():
            loader.close()
    rows = []
    base = float(np.median(seconds[settings[1][0]]))
    for name, workers in settings:
        median = float(np.median(seconds[name]))
        rows.append({'name': 'train mnet 640x640 batch %d, %s' % (BATCH, name),
                     'images_per_s': round(timed * BATCH / median, 2),
                     'relative_to_1_worker': round(base / median, 3),
                     'block_s': [round(v, 2) for v in seconds[name]], 'steps_per_block': timed,
                     'rounds': rounds, 'cores': _PLAN.cores})
    return rows


def run(quick=False, workers=None, compare=True):
    """The step split with ``workers`` (default: the rule's), then :func:`compare_workers`."""
    rows = step_split(quick, _PLAN.workers if workers is None else workers)
    return rows + compare_workers(quick) if compare else rows


def step_split(quick=False, workers=1):
    import mxnet as mx
    from rcnn.config import generate_config

    cfg, _ = generate_config('mnet', 'retinaface')
    cfg.TRAIN.BATCH_IMAGES = BATCH
    roidb = _dlib_roidb(cfg)
    mod, loader, metrics = _build(cfg, roidb, workers)
    steps = 2 if quick else 6
    split = {'loader wait': [], 'forward+backward': [], 'update': [], 'metrics': [], 'OHEM': [],
             'step': []}
    try:
        with _OhemTimer() as ohem:
            for i in range(steps + 1):  # the first step warms up (graph, memory, workers)
                t0 = time.perf_counter()
                batch = _next_batch(loader)
                t1 = time.perf_counter()
                ohem_before = ohem.seconds
                mod.forward_backward(batch)
                mx.nd.waitall()
                t2 = time.perf_counter()
                mod.update()
                mx.nd.waitall()
                t3 = time.perf_counter()
                mod.update_metric(metrics, batch.label)
                t4 = time.perf_counter()
                if i == 0:
                    continue
                for key, value in (('loader wait', t1 - t0), ('forward+backward', t2 - t1),
                                   ('update', t3 - t2), ('metrics', t4 - t3),
                                   ('OHEM', ohem.seconds - ohem_before), ('step', t4 - t0)):
                    split[key].append(value * 1000.0)
    finally:
        loader.close()
    step_ms = float(np.median(split['step']))
    rows = [{'name': 'train mnet 640x640 batch %d CPU (%d loader workers)' % (BATCH, workers),
             'median_ms': step_ms, 'p10_ms': float(np.percentile(split['step'], 10)),
             'p90_ms': float(np.percentile(split['step'], 90)),
             'min_ms': float(np.min(split['step'])), 'repeat': steps,
             'images_per_s': round(BATCH * 1000.0 / step_ms, 2)}]
    for key in ('loader wait', 'forward+backward', 'OHEM', 'update', 'metrics'):
        values = split[key]
        label = '  of which OHEM (inside forward)' if key == 'OHEM' else '  ' + key
        rows.append({'name': label, 'median_ms': float(np.median(values)),
                     'p10_ms': float(np.percentile(values, 10)),
                     'p90_ms': float(np.percentile(values, 90)), 'min_ms': float(np.min(values)),
                     'repeat': steps,
                     'share_of_step': '%.1f%%' % (100.0 * np.median(values) / step_ms)})
    return rows


def compare_defaults(quick=False):
    """Rows: images/s of MXNet's defaults and of train.py's rule, one process per run."""
    import json
    import subprocess
    thread_vars = ('OMP_NUM_THREADS', 'MXNET_CPU_WORKER_NTHREADS', _NO_PLAN_ENV)
    base_env = {k: v for k, v in os.environ.items() if k not in thread_vars}
    settings = [('MXNet defaults: 2 loader workers, OMP_NUM_THREADS unset',
                 ['--workers', '2'], dict(base_env, **{_NO_PLAN_ENV: '1'})),
                ('train.py rule (%d worker(s), OMP_NUM_THREADS=%d)'
                 % (_PLAN.workers, _PLAN.omp_threads), [], base_env)]
    rounds = 1 if quick else 3
    results = {name: [] for name, _, _ in settings}
    for _ in range(rounds):
        for name, extra, env in settings:
            argv = [sys.executable, '-m', 'bench.bench_train', '--child-step-split'] + extra
            if quick:
                argv.append('--quick')
            done = subprocess.run(argv, env=env, capture_output=True, text=True,
                                  cwd=str(ROOT))
            if done.returncode != 0:
                raise RuntimeError('bench_train child failed: %s' % done.stderr[-2000:])
            line = [l for l in done.stdout.splitlines() if l.startswith(_ROW_MARK)][-1]
            results[name].append(json.loads(line[len(_ROW_MARK):]))
    rows = []
    base = float(np.median([r['images_per_s'] for r in results[settings[0][0]]]))
    for name, _, _ in settings:
        runs = results[name]
        median = float(np.median([r['images_per_s'] for r in runs]))
        rows.append({'name': 'train mnet 640x640 batch %d, %s' % (BATCH, name),
                     'images_per_s': round(median, 2), 'relative_to_mxnet_defaults':
                     round(median / base, 3),
                     'runs_images_per_s': [r['images_per_s'] for r in runs],
                     'loader_wait_share': [r['loader_wait_share'] for r in runs],
                     'omp_threads': runs[0]['omp_threads'], 'rounds': rounds})
    return rows


def _child_step_split(quick, workers):
    import json
    rows = step_split(quick, _PLAN.workers if workers is None else workers)
    wait = [r for r in rows if r['name'].strip() == 'loader wait'][0]
    print(_ROW_MARK + json.dumps({'images_per_s': rows[0]['images_per_s'],
                                  'loader_wait_share': wait['share_of_step'],
                                  'omp_threads': os.environ.get('OMP_NUM_THREADS', 'unset')}),
          flush=True)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='2 measured steps instead of 6')
    parser.add_argument('--workers', type=int, default=None,
                        help='loader worker processes of the step split (default: train.py\'s '
                             'rule, %d here)' % _PLAN.workers)
    parser.add_argument('--compare-workers', action='store_true',
                        help='only the images/s of 0, 1, 2 workers and the default')
    parser.add_argument('--compare-defaults', action='store_true',
                        help='only the images/s of MXNet\'s defaults (2 workers, its own '
                             'threads) against train.py\'s rule, in separate processes')
    parser.add_argument('--child-step-split', action='store_true', help=argparse.SUPPRESS)
    cli = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if cli.child_step_split:
        _child_step_split(cli.quick, cli.workers)
    elif cli.compare_defaults:
        print_rows(compare_defaults(quick=cli.quick))
    elif cli.compare_workers:
        print_rows(compare_workers(quick=cli.quick))
    else:
        print_rows(run(quick=cli.quick, workers=cli.workers))
