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
training stops inside an epoch. Checkpoint N belongs to the N-th epoch. Logs go to stdout
and ``<prefix>-train.log``. A NaN or infinite loss (or parameters that overflowed, checked
before each checkpoint) stops training with exit status 3, naming the batch; the last good
checkpoint is left untouched.

Safety: a run holds an exclusive lock on ``--prefix`` (``<prefix>-train.lock``) for its
lifetime; a second run on the same prefix stops at start-up naming the other process. At
start-up, temporary files and unrecorded ``.params`` / ``.states`` left by a killed save are
removed (logged). A checkpoint that cannot be written (disk full) stops training with a
message naming the file; the previous checkpoint stays and no temporary file is left.
``--resume`` refuses another ``--dataset_path`` / ``--image_set`` than the checkpoint's
(``--resume_other_data`` allows it) and takes an explicit ``--lr`` as the schedule's new base.
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
import sys

from rcnn.core import cpu_share  # standard library only

if __name__ == '__main__':  # MXNet reads its thread settings when imported: choose them first
    cpu_share.configure_from_argv(sys.argv[1:])

from rcnn.config import (DEFAULT_DATASET, DEFAULT_NETWORK, generate_config,  # noqa: E402
                         network as network_presets)
from rcnn.checkpoint.record import CorruptCheckpointError  # noqa: E402
from rcnn.core.callback import NonFiniteLossError  # noqa: E402
from rcnn.core.loader import LoaderError  # noqa: E402
from rcnn.core.schedule import parse_lr_step  # noqa: E402
from rcnn.core.devices import DeviceError  # noqa: E402
from rcnn.core.trainer import TrainingInterrupted  # noqa: E402
from rcnn.core.training_setup import run_training  # noqa: E402
from rcnn.core.validation import (add_validation_arguments,  # noqa: E402
                                  check_validation_arguments)
from rcnn.symbol.loss_scale import LOSS_SCALE_VARIANTS  # noqa: E402
from rcnn.utils import cli  # noqa: E402
from rcnn.utils.run_lock import PrefixInUseError  # noqa: E402

logger = logging.getLogger('train')

EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3
EXIT_LOADER_FAILED = 4
EXIT_INTERRUPTED = 130   # 128 + SIGINT, as a shell reports a Ctrl-C


