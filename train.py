#!/usr/bin/env python
"""Train RetinaFace (``--network mnet`` or ``resnet``) with MXNet's Module API.

Examples::

    # CPU smoke run on the dlib photos (30 batches), then fine-tuning from the release
    python train.py --network mnet --dataset_path ../shared/data/dlib_faces --prefix /tmp/m \\
        --max_iters 30
    python train.py --network mnet --dataset_path ../shared/data/dlib_faces --prefix /tmp/ft \\
        --pretrained ../shared/models/mnet.25/mnet.25 --pretrained_epoch 0 --max_iters 20
    # WIDER FACE on GPUs 0-3 (CUDA build of MXNet), the original recipe
    CUDA_VISIBLE_DEVICES=0,1,2,3 python train.py --network mnet --prefix model/mnet
    # continue an interrupted run exactly where its last checkpoint left it
    python train.py --network mnet --prefix model/mnet --resume
    # two machines' worth of data-parallel workers on the parameter server
    python tools/launch.py -n 2 -s 1 python train.py --kvstore dist_sync ...

Devices: GPUs from CUDA_VISIBLE_DEVICES as in the original (empty or unset: the CPU), or
``--gpus 0,1``; the batch is ``BATCH_IMAGES`` (per device, ``--batch_images``) times the
number of devices. ``--cpus N`` runs N CPU contexts to exercise the multi-device path.

Schedule: ``--lr`` with the steps of ``--lr_step`` (see rcnn/core/schedule.py); training
ends at the last step, at ``--end_epoch``, at ``--max_iters`` or after ``--max_minutes`` of
training (a time budget, e.g. for ``make demo``), whichever comes first; it always ends with a
checkpoint, and ``<prefix>-train-summary.json`` then lists the iterations, why training
stopped, the final checkpoint, seconds, images/s and the first and last logged metrics.
SGD with momentum 0.9, ``--wd``, ``rescale_grad = 1 / devices`` (all workers' devices
with a ``dist_*sync`` kvstore); as in the original every trainable parameter gets lr x1 and
weight decay ``--wd`` (``--graph_lr_wd_mult``: the graph's multipliers instead, see
rcnn/core/optimizer.py). ``--loss_scale`` picks the box/landmark loss scales of the release
(default) or of insightface master (rcnn/symbol/loss_scale.py).

Config (rcnn/config.py, docs/config.md): the preset of ``--network``, then the flags that set
config keys (``--batch_images``, ``--graph_lr_wd_mult``, ``--loss_scale``) and ``--set KEY=VALUE
...`` for any key (``--set TRAIN.RPN_BATCH_SIZE=128 COLOR_MODE=0``; values are Python literals,
a bare word is a string; an unknown key or a value of the wrong type is refused naming it).
The config is built once and frozen; the training records and ``<prefix>-recipe.json`` store
it with the overrides.

Pretrained backbones (rcnn/core/pretrained.py): ``--pretrained`` takes a symbolic checkpoint
prefix (with ``--pretrained_epoch``) or a ``.params`` file, symbolic or a Gluon model-zoo
``save_parameters`` file (mobilenet0_25 for mnet, resnet50_v2 for resnet). With the preset's
``LAYER_FIX`` (mnet) the first six loaded backbone arrays stay fixed. Without ``--pretrained``
training starts from scratch: an extension, not the original recipe (which always starts from
ImageNet weights).

Checkpoints (rcnn/checkpoint/): at every epoch end, ``<prefix>-symbol.json`` (the
deploy graph, 9 outputs) and ``<prefix>-%04d.params`` with the epoch number, plus
``.states`` (optimizer) and ``.train.json`` (position, schedule, checksums) that
``--resume`` continues from (same iteration, lr and optimizer state; the same batches too
when the resume falls in the run's first epoch, otherwise a fresh reproducible crop stream);
``--checkpoint_iters N`` adds one every N iterations and a final one is written when
training stops inside an epoch. Checkpoint N belongs to the N-th epoch. ``--prefix`` is a
folder and a file-name start (``model/retinaface``); one ending in ``/`` is refused. Logs go
to stdout and ``<prefix>-train.log``. A NaN or infinite loss (or parameters that overflowed, checked
before each checkpoint) stops training with exit status 3, naming the batch; the last good
checkpoint is left untouched.

Safety: a run holds an exclusive lock on ``--prefix`` (``<prefix>-train.lock``) for its
lifetime; a second run on the same prefix stops at start-up naming the other process. At
start-up, temporary files and unrecorded ``.params`` / ``.states`` left by a killed save are
removed (logged). A checkpoint that cannot be written (disk full) stops training with a
message naming the file; the previous checkpoint stays and no temporary file is left.
``--resume`` takes the data, the validation settings, the recipe, the base lr, the end epoch,
the weight decay, the seed and the ``--set`` overrides from the checkpoint's record unless they
are given again; it refuses another ``--dataset_path`` / ``--image_set`` than the checkpoint's,
or data whose content changed (label files, image list), unless ``--resume_other_data`` (the lr
steps still ahead then keep their epochs); an explicit ``--lr`` becomes the schedule's new base.
Numeric flags are checked at start-up (one line naming the flag), as is ``--pretrained``,
before any loader worker starts.
A loader worker that dies, or too many unreadable images in a row, stop training with exit
status 4 and a one-line message naming the worker (pid, exit code) or the files, after a
checkpoint of the batches done. Ctrl-C (SIGINT) stops training after the batch in progress
with a checkpoint of the batches done and exit status 130; ``--resume`` continues from it (a
second Ctrl-C stops at once, keeping the last complete checkpoint). Errors print one line;
tracebacks go to the log file only.

Watching (rank 0): every ``--frequent`` batches a row of ``<prefix>-metrics.csv`` (the
numbers of the log line); with ``--val_set val`` the WIDER AP of every ``--val_every``-th epoch
checkpoint and of the final one (test_widerface.py's code, mode ``--val_mode``, the first
``--val_images`` images) goes to the log, ``<prefix>-val.csv`` and the checkpoint's
``.train.json``, and the best one by ``--val_metric`` is copied to ``<prefix>-best-symbol.json``
/ ``<prefix>-best-0000.params`` (``<prefix>-best.json`` names it). Validation does not change
training and its time is reported apart; ``tools/plot_training.py <prefix>`` draws it all
(rcnn/core/metrics_log.py, rcnn/core/validation.py).

Distributed (``--kvstore dist_sync`` / ``dist_device_sync`` under tools/launch.py): each
worker trains on its shard of the roidb (every num_workers-th record, equal lengths),
gradients are summed by the servers and every worker applies the same SGD step, so the
weights stay identical (BatchNorm running statistics are per worker, as in MXNet). Rank 0
writes the checkpoints and ``<prefix>-train.log``, rank r logs to
``<prefix>-train-rank<r>.log``. ``dist_async`` runs SGD on the servers; its optimizer
state is not checkpointed.
"""
import argparse
import logging
import math
import os
import sys

