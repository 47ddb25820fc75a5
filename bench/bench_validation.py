"""Validation during training: its time per epoch, and training throughput with and without it.

Generates a sample set (rcnn.dataset.synthetic; 8 train / 30 val images, 4 / 10 with
``--quick``) and runs the same ``train.py`` command twice -- ``mnet`` at batch 2, 2 epochs,
fine-tuning the released mnet.25 when ``../shared`` has it (a detector whose validation sees
realistic numbers of boxes; from scratch otherwise) -- once with ``--val_set val --val_every 1``
(test mode 0) and once without. Reports, from each run's ``<prefix>-train-summary.json`` and
``<prefix>-val.csv``: training images/s (validation left out), validation seconds per epoch
and per image, and the wall time of each run (validation included).

Usage: ``python -m bench.bench_validation [--quick]``.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench.common import ROOT, SHARED, print_rows


def _train(data, prefix, pretrained, *extra):
    argv = [sys.executable, str(ROOT / 'train.py'), '--network', 'mnet', '--dataset_path', data,
            '--root_path', os.path.dirname(prefix), '--prefix', prefix, '--batch_images', '2',
            '--workers', '1', '--seed', '1', '--end_epoch', '2', '--frequent', '2']
    if pretrained:
        argv += ['--pretrained', pretrained, '--pretrained_epoch', '0', '--lr', '0.001']
    t0 = time.perf_counter()
    proc = subprocess.run(argv + list(extra), capture_output=True, text=True, cwd=str(ROOT))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError('train.py failed (%d): %s' % (proc.returncode, proc.stderr[-2000:]))
    with open('%s-train-summary.json' % prefix) as handle:
        return json.load(handle), wall


def run(quick=False):
    from rcnn.core.validation import read_val_rows, val_csv_path
    from rcnn.dataset.synthetic import make_sample_dataset
    n_train, n_val = (4, 10) if quick else (8, 30)
    release = SHARED / 'models' / 'mnet.25' / 'mnet.25'
    pretrained = str(release) if os.path.isfile(str(release) + '-symbol.json') else None
    work = tempfile.mkdtemp(prefix='bench_validation_')
    try:
        data = os.path.join(work, 'sample')
        make_sample_dataset(data, n_train=n_train, n_val=n_val, seed=0, workers=1,
                            progress=False)
        plain, plain_wall = _train(data, os.path.join(work, 'plain', 'm'), pretrained)
        prefix = os.path.join(work, 'val', 'm')
        watched, watched_wall = _train(data, prefix, pretrained, '--val_set', 'val',
                                       '--val_every', '1')
        rows = read_val_rows(val_csv_path(prefix))
        start = 'fine-tuned mnet.25' if pretrained else 'from scratch'
        per_epoch = [r['seconds'] for r in rows]
        return [
            {'name': 'train.py without validation (%s, batch 2)' % start,
             'images_per_s': round(plain['images_per_s'], 2),
             'train_s': round(plain['seconds'], 1), 'wall_s': round(plain_wall, 1)},
            {'name': 'train.py with --val_set val (%d images, mode 0)' % n_val,
             'images_per_s': round(watched['images_per_s'], 2),
             'train_s': round(watched['seconds'], 1),
             'validation_s': round(watched['validation_seconds'], 1),
             'wall_s': round(watched_wall, 1)},
            {'name': 'validation per epoch (%d val images)' % n_val,
             'seconds': ' '.join('%.1f' % s for s in per_epoch),
             's_per_image': round(sum(per_epoch) / max(1, len(per_epoch)) / n_val, 3),
             'hard_ap': ' '.join('%.3f' % r['hard'] for r in rows)},
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='a smaller set')
    print_rows(run(parser.parse_args().quick))
