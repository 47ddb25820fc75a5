"""What a training run is asked to do, as typed values: train.py's flags after checking.

``train.py`` parses and checks its flags and hands :class:`TrainOptions` to the set-up
(rcnn/core/training_setup.py); no library function sees the argparse namespace. Every group
is an immutable dataclass and can be built from Python without a command line::

    options = TrainOptions(network='mnet',
                           data=DataOptions(dataset_path='../shared/data/dlib_faces'),
                           checkpoint=CheckpointOptions(prefix='/tmp/m'),
                           schedule=ScheduleOptions(max_iters=20, seed=0),
                           config_overrides=(('TRAIN.BATCH_IMAGES', 2),))

A field that ``--resume`` remembers (the data, the validation settings, the lr, the end
epoch, the config overrides) is ``None`` when the flag was not given: a new run then takes
the default (:meth:`TrainOptions.with_defaults`), a resumed run the checkpoint's record
(:func:`rcnn.core.training_setup.remembered_options`).
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Optional, Tuple, Union

from rcnn.config import DEFAULT_DATASET, DEFAULT_END_EPOCH, DEFAULT_NETWORK, generate_config

__all__ = ['DataOptions', 'CheckpointOptions', 'ScheduleOptions', 'DeviceOptions',
           'ValidationOptions', 'TrainOptions', 'VAL_DEFAULTS', 'short_run_options']

#: validation settings of a run that gives --val_set without the others
VAL_DEFAULTS = {'every': 1, 'images': None, 'mode': 0, 'metric': 'hard'}


@dataclass(frozen=True)
class DataOptions:
    """The training images (train.py's data flags)."""
    #: RetinaFace-layout folder: <dataset_path>/<image_set>/label.txt + images/
    dataset_path: Optional[str] = None
    #: image set(s) under dataset_path, '+'-joined
    image_set: Optional[str] = None
    #: the roidb cache goes to <root_path>/cache (None: no cache)
    root_path: Optional[str] = 'data'
    #: clip label boxes far outside the image (the original reader) instead of dropping them
    keep_outside_boxes: Optional[bool] = None
    #: add the mirrored copy of every image
    flip: Optional[bool] = None
    #: a new image order every epoch
    shuffle: Optional[bool] = None
    #: loader worker processes (None: chosen from the cores, rcnn/core/cpu_share.py)
    workers: Optional[int] = None

    @property
    def image_sets(self):
        """The '+'-joined image sets as a list."""
        return self.image_set.split('+')


@dataclass(frozen=True)
class CheckpointOptions:
    """Where the run writes, what it starts from (train.py's model and checkpoint flags)."""
    #: checkpoint and log prefix: <prefix>-NNNN.params, <prefix>-train.log, ...
    prefix: str = 'model/retinaface'
    #: weights to start from ('' : from scratch), see rcnn/core/pretrained.py
    pretrained: str = ''
    #: epoch of a pretrained checkpoint prefix
    pretrained_epoch: int = 0
    #: None (a new run), 'latest' or a checkpoint number to continue from
    resume: Union[None, str, int] = None
    #: resume on other data than the checkpoint's (the lr steps are recomputed)
    resume_other_data: bool = False
    #: also checkpoint every N iterations (0: epoch ends and the end only)
    checkpoint_iters: int = 0


@dataclass(frozen=True)
class ScheduleOptions:
    """The lr schedule and the stop rule (train.py's schedule flags)."""
    #: base lr (None: the preset's, or the resumed schedule's)
    lr: Optional[float] = None
    #: epochs where the lr changes, comma-separated (None: the preset's)
    lr_step: Optional[str] = None
    #: weight decay (None: the preset's)
    wd: Optional[float] = None
    #: epoch number counting starts from
    begin_epoch: int = 0
    #: stop before this epoch (None: DEFAULT_END_EPOCH, or the resumed run's)
    end_epoch: Optional[int] = None
    #: stop once this many iterations are done (counted from the run's first epoch)
    max_iters: Optional[int] = None
    #: time budget of this run's training, in minutes
    max_minutes: Optional[float] = None
    #: seed of the initialisation and the loader (None: the record's, or a fresh one)
    seed: Optional[int] = None
    #: log metrics every N iterations
    frequent: int = 20


@dataclass(frozen=True)
class DeviceOptions:
    """Devices and the kvstore (train.py's device flags)."""
    #: GPU ids, e.g. '0,1' ('' : CUDA_VISIBLE_DEVICES, or the CPU)
    gpus: str = ''
    #: N CPU contexts (0: one)
    cpus: int = 0
    #: device | local | dist_sync | dist_device_sync | dist_async
    kvstore: str = 'device'
    #: relative work load per device (None: even)
    work_load_list: Optional[Tuple[float, ...]] = None


@dataclass(frozen=True)
class ValidationOptions:
    """Validation of the checkpoints during training (rcnn/core/validation.py)."""
    #: labelled split under the dataset path (None: no validation)
    val_set: Optional[str] = None
    #: validate every N-th epoch checkpoint (and the final one)
    every: Optional[int] = None
    #: only the first K images of the split (None: all)
    images: Optional[int] = None
    #: test_widerface.py mode 0, 1 or 2
    mode: Optional[int] = None
    #: the AP that picks the best checkpoint: easy, medium or hard
    metric: Optional[str] = None

    def with_defaults(self):
        """The same settings with :data:`VAL_DEFAULTS` for the ones not given."""
        if self.val_set is None:
            return ValidationOptions()
        given = {name: getattr(self, name) for name in VAL_DEFAULTS}
        return dataclasses.replace(self, **{name: VAL_DEFAULTS[name] if value is None
                                            else value for name, value in given.items()})


@dataclass(frozen=True)
class TrainOptions:
    """Everything train.py was asked; see the module docstring."""
    network: str = DEFAULT_NETWORK
    dataset: str = DEFAULT_DATASET
    data: DataOptions = field(default_factory=DataOptions)
    checkpoint: CheckpointOptions = field(default_factory=CheckpointOptions)
    schedule: ScheduleOptions = field(default_factory=ScheduleOptions)
    devices: DeviceOptions = field(default_factory=DeviceOptions)
    validation: ValidationOptions = field(default_factory=ValidationOptions)
    #: ((dotted config key, value), ...): train.py's flags that set config keys, then --set
    config_overrides: Tuple[Tuple[str, object], ...] = ()
    #: the command line, for the log
    command_line: str = ''

    @property
    def prefix(self):
        return self.checkpoint.prefix

    def with_defaults(self):
        """A new run's options: every field not given takes the preset's default."""
        _, default = generate_config(self.network, self.dataset)
        data = self.data
        data = dataclasses.replace(
            data, dataset_path=_given(data.dataset_path, default.dataset_path),
            image_set=_given(data.image_set, default.image_set),
            keep_outside_boxes=_given(data.keep_outside_boxes, False),
            flip=_given(data.flip, True), shuffle=_given(data.shuffle, True))
        schedule = self.schedule
        schedule = dataclasses.replace(
            schedule, lr=_given(schedule.lr, default.lr),
            lr_step=_given(schedule.lr_step, default.lr_step),
            wd=_given(schedule.wd, default.wd),
            end_epoch=_given(schedule.end_epoch, DEFAULT_END_EPOCH))
        return dataclasses.replace(self, data=data, schedule=schedule,
                                   validation=self.validation.with_defaults())


def short_run_options(network, switches, dataset_path, prefix, crop, iterations, seed=0):
    """The options of a short in-process run (a smoke test of a config, a timing): ``network``
    with the config ``switches`` (``{'USE_DCN': 2, ...}``), ``crop x crop`` crops, one image per
    batch, no loader workers, no roidb cache, ``iterations`` steps, each logged."""
    overrides = tuple(dict(switches).items()) + (('SCALES', [(int(crop), int(crop))]),
                                                 ('TRAIN.BATCH_IMAGES', 1))
    return TrainOptions(
        network=network,
        data=DataOptions(dataset_path=str(dataset_path), root_path=None, workers=0),
        checkpoint=CheckpointOptions(prefix=str(prefix)),
        schedule=ScheduleOptions(max_iters=int(iterations), seed=seed, frequent=1),
        config_overrides=overrides).with_defaults()


def _given(value, default):
    return default if value is None else value
