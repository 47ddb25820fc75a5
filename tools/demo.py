"""``make demo``: train mnet from scratch on a generated sample set, test, evaluate, draw.

    python tools/demo.py                 # the whole demo: about 20 minutes on 2 CPU cores
    python tools/demo.py --plan-only     # print the plan and the commands, run nothing
    python tools/demo.py --skip-train    # test / evaluate / draw the last demo checkpoint again

The demo fits itself into ``--minutes`` (20): it measures how fast this machine trains, then
plans the run from that speed (printed before training starts). A 2-core machine at half its
quiet speed or faster ends within the budget; on a slower one the plan keeps the shortest
schedule that still finds the faces and says how long it will take:

1. set-up: ``make setup`` (run by ``make demo`` before this script);
2. the sample set: ``data/sample`` (400 train / 100 val images, seed 0) from
   :func:`tools.sample_data.make_sample_dataset`, reused when already generated with
   the same settings;
3. measure: a few iterations of ``train.py`` give the training speed (images/s) and the
   start-up time; the slowdown against a quiet 2-core machine scales every other estimate;
4. ``train.py``: ``mnet`` from scratch on the CPU -- an extension, not the original recipe
   (which starts from ImageNet MobileNet-0.25 weights, see docs/training.md); the original's
   640x640 crops, colour jitter, OHEM, losses and optimizer, batch 8, lr 0.01, x0.1 after 80 %
   of the epochs. The plan gives it as many epochs (5 to 10) as fit in the time left after the
   test; it stops at the end of an epoch. Validation during training (the first 30 val images,
   mode 0) only where it costs at most a tenth of the training time;
5. ``test_widerface.py`` on the sample val split in mode 1 (image pyramid + flips + box
   voting), on all val images where that fits in a fifth of the time left, else on the first 50
   or 25 of them (the same images, generated with their own ground truth);
6. ``evaluate_widerface.py`` against the generated ``val/gt/*.mat`` files (Easy / Medium /
   Hard as documented by the generator);
7. ``tools/detect.py`` finds the faces of six val images, drawn into ``demo_out/pictures``:
   every face with score >= 0.5, or, on an image where none reaches 0.5, its three best
   detections with their scores (the summary says so); ``tools/plot_training.py`` draws the
   training curves into ``demo_out/training_curves.png``;
8. a summary: the plan and what it became, losses at the start and the end, the validation AP
   per epoch, the three APs, where things are.

Every step's full output goes to ``demo_out/logs/<step>.log``; the console shows the plan,
a condensed progress and the summary, which is also written to ``demo_out/summary.json``.

Why 640x640 crops on a slow machine too: smaller crops train faster per image but teach the
faces at half their test-time scale; measured on the sample set, 320x320 crops after 3 epochs
scored Easy AP 0.20 in mode 0 on the 100 val images (640x640 crops after 3 epochs: 0.51 on the
first 30), so the plan trades epochs, never the crop. On a quiet 2-core machine (about 12
training images/s) the plan is 10 epochs (950 iterations) and mode 1, which reached Easy /
Medium / Hard AP 0.99 / 0.95 / 0.82; at half that speed it is 5 epochs and still mode 1.
"""
import argparse
import json
import logging
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

# Figures of a quiet 2-core machine (this project's CI machine), measured with the demo's own
# commands; the plan scales them by the slowdown the measuring step finds.
#: images per second of mnet training at 640x640, batch 8, train.py's default threads
QUIET_TRAIN_IMAGES_PER_S = 12.0
#: seconds per val image of each test mode (sample set images, 2 image workers)
TEST_SECONDS_PER_IMAGE = {0: 0.35, 1: 0.9, 2: 0.9}
#: test_widerface.py start-up (imports, detector), seconds
TEST_START_S = 10.0
#: evaluation, the pictures and the curves together, seconds
FINISH_S = 30.0
#: fixed cost of one validation during training, seconds
VAL_OVERHEAD_S = 3.0
#: test mode of the demo's test step (see choose_test), and of the validation during training
TEST_MODE = 1
VAL_MODE = 0

