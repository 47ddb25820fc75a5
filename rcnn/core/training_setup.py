"""Training set-up and resume: what ``train.py`` does between checking its flags and the loop.

:func:`build_training` ``(options)`` turns :class:`~rcnn.core.train_options.TrainOptions`
(train.py's checked flags, or options built in Python) into a ready :class:`TrainingRun`:

1. devices (``--gpus`` / ``--cpus`` / CUDA_VISIBLE_DEVICES) and the kvstore (rank, workers);
   the exclusive lock on ``--prefix`` (rcnn/utils/run_lock.py), held until the run is closed;
2. logging to stdout and ``<prefix>-train.log``; what a killed save left behind is removed;
3. resume state: the verified training record of ``--resume`` (rcnn/checkpoint/record.py);
   the options the flags did not give (data, validation, lr, end epoch, config overrides) are
   taken from it (:func:`remembered_options`); another dataset path or image set is refused
   unless ``--resume_other_data``; the seed (``--seed``, the record's, or a fresh one);
4. the config, built once and frozen (:func:`rcnn.config.build_config`): the presets, the
   record's overrides when resuming, then the flags' and ``--set``'s (:func:`run_overrides`);
5. the roidb (every ``+``-joined image set, mirrored unless ``--no_flip``), its content digest
   (:func:`training_data_digest`: label files and image list; a resume on changed data is
   refused unless ``--resume_other_data``), this worker's shard and the batch size
   (``BATCH_IMAGES`` x devices; for a set too small to fill it, a config with a lower
   ``BATCH_IMAGES`` is built);
6. the schedule, start position and end epoch of a new or resumed run (:func:`plan_run`);
7. the training and deploy graphs and the starting parameters (resumed checkpoint,
   ``--pretrained`` or none), read before any loader worker starts; then the CropLoader;
8. the frozen ones (``LAYER_FIX``), the bound Module with SGD (``TRAIN.GRAPH_LR_WD_MULT``,
   rcnn/core/optimizer.py) and, resuming, its optimizer state;
9. the :class:`~rcnn.core.trainer.Trainer` with its hooks (:func:`make_hooks`,
   rcnn/core/hooks.py): logging, checkpoints, the stop rule, the time budget, the NaN guard,
   Ctrl-C and, on rank 0, ``<prefix>-metrics.csv``, the summary and, with ``--val_set``, the
   validation of epoch checkpoints (rcnn/core/metrics_log.py, rcnn/core/validation.py; the
   split is read at start-up, before the roidb).

The training record of every checkpoint stores the run's options that ``--resume``
remembers, the data digest, the config overrides and the merged config.

:func:`run_training` builds, trains (``Trainer.fit``), logs the final parameter digest and
closes the run (loader workers, lock). Nothing here changes a config: a config is frozen.
"""
import dataclasses
import hashlib
import logging
import os
import pprint
import random
import sys

import mxnet as mx
import numpy as np

from rcnn.checkpoint import record as train_record
from rcnn.checkpoint.commit import clean_interrupted_saves
from rcnn.checkpoint.params import params_digest
from rcnn.checkpoint.states import load_optimizer_states
from rcnn.config import build_config, config_to_plain
from rcnn.core import cpu_share
from rcnn.core.devices import DeviceError, resolve_contexts, shard_roidb
from rcnn.core.hooks import standard_hooks
from rcnn.core.optimizer import describe_multipliers, effective_multipliers, init_module_optimizer
from rcnn.core.param_policy import XAVIER, frozen_param_names, layer_fix_candidates
from rcnn.core.pretrained import load_pretrained
from rcnn.core.schedule import LRSchedule, rebase_steps
from rcnn.core.train_options import ValidationOptions
from rcnn.core.trainer import Position, Trainer
from rcnn.utils import machine
from rcnn.utils.run_lock import PrefixLock

# the log lines keep train.py's name
logger = logging.getLogger('train')

