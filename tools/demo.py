"""``make demo``: train mnet from scratch on a generated sample set, test, evaluate, draw.

    python tools/demo.py                 # the whole demo (about 17 minutes on 2 CPU cores)
    python tools/demo.py --plan-only     # print the plan and the commands, run nothing
    python tools/demo.py --skip-train    # test / evaluate / draw the last demo checkpoint again

Steps (each a real command line of the project; the plan printed first lists them):

1. set-up: ``make setup`` (run by ``make demo`` before this script);
2. the sample set: ``data/sample`` (400 train / 100 val images, seed 0) from
   :func:`tools.sample_data.make_sample_dataset`, reused when already generated with
   the same settings;
3. ``train.py``: ``mnet`` from scratch on the CPU -- an extension, not the original recipe
   (which starts from ImageNet MobileNet-0.25 weights, see the README's "Training recipe"); the
   original's crops, colour jitter, OHEM, losses and optimizer, with a schedule that fits a
   short run (lr 0.01, x0.1 at epoch 8, end at epoch 10, batch 8), stopped by
   ``--max_minutes`` if the machine is slow; it always ends with a checkpoint; it validates
   every epoch checkpoint on the first 30 val images (``--val_set val``, test mode 0) into
   ``<prefix>-val.csv`` and keeps the best one in ``<prefix>-best-*``;
4. ``test_widerface.py`` on the sample val split (mode 1, the original's default: image
   pyramid + flips + box voting);
5. ``evaluate_widerface.py`` against the generated ``val/gt/*.mat`` files (Easy / Medium /
   Hard as documented by the generator);
6. ``tools/detect.py`` draws the detections on a few val images into ``demo_out/pictures``,
   ``tools/plot_training.py`` the training curves into ``demo_out/training_curves.png`` (the
   evaluation of step 5 drew ``demo_out/pr_curves.png``);
7. a summary: iterations, losses at the start and the end, the validation AP per epoch, the
   three APs, where things are.

Every step's full output goes to ``demo_out/logs/<step>.log``; the console shows the plan,
a condensed progress and the summary, which is also written to ``demo_out/summary.json``.

Why these settings (measured on a shared 2-core CPU machine, sample set seed 0):

* training: ~13 images/s at 640x640, batch 8: the 952 iterations of 10 epochs take ~10 min;
  from scratch this reaches Easy / Medium / Hard AP 0.999 / 0.97 / 0.84 (seeds 0 and 1 alike),
  already 0.999 / 0.96 / 0.82 at epoch 8, so a slower machine stopped by the time budget
  still finds the drawn faces;
* test mode 1 takes ~90 s for the 100 val images and scores higher than mode 0 (~15 s; the
  one 1600-px scale upsamples these 300-1024-px images 2-5x): Easy 0.987 / Medium 0.958 /
  Hard 0.836 for the same checkpoint.
"""
import argparse
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rcnn.utils import cli  # noqa: E402
from rcnn.checkpoint.files import checkpoint_name, params_path  # noqa: E402
from rcnn.utils.cli import non_negative_int, positive_float, positive_int  # noqa: E402

__all__ = ['DemoPlan', 'parse_args', 'count_images_with_faces', 'make_plan', 'format_plan',
           'commands', 'parse_ap_lines', 'parse_test_line', 'loss_summary', 'pick_pictures',
           'format_summary', 'main']

#: test_widerface.py modes, as its --help names them
TEST_MODES = {0: 'fast: one scale, short side 1600, NMS',
              1: 'accurate: image pyramid + flips + box voting',
              2: 'image pyramid + flips, NMS'}
#: seconds per val image of each test mode for mnet on 2 CPU cores (measured, for the plan)
TEST_SECONDS_PER_IMAGE = {0: 0.35, 1: 0.9, 2: 0.9}
#: test mode of the validation during training, and its fixed cost per validation (seconds)
VAL_MODE = 0
VAL_OVERHEAD_S = 3.0
#: images per second of mnet training at 640x640 on 2 CPU cores (measured, for the plan)
TRAIN_IMAGES_PER_S = 12.0
#: marks a checkpoint prefix as the demo's (its files may be replaced by the next run)
DEMO_MARKER = '%s-demo.json'
#: train-summary.json's stopped_by, in words
STOP_REASONS = {'schedule': 'stopped at the end of the lr schedule',
                'max_minutes': 'stopped by the time budget (--train-minutes) before the end of '
                               'the schedule',
                'max_iters': 'stopped at --max-iters', 'end_epoch': 'stopped at the end epoch'}