#: epochs the plan may give training: 10 is the full demo schedule; fewer than 5 leave a model
#: that misses many drawn faces (validation AP per epoch of a from-scratch run, mode 0: epoch 4
#: Easy 0.65, epoch 7 0.84, epoch 8 after the decay 0.92)
MAX_EPOCHS = 10
MIN_EPOCHS = 5
#: share of the time left that the test step may take, and that validation may take of training
TEST_SHARE = 0.2
VAL_SHARE = 0.1
#: seconds kept in reserve for the estimates' error
RESERVE_S = 60.0
#: training iterations of the measuring step (the first one, a warm-up, is not counted)
MEASURE_ITERS = 5
#: the training time budget passed to train.py as --max_minutes: the plan's estimate times this
#: (a safety net for a machine that becomes much slower than measured)
TRAIN_CAP_FACTOR = 2.0
#: val image counts of the test step on a very slow machine, as fractions of --val-images
TEST_SUBSETS = (1.0, 0.5, 0.25)

#: marks a checkpoint prefix as the demo's (its files may be replaced by the next run)
DEMO_MARKER = '%s-demo.json'
#: train-summary.json's stopped_by, in words
STOP_REASONS = {'schedule': 'stopped at the end of the lr schedule',
                'max_minutes': 'stopped by the time budget before the end of the plan',
                'max_iters': 'stopped at the end of the planned epochs',
                'end_epoch': 'stopped at the end epoch'}
#: settings of the detection pictures
PICTURE_THRESH = 0.5
#: detections asked of detect.py for the pictures; the drawing applies PICTURE_THRESH
PICTURE_FLOOR = 0.05
#: detections shown on an image where none reaches PICTURE_THRESH
PICTURE_FALLBACK = 3
#: detect.py scales of the pictures: the model learned faces from upscaled 640x640 crops, so
#: the small faces of the sample images are found at scale 2 (merged with scale 1 by NMS)
PICTURE_SCALES = ('1', '2')
SETTINGS = ('easy', 'medium', 'hard')

AP_LINE = re.compile(r'^\s*(Easy|Medium|Hard)\s+Val AP:\s*([0-9.]+|nan)', re.MULTILINE)
TEST_LINE = re.compile(r'(\d+) images \((\d+) detected, (\d+) resumed\) in ([0-9.]+) s: '
                       r'([0-9.]+) images/s(?:; recall at IoU 0\.5: ([0-9.]+|nan) '
                       r'\((\d+) / (\d+) faces\))?')
ITER_LINE = re.compile(r'Iter\[(\d+)\] Speed: ([0-9.]+) samples/sec lr=([0-9.eE+-]+)')
STEP_TIME = re.compile(r'step=([0-9.]+)s per batch')


# ---------------------------------------------------------------------------- arguments
def parse_args(argv=None):
    parser = cli.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--minutes', type=positive_float, default=20.0,
                        help='time budget of the whole demo: the plan fits training and the '
                             'test into it from the measured speed')
    data = parser.add_argument_group('sample set')
    data.add_argument('--data', default='data/sample',
                      help='sample set folder, generated when missing')
    data.add_argument('--train-images', type=positive_int, default=400,
                      help='training images to generate')
    data.add_argument('--val-images', type=positive_int, default=100,
                      help='val images to generate')
    data.add_argument('--data-seed', type=non_negative_int, default=0,
                      help='seed of the generated set')

    train = parser.add_argument_group('training (train.py)')
    train.add_argument('--prefix', default='model/demo/mnet',
                       help='checkpoint prefix; the files of an earlier demo run there are '
                            'removed before training, anything else makes the demo refuse')
    train.add_argument('--epochs', type=positive_int, default=None,
                       help='epochs of the flipped train set (default: planned, %d to %d)'
                            % (MIN_EPOCHS, MAX_EPOCHS))
    train.add_argument('--lr', type=positive_float, default=0.01, help='base lr')
    train.add_argument('--batch-images', type=positive_int, default=8, help='images per batch')
    train.add_argument('--workers', type=non_negative_int, default=None,
                       help='loader worker processes (default: train.py\'s choice from the '
                            'cores and GPUs)')
    train.add_argument('--seed', type=non_negative_int, default=0,
                       help='seed of the initialisation and the loader')
    train.add_argument('--max-iters', type=positive_int, default=None,
                       help='stop training after this many iterations (smoke runs, tests)')
    train.add_argument('--val-subset', type=non_negative_int, default=30,
                       help='val images validated during training, where the plan affords it '
                            '(train.py --val_images; 0: no validation during training)')
    train.add_argument('--skip-train', action='store_true',
                       help='reuse the latest checkpoint of --prefix instead of training')

    test = parser.add_argument_group('test, evaluation, pictures')
    test.add_argument('--mode', type=int, choices=sorted(TEST_MODES), default=None,
                      help='test_widerface.py mode: ' + '; '.join(
                          '%d %s' % kv for kv in sorted(TEST_MODES.items()))
                      + ' (default %d)' % TEST_MODE)
    test.add_argument('--test-images', type=positive_int, default=None,
                      help='val images tested (the first N of the generated split, with their '
                           'own ground truth; default: planned, all where they fit)')
    test.add_argument('--out', default='demo_out',
                      help='folder of the predictions, pictures, logs and summary')
    test.add_argument('--pictures', type=non_negative_int, default=6,
                      help='val images drawn with their detections')
    parser.add_argument('--plan-only', action='store_true',
                        help='print the plan and the commands, run nothing')
    args = parser.parse_args(argv)
    if args.test_images is not None and args.test_images > args.val_images:
        parser.error('--test-images (%d) must be at most --val-images (%d)'
                     % (args.test_images, args.val_images))
    return args


