"""Configuration of the RetinaFace recipe.

Three layers, as in the original pipeline:

* recipe config -- anchors, crops, labels, pixels, training knobs (upper-case keys, the
                   original's names);
* defaults      -- command-line defaults of train.py (paths, prefix, learning rate, ...);
* presets       -- ``network.mnet`` / ``network.resnet`` and ``dataset.retinaface``
                   override keys of the two above.

Nothing here is mutated after import and no library module reads a module-level config:
``generate_config(network, dataset)`` returns a *fresh* ``(config, default)`` pair built from
deep copies (calling it twice in one process, e.g. ``resnet`` after ``mnet``, yields exactly the
second preset), and every library function takes that ``cfg`` as an explicit argument.

Numeric codes have named constants here (``COLOR_*`` for ``COLOR_MODE``, ``OHEM_*`` for
``TRAIN.RPN_ENABLE_OHEM`` and ``TRAIN.OHEM_MODE``); their readers use the names.
"""
import copy

import numpy as np
from easydict import EasyDict as edict

from rcnn.model_layout import anchors_per_position, strides_of

__all__ = ['config', 'network', 'dataset', 'generate_config', 'derive_config',
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

#: train.py's --network / --dataset defaults and the epoch it stops before
DEFAULT_NETWORK = 'mnet'
DEFAULT_DATASET = 'retinaface'
DEFAULT_END_EPOCH = 10000


def _base_config():
    """The recipe keys shared by both networks (every key commented; the presets override some)."""
    cfg = edict()

    # ---- input pixels: tensor = (pixel / PIXEL_SCALE - PIXEL_MEANS) / PIXEL_STDS ----
    # per-channel means, BGR order as the original lists them (0: raw RGB values reach the net)
    cfg.PIXEL_MEANS = np.array([0.0, 0.0, 0.0])
    # per-channel divisors, BGR order (1: none)
    cfg.PIXEL_STDS = np.array([1.0, 1.0, 1.0])
    # divisor applied before the means (1.0: pixels stay in 0..255)
    cfg.PIXEL_SCALE = 1.0
    # test-time images (rcnn.io.image.get_image) are zero-padded to a multiple of this; 0: none
    cfg.IMAGE_STRIDE = 0

    # ---- network / heads ----
    # classes of the score head: background and face (only 2 is supported)
    cfg.NUM_CLASSES = 2
    # channels of the SSH context modules and heads (mnet 64, resnet 256)
    cfg.HEAD_FILTER_NUM = 256
    # landmark loss weight (times 0.4) and landmark head lr multiplier (mnet 2.5, resnet 2.0)
    cfg.LANDMARK_LR_MULT = 2.0
    # the 5-landmark head and labels; the graphs always have it (False is refused)
    cfg.FACE_LANDMARK = True
    # a blur-level head (the original's option); not built here (True is refused)
    cfg.USE_BLUR = False
    # extra anchors shifted by half a stride (the original's option); only False trains, the
    # graphs have NUM_ANCHORS outputs per position
    cfg.DENSE_ANCHOR = False
    # freeze the first six parameter arrays of a loaded pretrained backbone (the original's
    # get_fixed_params in effect; the mnet preset turns it on)
    cfg.LAYER_FIX = False

    # ---- anchors: one entry per feature stride (string keys, as the original's RAC_SSH) ----
    # SCALES: anchor sides in units of BASE_SIZE pixels (stride 32: 512 and 256 px);
    # RATIOS: height/width ratios; ALLOWED_BORDER: pixels an anchor may leave the crop and
    # still be labelled (9999: all). RPN_FEAT_STRIDE and NUM_ANCHORS are derived from it.
    cfg.RPN_ANCHOR_CFG = {
        '32': {'SCALES': (32, 16), 'BASE_SIZE': 16, 'RATIOS': (1.0,), 'ALLOWED_BORDER': 9999},
        '16': {'SCALES': (8, 4), 'BASE_SIZE': 16, 'RATIOS': (1.0,), 'ALLOWED_BORDER': 9999},
        '8': {'SCALES': (2, 1), 'BASE_SIZE': 16, 'RATIOS': (1.0,), 'ALLOWED_BORDER': 9999},
    }

    # ---- training crops and photometric augmentation ----
    # [(crop side, max side)] in pixels: training crops are SCALES[0][0] square; test-time
    # get_image resizes the short side to [0][0], the long side at most [0][1]
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

    cfg.TRAIN = edict()
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
    # box regression targets are divided by these (dx, dy, dw, dh)
    cfg.TRAIN.BBOX_STDS = (1.0, 1.0, 1.0, 1.0)
    # landmark regression targets are divided by this
    cfg.TRAIN.LANDMARK_STD = 1.0
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
    return cfg


def _base_default():
    """train.py's command-line defaults (lower-case keys, the original's ``default``)."""
    d = edict()
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
    presets = edict()
    # MobileNet-0.25 backbone, the released mnet.25
    presets.mnet = edict()
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
    presets.resnet = edict()
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
    presets = edict()
    presets.retinaface = edict()
    presets.retinaface.dataset = 'retinaface'
    presets.retinaface.image_set = 'train'
    presets.retinaface.root_path = 'data'
    presets.retinaface.dataset_path = 'data/retinaface'
    presets.retinaface.NUM_CLASSES = 2
    return presets


def derive_config(cfg):
    """Fill the keys derived from ``RPN_ANCHOR_CFG`` (in place) and return ``cfg``.

    ``RPN_FEAT_STRIDE`` lists the strides from coarse to fine ([32, 16, 8]);
    ``NUM_ANCHORS`` is the number of anchors per position (scales x ratios),
    which must be the same at every stride.
    """
    cfg.RPN_FEAT_STRIDE = list(strides_of(cfg.RPN_ANCHOR_CFG))
    cfg.NUM_ANCHORS = anchors_per_position(cfg.RPN_ANCHOR_CFG)
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


def generate_config(network_name, dataset_name):
    """Build a fresh ``(config, default)`` pair for a network and a dataset.

    Args:
        network_name: ``'mnet'`` or ``'resnet'``.
        dataset_name: ``'retinaface'``.
    Returns:
        ``(config, default)``: new EasyDicts; the module-level ones are untouched.
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
    return cfg, dflt
