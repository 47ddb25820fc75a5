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

Checkpoints (rcnn/core/train_state.py): at every epoch end, ``<prefix>-symbol.json`` (the
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
checkpoint of the batches done. Errors print one line; tracebacks go to the log file only.

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
import os
import pprint
import random
import sys

from rcnn.core import cpu_share  # standard library only

if __name__ == '__main__':  # MXNet reads its thread settings when imported: choose them first
    cpu_share.configure_from_argv(sys.argv[1:])

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from rcnn.config import default as base_default, generate_config, network as network_presets
from rcnn.core import train_state
from rcnn.core.callback import NonFiniteLossError
from rcnn.core.loader import LoaderError
from rcnn.core.optimizer import describe_multipliers, effective_multipliers, init_module_optimizer
from rcnn.core.pretrained import load_pretrained
from rcnn.core.schedule import LRSchedule, parse_lr_step
from rcnn.core.validation import add_validation_arguments, check_validation_arguments
from rcnn.core.trainer import (XAVIER, DeviceError, Position, Trainer, frozen_param_names,
                               layer_fix_candidates, params_digest, resolve_contexts,
                               shard_roidb, split_missing_params)
from rcnn.symbol.loss_scale import LOSS_SCALE_VARIANTS
from rcnn.utils.run_lock import PrefixInUseError, PrefixLock

logger = logging.getLogger('train')

EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3
EXIT_LOADER_FAILED = 4


# ---------------------------------------------------------------------------- command line
def parse_args(argv=None):
    """Parse the command line; defaults come from ``generate_config(network, dataset)``.

    Returns:
        (args, cfg): the namespace and the fresh config (not yet adjusted by the flags).
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--network', default=base_default.network, choices=sorted(network_presets),
                     help='backbone preset: mnet (MobileNet-0.25) or resnet (ResNet-50); sets '
                          'the defaults below (default %(default)s)')
    pre.add_argument('--dataset', default=base_default.dataset,
                     help='dataset preset (default %(default)s, the only one)')
    known, _ = pre.parse_known_args(argv)
    try:
        cfg, dflt = generate_config(known.network, known.dataset)
    except ValueError as exc:
        pre.error(str(exc))

    parser = argparse.ArgumentParser(description=__doc__, parents=[pre],
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


# ---------------------------------------------------------------------------- set-up
def setup_logging(prefix, rank=0):
    """stdout + ``<prefix>-train.log`` (``<prefix>-train-rank<r>.log`` for other workers)."""
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    log_file = '%s-train.log' % prefix if rank == 0 else '%s-train-rank%d.log' % (prefix, rank)
    fmt = '%(asctime)s %(levelname)s %(name)s: %(message)s'
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    console, log = logging.StreamHandler(sys.stdout), logging.FileHandler(log_file)
    console.setFormatter(NoTracebackFormatter(fmt))
    console.addFilter(lambda record: not getattr(record, 'log_file_only', False))
    log.setFormatter(logging.Formatter(fmt))
    for handler in (console, log):
        root.addHandler(handler)
    return log_file


class NoTracebackFormatter(logging.Formatter):
    """Console format: the message without the traceback (which goes to the log file)."""

    def format(self, record):
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return super(NoTracebackFormatter, self).format(record)
        finally:
            record.exc_info, record.exc_text = saved


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    mx.random.seed(seed)


def load_roidb(args, cfg):
    """Roidb of every '+'-joined image set, with mirrored copies unless --no_flip."""
    from rcnn.dataset.retinaface import retinaface
    roidb = []
    for image_set in args.image_set.split('+'):
        imdb = retinaface(image_set, args.root_path, args.dataset_path, cfg=cfg,
                          drop_outside_boxes=not args.keep_outside_boxes)
        entries = imdb.gt_roidb()
        if not args.no_flip:
            entries = imdb.append_flipped_images(entries)
        roidb.extend(entries)
    if not roidb:
        raise ValueError('no training image in %s (image set %s)' % (args.dataset_path,
                                                                      args.image_set))
    return roidb


class LoaderFeed(object):
    """The batches of each epoch from a CropLoader (``num_batches`` per epoch).

    ``batches(epoch, skip)`` starts the loader's next epoch (``reset``: a new order and
    new crops) and discards its first ``skip`` batches (resuming inside an epoch).
    """

    def __init__(self, loader):
        self.loader = loader

    def batches(self, epoch, skip=0):
        self.loader.reset()  # no-op before the loader's first batch
        for produced in range(self.loader.num_batches):
            batch = next(self.loader)
            if produced >= skip:
                yield batch


def fit_batch_to_data(cfg, num_images, num_devices):
    """Lower BATCH_IMAGES when the data set cannot fill one batch (tiny smoke-test sets)."""
    wanted = cfg.TRAIN.BATCH_IMAGES * num_devices
    if num_images >= wanted:
        return
    per_device = num_images // num_devices
    if per_device < 1:
        raise ValueError('%d training images cannot feed %d devices' % (num_images, num_devices))
    logger.warning('only %d training images for a batch of %d: BATCH_IMAGES lowered from %d to '
                   '%d (pass --batch_images to choose)', num_images, wanted,
                   cfg.TRAIN.BATCH_IMAGES, per_device)
    cfg.TRAIN.BATCH_IMAGES = per_device


def create_kvstore(kvstore_type):
    """(kvstore or type string, rank, num_workers); dist kvstores are created now."""
    if 'dist' not in kvstore_type:
        return kvstore_type, 0, 1
    if 'DMLC_ROLE' not in os.environ:
        raise DeviceError('--kvstore %s needs the parameter-server environment: start train.py '
                          'with tools/launch.py -n WORKERS -s SERVERS python train.py ...'
                          % kvstore_type)
    kv = mx.kv.create(kvstore_type)
    return kv, kv.rank, kv.num_workers


def train_param_shapes(train_sym, data_shapes):
    """name -> shape of the training graph's parameters and aux states at ``data_shapes``."""
    arg_shapes, _, aux_shapes = train_sym.infer_shape(**dict(data_shapes))
    inputs = {name for name, _ in data_shapes}
    args = {n: s for n, s in zip(train_sym.list_arguments(), arg_shapes) if n not in inputs}
    aux = dict(zip(train_sym.list_auxiliary_states(), aux_shapes))
    return args, aux