# ---------------------------------------------------------------------------- the plan
class DemoPlan(object):
    """What the demo will do before anything is measured (paths absolute).

    Attributes:
        train_roidb: training images per epoch (generated train images x 2 for the flips).
        iters_per_epoch: batches per epoch (train.py drops the last incomplete one).
        run: the :class:`RunPlan` once the speed is measured (None before).
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
        self.measure_prefix = os.path.join(self.out, 'measure', 'mnet')
        self.curves = os.path.join(self.out, 'training_curves.png')
        # train.py drops images without a box and adds the mirrored copies; before the set
        # exists, every generated image is assumed to have a face (an upper bound)
        label = os.path.join(self.data, 'train', 'label.txt')
        self.train_roidb_known = self.data_ready()
        self.train_roidb = 2 * (count_images_with_faces(label) if self.train_roidb_known
                                else args.train_images)
        self.iters_per_epoch = max(1, self.train_roidb // args.batch_images)
        self.val_subset = min(args.val_subset, args.val_images)
        self.run = None

    def data_ready(self):
        """True when ``data`` holds a generated set with the requested sizes and seed."""
        return sample_set_ready(self.data, self.args.train_images, self.args.val_images,
                                self.args.data_seed)

    @property
    def test_data(self):
        """The folder the test step reads: the sample set, or its val subset."""
        if self.run is None or self.run.test_images >= self.args.val_images:
            return self.data
        return os.path.join(self.out, 'val%d' % self.run.test_images)

    @property
    def gt(self):
        return os.path.join(self.test_data, 'val', 'gt')


def sample_set_ready(folder, n_train, n_val, seed):
    """True when ``folder`` holds a standard generated set with these sizes and seed."""
    from tools.sample_data.dataset import STANDARD_DRAWING, read_marker
    try:
        info = read_marker(folder)
    except (OSError, ValueError):
        return False
    if info is None:
        return False
    # a set drawn with other blur or occlusion shares is another data set
    wanted = dict(STANDARD_DRAWING, train=n_train, val=n_val, seed=seed)
    return all(info.get(k) == v for k, v in wanted.items()) and all(
        os.path.isfile(os.path.join(folder, split, 'label.txt')) for split in ('train', 'val'))


class RunPlan(object):
    """The run planned from the measured speed (all durations in seconds).

    Attributes:
        images_per_s: measured training speed; slowdown: QUIET_TRAIN_IMAGES_PER_S / it.
        epochs / decay_epoch / iterations: the schedule (iterations end at an epoch end).
        mode / test_images: the test step.
        val_every: validate every N-th epoch (and the final one); 0: no validation.
        estimates: {'train', 'validation', 'test', 'finish'} seconds; total: the whole demo's.
        fits: False when even the shortest plan overruns the budget (the plan says so).
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def as_dict(self):
        return dict(self.__dict__)


def epoch_seconds(plan, images_per_s):
    """Seconds of one training epoch at ``images_per_s``."""
    return plan.iters_per_epoch * plan.args.batch_images / images_per_s


def test_seconds(mode, images, slowdown):
    """Estimated seconds of test_widerface.py on ``images`` val images."""
    return slowdown * (TEST_START_S + images * TEST_SECONDS_PER_IMAGE[mode])


def validation_seconds(images, slowdown):
    return slowdown * (VAL_OVERHEAD_S + images * TEST_SECONDS_PER_IMAGE[VAL_MODE])