#: settings of the detection pictures
PICTURE_THRESH = 0.5
#: detect.py scales of the pictures: the model learned faces from upscaled 640x640 crops, so
#: the small faces of the sample images are found at scale 2 (merged with scale 1 by NMS)
PICTURE_SCALES = ('1', '2')
SETTINGS = ('easy', 'medium', 'hard')

AP_LINE = re.compile(r'^\s*(Easy|Medium|Hard)\s+Val AP:\s*([0-9.]+|nan)', re.MULTILINE)
TEST_LINE = re.compile(r'(\d+) images \((\d+) detected, (\d+) resumed\) in ([0-9.]+) s: '
                       r'([0-9.]+) images/s(?:; recall at IoU 0\.5: ([0-9.]+|nan) '
                       r'\((\d+) / (\d+) faces\))?')
ITER_LINE = re.compile(r'Iter\[(\d+)\] Speed: ([0-9.]+) samples/sec lr=([0-9.eE+-]+)')


# ---------------------------------------------------------------------------- arguments
def parse_args(argv=None):
    parser = cli.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group('sample set')
    data.add_argument('--data', default='data/sample',
                      help='sample set folder, generated when missing (default %(default)s)')
    data.add_argument('--train-images', type=positive_int, default=400,
                      help='training images to generate (default %(default)s)')
    data.add_argument('--val-images', type=positive_int, default=100,
                      help='val images to generate (default %(default)s)')
    data.add_argument('--data-seed', type=non_negative_int, default=0,
                      help='seed of the generated set (default %(default)s)')

    train = parser.add_argument_group('training (train.py)')
    train.add_argument('--prefix', default='model/demo/mnet',
                       help='checkpoint prefix; the files of an earlier demo run there are '
                            'removed before training, anything else makes the demo refuse '
                            '(default %(default)s)')
    train.add_argument('--epochs', type=positive_int, default=10,
                       help='epochs of the flipped train set (default %(default)s)')
    train.add_argument('--decay-epoch', type=positive_int, default=8,
                       help='epoch where the lr drops x0.1 (default %(default)s; must be below '
                            '--epochs)')
    train.add_argument('--lr', type=positive_float, default=0.01,
                       help='base lr (default %(default)s)')
    train.add_argument('--batch-images', type=positive_int, default=8,
                       help='images per batch (default %(default)s)')
    train.add_argument('--train-minutes', type=positive_float, default=14.0,
                       help='time budget of training: train.py --max_minutes stops it there '
                            'with a checkpoint, even before the end of the schedule (default '
                            '%(default)s)')
    train.add_argument('--workers', type=non_negative_int, default=None,
                       help='loader worker processes (default: train.py\'s choice from the '
                            'cores and GPUs)')
    train.add_argument('--seed', type=non_negative_int, default=0,
                       help='seed of the initialisation and the loader (default %(default)s)')
    train.add_argument('--max-iters', type=positive_int, default=None,
                       help='stop training after this many iterations (smoke runs, tests)')
    train.add_argument('--val-subset', type=non_negative_int, default=30,
                       help='val images validated after every --val-every epochs during '
                            'training (train.py --val_images; 0: no validation during training; '
                            'default %(default)s)')
    train.add_argument('--val-every', type=positive_int, default=1,
                       help='validate every N-th epoch checkpoint (default %(default)s)')
    train.add_argument('--skip-train', action='store_true',
                       help='reuse the latest checkpoint of --prefix instead of training')

    test = parser.add_argument_group('test, evaluation, pictures')
    test.add_argument('--mode', type=int, choices=sorted(TEST_MODES), default=1,
                      help='test_widerface.py mode: ' + '; '.join(
                          '%d %s' % kv for kv in sorted(TEST_MODES.items()))
                      + ' (default %(default)s)')
    test.add_argument('--out', default='demo_out',
                      help='folder of the predictions, pictures, logs and summary (default '
                           '%(default)s)')
    test.add_argument('--pictures', type=non_negative_int, default=6,
                      help='val images drawn with their detections (default %(default)s)')
    parser.add_argument('--plan-only', action='store_true',
                        help='print the plan and the commands, run nothing')
    args = parser.parse_args(argv)
    if args.decay_epoch >= args.epochs:
        parser.error('--decay-epoch (%d) must be below --epochs (%d)'
                     % (args.decay_epoch, args.epochs))
    return args


