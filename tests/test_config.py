"""generate_config builds fresh, independent presets."""
import numpy as np

from rcnn import config as config_module
from rcnn.config import generate_config


def plain(value):
    """Nested dicts/arrays as plain Python values, comparable with ==."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def test_mnet_preset_values():
    cfg, default = generate_config('mnet', 'retinaface')
    assert cfg.TRAIN.BATCH_IMAGES == 16
    assert cfg.HEAD_FILTER_NUM == 64
    assert cfg.LANDMARK_LR_MULT == 2.5
    assert default.lr == 0.01 and default.lr_step == '55,68,80'
    assert cfg.RPN_FEAT_STRIDE == [32, 16, 8] and cfg.NUM_ANCHORS == 2
    assert cfg.SCALES == [(640, 640)] and cfg.PRE_SCALES == [0.3, 0.45, 0.6, 0.8, 1.0]
    assert cfg.COLOR_JITTERING == 0.125 and cfg.TRAIN.MIN_BOX_SIZE == 0
    assert cfg.TRAIN.RPN_ENABLE_OHEM == 2 and cfg.TRAIN.OHEM_MODE == 1
    assert (cfg.TRAIN.RPN_POSITIVE_OVERLAP, cfg.TRAIN.RPN_NEGATIVE_OVERLAP) == (0.5, 0.3)
    assert (cfg.TRAIN.RPN_BATCH_SIZE, cfg.TRAIN.RPN_FG_FRACTION) == (256, 0.25)
    np.testing.assert_array_equal(cfg.PIXEL_MEANS, [0, 0, 0])
    np.testing.assert_array_equal(cfg.PIXEL_STDS, [1, 1, 1])
    assert cfg.PIXEL_SCALE == 1.0
    assert default.dataset_path == 'data/retinaface' and default.prefix == 'model/retinaface'
    assert default.frequent == 20 and default.kvstore == 'device' and default.wd == 0.0005
    assert cfg.TRAIN.MOMENTUM == 0.9


def test_resnet_after_mnet_gives_exactly_the_resnet_preset():
    fresh_resnet = generate_config('resnet', 'retinaface')
    mnet_cfg, mnet_default = generate_config('mnet', 'retinaface')
    mnet_cfg.TRAIN.BATCH_IMAGES = 999          # a caller mutating its copy...
    mnet_cfg.RPN_ANCHOR_CFG['32']['SCALES'] = (1,)
    resnet_cfg, resnet_default = generate_config('resnet', 'retinaface')
    assert plain(resnet_cfg) == plain(fresh_resnet[0])
    assert plain(resnet_default) == plain(fresh_resnet[1])
    assert resnet_cfg.TRAIN.BATCH_IMAGES == 8
    assert resnet_cfg.HEAD_FILTER_NUM == 256 and resnet_cfg.LANDMARK_LR_MULT == 2.0
    assert resnet_default.lr == 0.001 and resnet_default.lr_step == '1,2,3,4,5,55,68,80'
    assert resnet_cfg.RPN_ANCHOR_CFG['32']['SCALES'] == (32, 16)
    # ...and the module-level base config is untouched
    assert config_module.config.RPN_ANCHOR_CFG['32']['SCALES'] == (32, 16)
    assert mnet_default.network == 'mnet' and resnet_default.network == 'resnet'


def test_unknown_preset_is_a_clear_error():
    import pytest
    with pytest.raises(ValueError, match='unknown network'):
        generate_config('vgg', 'retinaface')
    with pytest.raises(ValueError, match='unknown dataset'):
        generate_config('mnet', 'coco')
