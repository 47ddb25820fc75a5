"""The recipe a checkpoint carries to inference (rcnn/recipe.py), end to end through the detector.

The round-trip test builds, from the released mnet.25, a model trained under a non-default
recipe in the exact sense: its first convolution expects pixels divided by PIXEL_SCALE and the
PIXEL_STDS, and its box / landmark heads emit targets divided by BBOX_STDS / LANDMARK_STD (as
rcnn/io/anchor_targets.py trains them). With the recipe file written as train.py writes it, the detector
must find the released model's faces; with the original recipe it must not.
"""
import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from rcnn.config import generate_config
from rcnn.processing.box_coder import BoxCoder
from rcnn.processing.pixels import PixelTransform
from rcnn.recipe import (Recipe, RecipeError, default_recipe, load_recipe, read_recipe,
                         write_recipe)
from rcnn.checkpoint.files import recipe_path

SHARED = Path(__file__).resolve().parents[1] / '..' / 'shared'
MNET = SHARED / 'models' / 'mnet.25' / 'mnet.25'
PHOTOS = sorted((SHARED / 'images').glob('*.jpg'))


def _need_mnet():
    if not Path(str(MNET) + '-0000.params').is_file() or not PHOTOS:
        pytest.skip('released mnet.25 or ../shared/images missing (see ../shared/README.md)')


def _custom_cfg():
    cfg, _ = generate_config('mnet', 'retinaface')
    cfg.PIXEL_MEANS = np.array([0.0, 0.0, 0.0])
    cfg.PIXEL_STDS = np.array([57.375, 57.12, 58.395])        # B, G, R
    cfg.PIXEL_SCALE = 2.0
    cfg.TRAIN.BBOX_STDS = (0.1, 0.2, 0.25, 0.5)
    cfg.TRAIN.LANDMARK_STD = 0.2
    return cfg


# ---------------------------------------------------------------------------- defaults

def test_default_recipe_is_the_original_net3_recipe():
    recipe = default_recipe()
    assert recipe.pixels.means == (0.0, 0.0, 0.0) and recipe.pixels.stds == (1.0, 1.0, 1.0)
    assert recipe.pixels.scale == 1.0 and recipe.pixels.is_identity
    assert recipe.coder.bbox_stds == (1.0, 1.0, 1.0, 1.0) and recipe.coder.landmark_std == 1.0
    assert recipe.strides == (32, 16, 8) and not recipe.dense_anchor
    anchors = recipe.base_anchors()
    # the original net3 anchors: base 16, ratio 1, scales (32, 16) / (8, 4) / (2, 1)
    np.testing.assert_array_equal(anchors[32], [[-248, -248, 263, 263], [-120, -120, 135, 135]])
    np.testing.assert_array_equal(anchors[16], [[-56, -56, 71, 71], [-24, -24, 39, 39]])
    np.testing.assert_array_equal(anchors[8], [[-8, -8, 23, 23], [0, 0, 15, 15]])


def test_checkpoint_without_recipe_file_loads_with_the_original_recipe(tmp_path):
    _need_mnet()
    from retinaface import RetinaFace
    assert not Path(recipe_path(str(MNET))).exists()
    assert read_recipe(str(MNET)) is None
    detector = RetinaFace(str(MNET), 0, ctx_id=-1)
    assert detector.recipe == default_recipe()
    assert detector.recipe.source is None


# ---------------------------------------------------------------------------- file

def test_recipe_file_round_trips_the_training_config(tmp_path):
    cfg = _custom_cfg()
    cfg.PIXEL_MEANS = np.array([104.0, 117.0, 123.0])
    prefix = str(tmp_path / 'model')
    path = write_recipe(prefix, cfg, 'mnet')
    assert path == prefix + '-recipe.json'
    record = json.loads(Path(path).read_text())
    assert record['format'] == 1 and record['network'] == 'mnet'
    assert record['pixel_means'] == [104.0, 117.0, 123.0]
    assert record['pixel_stds'] == [57.375, 57.12, 58.395] and record['pixel_scale'] == 2.0
    assert record['bbox_stds'] == [0.1, 0.2, 0.25, 0.5] and record['landmark_std'] == 0.2
    assert record['strides'] == [32, 16, 8]
    recipe = load_recipe(prefix)
    assert recipe == Recipe.from_config(cfg, 'mnet') and recipe.source == path
    assert recipe.pixels == PixelTransform([104, 117, 123], [57.375, 57.12, 58.395], 2.0)
    assert recipe.coder == BoxCoder((0.1, 0.2, 0.25, 0.5), 0.2)