# MXNet's "Subgraph backend MKLDNN is activated" notice, printed at every bind, would break
# the console's log lines and progress; the variable is read at bind time
os.environ.setdefault('MXNET_SUBGRAPH_VERBOSE', '0')

from rcnn.core import cpu_share  # noqa: E402  (standard library only)

if __name__ == '__main__':  # MXNet reads its thread settings when imported: choose them first
    cpu_share.configure_from_argv(sys.argv[1:])

from rcnn.checkpoint.record import CorruptCheckpointError  # noqa: E402
from rcnn.config import (DEFAULT_DATASET, DEFAULT_END_EPOCH, DEFAULT_NETWORK,  # noqa: E402
                         ConfigError, generate_config, merge_overrides, network as network_presets,
                         parse_overrides)
from rcnn.core.callback import NonFiniteLossError  # noqa: E402
from rcnn.core.loader import LoaderError  # noqa: E402
from rcnn.core.pretrained import pretrained_path  # noqa: E402
from rcnn.core.schedule import parse_lr_step  # noqa: E402
from rcnn.core.devices import DeviceError  # noqa: E402
from rcnn.core.train_options import (VAL_DEFAULTS, CheckpointOptions, DataOptions,  # noqa: E402
                                     DeviceOptions, ScheduleOptions, TrainOptions,
                                     ValidationOptions)
