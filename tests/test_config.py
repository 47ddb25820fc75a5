"""generate_config builds fresh, independent presets."""
import numpy as np
import pytest

from rcnn import config as config_module
from rcnn.config import ConfigError, build_config, generate_config


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


#: the functions of rcnn/config.py that assign the base layers' keys
BASE_LAYER_BUILDERS = ('_pixel_keys', '_model_keys', '_crop_keys', '_train_keys', '_base_default')


def _assigned_keys():
    """(key path, line number) of every ``cfg.X = `` / ``cfg.TRAIN.X = `` / ``d.x = `` in the
    base-layer builders of rcnn/config.py."""
    import ast
    tree = ast.parse(CONFIG_SOURCE.read_text())
    found = []
    for func in tree.body:
        if not isinstance(func, ast.FunctionDef) or func.name not in BASE_LAYER_BUILDERS:
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


# ------------------------------------------------------------------------------ frozen config
def test_a_frozen_config_refuses_every_change_nested_too():
    import pytest
    from rcnn.config import FrozenConfigError, build_config
    cfg = build_config('mnet', 'retinaface')
    assert cfg.frozen and cfg.TRAIN.frozen and cfg.RPN_ANCHOR_CFG['32'].frozen
    changes = [lambda: setattr(cfg, 'COLOR_MODE', 0),
               lambda: cfg.__setitem__('COLOR_MODE', 0),
               lambda: setattr(cfg.TRAIN, 'BATCH_IMAGES', 2),
               lambda: cfg.TRAIN.__setitem__('BATCH_IMAGES', 2),
               lambda: cfg.RPN_ANCHOR_CFG['32'].__setitem__('SCALES', (1,)),
               lambda: cfg.update(NEW=1), lambda: cfg.pop('SCALES'),
               lambda: cfg.setdefault('NEW', 1), lambda: delattr(cfg, 'SCALES'),
               lambda: cfg.SCALES.append((800, 800)), lambda: cfg.PRE_SCALES.__setitem__(0, 9),
               lambda: cfg.RPN_FEAT_STRIDE.sort()]
    for change in changes:
        with pytest.raises(FrozenConfigError, match='the config is frozen'):
            change()
    with pytest.raises(ValueError, match='read-only'):
        cfg.PIXEL_MEANS[0] = 1.0
    assert cfg.TRAIN.BATCH_IMAGES == 16 and cfg.SCALES == [(640, 640)]
    assert cfg.RPN_ANCHOR_CFG['32']['SCALES'] == (32, 16) and 'NEW' not in cfg


def test_a_frozen_config_pickles_and_copies_frozen_and_thaws_into_a_copy():
    import copy
    import pickle
    from rcnn.config import build_config, config_to_plain
    cfg = build_config('resnet', 'retinaface')
    for twin in (pickle.loads(pickle.dumps(cfg)), copy.deepcopy(cfg), copy.copy(cfg)):
        assert twin.frozen and twin.TRAIN.frozen
        assert config_to_plain(twin) == config_to_plain(cfg)
        assert not twin.PIXEL_MEANS.flags.writeable
    thawed = cfg.thawed()
    thawed.TRAIN.BATCH_IMAGES = 3
    thawed.SCALES.append((800, 800))
    assert cfg.TRAIN.BATCH_IMAGES == 8 and cfg.SCALES == [(640, 640)]


def test_graph_builders_and_recipe_read_a_frozen_config():
    from rcnn.config import build_config
    from rcnn.recipe import Recipe
    from rcnn.symbol import get_symbol_test, get_symbol_train
    cfg = build_config('mnet', 'retinaface')
    assert len(get_symbol_test('mnet', cfg).list_outputs()) == 9
    assert 'face_label_stride32' in get_symbol_train('mnet', cfg).list_arguments()
    assert Recipe.from_config(cfg, 'mnet').strides == (32, 16, 8)


def test_overrides_reach_nested_keys_and_keep_the_key_type():
    from rcnn.config import build_config, parse_overrides
    cfg = build_config('mnet', 'retinaface', parse_overrides([
        'TRAIN.BATCH_IMAGES=4', 'RPN_ANCHOR_CFG.32.SCALES=[64, 32]', 'PIXEL_SCALE=2',
        'TRAIN.LOSS_SCALE=master', 'PIXEL_STDS=(58, 57, 57)', 'RPN_ANCHOR_CFG.8.RATIOS=(1.0, 2.0)',
        'RPN_ANCHOR_CFG.16.RATIOS=(1.0, 2.0)', 'RPN_ANCHOR_CFG.32.RATIOS=(1.0, 2.0)']))
    assert cfg.TRAIN.BATCH_IMAGES == 4 and cfg.TRAIN.LOSS_SCALE == 'master'
    assert cfg.RPN_ANCHOR_CFG['32']['SCALES'] == (64, 32)      # a tuple, as the preset's
    assert cfg.PIXEL_SCALE == 2.0 and isinstance(cfg.PIXEL_SCALE, float)
    assert cfg.PIXEL_STDS.dtype == np.float64 and cfg.PIXEL_STDS.tolist() == [58, 57, 57]
    assert cfg.NUM_ANCHORS == 4                                  # derived again: 2 x 2