__all__ = ['TrainingRun', 'build_training', 'run_training', 'setup_logging',
           'NoTracebackFormatter', 'seed_everything', 'check_resume_data',
           'load_roidb', 'training_data_digest', 'LoaderFeed', 'fit_batch_to_data',
           'create_kvstore', 'train_param_shapes', 'starting_params', 'resolve_resume',
           'check_resume_compatible', 'check_resume_not_done', 'is_sync_dist', 'init_optimizer',
           'plan_run', 'build_module', 'choose_frozen', 'RECIPE_KEYS', 'recorded_overrides',
           'run_overrides', 'remembered_options', 'open_val_set', 'make_hooks']

#: config keys of the optimizer semantics and the loss scales: a resumed run keeps them
RECIPE_KEYS = ('TRAIN.GRAPH_LR_WD_MULT', 'TRAIN.LOSS_SCALE')


#: marks the root-logger handlers :func:`setup_logging` installs
_RUN_HANDLER_ATTR = '_retinaface_training_run'


def setup_logging(prefix, rank=0):
    """stdout + ``<prefix>-train.log`` (``<prefix>-train-rank<r>.log`` for other workers).

    The handlers of an earlier run in the same process are closed and removed first, so that
    runs started one after another from Python each log once, into their own file only.
    """
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
    for handler in [h for h in root.handlers if getattr(h, _RUN_HANDLER_ATTR, False)]:
        root.removeHandler(handler)
        handler.close()
    for handler in (console, log):
        setattr(handler, _RUN_HANDLER_ATTR, True)
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


# ---------------------------------------------------------------------------- data
def load_roidb(data, cfg):
    """Roidb of every '+'-joined image set of ``data`` (DataOptions), with mirrored copies
    unless ``data.flip`` is False. An unreadable image of any training set is left out with a
    warning naming ``label.txt:line`` (the dataset's ``skip_unreadable``): one bad file must
    not stop a run."""
    from rcnn.dataset import RetinaFaceDataset
    roidb = []
    for image_set in data.image_sets:
        imdb = RetinaFaceDataset(image_set, data.root_path, data.dataset_path, cfg=cfg,
                                 drop_outside_boxes=not data.keep_outside_boxes,
                                 skip_unreadable=True)
        entries = imdb.gt_roidb()
        if data.flip:
            entries = imdb.append_flipped_images(entries)
        roidb.extend(entries)
    if not roidb:
        raise ValueError('no training image in %s (image set %s)' % (data.dataset_path,
                                                                      data.image_set))
    return roidb


def training_data_digest(data, roidb):
    """SHA-256 of what the training data is: every image set's ``label.txt`` bytes and the
    sorted list of the images the roidb reads, each with its size in bytes.

    Two folders with the same content have the same digest (paths and dates do not count);
    removing a label, an image or replacing an image by one of another size changes it.
    """
    digest = hashlib.sha256()
    for image_set in data.image_sets:
        label_file = os.path.join(data.dataset_path, image_set, 'label.txt')
        digest.update(('%s\0' % image_set).encode('utf-8'))
        with open(label_file, 'rb') as handle:
            digest.update(hashlib.sha256(handle.read()).digest())
    root = os.path.abspath(data.dataset_path)
    for path in sorted({os.path.abspath(entry['image']) for entry in roidb}):
        try:
            size = os.path.getsize(path)
        except OSError:
            size = -1       # a missing image: the loader skips it, the digest still differs
        digest.update(('%s\0%d\0' % (os.path.relpath(path, root), size)).encode('utf-8'))
    return digest.hexdigest()


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


def fit_batch_to_data(batch_images, num_images, num_devices):
    """Images per device: ``batch_images``, lowered when the data set cannot fill one batch
    (tiny smoke-test sets, logged)."""
    wanted = batch_images * num_devices
    if num_images >= wanted:
        return batch_images
    per_device = num_images // num_devices
    if per_device < 1:
        raise ValueError('%d training images cannot feed %d devices' % (num_images, num_devices))
    logger.warning('only %d training images for a batch of %d: BATCH_IMAGES lowered from %d to '
                   '%d (pass --batch_images to choose)', num_images, wanted, batch_images,
                   per_device)
    return per_device


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