@pytest.mark.parametrize('mutate, message', [
    (lambda r: 'not json {', 'not JSON'),
    (lambda r: json.dumps(dict(r, format=7)), 'format 7'),
    (lambda r: json.dumps({k: v for k, v in r.items() if k != 'bbox_stds'}), "'bbox_stds'"),
    (lambda r: json.dumps(dict(r, pixel_stds=[1, 0, 1])), 'PIXEL_STDS'),
    (lambda r: json.dumps(dict(r, bbox_stds=[1, 1])), 'BBOX_STDS'),
    (lambda r: json.dumps(dict(r, strides=[64, 32, 16])), 'strides'),
    (lambda r: json.dumps([1, 2]), 'JSON object'),
])
def test_a_broken_recipe_file_is_refused_naming_it(tmp_path, mutate, message):
    prefix = str(tmp_path / 'model')
    write_recipe(prefix, _custom_cfg(), 'mnet')
    path = Path(recipe_path(prefix))
    path.write_text(mutate(json.loads(path.read_text())))
    with pytest.raises(RecipeError) as info:
        load_recipe(prefix)
    assert str(path) in str(info.value) and message in str(info.value)
    assert '\n' not in str(info.value)


def _layout_cfg(**overrides):
    cfg, _ = generate_config('mnet', 'retinaface', overrides=overrides)
    return cfg


def test_recipe_file_keeps_the_layout(tmp_path):
    from rcnn.model_layout import ModelLayout
    cfg = _layout_cfg(RPN_ANCHOR_CFG='RAC_SSH2', USE_OCCLUSION=True, CASCADE=1)
    prefix = str(tmp_path / 'model')
    write_recipe(prefix, cfg, 'mnet')
    recipe = load_recipe(prefix)
    assert recipe.layout == ModelLayout((32, 16, 8), 4, 4, 15, 1)


def test_a_recipe_file_without_layout_takes_it_from_its_training_config(tmp_path):
    from rcnn.model_layout import ModelLayout
    prefix = str(tmp_path / 'model')
    write_recipe(prefix, _layout_cfg(FACE_LANDMARK=False, USE_BLUR=True), 'mnet')
    path = Path(recipe_path(prefix))
    record = json.loads(path.read_text())
    del record['layout']
    path.write_text(json.dumps(record))
    assert load_recipe(prefix).layout == ModelLayout((32, 16, 8), 2, 5, 0, 0)
    # neither: the anchors with the released heads
    del record['training_config']
    path.write_text(json.dumps(record))
    assert load_recipe(prefix).layout == ModelLayout((32, 16, 8), 2, 4, 10, 0)


@pytest.mark.parametrize('change, message', [
    ({'num_anchors': 4}, '4 anchors per position, the anchors (dense_anchor=False) give 2'),
    ({'strides': [32, 16]}, 'layout strides [32, 16] do not match'),
    ({'blur': True}, 'blur=True but its lengths'),
    ({'box_len': 6}, 'box_len must be'),
])
def test_a_layout_that_contradicts_the_recipe_is_refused(tmp_path, change, message):
    prefix = str(tmp_path / 'model')
    write_recipe(prefix, _custom_cfg(), 'mnet')
    path = Path(recipe_path(prefix))
    record = json.loads(path.read_text())
    record['layout'].update(change)
    path.write_text(json.dumps(record))
    with pytest.raises(RecipeError) as info:
        load_recipe(prefix)
    assert str(path) in str(info.value) and message in str(info.value)


