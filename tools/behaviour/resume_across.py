"""A checkpoint written by a reference commit's ``train.py`` resumes under the working tree's
exactly as under the reference's own.

    python tools/behaviour/resume_across.py [--base REV] [--shared DIR]

The reference's ``train.py`` trains mnet for 5 iterations on the dlib photos (seed 0, one
loader worker, a checkpoint at 5, an lr step inside the run); the checkpoint is copied, and
both trees' ``train.py --resume`` continue it to iteration 12. Exit status 0 when the final
``.params`` / ``.states`` bytes and the final parameter digest are the same, 1 otherwise.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from tools.behaviour.check import DEFAULT_BASE, ROOT, checkout, remove_checkout  # noqa: E402

DIGEST = re.compile(r'final parameter digest \(rank 0 of 1\): ([0-9a-f]+)')


def train(tree, prefix, shared, extra):
    """Run ``tree``'s train.py; returns its log text."""
    argv = [sys.executable, os.path.join(tree, 'train.py'), '--network', 'mnet', '--workers',
            '1', '--seed', '0', '--dataset_path', os.path.join(shared, 'data', 'dlib_faces'),
            '--batch_images', '1', '--frequent', '1', '--prefix', prefix] + extra
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('PYTHONPATH', None)
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError('train.py of %s failed (exit %d): %s' % (
            tree, done.returncode, (done.stderr.strip().splitlines() or ['no output'])[-1]))
    return done.stdout + done.stderr


def final_files(prefix):
    """``{file name: bytes}`` of the last checkpoint's .params and .states."""
    last = sorted(glob.glob(prefix + '-[0-9][0-9][0-9][0-9].params'))[-1][:-len('.params')]
    files = {}
    for suffix in ('.params', '.states'):
        with open(last + suffix, 'rb') as handle:
            files[os.path.basename(last) + suffix] = handle.read()
    return files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--base', default=DEFAULT_BASE, help='reference commit')
    parser.add_argument('--shared', default=os.path.join(os.path.dirname(ROOT), 'shared'),
                        help='the real data folder')
    args = parser.parse_args(argv)
    shared = os.path.abspath(args.shared)
    work = tempfile.mkdtemp(prefix='resume-across-')
    base_tree = os.path.join(work, 'reference')
    try:
        checkout(args.base, base_tree)
        first = os.path.join(work, 'first')
        os.makedirs(first)
        train(base_tree, os.path.join(first, 'm'), shared,
              ['--max_iters', '5', '--checkpoint_iters', '5', '--lr_step', '1,2'])
        results = {}
        for side, tree in (('reference', base_tree), ('working', ROOT)):
            folder = os.path.join(work, 'resumed-by-' + side)
            shutil.copytree(first, folder, ignore=shutil.ignore_patterns('*.lock', '*.log'))
            log = train(tree, os.path.join(folder, 'm'), shared, ['--max_iters', '12', '--resume'])
            match = DIGEST.search(log)
            results[side] = (match.group(1) if match else None, final_files(
                os.path.join(folder, 'm')))
    except RuntimeError as err:
        print(err, file=sys.stderr)
        return 2
    finally:
        remove_checkout(base_tree)
        shutil.rmtree(work, ignore_errors=True)
    same = results['reference'] == results['working']
    print('resume of a %s checkpoint: %s (final digest %s / %s)' % (
        args.base, 'identical' if same else 'DIFFERS', results['reference'][0],
        results['working'][0]))
    return 0 if same else 1


if __name__ == '__main__':
    sys.exit(main())
