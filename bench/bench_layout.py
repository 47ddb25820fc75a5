"""The hot paths of the working tree beside those of a reference commit, in one run.

    python -m bench.bench_layout [--base REV] [--rounds 3] [--repeat 20]

Checks out ``--base`` (default: the reference of ``tools/behaviour/check.py``) in a temporary
git worktree, then runs ``bench/layout_timing.py`` alternately on the reference and on the
working tree, ``--rounds`` times each, every run a fresh process with one CPU thread
(``OMP_NUM_THREADS=1``), and prints the median of each figure per tree and their ratio
(working / reference; below 1 is faster): ``detect()`` at 640x480, crop + label per training
image, and the training graph's forward + backward.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from bench.common import ROOT, SHARED
from tools.behaviour.check import DEFAULT_BASE, checkout, remove_checkout

FIGURES = ('detect_640x480_ms', 'crop_label_ms', 'forward_backward_ms')


def time_tree(tree, shared, repeat, out):
    env = dict(os.environ, OMP_NUM_THREADS='1', MXNET_SUBGRAPH_VERBOSE='0')
    env.pop('PYTHONPATH', None)
    done = subprocess.run([sys.executable, str(ROOT / 'bench' / 'layout_timing.py'), '--tree',
                           tree, '--shared', shared, '--out', out, '--repeat', str(repeat)],
                          env=env, cwd=tree, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError('timing %s failed: %s' % (tree, (done.stderr.strip().splitlines()
                                                            or ['no output'])[-1]))
    with open(out) as f:
        return json.load(f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--base', default=DEFAULT_BASE, help='reference commit')
    parser.add_argument('--rounds', type=int, default=3, help='runs per tree, alternated')
    parser.add_argument('--repeat', type=int, default=20, help='timed calls per figure')
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        sys.exit('the real data folder %s is missing (the released mnet.25 and the dlib '
                 'photos are timed)' % SHARED)
    base_tree = tempfile.mkdtemp(prefix='bench-layout-')
    results = {'reference': [], 'working': []}
    try:
        checkout(args.base, base_tree)
        with tempfile.TemporaryDirectory() as scratch:
            for round_no in range(args.rounds):
                for side, tree in (('reference', base_tree), ('working', str(ROOT))):
                    out = os.path.join(scratch, '%s-%d.json' % (side, round_no))
                    results[side].append(time_tree(tree, str(SHARED), args.repeat, out))
    finally:
        remove_checkout(base_tree)
    print('%-22s %12s %12s %8s' % ('figure (median of %d)' % args.rounds, args.base, 'working',
                                   'ratio'))
    for figure in FIGURES:
        ref = float(np.median([r[figure] for r in results['reference']]))
        new = float(np.median([r[figure] for r in results['working']]))
        print('%-22s %10.1f ms %10.1f ms %8.3f' % (figure, ref, new, new / ref))
    return 0


if __name__ == '__main__':
    sys.exit(main())