def test_detector_refuses_a_recipe_whose_strides_the_graph_lacks(tmp_path):
    _need_mnet()
    from retinaface import RetinaFace
    cfg, _ = generate_config('mnet', 'retinaface')
    cfg.RPN_ANCHOR_CFG = {'64': cfg.RPN_ANCHOR_CFG['32'], '32': cfg.RPN_ANCHOR_CFG['16'],
                          '16': cfg.RPN_ANCHOR_CFG['8']}
    with pytest.raises(ValueError, match='strides'):
        RetinaFace(str(MNET), 0, ctx_id=-1, recipe=Recipe.from_config(cfg))


# ---------------------------------------------------------------------------- round trip

def _retrained_params(cfg):
    """mnet.25's parameters turned into those of a model trained under ``cfg``'s recipe."""
    from rcnn.checkpoint.params import load_checkpoint
    sym, arg_params, aux_params = load_checkpoint(str(MNET), 0)
    arg_params = {name: value.asnumpy() for name, value in arg_params.items()}
    # input channel c (R, G, B) now holds pixel / (scale * std[2 - c])
    per_input = cfg.PIXEL_SCALE * np.asarray(cfg.PIXEL_STDS, dtype=np.float64)[::-1]
    first = arg_params['mobilenet0_conv0_weight']
    arg_params['mobilenet0_conv0_weight'] = (first * per_input[None, :, None, None]).astype(
        np.float32)
    box_stds = np.asarray(cfg.TRAIN.BBOX_STDS, dtype=np.float64)
    for stride in (32, 16, 8):
        for part in ('weight', 'bias'):
            name = 'face_rpn_bbox_pred_stride%d_%s' % (stride, part)
            value = arg_params[name]
            per_channel = np.tile(box_stds, value.shape[0] // 4).reshape(
                (-1,) + (1,) * (value.ndim - 1))
            arg_params[name] = (value / per_channel).astype(np.float32)
            name = 'face_rpn_landmark_pred_stride%d_%s' % (stride, part)
            arg_params[name] = (arg_params[name] / cfg.TRAIN.LANDMARK_STD).astype(np.float32)
    return sym, arg_params, aux_params


def test_non_default_pixel_and_box_stds_round_trip_through_a_checkpoint(tmp_path):
    _need_mnet()
    import cv2
    from rcnn.checkpoint.params import save_checkpoint
    from retinaface import RetinaFace
    cfg = _custom_cfg()
    prefix = str(tmp_path / 'custom')
    save_checkpoint(prefix, 0, *_retrained_params(cfg))
    write_recipe(prefix, cfg, 'mnet')                 # what train.py writes beside it

    released = RetinaFace(str(MNET), 0, ctx_id=-1)
    custom = RetinaFace(prefix, 0, ctx_id=-1)
    assert custom.recipe == Recipe.from_config(cfg, 'mnet')
    found = 0
    for photo in PHOTOS:
        image = cv2.imread(str(photo))
        want_faces, want_points = released.detect(image, threshold=0.6, do_flip=True)
        faces, points = custom.detect(image, threshold=0.6, do_flip=True)
        assert faces.shape == want_faces.shape, photo
        np.testing.assert_allclose(faces[:, :4], want_faces[:, :4], atol=2e-2)
        np.testing.assert_allclose(faces[:, 4], want_faces[:, 4], atol=1e-4)
        np.testing.assert_allclose(points, want_points, atol=2e-2)
        found += len(faces)
    assert found > 0

    # the same checkpoint read with the original recipe decodes wrong: the recipe is needed
    blind = RetinaFace(prefix, 0, ctx_id=-1, recipe=default_recipe())
    image = cv2.imread(str(PHOTOS[0]))
    want_faces, _ = released.detect(image, threshold=0.6)
    faces, _ = blind.detect(image, threshold=0.6)
    assert faces.shape != want_faces.shape or not np.allclose(faces, want_faces, atol=1.0)