def choose_test(args, left_s, slowdown):
    """(mode, images): the test on as many val images as fit in TEST_SHARE of ``left_s``.

    Mode 1 (or --mode) on every val image, else on the first half, else the first quarter (the
    cheapest, taken when nothing fits); --test-images fixes the count. A slow machine gets fewer
    images, never mode 0: on the sample images, 300-1024 px, mode 0's one 1600-px scale
    upsamples the faces 2-5x past what training showed (the same 5-epoch checkpoint, first 25
    val images: Easy AP 0.66 in mode 0, 0.96 in mode 1).
    """
    mode = TEST_MODE if args.mode is None else args.mode
    counts = [args.test_images] if args.test_images is not None else sorted(
        {max(1, int(round(args.val_images * f))) for f in TEST_SUBSETS}, reverse=True)
    for images in counts:
        if test_seconds(mode, images, slowdown) <= TEST_SHARE * left_s:
            return mode, images
    return mode, counts[-1]


def plan_run(plan, images_per_s, train_start_s, elapsed_s):
    """The :class:`RunPlan` for a machine that trains at ``images_per_s``.

    ``train_start_s``: train.py's start-up (measured); ``elapsed_s``: the demo's time so far.
    Test first (its share of what is left), then as many epochs as the rest holds, within
    [MIN_EPOCHS, MAX_EPOCHS] (--epochs fixes them); validation during training only where it
    costs at most VAL_SHARE of the training time.
    """
    args = plan.args
    slowdown = QUIET_TRAIN_IMAGES_PER_S / images_per_s
    left = args.minutes * 60.0 - elapsed_s - RESERVE_S
    mode, test_images = choose_test(args, left, slowdown)
    test_s = test_seconds(mode, test_images, slowdown)
    finish_s = slowdown * FINISH_S
    train_left = left - test_s - finish_s - train_start_s
    per_epoch = epoch_seconds(plan, images_per_s)
    per_val = validation_seconds(plan.val_subset, slowdown) if plan.val_subset else 0.0
    every_epoch = plan.val_subset and per_val <= VAL_SHARE * per_epoch
    fitting = int(train_left // (per_epoch + (per_val if every_epoch else 0.0)))
    epochs = args.epochs or min(MAX_EPOCHS, max(MIN_EPOCHS, fitting))
    train_s = epochs * per_epoch
    if every_epoch:
        val_every, validations = 1, epochs
    elif plan.val_subset and per_val <= VAL_SHARE * train_s:
        val_every, validations = epochs, 1          # the final checkpoint only
    else:
        val_every, validations = 0, 0
    iterations = epochs * plan.iters_per_epoch
    if args.max_iters is not None:
        iterations = min(iterations, args.max_iters)
        train_s = iterations * args.batch_images / images_per_s
    estimates = {'train': train_start_s + train_s, 'validation': validations * per_val,
                 'test': test_s, 'finish': finish_s}
    total = elapsed_s + sum(estimates.values())
    return RunPlan(images_per_s=images_per_s, slowdown=slowdown, epochs=epochs,
                   decay_epoch=max(1, int(round(0.8 * epochs))), iterations=iterations,
                   mode=mode, test_images=test_images, val_every=val_every,
                   estimates=estimates, total=total,
                   train_cap_minutes=max(1.0, TRAIN_CAP_FACTOR * estimates['train'] / 60.0),
                   fits=total <= args.minutes * 60.0)


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


def train_command(plan, prefix, extra):
    """train.py's argv for the demo's recipe into ``prefix`` plus ``extra`` flags."""
    args = plan.args
    argv = [plan.python, str(ROOT / 'train.py'), '--network', 'mnet',
            '--dataset_path', plan.data, '--image_set', 'train', '--prefix', prefix,
            '--batch_images', str(args.batch_images), '--lr', repr(args.lr),
            '--seed', str(args.seed)]
    if args.workers is not None:
        argv += ['--workers', str(args.workers)]
    return argv + list(extra)


def measure_command(plan):
    """A few iterations of the demo's training, logged one by one, into a scratch prefix."""
    return train_command(plan, plan.measure_prefix, [
        '--lr_step', '1', '--max_iters', str(MEASURE_ITERS), '--frequent', '1'])


def commands(plan, epoch='<final>', pictures=()):
    """The command lines of the steps (argv lists), keyed train / test / evaluate / draw /
    plot; ``plan.run`` must be set. ``epoch``: the checkpoint the test and drawing use."""
    run = plan.run
    extra = ['--lr_step', '%d,%d' % (run.decay_epoch, run.epochs),
             '--max_iters', str(run.iterations),
             '--max_minutes', '%.1f' % run.train_cap_minutes]
    if run.val_every:
        extra += ['--val_set', 'val', '--val_every', str(run.val_every), '--val_images',
                  str(plan.val_subset), '--val_mode', str(VAL_MODE)]
    test = [plan.python, str(ROOT / 'test_widerface.py'), '--prefix', plan.prefix,
            '--epoch', str(epoch), '--gpu', '-1', '--dataset-path', plan.test_data,
            '--image-set', 'val', '--mode', str(run.mode), '--output', plan.predictions,
            '--quiet', '--overwrite']     # the demo's own folder: never resume another model's
    evaluate = [plan.python, str(ROOT / 'evaluate_widerface.py'), '--pred', plan.predictions,
                '--gt', plan.gt, '--curves', plan.out, '--quiet']
    plot = [plan.python, str(ROOT / 'tools' / 'plot_training.py'), plan.prefix,
            '--out', plan.curves]
    # the images first: --scales takes every number after it
    draw = [plan.python, str(ROOT / 'tools' / 'detect.py')] + \
        (list(pictures) or ['<val images>']) + [
            '--prefix', plan.prefix, '--epoch', str(epoch), '--gpu', '-1',
            '--thresh', str(PICTURE_FLOOR), '--out', plan.pictures_dir, '--json', '--no-draw',
            '--scales'] + list(PICTURE_SCALES)
    return {'train': train_command(plan, plan.prefix, extra), 'test': test,
            'evaluate': evaluate, 'draw': draw, 'plot': plot}


def _command_text(argv):
    return ' '.join(_shown(a) if os.path.isabs(a) else a for a in argv)


def format_plan(plan):
    """The plan printed before anything runs: the steps and the rule that sizes them."""
    args = plan.args
    data_state = 'present, reused' if plan.data_ready() else 'generated now, under a minute'
    lines = [
        'RetinaFace demo: train mnet from scratch on a generated sample set, test, evaluate, '
        'draw.',
        'Plan (budget %g min, sized from the measured speed: a 2-core machine at half its quiet '
        'speed or faster ends within it):' % args.minutes,
        '  1. set-up          .venv and the Cython kernels (make setup)',
        '  2. sample set      %s: %d train / %d val images, seed %d (%s)' % (
            _shown(plan.data), args.train_images, args.val_images, args.data_seed, data_state),
        '  3. measure         %d iterations of train.py: images/s and start-up time' % (
            MEASURE_ITERS),
        '                     %s' % _command_text(measure_command(plan)),
        '  4. train mnet      from scratch (an extension: the original starts from ImageNet '
        'weights), 640x640 crops, batch %d, lr %g, x0.1 after 80 %% of the epochs;'
        % (args.batch_images, args.lr),
        '                     %s%d images per epoch (flips included) = %d iterations; '
        'epochs: %s' % (
            '' if plan.train_roidb_known else 'at most ', plan.train_roidb,
            plan.iters_per_epoch,
            str(args.epochs) if args.epochs else '%d to %d, as many as fit' % (MIN_EPOCHS,
                                                                               MAX_EPOCHS)),
        '  5. test on val     test_widerface.py mode %d (%s) on as many val images as fit in %d %% '
        'of the time left' % (TEST_MODE, TEST_MODES[TEST_MODE], 100 * TEST_SHARE),
        '  6. evaluate        Easy / Medium / Hard AP against the generated val/gt, PR curves %s'
        % _shown(os.path.join(plan.out, 'pr_curves.png')),
        '  7. draw            %d val images with their faces (score >= %g; where none reaches '
        'it, the best %d with their scores) into %s' % (
            args.pictures, PICTURE_THRESH, PICTURE_FALLBACK, _shown(plan.pictures_dir)),
        '                     training curves into %s' % _shown(plan.curves),
        '  8. summary         printed, and written to %s' % _shown(
            os.path.join(plan.out, 'summary.json')),
        'Full logs: %s/<step>.log' % _shown(plan.logs),
    ]
    return '\n'.join(lines)


def format_run_plan(plan):
    """The plan sized from the measured speed, printed before training starts."""
    args, run = plan.args, plan.run
    est = run.estimates
    lines = [
        '    measured %.1f training images/s (%.1fx the time of a quiet 2-core machine)'
        % (run.images_per_s, run.slowdown),
        '    plan: train %d epochs = %d iterations (x0.1 at epoch %d), ~%.0f min; %s' % (
            run.epochs, run.iterations, run.decay_epoch, est['train'] / 60.0,
            'validation every epoch on %d val images (~%.0f min in all)'
            % (plan.val_subset, est['validation'] / 60.0) if run.val_every == 1 else
            'validation of the final checkpoint on %d val images' % plan.val_subset
            if run.val_every else 'no validation during training (it would cost more than '
            '%d %% of the training time)' % (100 * VAL_SHARE)),
        '          test mode %d (%s) on %s val images, ~%.0f min; evaluate and draw ~%.0f min'
        % (run.mode, TEST_MODES[run.mode],
           'all %d' % run.test_images if run.test_images >= args.val_images
           else 'the first %d of the %d' % (run.test_images, args.val_images),
           est['test'] / 60.0, est['finish'] / 60.0),
        '          whole demo ~%.0f min of the %g min budget; training stops by itself after '
        '%.0f min at the latest (train.py --max_minutes)' % (
            run.total / 60.0, args.minutes, run.train_cap_minutes),
    ]
    if not run.fits:
        lines.append(
            '    this machine is too slow for the budget: the shortest plan that still finds '
            'the faces (%d epochs) takes ~%.0f min; running it anyway' % (
                MIN_EPOCHS, run.total / 60.0))
    cmds = commands(plan)
    lines += ['    %s' % _command_text(cmds['train']), '    %s' % _command_text(cmds['test'])]
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
    # the marker last: a removal that fails half-way leaves the prefix still the demo's
    names.sort(key=lambda name: name == DEMO_MARKER % stem)
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)       # train.py's <prefix>-val-pred/ of the validation
        else:
            os.remove(path)
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
    plan = result.get('plan')
    tested = test['images']
    lines = ['=' * 30 + ' RetinaFace demo: summary ' + '=' * 30]
    if plan:
        lines.append('plan       %.1f training images/s measured (%.1fx a quiet 2-core machine): '
                     '%d epochs, test mode %d on %d val images, ~%.0f min planned'
                     % (plan['images_per_s'], plan['slowdown'], plan['epochs'], plan['mode'],
                        plan['test_images'], plan['total'] / 60.0))
    lines += [
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
        'test       test_widerface.py mode %d (%s): %s in %.0f s, recall %s at IoU 0.5' % (
            result['mode'], TEST_MODES[result['mode']],
            '%d val images' % tested if tested >= result.get('val_images', tested)
            else 'the first %d of the %d val images' % (tested, result['val_images']),
            test['seconds'], _fmt(test['recall'])),
        'AP (val)   Easy %.4f   Medium %.4f   Hard %.4f   (evaluate_widerface.py, %s)' % (
            ap['easy'], ap['medium'], ap['hard'], result['gt']),
        'pictures   %s (%d val images, %d faces drawn%s)' % (
            result['pictures_dir'], result['pictures'], result['picture_faces'],
            _fallback_text(result)),
    ] + (['curves     %s (training), %s (PR, step 6)' % (result['curves'], result['pr_curves'])]
         if result.get('curves') else []) + [
        'logs       %s; total %.1f min' % (result['logs'], result['seconds'] / 60.0),
    ]
    return '\n'.join(lines)