def starting_params(args, record, arg_shapes, aux_shapes):
    """``(arg_params, aux_params, loaded names)`` to start from: the resumed checkpoint, the
    pretrained weights (rcnn/core/pretrained.py) or nothing.

    Raises ValueError naming the file on mismatched shapes, a pretrained file sharing no name
    with the graph, or (resuming) anything missing.
    """
    from rcnn.utils.checkpoint import load_checkpoint
    from rcnn.utils.param_names import fit_names
    if args.pretrained and record is None:
        pretrained = load_pretrained(args.pretrained, args.pretrained_epoch, args.network,
                                     arg_shapes, aux_shapes)
        logger.info('%s', pretrained.summary())
        return pretrained.arg_params, pretrained.aux_params, pretrained.loaded
    if record is None:
        logger.warning('training from scratch (no --pretrained): every parameter gets the '
                       'initialiser; the original recipe starts from ImageNet weights')
        return {}, {}, []
    source = '%s-%04d' % (args.prefix, record['checkpoint'])
    _, arg_params, aux_params = load_checkpoint(args.prefix, record['checkpoint'])
    # BatchNorm statistics in the training graph's spelling (a Gluon backbone's checkpoint
    # says _running_ where our graphs say _moving_)
    arg_params = fit_names(arg_shapes, arg_params)[0]
    aux_params = fit_names(aux_shapes, aux_params)[0]
    missing, unexpected, mismatched = split_missing_params(arg_shapes, aux_shapes, arg_params,
                                                           aux_params)
    if mismatched:
        raise ValueError('%s does not fit the %s training graph: %s' % (
            source, args.network, '; '.join(mismatched)))
    if missing:
        raise ValueError('cannot resume from %s: it lacks %s' % (source, missing))
    logger.info('loaded %d arrays from %s (%d unexpected, ignored: %s)',
                len(arg_params) + len(aux_params), source, len(unexpected), unexpected)
    arg_params = {k: v for k, v in arg_params.items() if k in arg_shapes}
    aux_params = {k: v for k, v in aux_params.items() if k in aux_shapes}
    return arg_params, aux_params, list(arg_params) + list(aux_params)


