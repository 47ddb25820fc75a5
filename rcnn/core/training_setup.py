"""Training set-up and resume: what ``train.py`` does between parsing its flags and the loop.

:func:`build_training` ``(args, cfg)`` turns train.py's flags and a config from
``generate_config`` into a ready :class:`TrainingRun`:

1. devices (``--gpus`` / ``--cpus`` / CUDA_VISIBLE_DEVICES) and the kvstore (rank, workers);
   the exclusive lock on ``--prefix`` (rcnn/utils/run_lock.py), held until the run is closed;
2. logging to stdout and ``<prefix>-train.log``; what a killed save left behind is removed;
3. resume state: the verified training record of ``--resume`` (rcnn/checkpoint/record.py), on
   the same data unless ``--resume_other_data``; the seed (``--seed``, the record's, or a
   fresh one);
4. the roidb (every ``+``-joined image set, mirrored unless ``--no_flip``), this worker's shard
   and the batch size (``BATCH_IMAGES`` x devices, lowered for tiny sets);
5. the schedule, start position and end epoch of a new or resumed run (:func:`plan_run`);
6. the training and deploy graphs and the CropLoader;
7. the starting parameters (resumed checkpoint, ``--pretrained`` or none), the frozen ones
   (``LAYER_FIX``), the bound Module with SGD (``--graph_lr_wd_mult``, rcnn/core/optimizer.py)
   and, resuming, its optimizer state;
8. the :class:`~rcnn.core.trainer.Trainer` with its hooks (:func:`make_hooks`,
   rcnn/core/hooks.py): logging, checkpoints, the stop rule, the time budget, the NaN guard,
   Ctrl-C and, on rank 0, ``<prefix>-metrics.csv``, the summary and, with ``--val_set``, the
   validation of epoch checkpoints (rcnn/core/metrics_log.py, rcnn/core/validation.py; the
   validation split is read at start-up, before the roidb).

:func:`run_training` builds, trains (``Trainer.fit``), logs the final parameter digest and
closes the run (loader workers, lock). ``cfg`` is explicit; set-up changes three of its keys:
``TRAIN.BATCH_IMAGES`` (``--batch_images``, or lowered for tiny sets) and
``TRAIN.GRAPH_LR_WD_MULT`` / ``TRAIN.LOSS_SCALE`` (the flags, or a resumed run's record).
"""
import logging
import os
import pprint
import random
import sys

import mxnet as mx
import numpy as np

from rcnn.config import DEFAULT_END_EPOCH
from rcnn.checkpoint import record as train_record
from rcnn.checkpoint.commit import clean_interrupted_saves
from rcnn.checkpoint.params import params_digest
from rcnn.checkpoint.states import load_optimizer_states
from rcnn.core import cpu_share
from rcnn.core.devices import DeviceError, resolve_contexts, shard_roidb
from rcnn.core.hooks import standard_hooks
from rcnn.core.optimizer import describe_multipliers, effective_multipliers, init_module_optimizer
from rcnn.core.pretrained import load_pretrained
from rcnn.core.schedule import LRSchedule
from rcnn.core.param_policy import XAVIER, frozen_param_names, layer_fix_candidates
from rcnn.core.trainer import Position, Trainer
from rcnn.utils.run_lock import PrefixLock

# the log lines keep train.py's name
logger = logging.getLogger('train')

