"""Training step time per image of every model switch, beside its base, in one process.

Each switch set trains ``--iters`` iterations (batch 1, a square crop) on the real dlib photos
of ``../shared/data/dlib_faces`` through :func:`rcnn.core.training_setup.run_training`, as
train.py does; the time of a step (forward, backward, SGD update, metric update: the
``step_s`` column of ``<prefix>-metrics.csv``) is taken for every iteration but the first,
which binds and allocates. ``mnet`` switches are compared with the ``net3`` base (the
released mnet.25 layout); the paper configuration (``resnet`` with ``USE_DCN=2`` and
``RAC_RETINA``) with the released R50 layout (``resnet`` base). The base runs first and
last, so a change of machine load during the run shows as two different base figures.

Usage: ``python -m bench.bench_family_train [--quick] [--iters N] [--crop S]``.
"""
import argparse
import contextlib
import csv
import io
import os
import shutil
import tempfile

import numpy as np

from bench.common import SHARED, print_rows

#: (row name, network, the original's switches)
SWITCH_SETS = [
    ('boxes only (FACE_LANDMARK=False)', 'mnet', {'FACE_LANDMARK': False}),
    ('USE_BLUR + USE_OCCLUSION', 'mnet', {'USE_BLUR': True, 'USE_OCCLUSION': True}),
    ('RAC_SSH2 + DENSE_ANCHOR', 'mnet', {'RPN_ANCHOR_CFG': 'RAC_SSH2', 'DENSE_ANCHOR': True}),
    ('RAC_SSH3', 'mnet', {'RPN_ANCHOR_CFG': 'RAC_SSH3'}),
    ('RAC_RETINA', 'mnet', {'RPN_ANCHOR_CFG': 'RAC_RETINA'}),
    ('USE_DCN=1', 'mnet', {'USE_DCN': 1}),
    ('USE_DCN=2', 'mnet', {'USE_DCN': 2}),
    ('USE_MAXOUT=1', 'mnet', {'USE_MAXOUT': 1}),
    ('USE_MAXOUT=2', 'mnet', {'USE_MAXOUT': 2}),
    ('SHARE_WEIGHT_BBOX + _LANDMARK', 'mnet', {'SHARE_WEIGHT_BBOX': True,
                                                'SHARE_WEIGHT_LANDMARK': True}),
    ('LR_MODE=1 + HEAD_MODULE=RF + CFR=2', 'mnet', {'LR_MODE': 1, 'HEAD_MODULE': 'RF',
                                                    'CONTEXT_FILTER_RATIO': 2}),
    ('RANDOM_FEAT_STRIDE', 'mnet', {'RANDOM_FEAT_STRIDE': True}),
    ('paper: USE_DCN=2 + RAC_RETINA', 'resnet', {'USE_DCN': 2, 'RPN_ANCHOR_CFG': 'RAC_RETINA'}),
]
BASES = {'mnet': 'mnet net3 base (released mnet.25 layout)',
         'resnet': 'resnet base (released R50 layout)'}


def step_seconds(prefix, network, switches, crop, iters, dataset_path):
    """``step_s`` of every iteration after the first (seconds, batch 1)."""
    from rcnn.core.train_options import short_run_options
    from rcnn.core.training_setup import run_training
    options = short_run_options(network, switches, dataset_path, prefix, crop, iters)
    # the run logs every step to stdout (train.py's console handler): keep the table alone there
    with contextlib.redirect_stdout(io.StringIO()):
        run_training(options)
    with open('%s-metrics.csv' % prefix, newline='') as handle:
        return [float(row['step_s']) for row in csv.DictReader(handle)][1:]


def _row(name, seconds, base_ms=None, crop=None):
    times = np.asarray(seconds) * 1000.0
    row = {'name': name, 'median_ms': float(np.median(times)),
           'p10_ms': float(np.percentile(times, 10)), 'p90_ms': float(np.percentile(times, 90)),
           'min_ms': float(times.min()), 'repeat': len(times), 'crop': crop,
           'unit': 'ms per image'}
    if base_ms is not None:
        row['vs_base'] = '%.2fx' % (row['median_ms'] / base_ms)
    return row


def run(quick=False, iters=None, crop=None, resnet_crop=None):
    dataset = SHARED / 'data' / 'dlib_faces'
    if not dataset.exists():
        raise FileNotFoundError('real data %s not found (../shared is absent)' % dataset)
    iters = iters or (3 if quick else 6)
    crop = crop or (160 if quick else 320)
    resnet_crop = resnet_crop or (64 if quick else 128)
    crops = {'mnet': crop, 'resnet': resnet_crop}
    work = tempfile.mkdtemp(prefix='bench-family-')
    rows = []
    try:
        def measure(name, network, switches):
            prefix = os.path.join(work, 'run%d' % len(rows), 'm')
            return step_seconds(prefix, network, switches, crops[network], iters, dataset)

        base_ms = {}
        for network in ('mnet', 'resnet'):
            seconds = measure(BASES[network], network, {})
            base_ms[network] = float(np.median(seconds)) * 1000.0
            rows.append(_row(BASES[network] + ' (first)', seconds, crop=crops[network]))
        for name, network, switches in SWITCH_SETS:
            rows.append(_row(name, measure(name, network, switches), base_ms[network],
                             crops[network]))
        for network in ('mnet', 'resnet'):
            rows.append(_row(BASES[network] + ' (last)', measure(BASES[network], network, {}),
                             base_ms[network], crops[network]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='fewer iterations, smaller crops')
    parser.add_argument('--iters', type=int, default=None, help='iterations per switch set')
    parser.add_argument('--crop', type=int, default=None, help='mnet crop side (pixels)')
    parser.add_argument('--resnet-crop', type=int, default=None, help='resnet crop side')
    args = parser.parse_args(argv)
    print_rows(run(args.quick, args.iters, args.crop, args.resnet_crop))


if __name__ == '__main__':
    main()