def choose_frozen(cfg, param_names, loaded):
    """Frozen parameters of a new run (cfg.LAYER_FIX, only arrays that were loaded), logged."""
    fixed = frozen_param_names(cfg.LAYER_FIX, param_names, loaded)
    if cfg.LAYER_FIX:
        not_loaded = [n for n in layer_fix_candidates(param_names) if n not in fixed]
        if not loaded:
            logger.info('LAYER_FIX: nothing frozen when training from scratch (only loaded '
                        'arrays are frozen)')
        elif not_loaded:
            logger.warning('LAYER_FIX: not freezing %d arrays that were not loaded from '
                           '--pretrained: %s', len(not_loaded), not_loaded)
    return fixed


def apply_recipe_flags(args, cfg, record):
    """Set the optimizer semantics and loss-scale variant in ``cfg`` from the flags, or from
    the resumed run's record (a resumed run keeps its recipe; a differing flag is refused)."""
    wanted = {'graph_lr_wd_mult': bool(args.graph_lr_wd_mult),
              'loss_scale': args.loss_scale or cfg.TRAIN.LOSS_SCALE}
    if record is not None:
        # records written before these switches existed: graph multipliers, release scales
        saved = {'graph_lr_wd_mult': record.get('graph_lr_wd_mult', True),
                 'loss_scale': record.get('loss_scale', 'release')}
        asked = {'graph_lr_wd_mult': args.graph_lr_wd_mult and not saved['graph_lr_wd_mult'],
                 'loss_scale': args.loss_scale not in (None, saved['loss_scale'])}
        if any(asked.values()):
            raise ValueError('cannot resume checkpoint %d with %s: it was trained with %s'
                             % (record['checkpoint'], wanted, saved))
        wanted = saved
    cfg.TRAIN.GRAPH_LR_WD_MULT = wanted['graph_lr_wd_mult']
    cfg.TRAIN.LOSS_SCALE = wanted['loss_scale']
    logger.info('optimizer: %s; loss scales: %s', 'the graph\'s lr/wd multipliers '
                '(--graph_lr_wd_mult)' if wanted['graph_lr_wd_mult'] else
                'lr x1 and wd %g for every trainable parameter (the original)' % args.wd,
                wanted['loss_scale'])
    return wanted


def resolve_resume(args):
    """The verified training record to resume from, or None."""
    if args.resume is None:
        return None
    number = train_state.latest_checkpoint(args.prefix) if args.resume == 'latest' \
        else args.resume
    if number is None:
        raise train_state.CorruptCheckpointError(
            'cannot resume: no training record %s-NNNN.train.json found' % args.prefix)
    return train_state.read_train_record(args.prefix, number)


def check_resume_data(record, args):
    """Refuse to resume on another data set than the checkpoint's, unless allowed."""
    trained_on = (record.get('dataset_path'), record.get('image_set'))
    now = (os.path.abspath(args.dataset_path), args.image_set)
    differing = [(flag, old, new) for flag, old, new in zip(('--dataset_path', '--image_set'),
                                                            trained_on, now)
                 if old is not None and old != new]
    if not differing:
        return
    text = ', '.join('%s %s (checkpoint: %s)' % (flag, new, old) for flag, old, new in differing)
    if not args.resume_other_data:
        raise ValueError('cannot resume checkpoint %d on other data: %s; pass '
                         '--resume_other_data to continue on it anyway'
                         % (record['checkpoint'], text))
    logger.warning('resuming checkpoint %d on other data (--resume_other_data): %s',
                   record['checkpoint'], text)