from rcnn.core.trainer import TrainingInterrupted  # noqa: E402
from rcnn.core.training_setup import run_training  # noqa: E402
from rcnn.core.validation import VAL_MODES  # noqa: E402
from rcnn.evaluation.widerface import SETTINGS  # noqa: E402
from rcnn.symbol.loss_scale import LOSS_SCALE_VARIANTS  # noqa: E402
from rcnn.utils import cli  # noqa: E402
from rcnn.utils.run_lock import PrefixInUseError  # noqa: E402

logger = logging.getLogger('train')

EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3
EXIT_LOADER_FAILED = 4
EXIT_INTERRUPTED = 130   # 128 + SIGINT, as a shell reports a Ctrl-C
RESUMED = 'with --resume: the checkpoint\'s'


# ---------------------------------------------------------------------------- command line
def build_parser(known_network, cfg, dflt):
    """train.py's flags; the defaults shown come from the preset ``(cfg, dflt)``."""
    pre = _pre_parser()
    parser = cli.ArgumentParser(prog='train.py', description=__doc__, parents=[pre],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group('data')
    data.add_argument('--image_set', default=None,
                      help='image set(s) under --dataset_path, "+"-joined (default %s; %s)'
                           % (dflt.image_set, RESUMED))
    data.add_argument('--root_path', default=dflt.root_path,
                      help='folder for the roidb cache (<root_path>/cache; default %(default)s)')
    data.add_argument('--dataset_path', default=None,
                      help='RetinaFace-layout data set: <path>/<image_set>/label.txt + images/ '
                           '(default %s; %s)' % (dflt.dataset_path, RESUMED))
    data.add_argument('--keep_outside_boxes', action='store_true', default=None,
                      help='clip label boxes that leave the image by more than their own size '
                           '(e.g. w=1e9) like the original reader, instead of dropping them '
                           'with a warning naming label.txt and the line (default: drop; %s)'
                           % RESUMED)
    data.add_argument('--no_flip', action='store_true', default=None,
                      help='do not add mirrored images (default: add them; %s)' % RESUMED)
    data.add_argument('--no_shuffle', action='store_true', default=None,
                      help='do not shuffle each epoch (default: shuffle; %s)' % RESUMED)
    data.add_argument('--workers', type=int, default=None,
                      help='loader worker processes for crops and labels (default: chosen from '
                           'the cores and GPUs, see rcnn/core/cpu_share.py: on the CPU one per '
                           '6 cores, at least 1; with G GPUs all cores but one, at most 8 G; '
                           'the MXNet compute threads are chosen with it and logged)')
    data.add_argument('--batch_images', type=int, default=None,
                      help='images per device per batch, config key TRAIN.BATCH_IMAGES (default '
                           '%d for %s; %s)' % (cfg.TRAIN.BATCH_IMAGES, known_network, RESUMED))

    model = parser.add_argument_group('model and checkpoints')
    model.add_argument('--pretrained', default=dflt.pretrained,
                       help='weights to start from: a checkpoint prefix (with '
                            '--pretrained_epoch; e.g. an ImageNet model-zoo resnet-50, or '
                            '../shared/models/mnet.25/mnet.25 to fine-tune) or a .params file '
                            '(symbolic, or a Gluon model-zoo mobilenet0.25 / resnet50_v2 '
                            'save_parameters file); default empty: train from scratch (an '
                            'extension; the original starts from ImageNet weights)')
    model.add_argument('--pretrained_epoch', type=int, default=dflt.pretrained_epoch,
                       help='epoch of --pretrained (default %(default)s)')
    model.add_argument('--prefix', default=dflt.prefix,
                       help='checkpoint and log prefix: a folder and a file name start, e.g. '
                            'model/retinaface (a trailing / is refused; default %(default)s)')
    model.add_argument('--resume', nargs='?', const='latest', default=None, metavar='N',
                       help='continue from checkpoint N of --prefix (no N: the latest); '
                            'restores parameters, optimizer state, iteration, lr and position, '
                            'and takes the flags marked "%s" from its record unless given '
                            '(default: a new run)' % RESUMED)
    model.add_argument('--resume_other_data', action='store_true',
                       help='allow --resume with another --dataset_path / --image_set, or data '
                            'whose label files or images changed; the lr steps still ahead keep '
                            'their epochs (default: refused)')
    model.add_argument('--checkpoint_iters', type=int, default=0,
                       help='also checkpoint every N iterations (default 0: only at epoch ends '
                            'and at the end; useful to test resuming after a kill)')

    train = parser.add_argument_group('schedule')
    train.add_argument('--begin_epoch', type=int, default=dflt.begin_epoch,
                       help='epoch number to start counting from; lr steps at or before it are '
                            'dropped (default %(default)s)')
    train.add_argument('--end_epoch', type=int, default=None,
                       help='stop before this epoch (default %d; %s)'
                            % (DEFAULT_END_EPOCH, RESUMED))
    train.add_argument('--lr', type=float, default=None,
                       help='base lr (default %s; %s schedule: an explicit --lr replaces its '
                            'base)' % (dflt.lr, RESUMED))
    train.add_argument('--lr_step', default=None,
                       help='epochs where the lr changes, comma-separated; 8 steps = x1.5849 '
                            'warm-up x5 then x0.1, 5 steps = x0.5,0.5,0.4,0.1,0.1, else x0.1 '
                            '(default %s; %s)' % (dflt.lr_step, RESUMED))
    train.add_argument('--wd', type=float, default=None,
                       help='weight decay of every trainable parameter (default %s; %s)'
                            % (dflt.wd, RESUMED))
    train.add_argument('--graph_lr_wd_mult', action='store_true', default=None,
                       help='config key TRAIN.GRAPH_LR_WD_MULT: apply the graph\'s lr/wd '
                            'multipliers (biases lr x2, no weight decay on BatchNorm betas and '
                            'SSH/head biases: Caffe style) instead of the original\'s lr x1, wd x1 '
                            'for every parameter (default: the original\'s; %s)' % RESUMED)
    train.add_argument('--loss_scale', choices=LOSS_SCALE_VARIANTS, default=None,
                       help='config key TRAIN.LOSS_SCALE: box/landmark loss scales of release '
                            '(May 2019, the released models) or master (insightface master '
                            'since Oct 2019: 0.25 x BATCH_IMAGES times release; default %s; %s)'
                            % (cfg.TRAIN.LOSS_SCALE, RESUMED))
    train.add_argument('--max_iters', type=int, default=None,
                       help='stop once this many iterations (batches, counted from the first '
                            'run) are done; for smoke runs (default: no limit)')
    train.add_argument('--max_minutes', type=float, default=None,
                       help='time budget: stop (with a checkpoint) before the first batch that '
                            'would start after this many minutes of this run\'s training; not '
                            'with a dist_* kvstore (default: none)')
    train.add_argument('--seed', type=int, default=None,
                       help='seed of the initialisation and the loader (default: random; %s)'
                            % RESUMED)
    train.add_argument('--frequent', type=int, default=dflt.frequent,
                       help='log metrics every N iterations (default %(default)s)')

    config = parser.add_argument_group('config (rcnn/config.py, docs/config.md)')
    config.add_argument('--set', nargs='+', action='extend', default=[], metavar='KEY=VALUE',
                        dest='config_set',
                        help='set config keys, e.g. --set TRAIN.RPN_BATCH_SIZE=128 COLOR_MODE=0 '
                             '"RPN_ANCHOR_CFG.32.SCALES=(32, 16)"; values are Python literals, a '
                             'bare word is a string; unknown keys and values of another type are '
                             'refused (default: none; %s)' % RESUMED)

    dev = parser.add_argument_group('devices')
    dev.add_argument('--gpus', default='',
                     help='GPU ids, e.g. 0,1 (default: CUDA_VISIBLE_DEVICES; unset or empty: '
                          'CPU). Needs the CUDA build of MXNet')
    dev.add_argument('--cpus', type=int, default=0,
                     help='use N CPU contexts (data parallel on the CPU; to test the '
                          'multi-device path; default 0: one)')
    dev.add_argument('--kvstore', default=dflt.kvstore,
                     help='device | local | dist_sync | dist_device_sync | dist_async; dist_* '
                          'need tools/launch.py (default %(default)s)')
    dev.add_argument('--work_load_list', default=None,
                     help='relative work load per device, comma-separated (default: even)')
    add_validation_arguments(parser)
    return parser


def _pre_parser():
    pre = cli.ArgumentParser(prog='train.py', add_help=False)
    pre.add_argument('--network', default=DEFAULT_NETWORK, choices=sorted(network_presets),
                     help='backbone preset: mnet (MobileNet-0.25) or resnet (ResNet-50); sets '
                          'the defaults below (default %(default)s)')
    pre.add_argument('--dataset', default=DEFAULT_DATASET,
                     help='dataset preset (default %(default)s, the only one)')
    return pre


def add_validation_arguments(parser):
    """The ``validation`` group of train.py's flags (rcnn/core/validation.py)."""
    group = parser.add_argument_group(
        'validation during training (rank 0; see rcnn/core/validation.py)')
    group.add_argument('--val_set', default=None,
                       help='labelled split under --dataset_path to validate on (e.g. val): '
                            'WIDER AP of the checkpoints, <prefix>-val.csv, the best checkpoint '
                            'in <prefix>-best-*; default: no validation (%s)' % RESUMED)
    group.add_argument('--val_every', type=int, default=None, metavar='N',
                       help='validate every N-th epoch checkpoint (and the final one; '
                            'default %d)' % VAL_DEFAULTS['every'])
    group.add_argument('--val_images', type=int, default=None, metavar='K',
                       help='only the first K images of the split (a fixed subset; default all)')
    group.add_argument('--val_mode', type=int, default=None, choices=VAL_MODES,
                       help='test_widerface.py mode: 0 one scale, no flip, 1 pyramid + flip + box '
                            'voting, 2 pyramid + flip + NMS (default %d)' % VAL_DEFAULTS['mode'])
    group.add_argument('--val_metric', default=None, choices=SETTINGS,
                       help='the AP that picks the best checkpoint (default %s)'
                            % VAL_DEFAULTS['metric'])
    return group


def parse_args(argv=None):
    """Parse and check the command line; defaults come from ``generate_config(network,
    dataset)``.

    Returns:
        (args, options): the namespace and the :class:`~rcnn.core.train_options.TrainOptions`
        built from it (fields ``--resume`` remembers stay None when the flag was not given).
    """
    known, _ = _pre_parser().parse_known_args(argv)
    try:
        cfg, dflt = generate_config(known.network, known.dataset)
    except ValueError as exc:
        _pre_parser().error(str(exc))
    parser = build_parser(known.network, cfg, dflt)
    args = parser.parse_args(argv)
    try:
        _check_args(args, cfg)
        options = options_from_args(args, argv)
    except (ValueError, FileNotFoundError) as exc:       # ConfigError included
        parser.error(str(exc))
    return args, options


def _finite(flag, value, minimum, inclusive=False):
    """ValueError unless ``value`` is a finite number above (or at) ``minimum``."""
    if value is None:
        return
    above = value >= minimum if inclusive else value > minimum
    if not (math.isfinite(value) and above):
        raise ValueError('%s must be a finite number %s %g, got %s'
                         % (flag, '>=' if inclusive else '>', minimum, value))


def _check_args(args, cfg):
    """ValueError naming the flag for any flag value that cannot start a run."""
    if args.lr_step is not None:
        parse_lr_step(args.lr_step)
    _finite('--lr', args.lr, 0)
    _finite('--wd', args.wd, 0, inclusive=True)
    _finite('--max_minutes', args.max_minutes, 0)
    for flag in ('batch_images', 'max_iters', 'frequent', 'end_epoch'):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise ValueError('--%s must be positive, got %d' % (flag, value))
    for flag in ('workers', 'checkpoint_iters', 'cpus', 'begin_epoch', 'pretrained_epoch', 'seed'):
        value = getattr(args, flag)
        if value is not None and value < 0:
            raise ValueError('--%s must be >= 0, got %d' % (flag, value))
    end_epoch = DEFAULT_END_EPOCH if args.end_epoch is None else args.end_epoch
    if args.resume is None and end_epoch <= args.begin_epoch:
        raise ValueError('--end_epoch %d must be after --begin_epoch %d: nothing would be trained'
                         % (end_epoch, args.begin_epoch))
    if args.max_minutes is not None and 'dist' in args.kvstore:
        raise ValueError('--max_minutes cannot be used with --kvstore %s: the workers would stop '
                         'at different iterations' % args.kvstore)
    if args.work_load_list:
        args.work_load_list = _work_load(args.work_load_list)
    if args.resume is not None and args.resume != 'latest':
        try:
            args.resume = int(args.resume)
        except ValueError:
            raise ValueError('--resume %r: expected a checkpoint number or nothing'
                             % args.resume) from None
    if args.resume is not None and args.pretrained:
        raise ValueError('--resume and --pretrained are exclusive (resume restores its own '
                         'parameters)')
    _check_prefix(args.prefix)
    if args.pretrained:
        pretrained_path(args.pretrained, args.pretrained_epoch)     # FileNotFoundError
    check_validation_arguments(args)
    # the overrides are merged once more by the set-up; here they are checked at start-up
    merge_overrides(cfg.thawed(), config_overrides(args))


def _work_load(text):
    try:
        loads = tuple(float(v) for v in text.split(','))
    except ValueError:
        raise ValueError('--work_load_list %r: expected comma-separated numbers' % text) from None
    if not all(math.isfinite(v) and v > 0 for v in loads):
        raise ValueError('--work_load_list %r: every load must be a finite number > 0' % text)
    return loads


def _check_prefix(prefix):
    """ValueError for a prefix ending in a path separator (it would write files named
    ``-0001.params`` inside that folder), or in a folder this user cannot write."""
    if not prefix or prefix.endswith(('/', os.sep)):
        raise ValueError('--prefix %r names a folder: give a folder and a file name start, e.g. '
                         '%s (checkpoints are written as <prefix>-0001.params, ...)'
                         % (prefix, os.path.join(prefix or '.', 'retinaface')))
    folder = os.path.dirname(os.path.abspath(prefix))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError('--prefix %s: cannot write in %s; choose a folder this user can write'
                         % (prefix, existing))


def check_validation_arguments(args):
    """ValueError for bad validation flags; a new run's settings not given get
    :data:`VAL_DEFAULTS` (a resumed run's come from its record)."""
    given = [flag for flag in ('val_every', 'val_images', 'val_mode', 'val_metric')
             if getattr(args, flag) is not None]
    if args.val_set is None:
        if given and args.resume is None:
            raise ValueError('--%s needs --val_set (the split to validate on)' % given[0])
        return
    if not args.val_set.strip():
        raise ValueError('--val_set must name a split under --dataset_path, got an empty string')
    for flag in ('val_every', 'val_images'):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise ValueError('--%s must be positive, got %d' % (flag, value))
    if args.resume is None:
        for flag in ('every', 'mode', 'metric'):
            if getattr(args, 'val_' + flag) is None:
                setattr(args, 'val_' + flag, VAL_DEFAULTS[flag])


def config_overrides(args):
    """``[(dotted key, value), ...]``: the flags that set config keys, then ``--set``.

    Raises:
        ConfigError: a ``--set`` item that is not KEY=VALUE, or a key both a flag and ``--set``
        (or ``--set`` twice) give.
    """
    from_flags = []
    if args.batch_images is not None:
        from_flags.append(('TRAIN.BATCH_IMAGES', args.batch_images))
    if args.graph_lr_wd_mult:
        from_flags.append(('TRAIN.GRAPH_LR_WD_MULT', True))
    if args.loss_scale is not None:
        from_flags.append(('TRAIN.LOSS_SCALE', args.loss_scale))
    from_set = parse_overrides(args.config_set)
    both = sorted({key for key, _ in from_flags} & {key for key, _ in from_set})
    if both:
        raise ConfigError('--set %s: a flag already sets this key (%s)' % (
            both[0], {'TRAIN.BATCH_IMAGES': '--batch_images',
                      'TRAIN.GRAPH_LR_WD_MULT': '--graph_lr_wd_mult',
                      'TRAIN.LOSS_SCALE': '--loss_scale'}[both[0]]))
    return from_flags + from_set


def options_from_args(args, argv=None):
    """The :class:`~rcnn.core.train_options.TrainOptions` of checked flags."""
    data = DataOptions(dataset_path=args.dataset_path, image_set=args.image_set,
                       root_path=args.root_path, keep_outside_boxes=args.keep_outside_boxes,
                       flip=None if args.no_flip is None else not args.no_flip,
                       shuffle=None if args.no_shuffle is None else not args.no_shuffle,
                       workers=args.workers)
    checkpoint = CheckpointOptions(prefix=args.prefix, pretrained=args.pretrained,
                                   pretrained_epoch=args.pretrained_epoch, resume=args.resume,
                                   resume_other_data=args.resume_other_data,
                                   checkpoint_iters=args.checkpoint_iters)
    schedule = ScheduleOptions(lr=args.lr, lr_step=args.lr_step, wd=args.wd,
                               begin_epoch=args.begin_epoch, end_epoch=args.end_epoch,
                               max_iters=args.max_iters, max_minutes=args.max_minutes,
                               seed=args.seed, frequent=args.frequent)
    devices = DeviceOptions(gpus=args.gpus, cpus=args.cpus, kvstore=args.kvstore,
                            work_load_list=args.work_load_list or None)
    validation = ValidationOptions(val_set=args.val_set, every=args.val_every,
                                   images=args.val_images, mode=args.val_mode,
                                   metric=args.val_metric)
    command = sys.argv[1:] if argv is None else list(argv)
    return TrainOptions(network=args.network, dataset=args.dataset, data=data,
                        checkpoint=checkpoint, schedule=schedule, devices=devices,
                        validation=validation, config_overrides=tuple(config_overrides(args)),
                        command_line=' '.join(str(token) for token in command))


# ---------------------------------------------------------------------------- main
def main(argv=None):
    _, options = parse_args(argv)
    try:
        run_training(options)
    except NonFiniteLossError as exc:
        logger.error('%s', exc)
        print('train.py: error: %s' % exc, file=sys.stderr)
        return EXIT_NON_FINITE
    except LoaderError as exc:
        if exc.details:
            logger.error('loader worker traceback:\n%s', exc.details,
                         extra={'log_file_only': True})
        logger.error('%s', exc, exc_info=True)
        print('train.py: error: %s' % exc, file=sys.stderr)
        return EXIT_LOADER_FAILED
    except TrainingInterrupted as exc:
        logger.warning('%s', exc)
        print('train.py: %s' % exc, file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print('train.py: interrupted (Ctrl-C); the complete checkpoints written so far are kept '
              '(continue with --resume)', file=sys.stderr)
        return EXIT_INTERRUPTED
    except (DeviceError, CorruptCheckpointError, PrefixInUseError, ValueError,
            OSError) as exc:
        if logging.getLogger().handlers:  # the traceback for the log, once it is set up
            logger.error('%s', exc, exc_info=True)
        print('train.py: error: %s' % exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == '__main__':
    sys.exit(main())