def train_param_shapes(train_sym, cfg, batch_size):
    """``(args, aux)``: name -> shape of the training graph's parameters and aux states for
    batches of ``batch_size`` crops (the shapes follow from the image input alone, so they
    are known before the loader exists)."""
    from rcnn.model_layout import DATA_NAME, ModelLayout
    crop = int(cfg.SCALES[0][0])
    arg_shapes, _, aux_shapes = train_sym.infer_shape_partial(data=(batch_size, 3, crop, crop))
    inputs = {DATA_NAME} | set(ModelLayout.from_config(cfg).label_names())
    args = {n: tuple(s) for n, s in zip(train_sym.list_arguments(), arg_shapes)
            if n not in inputs}
    aux = {n: tuple(s) for n, s in zip(train_sym.list_auxiliary_states(), aux_shapes)}
    unknown = sorted(n for n, s in list(args.items()) + list(aux.items()) if not s or 0 in s)
    if unknown:
        raise ValueError('cannot infer the shapes of %s in the %d-pixel training graph'
                         % (unknown, crop))
    return args, aux


def starting_params(network, checkpoint, record, arg_shapes, aux_shapes):
    """``(arg_params, aux_params, loaded names)`` to start from: the resumed checkpoint, the
    pretrained weights (rcnn/core/pretrained.py) or nothing.

    Args:
        network: 'mnet' or 'resnet'.
        checkpoint: :class:`~rcnn.core.train_options.CheckpointOptions` (prefix, pretrained).
        record: the resumed training record, or None.
        arg_shapes, aux_shapes: name -> shape of the training graph.
    Raises ValueError naming the file on mismatched shapes, a pretrained file sharing no name
    with the graph, or (resuming) anything missing.
    """
    from rcnn.checkpoint.params import compare_params, load_checkpoint
    from rcnn.utils.param_names import fit_names
    if checkpoint.pretrained and record is None:
        pretrained = load_pretrained(checkpoint.pretrained, checkpoint.pretrained_epoch,
                                     network, arg_shapes, aux_shapes)
        logger.info('%s', pretrained.summary())
        return pretrained.arg_params, pretrained.aux_params, pretrained.loaded
    if record is None:
        logger.warning('training from scratch (no --pretrained): every parameter gets the '
                       'initialiser; the original recipe starts from ImageNet weights')
        return {}, {}, []
    prefix = checkpoint.prefix
    source = '%s-%04d' % (prefix, record['checkpoint'])
    _, arg_params, aux_params = load_checkpoint(prefix, record['checkpoint'])
    # BatchNorm statistics in the training graph's spelling (a Gluon backbone's checkpoint
    # says _running_ where our graphs say _moving_)
    arg_params = fit_names(arg_shapes, arg_params)[0]
    aux_params = fit_names(aux_shapes, aux_params)[0]
    missing, unexpected, mismatched = compare_params(arg_shapes, aux_shapes, arg_params,
                                                     aux_params)
    if mismatched:
        raise ValueError('%s does not fit the %s training graph: %s' % (
            source, network, '; '.join(mismatched)))
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


# ---------------------------------------------------------------------------- resume
def resolve_resume(prefix, resume):
    """The verified training record of checkpoint ``resume`` ('latest' or a number) of
    ``prefix``, or None when ``resume`` is None."""
    if resume is None:
        return None
    number = train_record.latest_checkpoint(prefix) if resume == 'latest' else resume
    if number is None:
        raise train_record.CorruptCheckpointError(
            'cannot resume: no training record %s-NNNN.train.json found' % prefix)
    return train_record.read_train_record(prefix, number)


def _first(*values):
    """The first value that is not None (None when all are)."""
    return next((value for value in values if value is not None), None)


def _remembered_validation(given, record):
    """The validation settings of a resumed run: the given ones, else the record's."""
    saved = record.get('validation_options') or {}
    names = [f.name for f in dataclasses.fields(ValidationOptions)]
    if given.val_set is None and not saved.get('val_set'):
        asked = [name for name in names if getattr(given, name) is not None]
        if asked:
            raise ValueError('--val_%s needs --val_set: checkpoint %d\'s run did not validate'
                             % (asked[0], record['checkpoint']))
        return given
    if given.val_set is not None and given.val_set != saved.get('val_set'):
        return given                       # another split: its own settings or the defaults
    return ValidationOptions(**{name: _first(getattr(given, name), saved.get(name))
                                for name in names})