def _fallback_text(result):
    fallbacks = result.get('picture_fallbacks', 0)
    if not fallbacks:
        return ' with score >= %g' % PICTURE_THRESH
    return ('; score >= %g, except on %d image(s) where no face reached it: their best %d '
            'detections are drawn in orange with their scores'
            % (PICTURE_THRESH, fallbacks, PICTURE_FALLBACK))


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


def parse_measure_output(text):
    """(images/s, seconds of the first step) from train.py's per-iteration lines.

    The first iteration (a warm-up: MKL-DNN picks its kernels) is left out of the speed, the
    median of the others is taken (a loaded machine varies from batch to batch). Raises
    StepError when fewer than two iterations were logged.
    """
    speeds = [float(m.group(2)) for m in ITER_LINE.finditer(text)]
    steps = [float(m.group(1)) for m in STEP_TIME.finditer(text)]
    if len(speeds) < 2:
        raise StepError('the measuring run logged %d iterations, 2 are needed; see its log'
                        % len(speeds))
    rest = sorted(speeds[1:])
    middle = len(rest) // 2
    median = rest[middle] if len(rest) % 2 else 0.5 * (rest[middle - 1] + rest[middle])
    return median, (steps[0] if steps else 0.0)


def measure(plan):
    """Run the measuring step; returns (images/s, train.py's start-up seconds)."""
    folder = os.path.dirname(plan.measure_prefix)
    if os.path.isdir(folder):
        shutil.rmtree(folder)     # the demo's own scratch folder
    start = time.perf_counter()
    output = run_step('measure', measure_command(plan), os.path.join(plan.logs, 'measure.log'))
    seconds = time.perf_counter() - start
    images_per_s, first_step = parse_measure_output(output)
    steps = (MEASURE_ITERS - 1) * plan.args.batch_images / images_per_s
    return images_per_s, max(0.0, seconds - steps - first_step)