def check_resume_compatible(record, network, batch_size, num_devices, num_workers):
    """Refuse to resume a run whose batch layout differs (its optimizer state would not fit)."""
    wanted = {'network': network, 'batch_size': batch_size, 'num_devices': num_devices,
              'num_workers': num_workers}
    differing = ['%s %r (now %r)' % (k, record[k], v) for k, v in wanted.items()
                 if record[k] != v]
    if differing:
        raise ValueError('cannot resume checkpoint %d: it was trained with %s; use the same '
                         'network, batch and devices' % (record['checkpoint'],
                                                         ', '.join(differing)))


def is_sync_dist(kv):
    """True for a synchronous distributed kvstore (dist_sync, dist_device_sync)."""
    return isinstance(kv, mx.kv.KVStore) and 'dist' in kv.type and '_sync' in kv.type


def init_optimizer(mod, kv, optimizer_params, graph_multipliers=False):
    """Install SGD (rcnn/core/optimizer.py: the original's lr x1 / wd x1 for every parameter, or
    the graph's multipliers); returns whether this process holds the optimizer state.

    With a synchronous dist kvstore the updates run on the workers (the servers only sum
    gradients), so every worker holds the optimizer state, and rank 0's initial parameters
    are broadcast to all. With dist_async the servers update the weights (MXNet's default)
    and the optimizer state lives there: it cannot be checkpointed.
    """
    if not is_sync_dist(kv):
        init_module_optimizer(mod, kv, optimizer_params, graph_multipliers)
        return not (isinstance(kv, mx.kv.KVStore) and 'dist' in kv.type)
    previous = os.environ.get('MXNET_UPDATE_ON_KVSTORE')
    os.environ['MXNET_UPDATE_ON_KVSTORE'] = '0'
    try:
        init_module_optimizer(mod, kv, optimizer_params, graph_multipliers)
    finally:
        if previous is None:
            del os.environ['MXNET_UPDATE_ON_KVSTORE']
        else:
            os.environ['MXNET_UPDATE_ON_KVSTORE'] = previous
    arg_params, aux_params = mod.get_params()
    for name in sorted(arg_params):
        kv.pull(name, out=arg_params[name])
    mx.nd.waitall()
    mod.set_params(arg_params, aux_params)
    logger.info('rank %d: parameters broadcast from rank 0 (digest %s)', kv.rank,
                params_digest(arg_params)[:16])
    return True


def plan_run(args, record, num_images, batch_size):
    """(schedule, start Position, end_epoch, frozen names or None) of a new or resumed run."""
    if record is not None:
        base_lr = record['base_lr']
        if args.lr_given and args.lr != base_lr:
            logger.warning('--lr %.8g replaces the resumed schedule\'s base lr %.8g (the lr steps '
                           'and factors stay)', args.lr, base_lr)
            base_lr = args.lr
        schedule = LRSchedule(base_lr, record['lr_steps'], record['lr_factors'])
        position = Position(record['epoch'], record['batch_in_epoch'], record['iteration'])
        end_epoch = args.end_epoch if args.end_epoch is not None else record['end_epoch']
        logger.info('resuming from checkpoint %s-%04d at %s, lr %.8g', args.prefix,
                    record['checkpoint'], position, schedule.lr_at(position.iteration))
        return schedule, position, end_epoch, list(record.get('fixed_params', []))
    schedule = LRSchedule.from_epochs(args.lr, args.lr_step, args.begin_epoch, num_images,
                                      batch_size)
    end_epoch = args.end_epoch if args.end_epoch is not None else base_default.end_epoch
    return schedule, Position(args.begin_epoch, 0, 0), end_epoch, None


def build_module(train_sym, loader, contexts, work_load_list, fixed, arg_params, aux_params,
                 allow_missing):
    """Bind the training graph to the loader's shapes and set its parameters (Xavier for the
    ones ``arg_params`` / ``aux_params`` lack, when ``allow_missing``)."""
    mod = mx.mod.Module(train_sym, data_names=[d.name for d in loader.provide_data],
                        label_names=[d.name for d in loader.provide_label], context=contexts,
                        work_load_list=work_load_list, fixed_param_names=fixed, logger=logger)
    mod.bind(data_shapes=loader.provide_data, label_shapes=loader.provide_label,
             for_training=True)
    mod.init_params(initializer=mx.init.Xavier(**XAVIER), arg_params=arg_params,
                    aux_params=aux_params, allow_missing=allow_missing)
    return mod


