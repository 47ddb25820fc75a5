"""Recorder (see check.py): what ``train.py`` of a tree writes, byte for byte where it can be.

Runs the tree's ``train.py`` (CPU, one loader worker, ``--seed 0``) on the dlib photos of
``--shared`` in three scenarios:

* ``scratch``: 20 iterations from scratch, a checkpoint every 5, validation of every epoch
  checkpoint and the final one on 2 val images (the best checkpoint kept);
* ``pretrained``: 6 iterations fine-tuning the released mnet.25, batch 2;
* ``resume``: 5 iterations, then ``--resume`` to 12, across an epoch end and an lr step.

and stores, per scenario: the bytes of every ``.params`` / ``.states`` / symbol / recipe file
(the best checkpoint's too), every training record, summary and best-checkpoint sidecar
without their clock fields (``saved_at``, seconds, images/s) and without the fields that
carry the merged config and what ``--resume`` remembers (:data:`RUN_MEMORY_KEYS`: the
records and recipes store them on purpose, other trees may not), the metrics and validation
tables without their timing columns, the sequence of "saved checkpoint" log lines and the
final parameter digest. Paths inside the work folder are written as ``<work>``.
"""
import argparse
import csv
import json
import os
import re
import subprocess
import sys

import numpy as np

#: fields that hold wall-clock figures, left out of the comparison
CLOCK_KEYS = {'saved_at', 'seconds', 'images_per_s', 'validation_seconds'}
#: metrics / validation table columns that are timings
CLOCK_COLUMNS = {'samples_per_s', 'data_s', 'step_s', 'seconds'}
#: record / recipe fields holding the merged config and the options ``--resume`` takes from a
#: checkpoint: added by design, so left out when comparing trees
RUN_MEMORY_KEYS = {'config', 'config_overrides', 'data_digest', 'flip', 'keep_outside_boxes',
                   'shuffle', 'validation_options', 'wd', 'training_config'}
BINARY_SUFFIXES = ('.params', '.states', '-symbol.json')


def scenarios(shared):
    """name -> list of train.py argument lists (run in order on one prefix)."""
    data = ['--dataset_path', os.path.join(shared, 'data', 'dlib_faces')]
    base = ['--network', 'mnet', '--workers', '1', '--seed', '0', *data]
    return {
        'scratch': [base + ['--batch_images', '1', '--max_iters', '20', '--checkpoint_iters',
                            '5', '--frequent', '5', '--val_set', 'val', '--val_images', '2']],
        'pretrained': [base + ['--batch_images', '2', '--max_iters', '6', '--frequent', '2',
                               '--pretrained', os.path.join(shared, 'models', 'mnet.25',
                                                            'mnet.25'),
                               '--pretrained_epoch', '0']],
        'resume': [base + ['--batch_images', '1', '--max_iters', '5', '--checkpoint_iters', '5',
                           '--lr_step', '1,2', '--frequent', '1'],
                   base + ['--batch_images', '1', '--max_iters', '12', '--resume',
                           '--frequent', '1']],
    }


def _without_clock(value):
    if isinstance(value, dict):
        return {k: _without_clock(v) for k, v in value.items() if k not in CLOCK_KEYS}
    if isinstance(value, list):
        return [_without_clock(v) for v in value]
    return value


def _as_array(data):
    return np.frombuffer(data, dtype=np.uint8).copy()


def _text_array(text, work):
    return _as_array(text.replace(work, '<work>').encode())


def _table(path):
    """Non-timing columns of a CSV table -> (header text, float64 array; empty cell NaN)."""
    with open(path, newline='') as handle:
        rows = list(csv.reader(handle))
    keep = [i for i, name in enumerate(rows[0]) if name not in CLOCK_COLUMNS]
    values = [[float(row[i]) if row[i] != '' else np.nan for i in keep] for row in rows[1:]]
    return ','.join(rows[0][i] for i in keep), np.array(values, dtype=np.float64)


def record_folder(folder, work, name):
    """Arrays of every file train.py wrote into ``folder``."""
    arrays = {}
    for file_name in sorted(os.listdir(folder)):
        path = os.path.join(folder, file_name)
        key = '%s/%s' % (name, file_name)
        if file_name.endswith(BINARY_SUFFIXES):
            with open(path, 'rb') as handle:
                arrays[key] = _as_array(handle.read())
        elif file_name.endswith('.json'):
            with open(path) as handle:
                content = _without_clock(json.load(handle))
            if file_name.endswith(('.train.json', '-recipe.json')):
                content = {k: v for k, v in content.items() if k not in RUN_MEMORY_KEYS}
            arrays[key] = _text_array(json.dumps(content, sort_keys=True), work)
        elif file_name.endswith('.csv'):
            header, values = _table(path)
            arrays[key + ':header'] = _text_array(header, work)
            arrays[key] = values
    return arrays


def run_scenario(tree, work, name, runs):
    """Run ``runs`` of train.py on prefix ``<work>/<name>/m``; returns the arrays."""
    folder = os.path.join(work, name)
    os.makedirs(folder, exist_ok=True)
    prefix = os.path.join(folder, 'm')
    saved, digests = [], []
    env = dict(os.environ)
    env.pop('CUDA_VISIBLE_DEVICES', None)
    for argv in runs:
        done = subprocess.run([sys.executable, os.path.join(tree, 'train.py'), '--prefix',
                               prefix, '--root_path', folder, *argv], cwd=tree, env=env,
                              capture_output=True, text=True)
        sys.stdout.write(done.stdout)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise SystemExit('train.py %s: exit %d' % (' '.join(argv), done.returncode))
        saved += re.findall(r'saved checkpoint (\S+ \(.*?\): .*)', done.stdout)
        digests += re.findall(r'final parameter digest \(rank 0 of 1\): ([0-9a-f]{64})',
                              done.stdout)
    arrays = record_folder(folder, work, name)
    arrays['%s/saved-checkpoint-lines' % name] = _text_array('\n'.join(saved), work)
    arrays['%s/final-digests' % name] = _text_array('\n'.join(digests), work)
    return arrays


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tree', required=True)
    parser.add_argument('--shared', required=True)
    parser.add_argument('--work', required=True)
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    work = os.path.abspath(args.work)
    arrays = {}
    for name, runs in scenarios(os.path.abspath(args.shared)).items():
        arrays.update(run_scenario(os.path.abspath(args.tree), work, name, runs))
    np.savez(args.out, **arrays)
    return 0


if __name__ == '__main__':
    sys.exit(main())
