"""Record the parameters ``train.py`` of a source tree reaches after 20 iterations.

Two short runs of the tree's own ``train.py`` (a subprocess in the tree, so only its code is
used), mnet, 2 images per batch, ``--seed 0``, no loader worker process, one thread, on
``<shared>/data/dlib_faces`` (4 photos and their mirrored copies):

* ``scratch``: from the initialiser;
* ``finetune``: from the released mnet.25 (``--pretrained <shared>/models/mnet.25/mnet.25``).

Each run's final checkpoint (the highest-numbered ``<prefix>-NNNN.params``: a run stopped by
``--max_iters`` ends with a checkpoint) is stored array by array as ``<run>/<arg|aux>:<name>``,
with its number as ``<run>/checkpoint``.
Only flags that every tree since the library redesign accepts are passed.

Usage (see tools/behaviour/check.py for the contract)::

    python tools/behaviour/record_training.py --tree . --shared ../shared --work /tmp/w \\
        --out /tmp/training.npz
"""
import argparse
import logging
import os
import re
import shutil
import subprocess
import sys

import numpy as np

logger = logging.getLogger('record_training')

ITERATIONS = 20
#: train.py flags shared by both runs (paths are added per run)
COMMON_FLAGS = ('--network', 'mnet', '--batch_images', '2', '--workers', '0', '--seed', '0',
                '--max_iters', str(ITERATIONS), '--frequent', '5')


def run_flags(shared):
    """``{run name: extra train.py flags}``."""
    release = os.path.join(shared, 'models', 'mnet.25', 'mnet.25')
    return {'scratch': [], 'finetune': ['--pretrained', release, '--pretrained_epoch', '0']}


def train(tree, shared, work, name, extra):
    """Run ``train.py`` of ``tree`` into ``work/name``; returns its checkpoint prefix."""
    folder = os.path.join(work, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    prefix = os.path.join(folder, 'm')
    command = [sys.executable, os.path.join(tree, 'train.py'), *COMMON_FLAGS,
               '--dataset_path', os.path.join(shared, 'data', 'dlib_faces'),
               '--root_path', folder, '--prefix', prefix, *extra]
    env = dict(os.environ, OMP_NUM_THREADS='1', MXNET_CPU_WORKER_NTHREADS='1',
               PYTHONHASHSEED='0')
    logger.info('%s', ' '.join(command))
    done = subprocess.run(command, cwd=tree, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    logger.info('%s', done.stdout[-4000:])
    if done.returncode != 0:
        raise RuntimeError('train.py (%s) exited with %d' % (name, done.returncode))
    return prefix


def final_checkpoint(prefix):
    """``(number, {'arg:name' | 'aux:name': array})`` of the run's last checkpoint."""
    import mxnet as mx
    pattern = re.compile(re.escape(os.path.basename(prefix)) + r'-(\d{4})\.params$')
    numbers = [int(match.group(1)) for match in map(pattern.match,
                                                    os.listdir(os.path.dirname(prefix))) if match]
    if not numbers:
        raise RuntimeError('train.py wrote no checkpoint %s-NNNN.params' % prefix)
    params = mx.nd.load('%s-%04d.params' % (prefix, max(numbers)))
    return max(numbers), {key: value.asnumpy() for key, value in params.items()}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tree', required=True, help='source tree whose train.py runs')
    parser.add_argument('--shared', required=True, help='the real data folder')
    parser.add_argument('--work', required=True, help='scratch folder')
    parser.add_argument('--out', required=True, help='.npz to write')
    return parser.parse_args(argv)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = parse_args(argv)
    tree, shared = os.path.abspath(args.tree), os.path.abspath(args.shared)
    arrays = {}
    for name, extra in run_flags(shared).items():
        prefix = train(tree, shared, os.path.abspath(args.work), name, extra)
        number, params = final_checkpoint(prefix)
        arrays['%s/checkpoint' % name] = np.array(number, dtype=np.int64)
        for key, value in params.items():
            arrays['%s/%s' % (name, key)] = value
    np.savez(args.out, **arrays)
    logger.info('%d arrays written to %s', len(arrays), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