__all__ = ['TrainingRun', 'build_training', 'run_training', 'setup_logging',
           'NoTracebackFormatter', 'seed_everything', 'check_resume_data',
           'load_roidb', 'LoaderFeed', 'fit_batch_to_data', 'create_kvstore',
           'train_param_shapes', 'starting_params', 'resolve_resume', 'check_resume_compatible',
           'is_sync_dist', 'init_optimizer', 'plan_run', 'build_module', 'choose_frozen',
           'apply_recipe_flags', 'open_val_set', 'make_hooks']


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
    from rcnn.dataset import RetinaFaceDataset
    roidb = []
    for image_set in args.image_set.split('+'):
        imdb = RetinaFaceDataset(image_set, args.root_path, args.dataset_path, cfg=cfg,
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
    from rcnn.checkpoint.params import compare_params, load_checkpoint
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
    missing, unexpected, mismatched = compare_params(arg_shapes, aux_shapes, arg_params,
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
    number = train_record.latest_checkpoint(args.prefix) if args.resume == 'latest' \
        else args.resume
    if number is None:
        raise train_record.CorruptCheckpointError(
            'cannot resume: no training record %s-NNNN.train.json found' % args.prefix)
    return train_record.read_train_record(args.prefix, number)


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
    end_epoch = args.end_epoch if args.end_epoch is not None else DEFAULT_END_EPOCH
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


def make_hooks(args, cfg, record, contexts, val_set, rank, num_workers, deploy_sym, run_record,
               end_epoch, batch_size, states_saved):
    """The Trainer's hooks (rcnn/core/hooks.py :func:`standard_hooks`): on rank 0 with
    ``<prefix>-metrics.csv`` and, with --val_set, its validator."""
    from rcnn.core.metric import build_train_metrics
    from rcnn.core.metrics_log import MetricsLog
    from rcnn.core.validation import Validator
    metrics_table = validator = None
    if rank == 0:
        names = [name for name, _ in build_train_metrics(cfg.RPN_FEAT_STRIDE).get_name_value()]
        metrics_table = MetricsLog(args.prefix, names,
                                   None if record is None else record['iteration'])
    if rank == 0 and val_set is not None:
        ctx_id = contexts[0].device_id if contexts[0].device_type == 'gpu' else -1
        validator = Validator(args.prefix, val_set, args.val_every, args.val_mode,
                              args.val_metric, ctx_id, resume=record)
    return standard_hooks(
        args.prefix, deploy_sym, run_record, end_epoch, batch_size, tuple(cfg.RPN_FEAT_STRIDE),
        frequent=args.frequent, max_iters=args.max_iters, checkpoint_iters=args.checkpoint_iters,
        max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes,
        saver=rank == 0, optimizer_states=states_saved,
        resumed_from=None if record is None else (record['checkpoint'], record['iteration']),
        metrics_table=metrics_table, validator=validator, interruptible=num_workers == 1)


# ---------------------------------------------------------------------------- the run
class TrainingRun(object):
    """What :func:`build_training` sets up: ``trainer`` (ready to ``fit(start)``; add hooks with
    ``trainer.register_hooks``, see docs/training-hooks.md), ``module`` (the bound training
    Module), ``loader`` (the CropLoader, to ``close()``), ``start`` (the Position training
    begins at), ``rank`` / ``num_workers`` of this process, ``seed``."""

    def __init__(self, trainer, module, loader, start, rank, num_workers, seed, lock):
        self.trainer = trainer
        self.module = module
        self.loader = loader
        self.start = start
        self.rank = rank
        self.num_workers = num_workers
        self.seed = seed
        self.lock = lock

    def close(self):
        """Stop the loader's worker processes and release the prefix lock."""
        try:
            self.loader.close()
        finally:
            self.lock.release()


def build_training(args, cfg):
    """Set up a new or resumed training run from train.py's flags (see the module docstring);
    the run holds an exclusive lock on ``--prefix`` until :meth:`TrainingRun.close`.

    Args:
        args: train.py's parsed flags (``train.parse_args``).
        cfg: the config of ``generate_config(args.network, args.dataset)``.
    Returns:
        :class:`TrainingRun`.
    Raises:
        DeviceError, CorruptCheckpointError, ValueError, OSError: with a message
        naming the flag or file; PrefixInUseError when another run holds ``--prefix``.
    """
    contexts = resolve_contexts(args.gpus, args.cpus)
    kv, rank, num_workers = create_kvstore(args.kvstore)
    run_lock = PrefixLock(args.prefix, rank)   # held while this run lives (TrainingRun.close)
    try:
        return _build_locked(args, cfg, contexts, kv, rank, num_workers, run_lock)
    except BaseException:
        run_lock.release()
        raise


def _build_locked(args, cfg, contexts, kv, rank, num_workers, run_lock):
    """:func:`build_training` once the prefix is locked."""
    from rcnn.core.loader import CropLoader, feature_symbols
    from rcnn.recipe import write_recipe
    from rcnn.symbol import get_symbol_test, get_symbol_train

    log_file = setup_logging(args.prefix, rank)
    if rank == 0:
        clean_interrupted_saves(args.prefix)
    if args.batch_images:
        cfg.TRAIN.BATCH_IMAGES = args.batch_images
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
            load_optimizer_states(mod, args.prefix, record)   # only bytes the record vouches for
            logger.info('optimizer state restored (%d updates so far)', position.iteration)
        elif record is not None:
            logger.warning('checkpoint %d has no optimizer state (dist_async) or this run cannot '
                           'hold it: the momentum restarts from zero', record['checkpoint'])

        run_record = {'network': args.network, 'seed': seed, 'num_devices': len(contexts),
                      'num_workers': num_workers, 'fixed_params': fixed, **recipe,
                      'begin_epoch': record['begin_epoch'] if record else args.begin_epoch,
                      'dataset_path': os.path.abspath(args.dataset_path),
                      'image_set': args.image_set}
        hooks = make_hooks(args, cfg, record, contexts, val_set, rank, num_workers, deploy_sym,
                           run_record, end_epoch, batch_size, states_saved)
        trainer = Trainer(mod, LoaderFeed(loader), schedule, batch_size, iters_per_epoch,
                          tuple(cfg.RPN_FEAT_STRIDE), hooks)
    except BaseException:
        loader.close()
        raise
    return TrainingRun(trainer, mod, loader, position, rank, num_workers, seed, run_lock)


def run_training(args, cfg):
    """:func:`build_training`, then train until the stop rule; returns the final Position.

    Raises (besides :func:`build_training`'s): NonFiniteLossError when a loss or a parameter
    becomes NaN/Inf (the last good checkpoint is left untouched).
    """
    run = build_training(args, cfg)
    try:
        position = run.trainer.fit(run.start)
        arg_params, _ = run.module.get_params()
        logger.info('final parameter digest (rank %d of %d): %s', run.rank, run.num_workers,
                    params_digest(arg_params))
        return position
    finally:
        run.close()
