"""Configuration of the RetinaFace recipe.

Three layers, as in the original pipeline:

* recipe config -- anchors, crops, labels, pixels, training knobs (upper-case keys, the
                   original's names);
* defaults      -- command-line defaults of train.py (paths, prefix, learning rate, ...);
* presets       -- ``network.mnet`` / ``network.resnet`` and ``dataset.retinaface``
                   override keys of the two above.

``generate_config(network, dataset)`` returns a *fresh* ``(config, default)`` pair built from
deep copies (calling it twice in one process, e.g. ``resnet`` after ``mnet``, yields exactly the
second preset); no library module reads a module-level config, every library function takes
``cfg`` as an explicit argument.

A training run's config is built once (:func:`build_config`: the presets, then the overrides
of train.py's flags and ``--set KEY=VALUE``) and then frozen (:meth:`Config.freeze`):
assigning to it, or to anything inside it, raises :class:`FrozenConfigError`. Overrides name
keys by their path (``TRAIN.BATCH_IMAGES``, ``RPN_ANCHOR_CFG.32.SCALES``); a key the config
does not declare, or a value of another type than the key's, is a :class:`ConfigError` naming
it (:func:`merge_overrides`).

Numeric codes have named constants here (``COLOR_*`` for ``COLOR_MODE``, ``OHEM_*`` for
``TRAIN.RPN_ENABLE_OHEM`` and ``TRAIN.OHEM_MODE``); their readers use the names.
"""
import ast
import copy
import difflib
import math

import numpy as np

from rcnn.model_layout import anchors_per_position, strides_of

__all__ = ['config', 'network', 'dataset', 'generate_config', 'derive_config', 'build_config',
           'anchor_table', 'ANCHOR_TABLE_NAMES', 'CASCADE_POSITIVE_OVERLAP', 'config_from_record',
           'Config', 'FrozenList', 'ConfigError', 'FrozenConfigError', 'parse_override',
           'parse_overrides', 'merge_overrides', 'config_to_plain', 'DERIVED_KEYS',
           'DEFAULT_NETWORK', 'DEFAULT_DATASET', 'DEFAULT_END_EPOCH',
           'COLOR_NONE', 'COLOR_BRIGHTNESS', 'COLOR_ALL',
           'OHEM_OFF', 'OHEM_IN_GRAPH', 'OHEM_MODE_HARDEST']

# ---- named values of the numeric codes ----
#: COLOR_MODE: no photometric augmentation
COLOR_NONE = 0
#: COLOR_MODE: brightness only (the mnet preset, as the original's)
COLOR_BRIGHTNESS = 1
#: COLOR_MODE (and any larger value): brightness, contrast and saturation in a random order
COLOR_ALL = 2
#: TRAIN.RPN_ENABLE_OHEM: no OHEM; the labeller caps positives/negatives at random
OHEM_OFF = 0
#: TRAIN.RPN_ENABLE_OHEM (and any larger value): the OHEM operator in the training graph picks
#: the anchors (the original's 1, OHEM in the data loader, is not supported)
OHEM_IN_GRAPH = 2
#: TRAIN.OHEM_MODE: the hardest positives and negatives by score (the only mode supported)
OHEM_MODE_HARDEST = 1

#: TRAIN.RPN_POSITIVE_OVERLAP of the first stage when CASCADE > 0 (the original's value)
CASCADE_POSITIVE_OVERLAP = 0.7

#: train.py's --network / --dataset defaults and the epoch it stops before
DEFAULT_NETWORK = 'mnet'
DEFAULT_DATASET = 'retinaface'
DEFAULT_END_EPOCH = 10000


# ---------------------------------------------------------------------------- the container
class ConfigError(ValueError):
    """An override names no config key, or gives a value the key cannot hold."""


class FrozenConfigError(AttributeError):
    """Something tried to change a frozen config."""


def _refuse_change(what):
    raise FrozenConfigError('the config is frozen (built once by rcnn.config.build_config); '
                            'cannot %s. Pass the value with train.py --set KEY=VALUE, or '
                            'build another config' % what)


class FrozenList(list):
    """A list that refuses every change (the lists of a frozen config); equal to a list."""

    def _refuse(self, *args, **kwargs):
        _refuse_change('change a list value')

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __reduce__(self):
        return FrozenList, (list(self),)