# ---------------------------------------------------------------------------- the plan
class DemoPlan(object):
    """Everything the demo will do, with the derived numbers (paths absolute).

    Attributes:
        train_roidb: training images per epoch (generated train images x 2 for the flips).
        iters_per_epoch / total_iters: batches per epoch / in the schedule (or --max-iters).
        train_minutes: the estimate at TRAIN_IMAGES_PER_S, capped by the time budget.
    """

    def __init__(self, args, python=sys.executable):
        self.args = args
        self.python = python
        self.data = os.path.abspath(args.data)
        self.prefix = os.path.abspath(args.prefix)
        self.out = os.path.abspath(args.out)
        self.predictions = os.path.join(self.out, 'wout')
        self.pictures_dir = os.path.join(self.out, 'pictures')
        self.logs = os.path.join(self.out, 'logs')
        self.gt = os.path.join(self.data, 'val', 'gt')
        # train.py drops images without a box and adds the mirrored copies; before the set
        # exists, every generated image is assumed to have a face (an upper bound)
        label = os.path.join(self.data, 'train', 'label.txt')
        self.train_roidb_known = self.data_ready()
        self.train_roidb = 2 * (count_images_with_faces(label) if self.train_roidb_known
                                else args.train_images)
        self.iters_per_epoch = max(1, self.train_roidb // args.batch_images)
        # train.py's schedule: int(epoch * images / batch) iterations per lr step
        self.schedule_iters = int(args.epochs * self.train_roidb / args.batch_images)
        self.total_iters = self.schedule_iters if args.max_iters is None else \
            min(self.schedule_iters, args.max_iters)
        estimate = self.total_iters * args.batch_images / TRAIN_IMAGES_PER_S / 60.0
        self.train_minutes = min(estimate, args.train_minutes)
        self.test_minutes = args.val_images * TEST_SECONDS_PER_IMAGE[args.mode] / 60.0
        self.curves = os.path.join(self.out, 'training_curves.png')
        self.val_subset = min(args.val_subset, args.val_images)
        validations = 0 if not self.val_subset else \
            int(math.ceil(self.total_iters / float(self.iters_per_epoch))) // args.val_every + 1
        self.val_minutes = validations * (self.val_subset * TEST_SECONDS_PER_IMAGE[VAL_MODE]
                                          + VAL_OVERHEAD_S) / 60.0

    @property
    def lr_step(self):
        """train.py --lr_step: x0.1 at the decay epoch, end of training at --epochs."""
        return '%d,%d' % (self.args.decay_epoch, self.args.epochs)

    def data_ready(self):
        """True when ``data`` holds a generated set with the requested sizes and seed."""
        from tools.sample_data import MARKER_NAME
        marker = os.path.join(self.data, MARKER_NAME)
        try:
            with open(marker) as handle:
                info = json.load(handle)
        except (OSError, ValueError):
            return False
        wanted = {'train': self.args.train_images, 'val': self.args.val_images,
                  'seed': self.args.data_seed}
        return all(info.get(k) == v for k, v in wanted.items()) and all(
            os.path.isfile(os.path.join(self.data, split, 'label.txt'))
            for split in ('train', 'val'))


def count_images_with_faces(label_path):
    """Images of a RetinaFace ``label.txt`` with at least one box of positive width and height
    (the ones train.py keeps). Raises ``LabelFormatError`` (a ValueError) naming the file and
    line of a malformed line."""
    from rcnn.dataset.label_file import read_label_file
    parsed = read_label_file(label_path)
    sized = (parsed.face_rows[:, 2] > 0) & (parsed.face_rows[:, 3] > 0)
    return len(set(parsed.face_image[sized].tolist()))


def make_plan(args, python=sys.executable):
    return DemoPlan(args, python)


def _shown(path):
    """``path`` relative to the working directory when inside it (for the console)."""
    relative = os.path.relpath(path)
    return path if relative.startswith('..') else relative


def commands(plan, epoch='<final>', pictures=()):
    """The command lines of the steps (argv lists), keyed train / test / evaluate / draw.

    ``epoch``: checkpoint number the test and drawing use (known after training).
    """
    args = plan.args
    train = [plan.python, str(ROOT / 'train.py'), '--network', 'mnet',
             '--dataset_path', plan.data, '--image_set', 'train', '--prefix', plan.prefix,
             '--batch_images', str(args.batch_images), '--lr', repr(args.lr),
             '--lr_step', plan.lr_step,
             '--seed', str(args.seed), '--max_minutes', repr(args.train_minutes)]
    if args.workers is not None:
        train += ['--workers', str(args.workers)]
    if args.max_iters is not None:
        train += ['--max_iters', str(args.max_iters)]
    if plan.val_subset:
        train += ['--val_set', 'val', '--val_every', str(args.val_every), '--val_images',
                  str(plan.val_subset), '--val_mode', str(VAL_MODE)]
    test = [plan.python, str(ROOT / 'test_widerface.py'), '--prefix', plan.prefix,
            '--epoch', str(epoch), '--gpu', '-1', '--dataset-path', plan.data,
            '--image-set', 'val', '--mode', str(args.mode), '--output', plan.predictions,
            '--quiet', '--overwrite']     # the demo's own folder: never resume another model's
    evaluate = [plan.python, str(ROOT / 'evaluate_widerface.py'), '--pred', plan.predictions,
                '--gt', plan.gt, '--curves', plan.out, '--quiet']
    plot = [plan.python, str(ROOT / 'tools' / 'plot_training.py'), plan.prefix,
            '--out', plan.curves]
    # the images first: --scales takes every number after it
    draw = [plan.python, str(ROOT / 'tools' / 'detect.py')] + \
        (list(pictures) or ['<val images>']) + [
            '--prefix', plan.prefix, '--epoch', str(epoch), '--gpu', '-1',
            '--thresh', str(PICTURE_THRESH), '--out', plan.pictures_dir, '--json',
            '--scales'] + list(PICTURE_SCALES)
    return {'train': train, 'test': test, 'evaluate': evaluate, 'draw': draw, 'plot': plot}


def _command_text(argv):
    return ' '.join(_shown(a) if os.path.isabs(a) else a for a in argv)


def format_plan(plan):
    """The plan printed before anything runs: steps, sizes, time budget, command lines."""
    args = plan.args
    cmds = commands(plan)
    data_state = 'present, reused' if plan.data_ready() else 'generated now, a few seconds'
    stop = 'after %d iterations' % plan.total_iters if args.max_iters is not None else \
        'at the end of the schedule'
    total = plan.train_minutes + plan.val_minutes + plan.test_minutes + 1.0
    lines = [
        'RetinaFace demo: train mnet from scratch on a generated sample set, test, evaluate, '
        'draw.',
        'Plan (about %.0f min on 2 CPU cores; training capped at %g min):'
        % (max(total, 1), args.train_minutes),
        '  1. set-up          .venv and the Cython kernels (make setup)',
        '  2. sample set      %s: %d train / %d val images, seed %d (%s)' % (
            _shown(plan.data), args.train_images, args.val_images, args.data_seed, data_state),
        '  3. train mnet      from scratch (an extension: the original starts from ImageNet '
        'weights), %s%d images per epoch (flips included), batch %d: '
        '%s%d iterations = %d epochs;' % (
            '' if plan.train_roidb_known else 'at most ', plan.train_roidb, args.batch_images,
            '' if plan.train_roidb_known else 'at most ', plan.schedule_iters, args.epochs),
        '                     lr %g, x0.1 at epoch %d; stops %s or after %g minutes '
        '(~%.0f min at ~%g images/s)' % (args.lr, args.decay_epoch, stop, args.train_minutes,
                                         max(plan.train_minutes, 1), TRAIN_IMAGES_PER_S),
        '                     %s' % (
            'validates every %d epoch(s) on %d val images (mode %d, ~%.0f min in all), the best '
            'checkpoint kept' % (args.val_every, plan.val_subset, VAL_MODE,
                                 max(plan.val_minutes, 1))
            if plan.val_subset else 'no validation during training (--val-subset 0)'),
        '                     %s' % _command_text(cmds['train']),
        '  4. test on val     test_widerface.py mode %d (%s), %d images, ~%.0f min' % (
            args.mode, TEST_MODES[args.mode], args.val_images, max(plan.test_minutes, 1)),
        '                     %s' % _command_text(cmds['test']),
        '  5. evaluate        Easy / Medium / Hard AP against %s, PR curves %s' % (
            _shown(plan.gt), _shown(os.path.join(plan.out, 'pr_curves.png'))),
        '                     %s' % _command_text(cmds['evaluate']),
        '  6. draw            %d val images with their faces (score >= %g, scales %s) into %s'
        % (args.pictures, PICTURE_THRESH, ' and '.join(PICTURE_SCALES),
           _shown(plan.pictures_dir)),
        '                     training curves into %s' % _shown(plan.curves),
        '                     %s' % _command_text(cmds['plot']),
        '  7. summary         printed, and written to %s' % _shown(
            os.path.join(plan.out, 'summary.json')),
        'Full logs: %s/<step>.log' % _shown(plan.logs),
    ]
    return '\n'.join(lines)


# ---------------------------------------------------------------------------- parsing
def parse_ap_lines(text):
    """``{'easy': ap, 'medium': ap, 'hard': ap}`` from evaluate_widerface.py's output.

    Raises ValueError when one of the three lines is missing.
    """
    found = {name.lower(): float(value) for name, value in AP_LINE.findall(text)}
    missing = [s for s in SETTINGS if s not in found]
    if missing:
        raise ValueError('evaluate_widerface.py printed no AP line for %s' % ', '.join(missing))
    return {s: found[s] for s in SETTINGS}


def parse_test_line(text):
    """test_widerface.py's final line -> dict (images, seconds, images_per_s, recall, found,
    faces), or None when absent. The last such line wins."""
    matches = TEST_LINE.findall(text)
    if not matches:
        return None
    images, _, _, seconds, speed, recall, found, faces = matches[-1]
    return {'images': int(images), 'seconds': float(seconds), 'images_per_s': float(speed),
            'recall': float(recall) if recall else None,
            'found': int(found) if found else None, 'faces': int(faces) if faces else None}


def _mean_of(metrics, stem):
    values = [v for k, v in metrics.items() if k.startswith(stem + '_s') and v is not None]
    return sum(values) / len(values) if values else None


def loss_summary(metrics):
    """Stride-averaged ``acc``, ``box`` and ``landmark`` of a metric name -> value dict
    (train.py's RPNAcc_s*, RPNL1Loss_s*, RPNLandMarkL1Loss_s*); a missing one is None."""
    return {'acc': _mean_of(metrics, 'RPNAcc'), 'box': _mean_of(metrics, 'RPNL1Loss'),
            'landmark': _mean_of(metrics, 'RPNLandMarkL1Loss')}


def pick_pictures(label_path, images_dir, count):
    """``count`` val images with faces, spread over the face counts (few to many faces).

    Reads the val ``label.txt`` ('# event/name.jpg' lines, then one box per line); sorts the
    images with at least one face by number of faces (ties by name) and takes evenly spaced
    ones. Returns paths.
    """
    from rcnn.dataset.label_file import read_label_file
    parsed = read_label_file(label_path)
    entries = list(zip(parsed.image_names, parsed.faces_per_image().tolist()))
    ordered = sorted((e for e in entries if e[1] > 0), key=lambda e: (e[1], e[0]))
    if count <= 0 or not ordered:
        return []
    count = min(count, len(ordered))
    if count == 1:
        chosen = [ordered[len(ordered) // 2]]
    else:
        # positions 0, (n-1)/(count-1), ..., n-1, halves rounded up
        chosen = [ordered[int(i * (len(ordered) - 1) / (count - 1) + 0.5)] for i in range(count)]
    return [os.path.join(images_dir, *name.split('/')) for name, _ in chosen]


# ---------------------------------------------------------------------------- running
class StepError(RuntimeError):
    """A step's command failed; the message names the step, its status and its log."""


def run_step(name, argv, log_path, echo=None):
    """Run ``argv`` (cwd: the repository), its stdout+stderr into ``log_path``.

    ``echo(line) -> str or None``: what to show on the console for an output line.
    Returns the whole output (str). Raises StepError on a non-zero exit status.
    """
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    lines = []
    with open(log_path, 'w') as log:
        log.write('$ %s\n' % ' '.join(argv))
        log.flush()
        proc = subprocess.Popen(argv, cwd=str(ROOT), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env)
        try:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                lines.append(line)
                shown = echo(line) if echo else None
                if shown:
                    print('    ' + shown, flush=True)
            status = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if status != 0:
        tail = ''.join(lines[-15:])
        raise StepError('step "%s" failed with exit status %d; last lines:\n%s\nfull log: %s'
                        % (name, status, tail, _shown(log_path)))
    return ''.join(lines)


def _train_echo(total_iters, every=100):
    """Console filter of train.py's output: every ``every`` iterations, warnings, the end."""
    def echo(line):
        match = ITER_LINE.search(line)
        if match:
            iteration = int(match.group(1))
            if iteration % every == 0:
                return 'iteration %d/%d  %.1f images/s  lr %s' % (
                    iteration, total_iters, float(match.group(2)), match.group(3))
            return None
        if ' WARNING ' in line or ' ERROR ' in line or 'training finished' in line \
                or 'time budget' in line:
            return line.split(': ', 1)[-1].rstrip()
        return None
    return echo


def _last_line_echo(pattern):
    def echo(line):
        return line.rstrip() if re.search(pattern, line) else None
    return echo


def ensure_sample_set(plan):
    """Generate the sample set unless it is already there; returns a short description."""
    if plan.data_ready():
        return 'reused %s' % _shown(plan.data)
    from tools.sample_data import make_sample_dataset
    summary = make_sample_dataset(plan.data, n_train=plan.args.train_images,
                                  n_val=plan.args.val_images, seed=plan.args.data_seed,
                                  workers=min(2, os.cpu_count() or 1), progress=False)
    return 'generated %s in %.0f s (%d / %d faces)' % (
        _shown(plan.data), summary['seconds'], summary['faces']['train'],
        summary['faces']['val'])


def remove_old_checkpoints(prefix):
    """Delete the ``<prefix>-*`` files of an earlier demo run; returns how many.

    Only a prefix marked by the demo (``<prefix>-demo.json``, written before training) is
    cleared: other files under the prefix (a real training run's checkpoints) make it refuse
    with StepError naming the prefix.
    """
    folder, stem = os.path.split(prefix)
    if not os.path.isdir(folder):
        return 0
    names = sorted(n for n in os.listdir(folder) if n.startswith(stem + '-'))
    if names and DEMO_MARKER % stem not in names:
        raise StepError('%s already holds %s, not written by a demo run: choose another '
                        '--prefix (the demo removes its own earlier checkpoints only)'
                        % (_shown(prefix), ', '.join(names[:4]) + (' ...' if len(names) > 4
                                                                   else '')))
    for name in names:
        os.remove(os.path.join(folder, name))
    return len(names)


def mark_demo_prefix(prefix):
    """Write ``<prefix>-demo.json``: the prefix's files belong to the demo."""
    os.makedirs(os.path.dirname(prefix) or '.', exist_ok=True)
    with open(DEMO_MARKER % prefix, 'w') as handle:
        json.dump({'written_by': 'tools/demo.py'}, handle)
        handle.write('\n')


def read_train_summary(prefix):
    """train.py's ``<prefix>-train-summary.json`` (dict); raises StepError when missing."""
    path = '%s-train-summary.json' % prefix
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise StepError('cannot read the training summary %s: %s' % (path, exc))


def _fmt(value, spec='%.3f'):
    return 'n/a' if value is None else spec % value


def format_summary(result):
    """The final summary block (what the README shows) from the result dict of :func:`run`."""
    train, losses, test, ap = result['train'], result['losses'], result['test'], result['ap']
    start, end = losses['start'], losses['end']
    lines = [
        '=' * 30 + ' RetinaFace demo: summary ' + '=' * 30,
        'training   mnet from scratch, %d iterations of batch %d (%.1f epochs of %d images) in '
        '%.1f min, %.1f images/s;' % (
            train['iterations'], train['batch_size'], train['epochs'], train['images'],
            train['seconds'] / 60.0, train['images_per_s']),
        '           %s' % STOP_REASONS.get(train['stopped_by'], train['stopped_by']),
        'loss       box %s -> %s, landmark %s -> %s (smooth-L1 per positive anchor); anchor '
        'accuracy %s -> %s' % (_fmt(start['box']), _fmt(end['box']), _fmt(start['landmark']),
                               _fmt(end['landmark']), _fmt(start['acc']), _fmt(end['acc'])),
        '           (first and last %d iterations, mean of strides 32/16/8)'
        % min(train['window'], train['iterations']),
        'checkpoint %s' % result['checkpoint'],
    ] + _validation_lines(result.get('validation')) + [
        'test       test_widerface.py mode %d (%s): %d val images in %.0f s, recall %s at '
        'IoU 0.5' % (result['mode'], TEST_MODES[result['mode']], test['images'],
                     test['seconds'], _fmt(test['recall'])),
        'AP (val)   Easy %.4f   Medium %.4f   Hard %.4f   (evaluate_widerface.py, %s)' % (
            ap['easy'], ap['medium'], ap['hard'], result['gt']),
        'pictures   %s (%d val images, %d faces with score >= %g drawn)' % (
            result['pictures_dir'], result['pictures'], result['picture_faces'], PICTURE_THRESH),
    ] + (['curves     %s (training), %s (PR, step 5)' % (result['curves'], result['pr_curves'])]
         if result.get('curves') else []) + [
        'logs       %s; total %.1f min' % (result['logs'], result['seconds'] / 60.0),
    ]
    return '\n'.join(lines)


def _validation_lines(validation):
    """Summary lines of the validation during training: AP per epoch and the best one."""
    if not validation or not validation['rows']:
        return []
    rows = validation['rows']
    lines = ['val AP     per epoch during training (train.py --val_set val, mode %d, first %d '
             'val images; %.0f s per validation, not counted in the training time):'
             % (VAL_MODE, rows[-1]['images'],
                sum(r['seconds'] for r in rows) / len(rows))]
    lines += ['           epoch %2d   easy %.3f   medium %.3f   hard %.3f' % (
        r['epoch'], r['easy'], r['medium'], r['hard']) for r in rows]
    best = validation.get('best')
    if best:
        lines.append('           best: epoch %d, %s AP %.3f -> %s' % (
            best['epoch'], best['metric'], best['value'], validation['best_params']))
    return lines


def read_validation(prefix):
    """train.py's validation results of ``prefix``: {'rows', 'best', 'best_params'} or None."""
    from rcnn.core.validation import best_prefix, best_record_path, read_val_rows, val_csv_path
    from rcnn.checkpoint.files import params_path
    rows = read_val_rows(val_csv_path(prefix))
    if not rows:
        return None
    best = None
    if os.path.isfile(best_record_path(prefix)):
        with open(best_record_path(prefix)) as handle:
            best = json.load(handle)
    return {'rows': rows, 'best': best,
            'best_params': _shown(params_path(best_prefix(prefix), 0))}


def _train(plan):
    args = plan.args
    removed = remove_old_checkpoints(plan.prefix)
    if removed:
        print('    removed %d files of an earlier run of %s' % (removed, _shown(plan.prefix)))
    mark_demo_prefix(plan.prefix)
    run_step('train', commands(plan)['train'], os.path.join(plan.logs, 'train.log'),
             echo=_train_echo(plan.total_iters, every=max(20, round(plan.total_iters / 200) * 20)))
    return read_train_summary(plan.prefix)


def _reused_training(plan):
    summary = read_train_summary(plan.prefix)
    print('    reusing checkpoint %s (%d iterations)'
          % (checkpoint_name(_shown(plan.prefix), summary['checkpoint']), summary['iterations']))
    return summary


def _test(plan, argv):
    """test_widerface.py into a fresh predictions folder; returns parse_test_line's dict."""
    if os.path.isdir(plan.predictions):
        shutil.rmtree(plan.predictions)  # test_widerface.py would keep an earlier run's files
    output = run_step('test', argv, os.path.join(plan.logs, 'test.log'),
                      echo=_last_line_echo(r'images/s'))
    test = parse_test_line(output)
    if test is None:
        raise StepError('test_widerface.py printed no summary line; see %s'
                        % _shown(os.path.join(plan.logs, 'test.log')))
    return test


def _draw(plan, argv):
    """tools/detect.py into a fresh pictures folder; returns the number of faces drawn."""
    if os.path.isdir(plan.pictures_dir):
        shutil.rmtree(plan.pictures_dir)
    run_step('draw', argv, os.path.join(plan.logs, 'draw.log'),
             echo=_last_line_echo(r'face\(s\) at threshold'))
    with open(os.path.join(plan.pictures_dir, 'detections.json')) as handle:
        return sum(len(r.get('faces', ())) for r in json.load(handle))


def run(plan):
    """All steps after the plan; returns the result dict (see :func:`format_summary`)."""
    start = time.perf_counter()
    args = plan.args
    os.makedirs(plan.logs, exist_ok=True)

    print('[2/7] sample set', flush=True)
    print('    ' + ensure_sample_set(plan), flush=True)

    plan = make_plan(args, plan.python)     # exact image and iteration counts now
    images = plan.train_roidb

    print('[3/7] training', flush=True)
    train = _reused_training(plan) if args.skip_train else _train(plan)
    epoch = train['checkpoint']

    pictures = pick_pictures(os.path.join(plan.data, 'val', 'label.txt'),
                             os.path.join(plan.data, 'val', 'images'), args.pictures)
    cmds = commands(plan, epoch, pictures)
    print('[4/7] test on val (mode %d)' % args.mode, flush=True)
    test = _test(plan, cmds['test'])
    print('[5/7] evaluate', flush=True)
    eval_output = run_step('evaluate', cmds['evaluate'], os.path.join(plan.logs, 'evaluate.log'),
                           echo=_last_line_echo(r'Val AP'))
    ap = parse_ap_lines(eval_output)
    print('[6/7] draw', flush=True)
    picture_faces = _draw(plan, cmds['draw']) if pictures else 0
    run_step('plot', cmds['plot'], os.path.join(plan.logs, 'plot.log'),
             echo=_last_line_echo(r'logged windows'))

    first = train.get('first_metrics') or {}
    last = train.get('last_metrics') or {}
    result = {
        'train': {'iterations': train['iterations'], 'batch_size': train['batch_size'],
                  'images': images,
                  'epochs': train['iterations'] / float(train['iters_per_epoch']),
                  'seconds': train['seconds'], 'images_per_s': train['images_per_s'],
                  'stopped_by': train['stopped_by'], 'window': train.get('window', 0)},
        'losses': {'start': loss_summary(first), 'end': loss_summary(last)},
        'checkpoint': params_path(_shown(plan.prefix), epoch),
        'mode': args.mode, 'test': test, 'ap': ap, 'gt': _shown(plan.gt),
        'validation': read_validation(plan.prefix),
        'curves': _shown(plan.curves), 'pr_curves': _shown(os.path.join(plan.out, 'pr_curves.png')),
        'pictures_dir': _shown(plan.pictures_dir) + '/', 'pictures': len(pictures),
        'picture_faces': picture_faces, 'logs': _shown(plan.logs) + '/',
        'seconds': time.perf_counter() - start,
    }
    with open(os.path.join(plan.out, 'summary.json'), 'w') as handle:
        json.dump(result, handle, indent=1, sort_keys=True)
        handle.write('\n')
    return result


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    plan = make_plan(args)
    print(format_plan(plan), flush=True)
    if args.plan_only:
        return 0
    print('[1/7] set-up: done (make setup)', flush=True)
    try:
        result = run(plan)
    except (StepError, ValueError, OSError) as exc:
        print('demo: error: %s' % exc, file=sys.stderr)
        return 1
    print('[7/7] summary', flush=True)
    print(format_summary(result), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
