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


# ------------------------------------------------------------------------------ key hygiene
ROOT = __import__('pathlib').Path(__file__).resolve().parents[1]
CONFIG_SOURCE = ROOT / 'rcnn' / 'config.py'


def _assigned_keys():
    """(key path, line number) of every ``cfg.X = `` / ``cfg.TRAIN.X = `` / ``d.x = `` in the
    two base-layer builders of rcnn/config.py."""
    import ast
    tree = ast.parse(CONFIG_SOURCE.read_text())
    found = []
    for func in tree.body:
        if not isinstance(func, ast.FunctionDef) or func.name not in ('_base_config',
                                                                       '_base_default'):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
                target = node.targets[0]
                parts = [target.attr]
                value = target.value
                while isinstance(value, ast.Attribute):
                    parts.insert(0, value.attr)
                    value = value.value
                found.append(('.'.join(parts), node.lineno))
    return found


def test_every_config_key_has_a_comment():
    lines = CONFIG_SOURCE.read_text().splitlines()
    keys = _assigned_keys()
    assert len(keys) > 40
    uncommented = []
    for key, lineno in keys:
        if key == 'TRAIN':                      # the sub-dict itself
            continue
        line, above = lines[lineno - 1], lines[lineno - 2].strip()
        trailing = '#' in line.split('=', 1)[1]
        described_above = above.startswith('#') and not above.startswith('# ----')
        if not (trailing or described_above):
            uncommented.append(key)
    assert uncommented == []


def test_no_dead_keys():
    """Every recipe / default key is read somewhere outside rcnn/config.py."""
    import re
    sources = [p for p in list((ROOT / 'rcnn').rglob('*.py')) + list(ROOT.glob('*.py'))
               if p != CONFIG_SOURCE]
    text = '\n'.join(p.read_text() for p in sources)
    cfg, default = generate_config('mnet', 'retinaface')
    keys = [k for k in cfg if k != 'TRAIN'] + list(cfg.TRAIN) + list(default)
    # network / dataset name the preset pair generate_config built (read by the tests)
    keys = [k for k in keys if k not in ('network', 'dataset')]
    unread = [k for k in keys
              if not re.search(r"(\.%s\b|\['%s'\]|get\('%s')" % (k, k, k), text)]
    assert unread == []
    for dead in ('TEST', 'mom', 'test_image_set'):
        assert dead not in cfg and dead not in default
    assert 'FLIP' not in cfg.TRAIN and 'SHUFFLE' not in cfg.TRAIN


def test_named_codes_are_the_preset_values():
    from rcnn import config as c
    cfg, _ = generate_config('resnet', 'retinaface')
    assert cfg.COLOR_MODE == c.COLOR_ALL == 2
    assert cfg.TRAIN.RPN_ENABLE_OHEM == c.OHEM_IN_GRAPH == 2 and c.OHEM_OFF == 0
    assert cfg.TRAIN.OHEM_MODE == c.OHEM_MODE_HARDEST == 1
    assert (c.COLOR_NONE, c.COLOR_BRIGHTNESS) == (0, 1)


def test_a_preset_key_no_layer_declares_is_refused(monkeypatch):
    import pytest
    monkeypatch.setitem(config_module.network.mnet, 'HEAD_FILTER_NUMS', 32)
    with pytest.raises(KeyError, match='HEAD_FILTER_NUMS'):
        generate_config('mnet', 'retinaface')


def test_no_library_module_reads_the_module_level_config():
    """Library code takes ``cfg`` explicitly: nothing under rcnn/ (nor the entry points)
    imports the base ``config`` object of rcnn/config.py."""
    import ast
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    files = list((root / 'rcnn').rglob('*.py')) + [root / name for name in (
        'train.py', 'test_widerface.py', 'evaluate_widerface.py', 'retinaface.py')]
    offenders = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.ImportFrom) and node.module == 'rcnn.config'
                    and any(alias.name == 'config' for alias in node.names)):
                offenders.append('%s:%d' % (path.relative_to(root), node.lineno))
            if (isinstance(node, ast.Attribute) and node.attr == 'config'
                    and isinstance(node.value, ast.Name) and node.value.id in ('rcnn_config',
                                                                                'config_module')):
                offenders.append('%s:%d' % (path.relative_to(root), node.lineno))
    assert not offenders, offenders