def remembered_options(options, record):
    """The options a run uses: for a new run the given ones with the defaults; resuming, what
    the flags did not give comes from the checkpoint's record (the data, the validation
    settings, the base lr, the end epoch, the weight decay, the seed), then the defaults
    (records written before a setting was recorded).
    """
    if record is None:
        return options.with_defaults()
    data, schedule = options.data, options.schedule
    if schedule.lr_step is not None:
        logger.warning('--lr_step %s is not used by --resume: checkpoint %d\'s schedule goes on '
                       '(lr steps at iterations %s)', schedule.lr_step, record['checkpoint'],
                       record['lr_steps'])
    data = dataclasses.replace(
        data, dataset_path=_first(data.dataset_path, record.get('dataset_path')),
        image_set=_first(data.image_set, record.get('image_set')),
        keep_outside_boxes=_first(data.keep_outside_boxes, record.get('keep_outside_boxes')),
        flip=_first(data.flip, record.get('flip')),
        shuffle=_first(data.shuffle, record.get('shuffle')))
    schedule = dataclasses.replace(
        schedule, lr=_first(schedule.lr, record['base_lr']),
        end_epoch=_first(schedule.end_epoch, record.get('end_epoch')),
        wd=_first(schedule.wd, record.get('wd')), seed=_first(schedule.seed, record.get('seed')))
    resumed = dataclasses.replace(options, data=data, schedule=schedule,
                                  validation=_remembered_validation(options.validation, record))
    logger.info('resuming checkpoint %d: data %s (image set %s), validation %s',
                record['checkpoint'], data.dataset_path, data.image_set,
                resumed.validation.val_set or 'none')
    return resumed.with_defaults()


