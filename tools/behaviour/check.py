"""Prove that a change of the code's layout left its behaviour alone, bit for bit.

Every ``record_*.py`` beside this file writes what one part of the pipeline produces (named
arrays in an ``.npz``) for a source tree. This script runs each recorder twice, on a checkout
of a reference commit and on the working tree, and compares the arrays exactly (same names,
dtypes, shapes and bytes)::

    python tools/behaviour/check.py                 # every recorder, reference = --base
    python tools/behaviour/check.py --only inference --keep /tmp/behaviour

The reference checkout is a ``git worktree`` in a temporary folder with its own Cython
kernels; the recorders run with the same interpreter. Exit status 0 when every recorder's
output is identical, 1 otherwise (the differing names are listed), 2 on errors.

Recorder contract: ``record_NAME.py --tree DIR --shared DIR --work DIR --out FILE.npz``; it
imports the code of ``--tree`` (and only that), reads real data from ``--shared``, may write
scratch files under ``--work`` and must give the same arrays for the same tree every time.
"""
import argparse
import glob
import logging
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
#: the last commit of the layout before the library redesign
DEFAULT_BASE = 'e438269'

logger = logging.getLogger('behaviour')


def recorders():
    """``{name: path}`` of the recorders beside this file."""
    found = {}
    for path in sorted(glob.glob(os.path.join(HERE, 'record_*.py'))):
        found[os.path.basename(path)[len('record_'):-len('.py')]] = path
    return found


def checkout(base, folder):
    """A work tree of ``base`` in ``folder`` with its Cython kernels built."""
    subprocess.run(['git', '-C', ROOT, 'worktree', 'add', '--detach', '--force', folder, base],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, 'setup.py', '-q', 'build_ext', '--inplace'], cwd=folder,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def remove_checkout(folder):
    subprocess.run(['git', '-C', ROOT, 'worktree', 'remove', '--force', folder],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(folder, ignore_errors=True)


def record(path, tree, shared, work, out):
    """Run one recorder on ``tree``; its log goes to ``out + '.log'``."""
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, PYTHONHASHSEED='0', OMP_NUM_THREADS=os.environ.get(
        'OMP_NUM_THREADS', '1'))
    env.pop('PYTHONPATH', None)
    with open(out + '.log', 'w') as log:
        done = subprocess.run([sys.executable, path, '--tree', tree, '--shared', shared,
                               '--work', work, '--out', out], cwd=tree, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError('%s failed on %s (exit %d); log: %s.log'
                           % (os.path.basename(path), tree, done.returncode, out))


def differences(reference, candidate):
    """Names whose arrays differ (missing on one side, other dtype, shape or bytes)."""
    with np.load(reference, allow_pickle=False) as a, np.load(candidate, allow_pickle=False) as b:
        names = sorted(set(a.files) | set(b.files))
        differing = []
        for name in names:
            if name not in a.files or name not in b.files:
                differing.append('%s (only in %s)' % (name, 'reference' if name in a.files
                                                     else 'working tree'))
                continue
            x, y = a[name], b[name]
            if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                differing.append('%s (%s%s vs %s%s)' % (name, x.dtype, x.shape, y.dtype, y.shape))
        return names, differing


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--base', default=DEFAULT_BASE, help='reference commit')
    parser.add_argument('--only', nargs='+', metavar='NAME', default=None,
                        help='recorders to run (default: all of %s)' % ', '.join(recorders()))
    parser.add_argument('--shared', default=os.path.join(os.path.dirname(ROOT), 'shared'),
                        help='the real data folder')
    parser.add_argument('--keep', default=None, metavar='DIR',
                        help='write the recordings and logs here and keep them')
    return parser.parse_args(argv)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = parse_args(argv)
    chosen = recorders()
    if args.only:
        unknown = sorted(set(args.only) - set(chosen))
        if unknown:
            sys.exit('--only: no recorder named %s (known: %s)'
                     % (', '.join(unknown), ', '.join(chosen)))
        chosen = {name: chosen[name] for name in args.only}
    if not os.path.isdir(args.shared):
        sys.exit('--shared %s is not a folder (the real data the recorders read)' % args.shared)
    out_dir = args.keep or tempfile.mkdtemp(prefix='behaviour-')
    os.makedirs(out_dir, exist_ok=True)
    base_tree = tempfile.mkdtemp(prefix='behaviour-base-')
    failed = False
    try:
        checkout(args.base, base_tree)
        for name, path in chosen.items():
            files = {}
            for side, tree in (('reference', base_tree), ('working', ROOT)):
                files[side] = os.path.join(out_dir, '%s-%s.npz' % (name, side))
                record(path, tree, os.path.abspath(args.shared),
                       os.path.join(out_dir, 'work-%s-%s' % (name, side)), files[side])
            names, differing = differences(files['reference'], files['working'])
            if differing:
                failed = True
                logger.info('%-12s DIFFERS in %d of %d arrays: %s', name, len(differing),
                            len(names), '; '.join(differing[:20]))
            else:
                logger.info('%-12s identical (%d arrays)', name, len(names))
    except (RuntimeError, subprocess.CalledProcessError) as err:
        logger.error('%s', err)
        return 2
    finally:
        remove_checkout(base_tree)
        if not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