def ensure_test_subset(plan):
    """Generate the first ``plan.run.test_images`` val images with their own ground truth
    (image i of a split depends only on the seed and i: the same pictures and faces as in the
    full split); nothing when the whole split is tested."""
    if plan.test_data == plan.data:
        return None
    from tools.sample_data import make_sample_dataset
    if not sample_set_ready(plan.test_data, 0, plan.run.test_images, plan.args.data_seed):
        make_sample_dataset(plan.test_data, n_train=0, n_val=plan.run.test_images,
                            seed=plan.args.data_seed, workers=1, progress=False)
    return 'the first %d val images with their ground truth in %s' % (
        plan.run.test_images, _shown(plan.test_data))


def _train(plan):
    removed = remove_old_checkpoints(plan.prefix)
    if removed:
        print('    removed %d files of an earlier run of %s' % (removed, _shown(plan.prefix)))
    mark_demo_prefix(plan.prefix)
    total = plan.run.iterations
    run_step('train', commands(plan)['train'], os.path.join(plan.logs, 'train.log'),
             echo=_train_echo(total, every=max(20, round(total / 200) * 20)))
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


# ---------------------------------------------------------------------------- pictures
def faces_to_draw(faces, thresh=PICTURE_THRESH, fallback=PICTURE_FALLBACK):
    """(faces to draw, True when they are the fallback).

    ``faces``: detect.py's JSON faces of one image (``score`` each), any order. Every face
    with score >= ``thresh``; when there is none, the ``fallback`` best ones, so a picture never
    comes out empty while the model found anything at all.
    """
    ordered = sorted(faces, key=lambda f: -f['score'])
    kept = [f for f in ordered if f['score'] >= thresh]
    if kept or not ordered:
        return kept, False
    return ordered[:fallback], True