def recorded_overrides(record):
    """``{dotted key: value}``: the config overrides checkpoint ``record``'s run used.

    Records that do not list them get the values of the switches they do record (records
    older than the switches: the graph's multipliers and the release loss scales) and the
    batch per device."""
    if 'config_overrides' in record:
        return {key: value for key, value in record['config_overrides']}
    return {'TRAIN.GRAPH_LR_WD_MULT': record.get('graph_lr_wd_mult', True),
            'TRAIN.LOSS_SCALE': record.get('loss_scale', 'release'),
            'TRAIN.BATCH_IMAGES': record['batch_size'] // record['num_devices']}


def run_overrides(given, record):
    """``{dotted key: value}`` the run's config is built with: a resumed run's recorded
    overrides, then ``given`` (train.py's flags and ``--set``) on top.

    Raises:
        ValueError: resuming with a recipe key (:data:`RECIPE_KEYS`) other than the
        checkpoint's: a resumed run keeps its optimizer semantics and loss scales.
    """
    given = dict(given)
    if record is None:
        return given
    saved = recorded_overrides(record)
    refused = {key: value for key, value in given.items()
               if key in RECIPE_KEYS and key in saved and saved[key] != value}
    if refused:
        raise ValueError('cannot resume checkpoint %d with %s: it was trained with %s'
                         % (record['checkpoint'], refused,
                            {key: saved[key] for key in refused}))
    for key, value in given.items():
        if key in saved and saved[key] != value:
            logger.warning('resuming checkpoint %d with %s=%r (its run used %r)',
                           record['checkpoint'], key, value, saved[key])
    merged = dict(saved)
    merged.update(given)
    return merged


def check_resume_data(record, data, allowed):
    """Refuse to resume on another dataset path / image set than the checkpoint's, unless
    ``allowed``; returns whether they differ."""
    trained_on = (record.get('dataset_path'), record.get('image_set'))
    now = (os.path.abspath(data.dataset_path), data.image_set)
    differing = [(flag, old, new) for flag, old, new in zip(('--dataset_path', '--image_set'),
                                                            trained_on, now)
                 if old is not None and old != new]
    if not differing:
        return False
    text = ', '.join('%s %s (checkpoint: %s)' % (flag, new, old) for flag, old, new in differing)
    if not allowed:
        raise ValueError('cannot resume checkpoint %d on other data: %s; pass '
                         '--resume_other_data to continue on it anyway'
                         % (record['checkpoint'], text))
    logger.warning('resuming checkpoint %d on other data (--resume_other_data): %s',
                   record['checkpoint'], text)
    return True


def check_resume_content(record, digest, allowed):
    """Refuse to resume when the training data's content changed (:func:`training_data_digest`
    differs from the record's), unless ``allowed``; returns whether it changed."""
    saved = record.get('data_digest')
    if saved is None or saved == digest:
        return False
    if not allowed:
        raise ValueError('cannot resume checkpoint %d: the training data changed since it was '
                         'written (label.txt or the image list differ); pass '
                         '--resume_other_data to continue on it (the lr steps are then '
                         'recomputed from their epochs)' % record['checkpoint'])
    logger.warning('resuming checkpoint %d on changed training data (--resume_other_data)',
                   record['checkpoint'])
    return True


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


def check_resume_not_done(record, end_epoch, max_iters):
    """Refuse to resume a checkpoint that ``--end_epoch`` / ``--max_iters`` already stop."""
    if record['epoch'] >= end_epoch:
        raise ValueError('--end_epoch %d: checkpoint %d is already at epoch %d, nothing would be '
                         'trained; pass a later --end_epoch' % (end_epoch, record['checkpoint'],
                                                                record['epoch']))
    if max_iters is not None and record['iteration'] >= max_iters:
        raise ValueError('--max_iters %d: checkpoint %d has already done %d iterations, nothing '
                         'would be trained; pass a larger --max_iters'
                         % (max_iters, record['checkpoint'], record['iteration']))


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


def plan_run(schedule, record, num_images, batch_size, prefix, data_changed=False):
    """(LRSchedule, start Position, end_epoch, frozen names or None) of a new or resumed run.

    Args:
        schedule: :class:`~rcnn.core.train_options.ScheduleOptions` with the defaults (or the
            record's values) filled in.
        record: the resumed training record, or None.
        num_images, batch_size: roidb entries and images per iteration of this worker.
        prefix: the checkpoint prefix (for the log).
        data_changed: resuming on other data (``--resume_other_data``): the lr steps still
            ahead move to the same epochs at the new iterations per epoch.
    """
    if record is not None:
        base_lr = record['base_lr']
        if schedule.lr != base_lr:
            logger.warning('--lr %.8g replaces the resumed schedule\'s base lr %.8g (the lr steps '
                           'and factors stay)', schedule.lr, base_lr)
            base_lr = schedule.lr
        position = Position(record['epoch'], record['batch_in_epoch'], record['iteration'])
        steps = record['lr_steps']
        if data_changed:
            now = max(num_images // batch_size, 1)
            steps = rebase_steps(steps, position.iteration, record['iters_per_epoch'], now)
            logger.warning('lr steps recomputed for the other data: iterations %s -> %s (the same '
                           'epochs at %d instead of %d iterations per epoch)',
                           record['lr_steps'], steps, now, record['iters_per_epoch'])
        lr_schedule = LRSchedule(base_lr, steps, record['lr_factors'])
        logger.info('resuming from checkpoint %s-%04d at %s, lr %.8g', prefix,
                    record['checkpoint'], position, lr_schedule.lr_at(position.iteration))
        return lr_schedule, position, schedule.end_epoch, list(record.get('fixed_params', []))
    if schedule.end_epoch <= schedule.begin_epoch:
        raise ValueError('--end_epoch %d must be after --begin_epoch %d: nothing would be trained'
                         % (schedule.end_epoch, schedule.begin_epoch))
    lr_schedule = LRSchedule.from_epochs(schedule.lr, schedule.lr_step, schedule.begin_epoch,
                                         num_images, batch_size)
    return lr_schedule, Position(schedule.begin_epoch, 0, 0), schedule.end_epoch, None


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


def open_val_set(validation, data, rank):
    """Rank 0 with a validation split: the split (under ``data.dataset_path``), read and
    checked now (start-up); None otherwise."""
    from rcnn.core.validation import open_validation_set
    if rank != 0 or not validation.val_set:
        return None
    return open_validation_set(data.dataset_path, validation.val_set, data.root_path,
                               validation.images)


def make_hooks(options, metrics, record, contexts, val_set, rank, num_workers, deploy_sym,
               fields, end_epoch, batch_size, states_saved):
    """The Trainer's hooks (rcnn/core/hooks.py :func:`standard_hooks`); rank 0 also writes
    ``<prefix>-metrics.csv`` and, with a validation split, validates
    (``metrics``: the run's :class:`TrainMetrics`; ``fields``: what every training record of
    the run stores, :func:`run_record`)."""
    from rcnn.core.metrics_log import MetricsLog
    from rcnn.core.validation import Validator
    metrics_table = validator = None
    validation, schedule = options.validation, options.schedule
    if rank == 0:
        names = [name for name, _ in metrics().get_name_value()]
        metrics_table = MetricsLog(options.prefix, names,
                                   None if record is None else record['iteration'])
    if rank == 0 and val_set is not None:
        ctx_id = contexts[0].device_id if contexts[0].device_type == 'gpu' else -1
        validator = Validator(options.prefix, val_set, validation.every, validation.mode,
                              validation.metric, ctx_id, resume=record)
    max_minutes = schedule.max_minutes
    return standard_hooks(
        options.prefix, deploy_sym, fields, end_epoch, batch_size, metrics.layout,
        frequent=schedule.frequent, max_iters=schedule.max_iters,
        checkpoint_iters=options.checkpoint.checkpoint_iters,
        max_seconds=None if max_minutes is None else 60.0 * max_minutes,
        saver=rank == 0, optimizer_states=states_saved,
        resumed_from=None if record is None else (record['checkpoint'], record['iteration']),
        metrics_table=metrics_table, validator=validator, interruptible=num_workers == 1)


class TrainMetrics(object):
    """The training metrics of a recipe: calling it builds a fresh ``CompositeEvalMetric``
    (:func:`rcnn.core.metric.build_train_metrics` of the recipe's layout and ``LR_MODE``);
    ``layout`` is the training graph's :class:`~rcnn.model_layout.ModelLayout`."""

    def __init__(self, layout, lr_mode=0):
        self.layout = layout
        self.lr_mode = int(lr_mode)

    @classmethod
    def from_config(cls, cfg):
        from rcnn.model_layout import ModelLayout
        return cls(ModelLayout.from_config(cfg), cfg.LR_MODE)

    def __call__(self):
        from rcnn.core.metric import build_train_metrics
        return build_train_metrics(self.layout, self.lr_mode)


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


def build_training(options):
    """Set up a new or resumed training run (see the module docstring); the run holds an
    exclusive lock on the prefix until :meth:`TrainingRun.close`.

    Args:
        options: :class:`~rcnn.core.train_options.TrainOptions` (train.py's checked flags).
    Returns:
        :class:`TrainingRun`.
    Raises:
        DeviceError, CorruptCheckpointError, ValueError (ConfigError included),
        OSError: with a message naming the flag or file; PrefixInUseError when another run
        holds the prefix.
    """
    contexts = resolve_contexts(options.devices.gpus, options.devices.cpus)
    kv, rank, num_workers = create_kvstore(options.devices.kvstore)
    run_lock = PrefixLock(options.prefix, rank)   # held while this run lives (TrainingRun.close)
    try:
        return _build_locked(options, contexts, kv, rank, num_workers, run_lock)
    except BaseException:
        run_lock.release()
        raise


@dataclasses.dataclass(frozen=True)
class _RunPlan:
    """What the set-up settled before building the graphs: the completed options, the frozen
    config and its overrides, the resumed record, the roidb and its digest."""
    options: object
    cfg: object
    overrides: dict
    record: object
    roidb: list
    data_digest: str
    data_changed: bool
    seed: int


def _plan(options, contexts, rank, num_workers):
    """Resume record, remembered options, config, seed, validation split and roidb."""
    record = resolve_resume(options.prefix, options.checkpoint.resume)
    options = remembered_options(options, record)
    allowed = options.checkpoint.resume_other_data
    data_changed = record is not None and check_resume_data(record, options.data, allowed)
    overrides = run_overrides(options.config_overrides, record)
    cfg = build_config(options.network, options.dataset, overrides.items(),
                       source='config override')
    seed = options.schedule.seed if options.schedule.seed is not None \
        else random.SystemRandom().randrange(2 ** 31)
    seed_everything(seed)
    logger.info('train.py %s', options.command_line)
    val_set = open_val_set(options.validation, options.data, rank)
    full_roidb = load_roidb(options.data, cfg)
    digest = training_data_digest(options.data, full_roidb)
    if record is not None:
        data_changed = check_resume_content(record, digest, allowed) or data_changed
    roidb = shard_roidb(full_roidb, rank, num_workers)
    per_device = fit_batch_to_data(cfg.TRAIN.BATCH_IMAGES, len(roidb), len(contexts))
    if per_device != cfg.TRAIN.BATCH_IMAGES:
        overrides['TRAIN.BATCH_IMAGES'] = per_device
        cfg = build_config(options.network, options.dataset, overrides.items(),
                           source='config override')
    return _RunPlan(options, cfg, overrides, record, roidb, digest, data_changed, seed), val_set


def run_record(plan, num_devices, num_workers, fixed):
    """The fields every training record of this run stores (besides the position)."""
    options, cfg, record = plan.options, plan.cfg, plan.record
    data, val = options.data, options.validation
    return {'network': options.network, 'seed': plan.seed, 'num_devices': num_devices,
            'num_workers': num_workers, 'fixed_params': fixed,
            'graph_lr_wd_mult': cfg.TRAIN.GRAPH_LR_WD_MULT, 'loss_scale': cfg.TRAIN.LOSS_SCALE,
            'begin_epoch': record['begin_epoch'] if record else options.schedule.begin_epoch,
            'dataset_path': os.path.abspath(data.dataset_path), 'image_set': data.image_set,
            'keep_outside_boxes': data.keep_outside_boxes, 'flip': data.flip,
            'shuffle': data.shuffle, 'wd': options.schedule.wd, 'data_digest': plan.data_digest,
            'validation_options': dataclasses.asdict(val) if val.val_set else None,
            'config_overrides': [[key, config_to_plain(value)]
                                 for key, value in plan.overrides.items()],
            'config': config_to_plain(cfg)}


def _build_locked(options, contexts, kv, rank, num_workers, run_lock):
    """:func:`build_training` once the prefix is locked."""
    from rcnn.core.loader import CropLoader, feature_symbols
    from rcnn.recipe import write_recipe
    from rcnn.symbol import get_symbol_test, get_symbol_train

    log_file = setup_logging(options.prefix, rank)
    if rank == 0:
        clean_interrupted_saves(options.prefix)
    cpu_plan = cpu_share.plan_cpu_share(
        machine.usable_cores(), sum(1 for c in contexts if c.device_type == 'gpu'),
        options.data.workers)
    plan, val_set = _plan(options, contexts, rank, num_workers)
    options, cfg, record, roidb = plan.options, plan.cfg, plan.record, plan.roidb
    logger.info('%s', cpu_share.describe(cpu_plan))
    batch_size = cfg.TRAIN.BATCH_IMAGES * len(contexts)
    iters_per_epoch = len(roidb) // batch_size
    logger.info('devices %s, batch %d (%d per device), kvstore %s, rank %d of %d, seed %d, '
                'log %s', contexts, batch_size, cfg.TRAIN.BATCH_IMAGES,
                kv if isinstance(kv, str) else kv.type, rank, num_workers, plan.seed, log_file)
    logger.info('config:\n%s', pprint.pformat(dict(cfg)))
    logger.info('config overrides: %s', plan.overrides or 'none')
    logger.info('optimizer: %s; loss scales: %s', 'the graph\'s lr/wd multipliers '
                '(TRAIN.GRAPH_LR_WD_MULT)' if cfg.TRAIN.GRAPH_LR_WD_MULT else
                'lr x1 and wd %g for every trainable parameter (the original)'
                % options.schedule.wd, cfg.TRAIN.LOSS_SCALE)
    if record is not None:
        check_resume_compatible(record, options.network, batch_size, len(contexts), num_workers)
    schedule, position, end_epoch, fixed = plan_run(options.schedule, record, len(roidb),
                                                    batch_size, options.prefix,
                                                    plan.data_changed)
    if record is not None:
        check_resume_not_done(record, end_epoch, options.schedule.max_iters)
    logger.info('%d images (%d iterations per epoch); %s', len(roidb), iters_per_epoch, schedule)

    train_sym = get_symbol_train(options.network, cfg)
    deploy_sym = get_symbol_test(options.network, cfg)
    feat_sym = feature_symbols(train_sym, cfg)
    if rank == 0:       # what inference needs to decode this model (rcnn/recipe.py)
        logger.info('recipe written to %s', write_recipe(options.prefix, cfg, options.network,
                                                         plan.overrides))
    # the starting weights are read (and refused) before any loader worker starts
    arg_shapes, aux_shapes = train_param_shapes(train_sym, cfg, batch_size)
    arg_params, aux_params, loaded = starting_params(options.network, options.checkpoint,
                                                     record, arg_shapes, aux_shapes)
    param_names = [n for n in train_sym.list_arguments() if n in arg_shapes]
    if fixed is None:
        fixed = choose_frozen(cfg, param_names, loaded)
    logger.info('frozen parameters (%d): %s', len(fixed), fixed)
    # crops differ per worker; a run (re)started at epoch e draws that epoch's batches of the
    # same stream, so a resume sees exactly the batches of the uninterrupted run
    work_load_list = None if options.devices.work_load_list is None \
        else list(options.devices.work_load_list)
    loader = CropLoader(feat_sym, roidb, batch_size, shuffle=options.data.shuffle, ctx=contexts,
                        work_load_list=work_load_list, cfg=cfg, num_workers=cpu_plan.workers,
                        seed=plan.seed + 1000003 * rank, first_epoch=position.epoch)
    try:
        mod = build_module(train_sym, loader, contexts, work_load_list, fixed,
                           arg_params, aux_params, allow_missing=record is None)
        sync_workers = num_workers if is_sync_dist(kv) else 1
        states_saved = init_optimizer(mod, kv, {
            'learning_rate': schedule.base_lr, 'momentum': cfg.TRAIN.MOMENTUM,
            'wd': options.schedule.wd, 'rescale_grad': 1.0 / (len(contexts) * sync_workers),
            'lr_scheduler': schedule.scheduler(), 'begin_num_update': position.iteration},
            graph_multipliers=cfg.TRAIN.GRAPH_LR_WD_MULT)
        logger.info('optimizer multipliers: %s', describe_multipliers(effective_multipliers(
            mod._optimizer, [n for n in param_names if n not in set(fixed)])))
        if record is not None and record.get('optimizer_states', True) and states_saved:
            load_optimizer_states(mod, options.prefix, record)   # only bytes the record vouches for
            logger.info('optimizer state restored (%d updates so far)', position.iteration)
        elif record is not None:
            logger.warning('checkpoint %d has no optimizer state (dist_async) or this run cannot '
                           'hold it: the momentum restarts from zero', record['checkpoint'])

        metrics = TrainMetrics.from_config(cfg)
        hooks = make_hooks(options, metrics, record, contexts, val_set, rank,
                           num_workers, deploy_sym,
                           run_record(plan, len(contexts), num_workers, fixed), end_epoch,
                           batch_size, states_saved)
        trainer = Trainer(mod, LoaderFeed(loader), schedule, batch_size, iters_per_epoch,
                          metrics.layout.strides, hooks, metrics=metrics)
    except BaseException:
        loader.close()
        raise
    return TrainingRun(trainer, mod, loader, position, rank, num_workers, plan.seed, run_lock)


def run_training(options):
    """:func:`build_training`, then train until the stop rule; returns the final Position.

    Raises (besides :func:`build_training`'s): NonFiniteLossError when a loss or a parameter
    becomes NaN/Inf (the last good checkpoint is left untouched).
    """
    run = build_training(options)
    try:
        position = run.trainer.fit(run.start)
        arg_params, _ = run.module.get_params()
        logger.info('final parameter digest (rank %d of %d): %s', run.rank, run.num_workers,
                    params_digest(arg_params))
        return position
    finally:
        run.close()