def test_bad_overrides_are_one_line_errors_naming_the_key():
    import pytest
    from rcnn.config import ConfigError, build_config, parse_overrides
    cases = [('NOPE=1', 'unknown config key NOPE'),
             ('TRAIN.NOPE=1', 'unknown config key TRAIN.NOPE'),
             ('RPN_ANCHOR_CFG.64.SCALES=(1,)', 'unknown config key RPN_ANCHOR_CFG.64'),
             ('TRAIN.BATCH_IMAGES=2.5', 'TRAIN.BATCH_IMAGES holds int (now 16), got float'),
             ('TRAIN.GRAPH_LR_WD_MULT=1', 'holds bool (now False), got int'),
             ('COLOR_JITTERING=strong', 'COLOR_JITTERING holds float (now 0.125), got str'),
             ('PIXEL_MEANS=(1, 2)', 'PIXEL_MEANS holds 3 numbers'),
             ('NUM_ANCHORS=4', 'derived from RPN_ANCHOR_CFG'),
             ('TRAIN.RPN_FG_FRACTION=1.5', 'TRAIN.RPN_FG_FRACTION must lie in [0, 1]'),
             ('TRAIN.RPN_BATCH_SIZE=0', 'TRAIN.RPN_BATCH_SIZE must be positive'),
             ('TRAIN.LANDMARK_STD=1e999', 'must be finite'),
             ('TRAIN.BLUR_WEIGHT=0', 'TRAIN.BLUR_WEIGHT must be positive'),
             ('TRAIN.VISIBILITY_WEIGHT=-1.0', 'TRAIN.VISIBILITY_WEIGHT must be positive'),
             ('RPN_ANCHOR_CFG.8.SCALES=(2, 1, 0.5)', 'same number of anchors')]
    for item, message in cases:
        with pytest.raises(ConfigError) as info:
            build_config('mnet', 'retinaface', parse_overrides([item]))
        assert message in str(info.value) and '\n' not in str(info.value), item
    with pytest.raises(ConfigError, match='COLOR_MODE more than once'):
        parse_overrides(['COLOR_MODE=0', 'COLOR_MODE=1'])


def test_keys_read_by_the_data_side_exist_with_the_original_defaults():
    """The original's config.py: FACE_LANDMARK True, USE_BLUR False, DENSE_ANCHOR False,
    TRAIN.RPN_FORCE_POSITIVE False; every stride's ALLOWED_BORDER 9999."""
    for network in ('mnet', 'resnet'):
        cfg, _ = generate_config(network, 'retinaface')
        assert (cfg.FACE_LANDMARK, cfg.USE_BLUR, cfg.DENSE_ANCHOR) == (True, False, False)
        assert cfg.TRAIN.RPN_FORCE_POSITIVE is False
        assert [v['ALLOWED_BORDER'] for v in cfg.RPN_ANCHOR_CFG.values()] == [9999] * 3


def test_no_read_site_of_the_set_up_side_carries_a_default():
    """``cfg.get(KEY, default)`` would hide a key missing from rcnn/config.py."""
    import re
    files = [ROOT / 'rcnn' / 'recipe.py', ROOT / 'train.py'] + \
        list((ROOT / 'rcnn' / 'symbol').glob('*.py')) + \
        [ROOT / 'rcnn' / 'core' / n for n in ('training_setup.py', 'optimizer.py',
                                              'pretrained.py', 'schedule.py')]
    found = [(p.name, m.group(0)) for p in files
             for m in re.finditer(r"cfg(\.TRAIN)?\.get\(", p.read_text())]
    assert found == []


def test_generate_config_takes_the_originals_key_names():
    """Overrides by the original's names, routed as its network.<name> entries are."""
    cfg, default = generate_config('resnet', 'retinaface', {
        'USE_DCN': 2, 'RPN_ANCHOR_CFG': 'RAC_RETINA', 'BATCH_IMAGES': 4, 'lr': 0.002})
    assert cfg.USE_DCN == 2 and cfg.TRAIN.BATCH_IMAGES == 4 and default.lr == 0.002
    assert cfg.RPN_FEAT_STRIDE == [64, 32, 16, 8, 4] and cfg.NUM_ANCHORS == 3
    plain, _ = generate_config('resnet', 'retinaface')
    assert plain.USE_DCN == 0 and plain.RPN_FEAT_STRIDE == [32, 16, 8]


@pytest.mark.parametrize('overrides, named', [
    ({'USE_DCN': 3}, 'USE_DCN'),
    ({'HEAD_MODULE': 'FPN'}, 'HEAD_MODULE'),
    ({'RESNET_DEPTH': 34}, 'RESNET_DEPTH'),
    ({'RPN_ANCHOR_CFG': 'RAC_SSH9'}, 'RAC_SSH9'),
    ({'SHARE_WEIGHT_BBOX': True, 'USE_MAXOUT': 1}, 'SHARE_WEIGHT_BBOX=True with USE_MAXOUT=1'),
    ({'USE_OCCLUSION': True, 'FACE_LANDMARK': False}, 'USE_OCCLUSION'),
    ({'NO_SUCH_KEY': 1}, 'NO_SUCH_KEY'),
])
def test_impossible_switches_are_one_line_errors_naming_them(overrides, named):
    with pytest.raises(ConfigError) as info:
        generate_config('mnet', 'retinaface', overrides)
    assert named in str(info.value) and '\n' not in str(info.value)


def test_cascade_raises_the_first_stage_positive_overlap_unless_it_is_set():
    cfg, _ = generate_config('mnet', 'retinaface', {'CASCADE': 1})
    assert cfg.TRAIN.RPN_POSITIVE_OVERLAP == 0.7
    cfg, _ = generate_config('mnet', 'retinaface', {'CASCADE': 1, 'RPN_POSITIVE_OVERLAP': 0.6})
    assert cfg.TRAIN.RPN_POSITIVE_OVERLAP == 0.6


def test_dense_anchor_doubles_the_anchor_count():
    cfg = build_config('mnet', 'retinaface', [('DENSE_ANCHOR', True)])
    assert cfg.NUM_ANCHORS == 4
