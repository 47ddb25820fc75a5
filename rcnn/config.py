"""Configuration of the RetinaFace recipe.

Three layers, as in the original pipeline:

* ``config``  -- the recipe (anchors, crops, labels, pixels, training knobs);
* ``default`` -- command-line defaults (paths, prefix, learning rate, ...);
* presets     -- ``network.mnet`` / ``network.resnet`` and ``dataset.retinaface``
                 override keys of the two above.

Unlike the original, nothing here is mutated after import.
``generate_config(network, dataset)`` returns a *fresh* ``(config, default)``
pair built from deep copies, so calling it twice in one process (e.g. ``resnet``
after ``mnet``) yields exactly the second preset. Library functions take an
explicit ``cfg`` argument and fall back to the module-level base ``config``,
whose values are those shared by both networks.
"""
import copy

import numpy as np
from easydict import EasyDict as edict

from rcnn.model_layout import anchors_per_position, strides_of

__all__ = ['config', 'default', 'network', 'dataset', 'generate_config',
           'derive_config']


def _base_config():
    cfg = edict()

    # ---- input pixels: raw RGB values (means 0, stds 1, scale 1) ----
    cfg.PIXEL_MEANS = np.array([0.0, 0.0, 0.0])
    cfg.PIXEL_STDS = np.array([1.0, 1.0, 1.0])
    cfg.PIXEL_SCALE = 1.0
    cfg.IMAGE_STRIDE = 0

    # ---- network / heads ----
    cfg.NUM_CLASSES = 2
    cfg.HEAD_FILTER_NUM = 256
    cfg.LANDMARK_LR_MULT = 2.0
    cfg.FACE_LANDMARK = True
    cfg.USE_BLUR = False
    cfg.DENSE_ANCHOR = False
    # freeze the first six parameter arrays of a loaded pretrained backbone (the original's
    # get_fixed_params in effect; the mnet preset turns it on)
    cfg.LAYER_FIX = False

    # ---- anchors: one entry per feature stride (string keys, as the original) ----
    cfg.RPN_ANCHOR_CFG = {
        '32': {'SCALES': (32, 16), 'BASE_SIZE': 16, 'RATIOS': (1.0,), 'ALLOWED_BORDER': 9999},
        '16': {'SCALES': (8, 4), 'BASE_SIZE': 16, 'RATIOS': (1.0,), 'ALLOWED_BORDER': 9999},
        '8': {'SCALES': (2, 1), 'BASE_SIZE': 16, 'RATIOS': (1.0,), 'ALLOWED_BORDER': 9999},
    }

    # ---- training crops and photometric augmentation ----
    cfg.SCALES = [(640, 640)]
    cfg.PRE_SCALES = [0.3, 0.45, 0.6, 0.8, 1.0]
    cfg.CROP_TRIES = 25
    cfg.COLOR_MODE = 2
    cfg.COLOR_JITTERING = 0.125

    cfg.TRAIN = edict()
    cfg.TRAIN.FLIP = True
    cfg.TRAIN.SHUFFLE = True
    cfg.TRAIN.MIN_BOX_SIZE = 0
    cfg.TRAIN.BATCH_IMAGES = 8
    # anchor labels
    cfg.TRAIN.RPN_POSITIVE_OVERLAP = 0.5
    cfg.TRAIN.RPN_NEGATIVE_OVERLAP = 0.3
    cfg.TRAIN.RPN_FORCE_POSITIVE = False
    cfg.TRAIN.RPN_BATCH_SIZE = 256
    cfg.TRAIN.RPN_FG_FRACTION = 0.25
    cfg.TRAIN.RPN_ENABLE_OHEM = 2
    cfg.TRAIN.OHEM_MODE = 1
    cfg.TRAIN.BBOX_STDS = (1.0, 1.0, 1.0, 1.0)
    cfg.TRAIN.LANDMARK_STD = 1.0
    # optimiser
    cfg.TRAIN.MOMENTUM = 0.9
    # False (the original's effect): every trainable parameter gets lr x1 and weight decay wd.
    # True (opt-in): the graph's __lr_mult__ / __wd_mult__ and MXNet's no-wd-on-biases rule
    # (rcnn/core/optimizer.py)
    cfg.TRAIN.GRAPH_LR_WD_MULT = False
    # box / landmark MakeLoss grad scales: 'release' (May 2019, the released models) or
    # 'master' (insightface master since Oct 2019), see rcnn/symbol/loss_scale.py
    cfg.TRAIN.LOSS_SCALE = 'release'

    cfg.TEST = edict()
    cfg.TEST.BATCH_IMAGES = 1
    cfg.TEST.NMS = 0.4
    cfg.TEST.SCORE_THRESH = 0.02
    cfg.TEST.IOU_THRESH = 0.5
    return cfg


def _base_default():
    d = edict()
    d.network = 'mnet'
    d.dataset = 'retinaface'
    d.image_set = 'train'
    d.test_image_set = 'val'
    d.root_path = 'data'
    d.dataset_path = 'data/retinaface'
    d.pretrained = ''
    d.pretrained_epoch = 0
    d.prefix = 'model/retinaface'
    d.frequent = 20
    d.kvstore = 'device'
    d.begin_epoch = 0
    d.end_epoch = 10000
    d.lr = 0.01
    d.lr_step = '55,68,80'
    d.wd = 0.0005
    d.mom = 0.9
    return d


def _network_presets():
    presets = edict()
    presets.mnet = edict()
    presets.mnet.BATCH_IMAGES = 16
    presets.mnet.HEAD_FILTER_NUM = 64
    presets.mnet.LANDMARK_LR_MULT = 2.5
    presets.mnet.lr = 0.01
    presets.mnet.lr_step = '55,68,80'
    presets.mnet.PIXEL_MEANS = np.array([0.0, 0.0, 0.0])
    presets.mnet.PIXEL_STDS = np.array([1.0, 1.0, 1.0])
    presets.mnet.PIXEL_SCALE = 1.0
    presets.mnet.COLOR_MODE = 1        # brightness only (the original's sample_config.py)
    presets.mnet.LAYER_FIX = True

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
    presets = edict()
    presets.retinaface = edict()
    presets.retinaface.dataset = 'retinaface'
    presets.retinaface.image_set = 'train'
    presets.retinaface.test_image_set = 'val'
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
    """Route each preset key to ``TRAIN`` / config / default, as the original did."""
    for key, value in preset.items():
        value = copy.deepcopy(value)
        if key in target_cfg.TRAIN:
            target_cfg.TRAIN[key] = value
        if key in target_cfg:
            target_cfg[key] = value
        if key in target_default:
            target_default[key] = value
        if key not in target_cfg.TRAIN and key not in target_cfg and key not in target_default:
            # new recipe-level key introduced by a preset
            target_cfg[key] = value


network = _network_presets()
dataset = _dataset_presets()
config = derive_config(_base_config())
default = _base_default()


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