def draw_picture(image, faces, fallback):
    """A copy of ``image`` (H, W, 3) BGR uint8 with ``faces`` drawn: box, 5 landmarks and the
    score in a filled label inside the image (readable at any size); fallback faces in orange
    with a caption saying none reached the threshold."""
    import cv2
    canvas = image.copy()
    height, width = image.shape[:2]
    thickness = max(1, int(round(max(height, width) / 400.0)))
    scale = max(0.45, max(height, width) / 1200.0)
    colour = (0, 140, 255) if fallback else (0, 200, 0)
    for face in faces:
        x1, y1, x2, y2 = [int(round(v)) for v in face['box']]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        for x, y in face.get('landmarks', ()):
            cv2.circle(canvas, (int(round(x)), int(round(y))), thickness + 1, (255, 0, 0), -1)
        text = '%.2f' % face['score']
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        # above the box when there is room, else inside its top edge
        top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1
        left = min(max(0, x1), max(0, width - tw - 2))
        cv2.rectangle(canvas, (left, top), (left + tw + 2, top + th + base + 2), colour, -1)
        cv2.putText(canvas, text, (left + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), 1, cv2.LINE_AA)
    if fallback:
        # bottom left on a dark band: clear of the score labels, which sit at the boxes' tops
        caption = 'no face reached %.1f: best %d shown' % (PICTURE_THRESH, len(faces))
        (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(canvas, (0, height - th - base - 6), (tw + 6, height), (0, 0, 0), -1)
        cv2.putText(canvas, caption, (3, height - base - 3), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    colour, 1, cv2.LINE_AA)
    return canvas


def _draw(plan, argv):
    """detect.py (JSON only), then the pictures; returns (faces drawn, images with the
    fallback)."""
    import cv2
    if os.path.isdir(plan.pictures_dir):
        shutil.rmtree(plan.pictures_dir)
    run_step('draw', argv, os.path.join(plan.logs, 'draw.log'),
             echo=_last_line_echo(r'face\(s\) at threshold'))
    with open(os.path.join(plan.pictures_dir, 'detections.json')) as handle:
        records = json.load(handle)
    drawn, fallbacks = 0, 0
    for record in records:
        image = cv2.imread(record['image'])
        if image is None:
            continue
        faces, fallback = faces_to_draw(record.get('faces', ()))
        name = os.path.splitext(os.path.basename(record['image']))[0] + '.jpg'
        if not cv2.imwrite(os.path.join(plan.pictures_dir, name),
                           draw_picture(image, faces, fallback)):
            raise StepError('cannot write picture %s' % os.path.join(plan.pictures_dir, name))
        drawn += len(faces)
        fallbacks += int(fallback)
    return drawn, fallbacks


# ---------------------------------------------------------------------------- running
def run(plan, demo_start):
    """All steps after the plan; returns the result dict (see :func:`format_summary`)."""
    args = plan.args
    os.makedirs(plan.logs, exist_ok=True)

    print('[2/8] sample set', flush=True)
    print('    ' + ensure_sample_set(plan), flush=True)
    plan = make_plan(args, plan.python)     # exact image and iteration counts now
    images = plan.train_roidb

    print('[3/8] measure', flush=True)
    if args.skip_train:
        images_per_s, start_s = QUIET_TRAIN_IMAGES_PER_S, 0.0
        print('    skipped (--skip-train): the test is planned for a quiet machine')
    else:
        images_per_s, start_s = measure(plan)
    plan.run = plan_run(plan, images_per_s, start_s, time.perf_counter() - demo_start)
    print(format_run_plan(plan), flush=True)

    print('[4/8] training', flush=True)
    train = _reused_training(plan) if args.skip_train else _train(plan)
    epoch = train['checkpoint']

    subset = ensure_test_subset(plan)
    if subset:
        print('    test set: %s' % subset, flush=True)
    pictures = pick_pictures(os.path.join(plan.test_data, 'val', 'label.txt'),
                             os.path.join(plan.test_data, 'val', 'images'), args.pictures)
    cmds = commands(plan, epoch, pictures)
    print('[5/8] test on val (mode %d)' % plan.run.mode, flush=True)
    test = _test(plan, cmds['test'])
    print('[6/8] evaluate', flush=True)
    eval_output = run_step('evaluate', cmds['evaluate'], os.path.join(plan.logs, 'evaluate.log'),
                           echo=_last_line_echo(r'Val AP'))
    ap = parse_ap_lines(eval_output)
    print('[7/8] draw', flush=True)
    picture_faces, fallbacks = _draw(plan, cmds['draw']) if pictures else (0, 0)
    run_step('plot', cmds['plot'], os.path.join(plan.logs, 'plot.log'),
             echo=_last_line_echo(r'logged windows'))

    first = train.get('first_metrics') or {}
    last = train.get('last_metrics') or {}
    result = {
        'plan': plan.run.as_dict(),
        'train': {'iterations': train['iterations'], 'batch_size': train['batch_size'],
                  'images': images,
                  'epochs': train['iterations'] / float(train['iters_per_epoch']),
                  'seconds': train['seconds'], 'images_per_s': train['images_per_s'],
                  'stopped_by': train['stopped_by'], 'window': train.get('window', 0)},
        'losses': {'start': loss_summary(first), 'end': loss_summary(last)},
        'checkpoint': params_path(_shown(plan.prefix), epoch),
        'mode': plan.run.mode, 'test': test, 'ap': ap, 'gt': _shown(plan.gt),
        'val_images': args.val_images,
        'validation': read_validation(plan.prefix),
        'curves': _shown(plan.curves), 'pr_curves': _shown(os.path.join(plan.out, 'pr_curves.png')),
        'pictures_dir': _shown(plan.pictures_dir) + '/', 'pictures': len(pictures),
        'picture_faces': picture_faces, 'picture_fallbacks': fallbacks,
        'logs': _shown(plan.logs) + '/',
        'seconds': time.perf_counter() - demo_start,
    }
    with open(os.path.join(plan.out, 'summary.json'), 'w') as handle:
        json.dump(result, handle, indent=1, sort_keys=True)
        handle.write('\n')
    return result


def main(argv=None):
    demo_start = time.perf_counter()
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    plan = make_plan(args)
    print(format_plan(plan), flush=True)
    if args.plan_only:
        return 0
    print('[1/8] set-up: done (make setup)', flush=True)
    try:
        result = run(plan, demo_start)
    except (StepError, ValueError, OSError) as exc:
        print('demo: error: %s' % exc, file=sys.stderr)
        return 1
    print('[8/8] summary', flush=True)
    print(format_summary(result), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