# ---------------------------------------------------------------------------- command line
def parse_args(argv=None):
    """Parse the command line; defaults come from ``generate_config(network, dataset)``.

    Returns:
        (args, cfg): the namespace and the fresh config (not yet adjusted by the flags).
    """
    pre = cli.ArgumentParser(add_help=False)
    pre.add_argument('--network', default=DEFAULT_NETWORK, choices=sorted(network_presets),
                     help='backbone preset: mnet (MobileNet-0.25) or resnet (ResNet-50); sets '
                          'the defaults below (default %(default)s)')
    pre.add_argument('--dataset', default=DEFAULT_DATASET,
                     help='dataset preset (default %(default)s, the only one)')
    known, _ = pre.parse_known_args(argv)
    try:
        cfg, dflt = generate_config(known.network, known.dataset)
    except ValueError as exc:
        pre.error(str(exc))

    parser = cli.ArgumentParser(description=__doc__, parents=[pre],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group('data')
    data.add_argument('--image_set', default=dflt.image_set,
                      help='image set(s) under --dataset_path, "+"-joined (default %(default)s)')
    data.add_argument('--root_path', default=dflt.root_path,
                      help='folder for the roidb cache (<root_path>/cache; default %(default)s)')
    data.add_argument('--dataset_path', default=dflt.dataset_path,
                      help='RetinaFace-layout data set: <path>/<image_set>/label.txt + images/ '
                           '(default %(default)s)')
    data.add_argument('--keep_outside_boxes', action='store_true',
                      help='clip label boxes that leave the image by more than their own size '
                           '(e.g. w=1e9) like the original reader, instead of dropping them '
                           'with a warning naming label.txt and the line')
    data.add_argument('--no_flip', action='store_true', help='do not add mirrored images')
    data.add_argument('--no_shuffle', action='store_true', help='do not shuffle each epoch')
    data.add_argument('--workers', type=int, default=None,
                      help='loader worker processes for crops and labels (default: chosen from '
                           'the cores and GPUs, see rcnn/core/cpu_share.py: on the CPU one per '
                           '6 cores, at least 1; with G GPUs all cores but one, at most 8 G; '
                           'the MXNet compute threads are chosen with it and logged)')
    data.add_argument('--batch_images', type=int, default=None,
                      help='images per device per batch (default: the preset\'s BATCH_IMAGES, '
                           '%d for %s)' % (cfg.TRAIN.BATCH_IMAGES, known.network))

    model = parser.add_argument_group('model and checkpoints')
    model.add_argument('--pretrained', default=dflt.pretrained,
                       help='weights to start from: a checkpoint prefix (with '
                            '--pretrained_epoch; e.g. an ImageNet model-zoo resnet-50, or '
                            '../shared/models/mnet.25/mnet.25 to fine-tune) or a .params file '
                            '(symbolic, or a Gluon model-zoo mobilenet0.25 / resnet50_v2 '
                            'save_parameters file); empty: train from scratch (an extension; '
                            'the original starts from ImageNet weights)')
    model.add_argument('--pretrained_epoch', type=int, default=dflt.pretrained_epoch,
                       help='epoch of --pretrained (default %(default)s)')
    model.add_argument('--prefix', default=dflt.prefix,
                       help='checkpoint and log prefix (default %(default)s)')
    model.add_argument('--resume', nargs='?', const='latest', default=None, metavar='N',
                       help='continue from checkpoint N of --prefix (no N: the latest); '
                            'restores parameters, optimizer state, iteration, lr and position '
                            '(an explicit --lr replaces the schedule\'s base lr)')
    model.add_argument('--resume_other_data', action='store_true',
                       help='allow --resume with another --dataset_path / --image_set than '
                            'the checkpoint was trained on (refused otherwise)')
    model.add_argument('--checkpoint_iters', type=int, default=0,
                       help='also checkpoint every N iterations (0: only at epoch ends and '
                            'at the end; useful to test resuming after a kill)')

    train = parser.add_argument_group('schedule')
    train.add_argument('--begin_epoch', type=int, default=dflt.begin_epoch,
                       help='epoch number to start counting from; lr steps at or before it are '
                            'dropped (default %(default)s)')
    train.add_argument('--end_epoch', type=int, default=None,
                       help='stop before this epoch (default %d, or the resumed run\'s)'
                            % dflt.end_epoch)
    train.add_argument('--lr', type=float, default=None,
                       help='base lr (default %s; with --resume: the checkpoint\'s schedule, '
                            'unless given)' % dflt.lr)
    train.add_argument('--lr_step', default=dflt.lr_step,
                       help='epochs where the lr changes, comma-separated; 8 steps = x1.5849 '
                            'warm-up x5 then x0.1, 5 steps = x0.5,0.5,0.4,0.1,0.1, else x0.1 '
                            '(default %(default)s)')
    train.add_argument('--wd', type=float, default=dflt.wd,
                       help='weight decay of every trainable parameter (default %(default)s)')
    train.add_argument('--graph_lr_wd_mult', action='store_true',
                       default=cfg.TRAIN.GRAPH_LR_WD_MULT,
                       help='apply the graph\'s lr/wd multipliers (biases lr x2, no weight decay '
                            'on BatchNorm betas and SSH/head biases: Caffe style) instead of the '
                            'original\'s lr x1, wd x1 for every parameter')
    train.add_argument('--loss_scale', choices=LOSS_SCALE_VARIANTS, default=None,
                       help='box/landmark loss scales: release (May 2019, the released models) '
                            'or master (insightface master since Oct 2019: 0.25 x BATCH_IMAGES '
                            'times release; default: %s)' % cfg.TRAIN.LOSS_SCALE)
    train.add_argument('--max_iters', type=int, default=None,
                       help='stop once this many iterations (batches, counted from the first '
                            'run) are done; for smoke runs')
    train.add_argument('--max_minutes', type=float, default=None,
                       help='time budget: stop (with a checkpoint) before the first batch that '
                            'would start after this many minutes of this run\'s training; not '
                            'with a dist_* kvstore (default: none)')
    train.add_argument('--seed', type=int, default=None,
                       help='seed of the initialisation and the loader (default: random)')
    train.add_argument('--frequent', type=int, default=dflt.frequent,
                       help='log metrics every N iterations (default %(default)s)')

    dev = parser.add_argument_group('devices')
    dev.add_argument('--gpus', default='',
                     help='GPU ids, e.g. 0,1 (default: CUDA_VISIBLE_DEVICES; unset or empty: '
                          'CPU). Needs the CUDA build of MXNet')
    dev.add_argument('--cpus', type=int, default=0,
                     help='use N CPU contexts (data parallel on the CPU; to test the '
                          'multi-device path)')
    dev.add_argument('--kvstore', default=dflt.kvstore,
                     help='device | local | dist_sync | dist_device_sync | dist_async; dist_* '
                          'need tools/launch.py (default %(default)s)')
    dev.add_argument('--work_load_list', default=None,
                     help='relative work load per device, comma-separated (default: even)')
    add_validation_arguments(parser)
    args = parser.parse_args(argv)
    args.lr_given = args.lr is not None
    if not args.lr_given:
        args.lr = dflt.lr
    _check_args(parser, args)
    return args, cfg


def _check_args(parser, args):
    try:
        parse_lr_step(args.lr_step)
    except ValueError as exc:
        parser.error(str(exc))
    for flag in ('batch_images', 'max_iters', 'frequent'):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            parser.error('--%s must be positive, got %d' % (flag, value))
    if args.max_minutes is not None and not args.max_minutes > 0:
        parser.error('--max_minutes must be positive, got %g' % args.max_minutes)
    if args.max_minutes is not None and 'dist' in args.kvstore:
        parser.error('--max_minutes cannot be used with --kvstore %s: the workers would stop '
                     'at different iterations' % args.kvstore)
    if (args.workers is not None and args.workers < 0) or args.checkpoint_iters < 0 \
            or args.cpus < 0:
        parser.error('--workers, --checkpoint_iters and --cpus must be >= 0')
    if args.work_load_list:
        try:
            args.work_load_list = [float(v) for v in args.work_load_list.split(',')]
        except ValueError:
            parser.error('--work_load_list %r: expected comma-separated numbers'
                         % args.work_load_list)
    if args.resume is not None and args.resume != 'latest':
        try:
            args.resume = int(args.resume)
        except ValueError:
            parser.error('--resume %r: expected a checkpoint number or nothing' % args.resume)
    if args.resume is not None and args.pretrained:
        parser.error('--resume and --pretrained are exclusive (resume restores its own '
                     'parameters)')
    check_validation_arguments(parser, args)


# ---------------------------------------------------------------------------- main
def main(argv=None):
    args, cfg = parse_args(argv)
    try:
        run_training(args, cfg)
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
