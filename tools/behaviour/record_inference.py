"""Record what the detector, ``test_widerface.py`` and ``evaluate_widerface.py`` produce.

Recorder of :mod:`tools.behaviour.check` (``--tree DIR --shared DIR --work DIR --out
FILE.npz``). It only uses what every version of the project has: the ``RetinaFace`` class of
``--tree`` (imported in this process) and the two CLIs of ``--tree`` (run as subprocesses), on
the released mnet.25 checkpoint on the CPU.

Arrays written (every detection as ``faces`` (N, 5) float32 and ``landmarks`` (N, 5, 2)):

* ``detect/<case>/<photo>``: ``detect()`` on every real photo of ``--shared`` (``images/`` and
  the dlib photos) with the plain defaults, a two-scale pyramid with flips, box voting and
  ``nocrop``;
* ``batch/<photo>``: ``detect_batch()`` over the dlib photos at once (images of one size share
  a forward);
* ``wider/mode<k>/<image>``: the bytes of each prediction file ``test_widerface.py`` writes on
  the dlib val split in modes 0 and 2 (``--mode``) and in its default mode (no ``--mode``:
  the original's mode 1), recorded as ``mode1``;
* ``eval/mode<k>/<setting>/ap`` and ``.../pr``: the evaluator's AP (parsed from its report)
  and PR table (``--curves``: threshold, precision, recall, proposals, recalled) on those files
  against ``data/dlib_faces/val/gt``.
"""
import argparse
import csv
import glob
import os
import re
import subprocess
import sys

import numpy as np

#: the checkpoint recorded, under --shared
CHECKPOINT = ('models', 'mnet.25', 'mnet.25')
#: val images tested by test_widerface.py in each mode (mode 1 at one thread: ~10 s an image)
WIDER_IMAGES = 2
#: detect() cases: name -> (constructor keywords, detect keywords)
DETECT_CASES = {
    'plain': ({}, {'threshold': 0.5}),
    'pyramid_flip': ({}, {'threshold': 0.3, 'scales': [0.5, 1.0], 'do_flip': True}),
    'vote': ({'vote': True}, {'threshold': 0.02, 'scales': [0.75, 1.0], 'do_flip': True}),
    'nocrop': ({'nocrop': True}, {'threshold': 0.5, 'scales': [0.8]}),
}
SETTINGS = ('easy', 'medium', 'hard')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tree', required=True, help='source tree whose code is recorded')
    parser.add_argument('--shared', required=True, help='the real data folder')
    parser.add_argument('--work', required=True, help='scratch folder')
    parser.add_argument('--out', required=True, help='the .npz written')
    return parser.parse_args(argv)


def photos(shared):
    """``{name: path}`` of the real photos, sorted by name."""
    paths = sorted(glob.glob(os.path.join(shared, 'images', '*.jpg')))
    paths += sorted(glob.glob(os.path.join(shared, 'data', 'dlib_faces', '*', 'images', '*',
                                           '*.jpg')))
    return {os.path.relpath(p, shared).replace(os.sep, '/'): p for p in paths}


def put_faces(arrays, key, result):
    faces, landmarks = result
    arrays[key + '/faces'] = np.asarray(faces)
    arrays[key + '/landmarks'] = np.asarray(landmarks)


def record_detector(tree, shared, arrays):
    sys.path.insert(0, tree)
    import cv2
    from retinaface import RetinaFace
    prefix = os.path.join(shared, *CHECKPOINT)
    images = {name: cv2.imread(path) for name, path in photos(shared).items()}
    for case, (build, call) in DETECT_CASES.items():
        detector = RetinaFace(prefix, 0, ctx_id=-1, **build)
        for name, image in images.items():
            put_faces(arrays, 'detect/%s/%s' % (case, name), detector.detect(image, **call))
    detector = RetinaFace(prefix, 0, ctx_id=-1)
    dlib = sorted(name for name in images if name.startswith('data/'))
    results = detector.detect_batch([images[name] for name in dlib], threshold=0.5)
    for name, result in zip(dlib, results):
        put_faces(arrays, 'batch/%s' % name, result)


def run_cli(tree, argv, log):
    done = subprocess.run([sys.executable] + argv, cwd=tree, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    log.write('$ %s\n%s\n' % (' '.join(argv), done.stdout))
    if done.returncode != 0:
        raise SystemExit('%s exited %d:\n%s' % (argv[0], done.returncode, done.stdout[-3000:]))
    return done.stdout


def record_wider(tree, shared, work, arrays, log):
    prefix = os.path.join(shared, *CHECKPOINT)
    split = os.path.join(shared, 'data', 'dlib_faces')
    gt = os.path.join(split, 'val', 'gt')
    for mode, flags in (('mode0', ['--mode', '0']), ('mode1', []), ('mode2', ['--mode', '2'])):
        output = os.path.join(work, 'wout-' + mode)
        curves = os.path.join(work, 'curves-' + mode)
        run_cli(tree, ['test_widerface.py', '--prefix', prefix, '--epoch', '0', '--gpu', '-1',
                       '--dataset-path', split, '--image-set', 'val',
                       '--root-path', os.path.join(work, 'root'), '--output', output,
                       '--max-images', str(WIDER_IMAGES), '--image-workers', '1',
                       '--threads', '1', '--overwrite', '--quiet'] + flags, log)
        files = sorted(glob.glob(os.path.join(output, '*', '*.txt')))
        if len(files) != WIDER_IMAGES:
            raise SystemExit('%s: %d prediction files, expected %d'
                             % (output, len(files), WIDER_IMAGES))
        for path in files:
            with open(path, 'rb') as handle:
                arrays['wider/%s/%s' % (mode, os.path.relpath(path, output))] = \
                    np.frombuffer(handle.read(), dtype=np.uint8)
        report = run_cli(tree, ['evaluate_widerface.py', '--pred', output, '--gt', gt,
                                '--curves', curves, '--quiet'], log)
        for setting in SETTINGS:
            found = re.search(r'^%s\s+Val AP:\s+([0-9.]+|nan)' % setting.capitalize(), report,
                              re.MULTILINE)
            if found is None:
                raise SystemExit('no %s AP in the evaluator report:\n%s' % (setting, report))
            arrays['eval/%s/%s/ap' % (mode, setting)] = np.float64(found.group(1))
            arrays['eval/%s/%s/pr' % (mode, setting)] = read_pr_table(
                os.path.join(curves, 'pr_%s.csv' % setting))


def read_pr_table(path):
    """``(n, 5)`` float64: threshold, precision, recall, proposals, recalled per PR point."""
    columns = ('threshold', 'precision', 'recall', 'proposals', 'recalled')
    with open(path, newline='') as handle:
        rows = list(csv.DictReader(handle))
    return np.array([[float(row[c]) for c in columns] for row in rows],
                    dtype=np.float64).reshape(-1, len(columns))


def main(argv=None):
    args = parse_args(argv)
    tree, shared = os.path.abspath(args.tree), os.path.abspath(args.shared)
    os.makedirs(args.work, exist_ok=True)
    arrays = {}
    with open(os.path.join(args.work, 'cli.log'), 'w') as log:
        record_wider(tree, shared, os.path.abspath(args.work), arrays, log)
    record_detector(tree, shared, arrays)
    np.savez(args.out, **arrays)
    return 0


if __name__ == '__main__':
    sys.exit(main())