def _frozen_value(value):
    """An unchangeable copy of a config value (nested configs, lists, tuples, arrays)."""
    if isinstance(value, Config):
        return value.freeze()
    if isinstance(value, np.ndarray):
        value = value.copy()
        value.setflags(write=False)
        return value
    if isinstance(value, list):
        return FrozenList(_frozen_value(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_frozen_value(v) for v in value)
    return value


def _thawed_value(value):
    """A changeable copy of a (possibly frozen) config value; dicts become Configs."""
    if isinstance(value, dict):
        return Config(value)
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list):
        return [_thawed_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_thawed_value(v) for v in value)
    return value


def _rebuild_config(items, frozen):
    cfg = Config(items)
    return cfg.freeze() if frozen else cfg


class Config(dict):
    """A dict whose keys are also attributes (``cfg.TRAIN.BATCH_IMAGES``), as the original's
    EasyDict; nested dicts become Configs.

    :meth:`freeze` makes it, and everything inside it, unchangeable: item or attribute
    assignment, deletion and the dict's mutating methods raise :class:`FrozenConfigError`,
    lists become :class:`FrozenList`, arrays read-only. A frozen config pickles (loader
    workers receive it) and deep-copies as a frozen config.
    """

    def __init__(self, mapping=(), **kwargs):
        super(Config, self).__init__()
        object.__setattr__(self, '_frozen', False)
        for key, value in dict(mapping, **kwargs).items():
            self[key] = value

    @property
    def frozen(self):
        return self._frozen

    def freeze(self):
        """Make this config unchangeable (in place, recursively); returns it."""
        if not self._frozen:
            for key in list(self):
                super(Config, self).__setitem__(key, _frozen_value(dict.__getitem__(self, key)))
            object.__setattr__(self, '_frozen', True)
        return self

    def thawed(self):
        """A changeable deep copy."""
        return Config(self)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError('config has no key %r' % name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        del self[name]

    def __setitem__(self, key, value):
        if self._frozen:
            _refuse_change('set %s' % key)
        super(Config, self).__setitem__(key, _thawed_value(value))

    def __delitem__(self, key):
        if self._frozen:
            _refuse_change('delete %s' % key)
        super(Config, self).__delitem__(key)

    def update(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def _refuse_if_frozen(self, *args, **kwargs):
        if self._frozen:
            _refuse_change('remove keys')

    def pop(self, *args):
        self._refuse_if_frozen()
        return super(Config, self).pop(*args)

    def popitem(self):
        self._refuse_if_frozen()
        return super(Config, self).popitem()

    def clear(self):
        self._refuse_if_frozen()
        super(Config, self).clear()

    def __reduce__(self):
        return _rebuild_config, (dict(self), self._frozen)

    def __deepcopy__(self, memo):
        return _rebuild_config(copy.deepcopy(dict(self), memo), self._frozen)

    def __copy__(self):
        return _rebuild_config(dict(self), self._frozen)


# ---------------------------------------------------------------------------- anchor tables
def _anchor_entry(scales, ratios):
    return {'SCALES': tuple(scales), 'BASE_SIZE': 16, 'RATIOS': tuple(ratios),
            'ALLOWED_BORDER': 9999}


def _retina_table():
    """The paper's P2-P6 anchors: strides 4..64, three scales each, the scale growing by
    2^(1/3) from one anchor to the next over the strides from fine to coarse (stride 4: 1,
    1.26, 1.59 x 16 px; stride 64: 16 .. 25.4 x 16 px). The scales are the running product, as
    the original computes them, so they are the same floats."""
    step = 2.0 ** (1.0 / 3)
    scale = 1.0
    table = {}
    for stride in (4, 8, 16, 32, 64):
        scales = []
        for _ in range(3):
            scales.append(scale)
            scale *= step
        table[str(stride)] = _anchor_entry(scales, (1.0,))
    return table


def anchor_table(name):
    """A fresh copy of one of the original's anchor tables (:data:`ANCHOR_TABLE_NAMES`):

    * ``RAC_SSH``: strides 32, 16, 8; scales (32, 16), (8, 4), (2, 1); ratio 1 (2 anchors per
      position) -- the released models;
    * ``RAC_SSH2``: the same scales with ratios 1 and 1.5 (4 anchors per position);
    * ``RAC_SSH3``: RAC_SSH2 plus stride 4 with scales (2, 1);
    * ``RAC_RETINA``: strides 64, 32, 16, 8, 4; three scales each (:func:`_retina_table`).
    """
    ssh = {'32': (32, 16), '16': (8, 4), '8': (2, 1)}
    if name == 'RAC_SSH':
        return {k: _anchor_entry(v, (1.0,)) for k, v in ssh.items()}
    if name == 'RAC_SSH2':
        return {k: _anchor_entry(v, (1.0, 1.5)) for k, v in ssh.items()}
    if name == 'RAC_SSH3':
        table = {k: _anchor_entry(v, (1.0, 1.5)) for k, v in ssh.items()}
        table['4'] = _anchor_entry((2, 1), (1.0, 1.5))
        return table
    if name == 'RAC_RETINA':
        return _retina_table()
    raise ConfigError('unknown anchor table %r; choose from %s'
                      % (name, ', '.join(ANCHOR_TABLE_NAMES)))


#: the original's anchor tables, by the names ``RPN_ANCHOR_CFG`` may be set to
ANCHOR_TABLE_NAMES = ('RAC_SSH', 'RAC_SSH2', 'RAC_SSH3', 'RAC_RETINA')


def _base_config():
    """The recipe keys shared by both networks (every key commented; the presets override some)."""
    cfg = Config()
    _pixel_keys(cfg)
    _model_keys(cfg)
    _crop_keys(cfg)
    _train_keys(cfg)
    return cfg


def _pixel_keys(cfg):
    # ---- input pixels: tensor = (pixel / PIXEL_SCALE - PIXEL_MEANS) / PIXEL_STDS ----
    # per-channel means, BGR order as the original lists them (0: raw RGB values reach the net)
    cfg.PIXEL_MEANS = np.array([0.0, 0.0, 0.0])
    # per-channel divisors, BGR order (1: none)
    cfg.PIXEL_STDS = np.array([1.0, 1.0, 1.0])
    # divisor applied before the means (1.0: pixels stay in 0..255)
    cfg.PIXEL_SCALE = 1.0


def _model_keys(cfg):
    # ---- network / heads ----
    # classes of the score head: background and face (only 2 is supported)
    cfg.NUM_CLASSES = 2
    # channels of the SSH context modules and heads (mnet 64, resnet 256)
    cfg.HEAD_FILTER_NUM = 256
    # landmark loss weight (times 0.4) and landmark head lr multiplier (mnet 2.5, resnet 2.0)
    cfg.LANDMARK_LR_MULT = 2.0
    # the 5-landmark head and labels; False: boxes and scores only (no landmark head, labels
    # or losses)
    cfg.FACE_LANDMARK = True
    # a blur regression per anchor: the box head gives 5 values (dx dy dw dh, blur); the target
    # is the label file's trailing blur value (docs/models.md)
    cfg.USE_BLUR = False
    # a visibility value per point: the landmark head gives 15 values (x, y, visibility of each
    # point); targets from the label file's per-point flag (docs/models.md)
    cfg.USE_OCCLUSION = False
    # twice the anchors per position: each anchor again, shifted by half a stride
    cfg.DENSE_ANCHOR = False
    # deformable convolution: 0 none; 1 a DeformableConvolution after each detection module;
    # 2 every 3x3 stride-1 convolution of the context modules a ModulatedDeformableConvolution
    cfg.USE_DCN = 0
    # max-out class heads (3 background scores per anchor, their max taken): 0 off; 1 at the
    # finest stride; 2 also the original's second form at the other strides
    cfg.USE_MAXOUT = 0
    # with USE_MAXOUT: concatenate the max-out class scores as the original does, per anchor
    # (bg_0, fg_0, bg_1, fg_1, ...), which its (0, 2, -1) softmax reshape pairs across anchors
    # (docs/model-family.md); False: all background scores, then all face scores, each anchor's
    # pair where the softmax and the decoder read it
    cfg.MAXOUT_ORIGINAL_ORDER = False
    # one box head shared by every stride (the original's option)
    cfg.SHARE_WEIGHT_BBOX = False
    # one landmark head shared by every stride (the original's option)
    cfg.SHARE_WEIGHT_LANDMARK = False
    # 0: box and landmark losses scaled as TRAIN.LOSS_SCALE says; 1: divided by the number of
    # valid anchors of the batch (box grad scale 0.5, landmark 0.2 x LANDMARK_LR_MULT)
    cfg.LR_MODE = 0
    # detection module after the neck: 'SSH' (the released models) or 'RF' (three 3x3 convs)
    cfg.HEAD_MODULE = 'SSH'
    # the detection modules' channels are HEAD_FILTER_NUM x this
    cfg.CONTEXT_FILTER_RATIO = 1
    # train each image's labels on one randomly chosen stride only (the original's option)
    cfg.RANDOM_FEAT_STRIDE = False
    # cascade: second-stage heads on refined anchors, this many stages (0: none)
    cfg.CASCADE = 0
    # what the cascade heads look at: 0 the first head's features, 1 a new detection module on
    # the neck, 2 a new module on neck + first features, 3 a new module plus the first
    # stage's predictions
    cfg.CASCADE_MODE = 1
    # strides whose cascade stages have a class head
    cfg.CASCADE_CLS_STRIDES = [64, 32, 16, 8, 4]
    # strides whose cascade stages have a box head
    cfg.CASCADE_BBOX_STRIDES = [64, 32, 16, 8, 4]
    # ResNet depth of --network resnet: 50 (the released R50), 101 or 152 (model-zoo units
    # 3-4-6-3, 3-4-23-3, 3-8-36-3)
    cfg.RESNET_DEPTH = 50
    # freeze the first six parameter arrays of a loaded pretrained backbone (the original's
    # get_fixed_params in effect; the mnet preset turns it on)
    cfg.LAYER_FIX = False

    # ---- anchors: one entry per feature stride (string keys, as the original's RAC_SSH) ----
    # SCALES: anchor sides in units of BASE_SIZE pixels (stride 32: 512 and 256 px);
    # RATIOS: height/width ratios; ALLOWED_BORDER: pixels an anchor may leave the crop and
    # still be labelled (9999: all). RPN_FEAT_STRIDE and NUM_ANCHORS are derived from it.
    # Overrides may name one of the original's tables: --set RPN_ANCHOR_CFG=RAC_RETINA.
    cfg.RPN_ANCHOR_CFG = anchor_table('RAC_SSH')


def _crop_keys(cfg):
    # ---- training crops and photometric augmentation ----
    # [(crop side, max side)] in pixels: training crops are SCALES[0][0] square
    cfg.SCALES = [(640, 640)]
    # image short side / crop side ratios drawn per crop (the original's hard-coded list in
    # get_crop_image1; its config key PRE_SCALES held an unused (1200, 1600))
    cfg.PRE_SCALES = [0.3, 0.45, 0.6, 0.8, 1.0]
    # random crop windows tried for one that keeps a face (the last one is taken anyway)
    cfg.CROP_TRIES = 25
    # photometric jitter: COLOR_NONE, COLOR_BRIGHTNESS or COLOR_ALL (see the constants above)
    cfg.COLOR_MODE = COLOR_ALL
    # jitter strength j: every factor is drawn from [1 - j, 1 + j]
    cfg.COLOR_JITTERING = 0.125


def _train_keys(cfg):
    """The ``TRAIN`` keys."""
    cfg.TRAIN = Config()
    # faces whose longer box side (pixels, in the crop) is below this are dropped; 0: keep all
    cfg.TRAIN.MIN_BOX_SIZE = 0
    # images per device per batch (mnet 16, resnet 8; train.py --batch_images)
    cfg.TRAIN.BATCH_IMAGES = 8
    # ---- anchor labels ----
    # an anchor with IoU >= this with a face is positive
    cfg.TRAIN.RPN_POSITIVE_OVERLAP = 0.5
    # an anchor whose best IoU is < this is negative (between the two: ignored)
    cfg.TRAIN.RPN_NEGATIVE_OVERLAP = 0.3
    # True: every face's best anchor is positive even below RPN_POSITIVE_OVERLAP
    cfg.TRAIN.RPN_FORCE_POSITIVE = False
    # anchors sampled per image per stride (OHEM batch, or the random cap with OHEM_OFF)
    cfg.TRAIN.RPN_BATCH_SIZE = 256
    # at most this fraction of RPN_BATCH_SIZE is positive
    cfg.TRAIN.RPN_FG_FRACTION = 0.25
    # OHEM_OFF or OHEM_IN_GRAPH (see the constants above)
    cfg.TRAIN.RPN_ENABLE_OHEM = OHEM_IN_GRAPH
    # how OHEM picks: OHEM_MODE_HARDEST (the only mode)
    cfg.TRAIN.OHEM_MODE = OHEM_MODE_HARDEST
    # cascade: IoU of a refined anchor with a face for the negative / positive label of the
    # second stage (the first stage uses RPN_POSITIVE_OVERLAP 0.7 when CASCADE > 0, as the
    # original)
    cfg.TRAIN.CASCADE_OVERLAP = [0.4, 0.5]
    # cascade: rows of the gt_boxes input (faces of one crop, padded with -1 rows); training
    # refuses a data set with an image of more faces
    cfg.TRAIN.MAX_BBOX_PER_IMAGE = 2048
    # box regression targets are divided by these (dx, dy, dw, dh)
    cfg.TRAIN.BBOX_STDS = (1.0, 1.0, 1.0, 1.0)
    # landmark regression targets are divided by this
    cfg.TRAIN.LANDMARK_STD = 1.0
    # USE_BLUR: weight of the blur value in a positive anchor's box loss (the original
    # labeller's 0.1; the four box values weigh 1)
    cfg.TRAIN.BLUR_WEIGHT = 0.1
    # USE_OCCLUSION: weight of each point's visibility value in the landmark loss (the
    # original labeller's 0.1; the point's x and y weigh 1)
    cfg.TRAIN.VISIBILITY_WEIGHT = 0.1
    # ---- optimiser ----
    # SGD momentum (the original's hard-coded 0.9)
    cfg.TRAIN.MOMENTUM = 0.9
    # False (the original's effect): every trainable parameter gets lr x1 and weight decay wd.
    # True (opt-in): the graph's __lr_mult__ / __wd_mult__ and MXNet's no-wd-on-biases rule
    # (rcnn/core/optimizer.py); train.py --graph_lr_wd_mult
    cfg.TRAIN.GRAPH_LR_WD_MULT = False
    # box / landmark MakeLoss grad scales: 'release' (May 2019, the released models) or
    # 'master' (insightface master since Oct 2019), see rcnn/symbol/loss_scale.py;
    # train.py --loss_scale
    cfg.TRAIN.LOSS_SCALE = 'release'


def _base_default():
    """train.py's command-line defaults (lower-case keys, the original's ``default``)."""
    d = Config()
    d.network = DEFAULT_NETWORK         # --network: mnet | resnet
    d.dataset = DEFAULT_DATASET         # --dataset: retinaface
    d.image_set = 'train'               # --image_set: folder(s) under dataset_path, '+'-joined
    d.root_path = 'data'                # --root_path: <root_path>/cache holds the roidb cache
    d.dataset_path = 'data/retinaface'  # --dataset_path: <path>/<image_set>/label.txt + images/
    d.pretrained = ''                   # --pretrained: weights to start from ('': from scratch)
    d.pretrained_epoch = 0              # --pretrained_epoch
    d.prefix = 'model/retinaface'       # --prefix of checkpoints and logs
    d.frequent = 20                     # --frequent: iterations between log lines
    d.kvstore = 'device'                # --kvstore: device | local | dist_sync | ...
    d.begin_epoch = 0                   # --begin_epoch: first epoch number
    d.end_epoch = DEFAULT_END_EPOCH     # --end_epoch: stop before this epoch
    d.lr = 0.01                         # --lr: base learning rate
    d.lr_step = '55,68,80'              # --lr_step: epochs where the lr changes
    d.wd = 0.0005                       # --wd: weight decay
    return d


def _network_presets():
    """Per-network overrides (recipe or default keys, as the original's ``network.*``)."""
    presets = Config()
    # MobileNet-0.25 backbone, the released mnet.25
    presets.mnet = Config()
    presets.mnet.BATCH_IMAGES = 16
    presets.mnet.HEAD_FILTER_NUM = 64
    presets.mnet.LANDMARK_LR_MULT = 2.5
    presets.mnet.lr = 0.01
    presets.mnet.lr_step = '55,68,80'
    presets.mnet.PIXEL_MEANS = np.array([0.0, 0.0, 0.0])
    presets.mnet.PIXEL_STDS = np.array([1.0, 1.0, 1.0])
    presets.mnet.PIXEL_SCALE = 1.0
    presets.mnet.COLOR_MODE = COLOR_BRIGHTNESS  # as the original's sample_config.py
    presets.mnet.LAYER_FIX = True

    # ResNet-50 backbone, the released R50
    presets.resnet = Config()
    presets.resnet.BATCH_IMAGES = 8
    presets.resnet.HEAD_FILTER_NUM = 256
    presets.resnet.LANDMARK_LR_MULT = 2.0
    presets.resnet.lr = 0.001
    presets.resnet.lr_step = '1,2,3,4,5,55,68,80'
    presets.resnet.PIXEL_MEANS = np.array([0.0, 0.0, 0.0])
    presets.resnet.PIXEL_STDS = np.array([1.0, 1.0, 1.0])
    presets.resnet.PIXEL_SCALE = 1.0
    return presets


def _dataset_presets():
    """Per-dataset overrides (the original's ``dataset.*``); RetinaFace layout only."""
    presets = Config()
    presets.retinaface = Config()
    presets.retinaface.dataset = 'retinaface'
    presets.retinaface.image_set = 'train'
    presets.retinaface.root_path = 'data'
    presets.retinaface.dataset_path = 'data/retinaface'
    presets.retinaface.NUM_CLASSES = 2
    return presets


def derive_config(cfg):
    """Fill the keys derived from ``RPN_ANCHOR_CFG`` (in place) and return ``cfg``.

    ``RPN_FEAT_STRIDE`` lists the strides from coarse to fine ([32, 16, 8]);
    ``NUM_ANCHORS`` is the number of anchors per position (scales x ratios, doubled with
    ``DENSE_ANCHOR``), which must be the same at every stride.
    """
    cfg.RPN_FEAT_STRIDE = list(strides_of(cfg.RPN_ANCHOR_CFG))
    cfg.NUM_ANCHORS = anchors_per_position(cfg.RPN_ANCHOR_CFG) * (2 if cfg.DENSE_ANCHOR else 1)
    return cfg


def _merge(target_cfg, target_default, preset):
    """Route each preset key to ``TRAIN`` / config / default, as the original did.

    A preset key that none of the three declares is an error (every key lives, with its
    comment, in ``_base_config`` / ``_base_default``)."""
    for key, value in preset.items():
        value = copy.deepcopy(value)
        known = False
        for layer in (target_cfg.TRAIN, target_cfg, target_default):
            if key in layer:
                layer[key] = value
                known = True
        if not known:
            raise KeyError('preset key %r is not a config key: declare it in _base_config or '
                           '_base_default' % key)


network = _network_presets()
dataset = _dataset_presets()
#: the base recipe, for tests and tools that want the values shared by both networks; library
#: code takes ``cfg`` explicitly and never reads this
config = derive_config(_base_config())


def generate_config(network_name, dataset_name, overrides=None):
    """Build a fresh ``(config, default)`` pair for a network and a dataset.

    Args:
        network_name: ``'mnet'`` or ``'resnet'``.
        dataset_name: ``'retinaface'``.
        overrides: optional ``{key: value}`` by the original's key names, applied as the
            original's ``network.<name>`` entries are: a bare name goes to the config key, the
            ``TRAIN`` key or the train.py default of that name (``{'USE_DCN': 2,
            'RPN_ANCHOR_CFG': 'RAC_RETINA', 'BATCH_IMAGES': 4, 'lr': 0.001}``); dotted paths
            (``TRAIN.RPN_BATCH_SIZE``) work too. An anchor table may be given by name
            (:data:`ANCHOR_TABLE_NAMES`). Applied before the derived keys are computed.
    Returns:
        ``(config, default)``: new, changeable Configs; the module-level ones are untouched.
    Raises:
        ValueError for an unknown network or dataset; :class:`ConfigError` (one line naming
        the key) for an unknown key, a wrong type or value, or a refused combination.
    """
    if network_name not in network:
        raise ValueError('unknown network %r; choose from %s' % (network_name, sorted(network)))
    if dataset_name not in dataset:
        raise ValueError('unknown dataset %r; choose from %s' % (dataset_name, sorted(dataset)))
    cfg = _base_config()
    dflt = _base_default()
    _merge(cfg, dflt, network[network_name])
    _merge(cfg, dflt, dataset[dataset_name])
    dflt.network = network_name
    dflt.dataset = dataset_name
    derive_config(cfg)
    if overrides:
        config_pairs = []
        for key, value in dict(overrides).items():
            if '.' not in key and key in dflt and key not in cfg:
                dflt[key] = _coerced(key, dflt[key], value, 'generate_config')
            else:
                config_pairs.append((_original_key_path(cfg, key), value))
        merge_overrides(cfg, config_pairs, source='generate_config')
    return cfg, dflt


def config_from_record(recorded):
    """A changeable, derived config from a training config stored as plain JSON (a recipe's
    ``training_config``): the base recipe's keys with the recorded values over them, so a
    record written before a key existed reads that key's base value (the original's default:
    the switch off). ``RPN_ANCHOR_CFG`` is taken whole."""
    cfg = _base_config()
    _update_from_record(cfg, recorded)
    return derive_config(cfg)


def _update_from_record(target, recorded):
    for key, value in dict(recorded).items():
        if isinstance(value, dict) and isinstance(target.get(key), dict) and \
                key != 'RPN_ANCHOR_CFG':
            _update_from_record(target[key], value)
        else:
            target[key] = value


def _original_key_path(cfg, key):
    """The dotted path of an original key name: ``BATCH_IMAGES`` -> ``TRAIN.BATCH_IMAGES``."""
    if '.' not in key and key not in cfg and key in cfg.TRAIN:
        return 'TRAIN.' + key
    return key


# ---------------------------------------------------------------------------- overrides
#: keys computed from RPN_ANCHOR_CFG (derive_config); an override sets RPN_ANCHOR_CFG instead
DERIVED_KEYS = ('RPN_FEAT_STRIDE', 'NUM_ANCHORS')
#: keys whose value must be a positive number
_POSITIVE_KEYS = ('TRAIN.BATCH_IMAGES', 'TRAIN.RPN_BATCH_SIZE', 'CROP_TRIES', 'PIXEL_SCALE',
                  'HEAD_FILTER_NUM', 'TRAIN.LANDMARK_STD', 'TRAIN.MAX_BBOX_PER_IMAGE',
                  'TRAIN.BLUR_WEIGHT', 'TRAIN.VISIBILITY_WEIGHT')
#: keys whose value must lie in [0, 1]
_FRACTION_KEYS = ('TRAIN.RPN_FG_FRACTION', 'TRAIN.MOMENTUM', 'TRAIN.RPN_POSITIVE_OVERLAP',
                  'TRAIN.RPN_NEGATIVE_OVERLAP', 'COLOR_JITTERING')


#: keys that take one of a few values
_CHOICE_KEYS = {'USE_DCN': (0, 1, 2), 'USE_MAXOUT': (0, 1, 2), 'LR_MODE': (0, 1),
                'HEAD_MODULE': ('SSH', 'RF'), 'CASCADE_MODE': (0, 1, 2, 3),
                'RESNET_DEPTH': (50, 101, 152)}
#: keys whose value must be >= 0
_NON_NEGATIVE_KEYS = ('CASCADE', 'CONTEXT_FILTER_RATIO')
#: (keys, test, why) of combinations the graphs cannot build: ``test(cfg)`` True refuses
_COMBINATION_RULES = [
    (('SHARE_WEIGHT_BBOX', 'USE_MAXOUT'),
     lambda c: c.SHARE_WEIGHT_BBOX and c.USE_MAXOUT,
     'a shared box head needs one class-head form at every stride'),
    (('SHARE_WEIGHT_LANDMARK', 'FACE_LANDMARK'),
     lambda c: c.SHARE_WEIGHT_LANDMARK and not c.FACE_LANDMARK,
     'there is no landmark head to share'),
    (('USE_OCCLUSION', 'FACE_LANDMARK'),
     lambda c: c.USE_OCCLUSION and not c.FACE_LANDMARK,
     'visibility values live in the landmark head'),
    # the original's ssh_detection_module / retina_detection_module: assert num_filter % 4 == 0
    (('HEAD_FILTER_NUM', 'CONTEXT_FILTER_RATIO'),
     lambda c: not (c.HEAD_FILTER_NUM * c.CONTEXT_FILTER_RATIO > 0
                    and (c.HEAD_FILTER_NUM * c.CONTEXT_FILTER_RATIO) % 4 == 0),
     'the detection modules need a positive multiple of 4 channels'),
]


def parse_override(item, source='--set'):
    """``'TRAIN.BATCH_IMAGES=8'`` -> ``('TRAIN.BATCH_IMAGES', 8)``.

    The value is read as a Python literal (``8``, ``0.5``, ``True``, ``(16, 8)``,
    ``[(800, 800)]``); anything else, e.g. a bare word, stays a string.
    """
    key, sep, text = str(item).partition('=')
    key = key.strip()
    if not sep or not key:
        raise ConfigError('%s %r: expected KEY=VALUE, e.g. TRAIN.BATCH_IMAGES=8' % (source, item))
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = text.strip()
    return key, value


def parse_overrides(items, source='--set'):
    """``['A=1', 'B.C=x']`` -> ``[('A', 1), ('B.C', 'x')]``; a key given twice is an error."""
    pairs = [parse_override(item, source) for item in items]
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ConfigError('%s gives %s more than once' % (source, ', '.join(twice)))
    return pairs


def _key_paths(cfg, prefix=''):
    paths = []
    for key, value in cfg.items():
        paths.append(prefix + str(key))
        if isinstance(value, dict):
            paths.extend(_key_paths(value, prefix + str(key) + '.'))
    return paths


def _locate(cfg, key, source):
    """``(parent dict, last key part)`` of dotted ``key`` in ``cfg``; ConfigError if unknown."""
    parts = key.split('.')
    parent = cfg
    for depth, part in enumerate(parts):
        if not isinstance(parent, dict) or part not in parent:
            close = difflib.get_close_matches(key, _key_paths(cfg), n=3)
            raise ConfigError('%s %s: unknown config key %s%s (the keys are listed, with '
                              'their meaning, in rcnn/config.py)' % (
                                  source, key, '.'.join(parts[:depth + 1]),
                                  '; did you mean %s?' % ' or '.join(close) if close else ''))
        if depth < len(parts) - 1:
            parent = parent[part]
    return parent, parts[-1]


def _type_name(value):
    return 'an array' if isinstance(value, np.ndarray) else type(value).__name__


def _coerced(key, current, value, source):
    """``value`` in the type of ``current`` (the key's value now), or ConfigError."""
    def refuse():
        raise ConfigError('%s %s=%r: %s holds %s (now %r), got %s' % (
            source, key, value, key, _type_name(current), _plain(current), _type_name(value)))
    if isinstance(current, bool):
        if not isinstance(value, bool):
            refuse()
        return value
    if isinstance(current, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(current, int) and not isinstance(value, int)):
            refuse()
        if not math.isfinite(value):
            raise ConfigError('%s %s=%r: the value must be finite' % (source, key, value))
        return type(current)(value)
    if isinstance(current, np.ndarray):
        if not isinstance(value, (list, tuple)) or len(value) != current.size or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ConfigError('%s %s=%r: %s holds %d numbers (now %s)' % (
                source, key, value, key, current.size, current.tolist()))
        return np.array(value, dtype=current.dtype)
    if isinstance(current, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            refuse()
        return type(current)(value)
    if isinstance(current, dict):
        if not isinstance(value, dict):
            refuse()
        return value
    if not isinstance(value, type(current)):
        refuse()
    return value


def _check_choices(cfg, source):
    """ConfigError for a choice key off its list, or a combination the graphs cannot build."""
    for key, choices in _CHOICE_KEYS.items():
        if cfg[key] not in choices:
            raise ConfigError('%s: %s must be one of %s, got %r'
                              % (source, key, ', '.join(map(repr, choices)), cfg[key]))
    for key in _NON_NEGATIVE_KEYS:
        if not cfg[key] >= 0:
            raise ConfigError('%s: %s must be >= 0, got %r' % (source, key, cfg[key]))
    for keys, refused, why in _COMBINATION_RULES:
        if refused(cfg):
            raise ConfigError('%s: %s cannot be combined (%s)' % (
                source, ' with '.join('%s=%r' % (k, cfg[k]) for k in keys), why))


def _check_ranges(cfg, source):
    """ConfigError for a positive-only or fraction key out of its range."""
    _check_choices(cfg, source)
    for key in _POSITIVE_KEYS + _FRACTION_KEYS:
        parent, leaf = _locate(cfg, key, source)
        value = parent[leaf]
        if key in _POSITIVE_KEYS and not value > 0:
            raise ConfigError('%s: %s must be positive, got %r' % (source, key, value))
        if key in _FRACTION_KEYS and not 0 <= value <= 1:
            raise ConfigError('%s: %s must lie in [0, 1], got %r' % (source, key, value))


def merge_overrides(cfg, overrides, source='--set'):
    """Apply ``[(dotted key, value), ...]`` to the changeable ``cfg`` (in place); returns it.

    Raises:
        ConfigError: one line naming ``source`` and the key -- unknown key (with the closest
        known ones), a derived key, a value of another type than the key's, a non-finite
        number, or a value out of the key's range.
    """
    overrides = list(overrides)
    for key, value in overrides:
        if key.split('.')[0] in DERIVED_KEYS:
            raise ConfigError('%s %s: derived from RPN_ANCHOR_CFG, set that key instead'
                              % (source, key))
        parent, leaf = _locate(cfg, key, source)
        if key == 'RPN_ANCHOR_CFG' and isinstance(value, str):
            try:
                value = anchor_table(value)
            except ConfigError as exc:
                raise ConfigError('%s %s=%s: %s' % (source, key, value, exc)) from None
        parent[leaf] = _coerced(key, parent[leaf], value, source)
    # the original raises the first stage's positive IoU to 0.7 whenever CASCADE > 0
    if cfg.CASCADE > 0 and 'TRAIN.RPN_POSITIVE_OVERLAP' not in {k for k, _ in overrides}:
        cfg.TRAIN.RPN_POSITIVE_OVERLAP = CASCADE_POSITIVE_OVERLAP
    try:
        derive_config(cfg)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError('%s: RPN_ANCHOR_CFG %s' % (source, exc)) from None
    _check_ranges(cfg, source)
    return cfg


def build_config(network_name, dataset_name, overrides=(), source='--set'):
    """The frozen config of a run: the presets, then ``overrides`` (see
    :func:`merge_overrides`), the derived keys, then :meth:`Config.freeze`."""
    cfg, _ = generate_config(network_name, dataset_name)
    return merge_overrides(cfg, overrides, source).freeze()


def _plain(value):
    """JSON-ready copy of a config value (Configs -> dicts, tuples/arrays -> lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def config_to_plain(cfg):
    """The config as plain JSON values (nested dicts, lists, numbers, strings, booleans)."""
    return _plain(cfg)