class _RecordingBackend(object):
    """Records the inputs it is given and finds nothing."""

    def __init__(self, strides):
        self.strides = strides
        self.inputs = []

    def forward(self, data):
        self.inputs.append(np.array(data))
        outs = []
        for stride in self.strides:
            rows, cols = -(-data.shape[2] // stride), -(-data.shape[3] // stride)
            outs += [np.zeros((data.shape[0], c, rows, cols), np.float32) for c in (4, 8, 20)]
        return outs


def test_detector_feeds_the_recipe_pixel_transform_padding_included(tmp_path):
    _need_mnet()
    from retinaface import RetinaFace
    cfg = _custom_cfg()
    cfg.PIXEL_MEANS = np.array([10.0, 20.0, 30.0])             # B, G, R
    detector = RetinaFace(str(MNET), 0, ctx_id=-1, nocrop=True, recipe=Recipe.from_config(cfg))
    detector.backend = _RecordingBackend(detector.strides)
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3)).astype(np.uint8)
    detector.detect(image, do_flip=True)
    plain, flipped = detector.backend.inputs
    assert plain.shape == (1, 3, 64, 64)
    for channel, bgr in enumerate((2, 1, 0)):                  # tensor is R, G, B
        raw = np.zeros((64, 64), np.float64)
        raw[:40, :50] = image[:, :, bgr]
        want = (raw / 2.0 - cfg.PIXEL_MEANS[bgr]) / cfg.PIXEL_STDS[bgr]
        np.testing.assert_allclose(plain[0, channel], want, rtol=1e-6, atol=1e-6)
        raw[:40, :50] = image[:, ::-1, bgr]
        want = (raw / 2.0 - cfg.PIXEL_MEANS[bgr]) / cfg.PIXEL_STDS[bgr]
        np.testing.assert_allclose(flipped[0, channel], want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------- structure

def _imported_modules(path):
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module)
    return modules


def test_no_import_cycle_between_the_detector_and_retinaface_py():
    import subprocess
    root = Path(__file__).resolve().parents[1]
    importers = [str(path.relative_to(root)) for path in (root / 'rcnn').rglob('*.py')
                 if 'retinaface' in _imported_modules(path)]
    assert importers == [], 'library modules importing the top-level retinaface.py'
    code = ('import sys; import rcnn.inference.detector, rcnn.inference.pipeline; '
            'assert "retinaface" not in sys.modules, "rcnn imports the top-level retinaface.py"')
    proc = subprocess.run([sys.executable, '-c', code], cwd=str(root), capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import retinaface
    from rcnn.inference import detector
    assert retinaface.RetinaFace is detector.RetinaFace


def test_insightface_layout_export_follows_the_recipe(tmp_path):
    """The exported insightface-layout graph applies the recipe's pixel transform and stds:
    the package's decoding of it matches our decoder on the custom model."""
    _need_mnet()
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    from rcnn.deploy.insightface_layout import export_insightface_checkpoint
    from rcnn.checkpoint.params import save_checkpoint
    cfg = _custom_cfg()
    cfg.PIXEL_MEANS = np.array([10.0, 20.0, 30.0])
    prefix = str(tmp_path / 'custom')
    save_checkpoint(prefix, 0, *_retrained_params(cfg))
    write_recipe(prefix, cfg, 'mnet')
    diffs = export_insightface_checkpoint(prefix, 0, str(tmp_path / 'custom.onnx'),
                                          input_size=(256, 320))
    assert diffs['score'] < 1e-5 and diffs['box'] < 1e-2 and diffs['kps'] < 1e-2, diffs


def test_best_checkpoint_copy_carries_the_recipe(tmp_path):
    """Validation during training copies the best checkpoint to <prefix>-best; the recipe goes
    with it, so RetinaFace('<prefix>-best', 0) decodes it as trained."""
    from rcnn.core.validation import ValidationSet, Validator, best_prefix
    prefix = tmp_path / 'm'
    Path('%s-symbol.json' % prefix).write_text('{"graph": "deploy"}')
    Path('%s-0001.params' % prefix).write_bytes(b'params of checkpoint 1')
    Path('%s-0001.train.json' % prefix).write_text(json.dumps({'iteration': 10}))
    write_recipe(str(prefix), _custom_cfg(), 'mnet')
    val_set = ValidationSet('unused', 'val', None, None, 3, None, 'unused')
    Validator(str(prefix), val_set, metric='hard').record(
        1, 10, {'easy': 0.5, 'medium': 0.5, 'hard': 0.5}, 3, 1.0)
    assert load_recipe(best_prefix(str(prefix))) == Recipe.from_config(_custom_cfg(), 'mnet')