def open_val_set(args, rank):
    """Rank 0 with --val_set: the validation split, read and checked now (start-up)."""
    from rcnn.core.validation import open_validation_set
    if rank != 0 or not args.val_set:
        return None
    return open_validation_set(args.dataset_path, args.val_set, args.root_path, args.val_images)


def make_watchers(args, cfg, record, contexts, val_set):
    """Rank 0's ``<prefix>-metrics.csv`` writer and, with --val_set, its validator."""
    from rcnn.core.metric import build_train_metrics
    from rcnn.core.metrics_log import MetricsLog
    from rcnn.core.validation import Validator
    names = [name for name, _ in build_train_metrics(cfg.RPN_FEAT_STRIDE).get_name_value()]
    watchers = [MetricsLog(args.prefix, names, None if record is None else record['iteration'])]
    if val_set is not None:
        ctx_id = contexts[0].device_id if contexts[0].device_type == 'gpu' else -1
        watchers.append(Validator(args.prefix, val_set, args.val_every, args.val_mode,
                                  args.val_metric, ctx_id, resume=record))
    return watchers


# ---------------------------------------------------------------------------- main
def train(args, cfg):
    """Everything after argument parsing; returns the final Position."""
    from rcnn.core.loader import CropLoader, feature_symbols
    from rcnn.recipe import write_recipe
    from rcnn.symbol import get_symbol_test, get_symbol_train

    contexts = resolve_contexts(args.gpus, args.cpus)
    kv, rank, num_workers = create_kvstore(args.kvstore)
    run_lock = PrefixLock(args.prefix, rank)  # noqa: F841 -- held while this run lives
    log_file = setup_logging(args.prefix, rank)
    if rank == 0:
        train_state.clean_interrupted_saves(args.prefix)
    if args.batch_images:
        cfg.TRAIN.BATCH_IMAGES = args.batch_images
    cfg.TRAIN.FLIP = not args.no_flip
    cfg.TRAIN.SHUFFLE = not args.no_shuffle
    record = resolve_resume(args)
    if record is not None:
        check_resume_data(record, args)
    recipe = apply_recipe_flags(args, cfg, record)
    seed = args.seed if args.seed is not None else (
        record['seed'] if record is not None else random.SystemRandom().randrange(2 ** 31))
    seed_everything(seed)
    logger.info('train.py %s', ' '.join(sys.argv[1:]))
    cpu_plan = cpu_share.plan_cpu_share(
        cpu_share.usable_cores(), sum(1 for c in contexts if c.device_type == 'gpu'),
        args.workers)
    logger.info('%s', cpu_share.describe(cpu_plan))
    val_set = open_val_set(args, rank)
    roidb = shard_roidb(load_roidb(args, cfg), rank, num_workers)
    fit_batch_to_data(cfg, len(roidb), len(contexts))
    batch_size = cfg.TRAIN.BATCH_IMAGES * len(contexts)
    iters_per_epoch = len(roidb) // batch_size
    logger.info('devices %s, batch %d (%d per device), kvstore %s, rank %d of %d, seed %d, '
                'log %s', contexts, batch_size, cfg.TRAIN.BATCH_IMAGES,
                kv if isinstance(kv, str) else kv.type, rank, num_workers, seed, log_file)
    logger.info('config:\n%s', pprint.pformat(dict(cfg)))
    if record is not None:
        check_resume_compatible(record, args.network, batch_size, len(contexts), num_workers)
    schedule, position, end_epoch, fixed = plan_run(args, record, len(roidb), batch_size)
    logger.info('%d images (%d iterations per epoch); %s', len(roidb), iters_per_epoch, schedule)

    train_sym = get_symbol_train(args.network, cfg)
    deploy_sym = get_symbol_test(args.network, cfg)
    feat_sym = feature_symbols(train_sym, cfg)
    if rank == 0:       # what inference needs to decode this model (rcnn/recipe.py)
        logger.info('recipe written to %s', write_recipe(args.prefix, cfg, args.network))
    # crops differ per worker; a run (re)started at epoch e draws that epoch's batches of the
    # same stream, so a resume sees exactly the batches of the uninterrupted run
    loader = CropLoader(feat_sym, roidb, batch_size, shuffle=not args.no_shuffle, ctx=contexts,
                        work_load_list=args.work_load_list, cfg=cfg, num_workers=cpu_plan.workers,
                        seed=seed + 1000003 * rank, first_epoch=position.epoch)
    try:
        data_shapes = loader.provide_data + loader.provide_label
        arg_shapes, aux_shapes = train_param_shapes(train_sym, data_shapes)
        arg_params, aux_params, loaded = starting_params(args, record, arg_shapes, aux_shapes)
        param_names = [n for n in train_sym.list_arguments() if n in arg_shapes]
        if fixed is None:
            fixed = choose_frozen(cfg, param_names, loaded)
        logger.info('frozen parameters (%d): %s', len(fixed), fixed)

        mod = build_module(train_sym, loader, contexts, args.work_load_list, fixed,
                           arg_params, aux_params, allow_missing=record is None)
        sync_workers = num_workers if is_sync_dist(kv) else 1
        states_saved = init_optimizer(mod, kv, {
            'learning_rate': schedule.base_lr, 'momentum': cfg.TRAIN.MOMENTUM, 'wd': args.wd,
            'rescale_grad': 1.0 / (len(contexts) * sync_workers),
            'lr_scheduler': schedule.scheduler(), 'begin_num_update': position.iteration},
            graph_multipliers=recipe['graph_lr_wd_mult'])
        logger.info('optimizer multipliers: %s', describe_multipliers(effective_multipliers(
            mod._optimizer, [n for n in param_names if n not in set(fixed)])))
        if record is not None and record.get('optimizer_states', True) and states_saved:
            mod.load_optimizer_states(train_state.checkpoint_files(
                args.prefix, record['checkpoint'])['states'])
            logger.info('optimizer state restored (%d updates so far)', position.iteration)
        elif record is not None:
            logger.warning('checkpoint %d has no optimizer state (dist_async) or this run cannot '
                           'hold it: the momentum restarts from zero', record['checkpoint'])

        trainer = Trainer(
            mod, deploy_sym, LoaderFeed(loader), schedule, args.prefix, batch_size,
            iters_per_epoch, end_epoch, max_iters=args.max_iters,
            checkpoint_iters=args.checkpoint_iters, frequent=args.frequent,
            record={'network': args.network, 'seed': seed, 'num_devices': len(contexts),
                    'num_workers': num_workers, 'fixed_params': fixed, **recipe,
                    'begin_epoch': record['begin_epoch'] if record else args.begin_epoch,
                    'dataset_path': os.path.abspath(args.dataset_path),
                    'image_set': args.image_set},
            strides=cfg.RPN_FEAT_STRIDE, saver=rank == 0, save_optimizer_states=states_saved,
            max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes,
            watchers=make_watchers(args, cfg, record, contexts, val_set) if rank == 0 else ())
        if record is not None:
            trainer.last_checkpoint = (record['checkpoint'], record['iteration'])
        position = trainer.fit(position)
        arg_params, _ = mod.get_params()
        logger.info('final parameter digest (rank %d of %d): %s', rank, num_workers,
                    params_digest(arg_params))
        return position
    finally:
        loader.close()


def main(argv=None):
    args, cfg = parse_args(argv)
    try:
        train(args, cfg)
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
    except (DeviceError, train_state.CorruptCheckpointError, PrefixInUseError, ValueError,
            OSError) as exc:
        if logging.getLogger().handlers:  # the traceback for the log, once it is set up
            logger.error('%s', exc, exc_info=True)
        print('train.py: error: %s' % exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == '__main__':
    sys.exit(main())
