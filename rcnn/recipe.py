"""The recipe a checkpoint needs at inference: pixel transform, box coder, anchors, layout.

Training writes it once per prefix, beside its checkpoints, as ``<prefix>-recipe.json``
(:func:`write_recipe`, from the training config); the detector reads it with
:func:`load_recipe`. A checkpoint without the file -- the released insightface models, or one
trained before this file existed -- gets :func:`default_recipe`: the original recipe (raw RGB
pixels, every std 1, the ``net3`` anchors), which is what those models were trained with.

File (JSON, ``format`` 1)::

    {"format": 1, "network": "mnet", "strides": [32, 16, 8],
     "pixel_means": [0, 0, 0], "pixel_stds": [1, 1, 1], "pixel_scale": 1.0,   # BGR order
     "bbox_stds": [1, 1, 1, 1], "landmark_std": 1.0,
     "dense_anchor": false,
     "anchors": {"32": {"SCALES": [32, 16], "BASE_SIZE": 16, "RATIOS": [1.0]}, ...},
     "layout": {"strides": [32, 16, 8], "num_anchors": 2, "box_len": 4, "landmark_len": 10,
                "cascade": 0, "landmarks": true, "blur": false, "occlusion": false,
                "cascade_cls_strides": [], "cascade_bbox_strides": []}}

``layout`` is the :class:`rcnn.model_layout.ModelLayout` of the training config (the heads the
deploy graph has: anchors per position, dense anchors included; 5 box values with
``USE_BLUR``; 0 / 10 / 15 landmark values for ``FACE_LANDMARK=False`` / the default /
``USE_OCCLUSION``; ``CASCADE`` stages and, when the layout has them, the strides whose stages
have a class / box head). ``landmarks``, ``blur`` and ``occlusion`` repeat what the lengths
say, for a reader of the file. A file without ``layout`` takes it from its
``training_config`` when present, else from its anchors with the released heads (4 box and 10
landmark values, no cascade).
"""
import json
import logging
import os

from rcnn.model_layout import ModelLayout, anchors_per_position, strides_of
from rcnn.processing.box_coder import BoxCoder
from rcnn.processing.pixels import PixelTransform
from rcnn.checkpoint.files import recipe_path
from rcnn.utils.fileio import atomic_write_text

__all__ = ['RECIPE_FORMAT', 'ONNX_RECIPE_KEY', 'Recipe', 'RecipeError', 'default_recipe',
           'write_recipe', 'read_recipe', 'read_onnx_recipe', 'load_recipe',
           'released_heads_layout', 'layout_to_dict', 'layout_from_dict']

logger = logging.getLogger(__name__)

RECIPE_FORMAT = 1
_ANCHOR_KEYS = ('SCALES', 'BASE_SIZE', 'RATIOS')


class RecipeError(ValueError):
    """A recipe file is unreadable or malformed (the message names the file)."""


class Recipe(object):
    """What inference needs to know about how a model was trained.

    Attributes:
        network: the training network ('mnet', 'resnet') or None when unknown.
        pixels: :class:`rcnn.processing.pixels.PixelTransform`.
        coder: :class:`rcnn.processing.box_coder.BoxCoder`.
        anchor_cfg: ``{'32': {'SCALES': ..., 'BASE_SIZE': ..., 'RATIOS': ...}, ...}``
            (an ``RPN_ANCHOR_CFG``).
        dense_anchor: whether each anchor is repeated shifted by half a stride.
        layout: the :class:`rcnn.model_layout.ModelLayout` of the deploy graph's heads (None:
            the anchors' strides and count with the released heads, see
            :func:`released_heads_layout`).
        source: the file it was read from, or None.
    Raises:
        ValueError: the layout's strides or anchor count disagree with the anchors.
    """

    def __init__(self, network, pixels, coder, anchor_cfg, dense_anchor=False, source=None,
                 layout=None):
        self.network = network
        self.pixels = pixels
        self.coder = coder
        self.anchor_cfg = {str(int(stride)): {key: _plain(values[key]) for key in _ANCHOR_KEYS}
                           for stride, values in anchor_cfg.items()}
        self.dense_anchor = bool(dense_anchor)
        self.source = source
        if layout is None:
            layout = released_heads_layout(self.anchor_cfg, self.dense_anchor)
        _check_layout_matches_anchors(layout, self.anchor_cfg, self.dense_anchor)
        self.layout = layout

    @classmethod
    def from_config(cls, cfg, network=None):
        """The recipe of a training config (``PIXEL_*``, ``TRAIN.BBOX_STDS``,
        ``TRAIN.LANDMARK_STD``, ``RPN_ANCHOR_CFG``, ``DENSE_ANCHOR``; the layout from
        :meth:`rcnn.model_layout.ModelLayout.from_config`)."""
        return cls(network, PixelTransform.from_config(cfg), BoxCoder.from_config(cfg),
                   cfg.RPN_ANCHOR_CFG, bool(cfg.DENSE_ANCHOR), layout=ModelLayout.from_config(cfg))

    @property
    def strides(self):
        """The anchor strides, coarse to fine."""
        return strides_of(self.anchor_cfg)

    def base_anchors(self):
        """{stride: (A, 4) float32 anchors of cell (0, 0)}."""
        from rcnn.processing.generate_anchor import generate_anchors_fpn
        anchors = generate_anchors_fpn(dense_anchor=self.dense_anchor, cfg=self.anchor_cfg)
        return dict(zip(self.strides, anchors))

    def to_dict(self):
        record = {'format': RECIPE_FORMAT, 'network': self.network,
                  'strides': list(self.strides)}
        record.update(self.pixels.to_dict())
        record.update(self.coder.to_dict())
        record['dense_anchor'] = self.dense_anchor
        record['anchors'] = self.anchor_cfg
        record['layout'] = layout_to_dict(self.layout)
        return record

    def write(self, prefix):
        """Write ``<prefix>-recipe.json`` atomically; returns the path."""
        text = json.dumps(self.to_dict(), indent=1, sort_keys=True)
        return atomic_write_text(recipe_path(prefix), text + '\n')

    def __eq__(self, other):
        return isinstance(other, Recipe) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return 'Recipe(network=%r, %r, %r, %r%s)' % (
            self.network, self.pixels, self.coder, self.layout,
            ', from %s' % self.source if self.source else '')


def released_heads_layout(anchor_cfg, dense_anchor=False):
    """The layout of an anchor table with the released models' heads: its strides and anchors
    per position (doubled by dense anchors), 4 box and 10 landmark values, no cascade."""
    per_position = anchors_per_position(anchor_cfg) * (2 if dense_anchor else 1)
    return ModelLayout(strides_of(anchor_cfg), per_position)


#: the layout's per-stride cascade choices (``CASCADE_CLS_STRIDES`` / ``CASCADE_BBOX_STRIDES``
#: of the strides), recorded when the layout has them
_CASCADE_STRIDE_KEYS = ('cascade_cls_strides', 'cascade_bbox_strides')


def layout_to_dict(layout):
    """A :class:`ModelLayout` as the recipe file's ``layout`` object."""
    record = {'strides': list(layout.strides), 'num_anchors': layout.num_anchors,
              'box_len': layout.box_len, 'landmark_len': layout.landmark_len,
              'cascade': layout.cascade, 'landmarks': layout.landmarks, 'blur': layout.blur,
              'occlusion': layout.occlusion}
    for key in _CASCADE_STRIDE_KEYS:
        if hasattr(layout, key):
            record[key] = list(getattr(layout, key))
    return record


def layout_from_dict(record):
    """The recipe file's ``layout`` object as a :class:`ModelLayout`.

    Raises:
        ValueError: a key is missing or a value is impossible, or a flag disagrees with the
            lengths.
    """
    if not isinstance(record, dict):
        raise ValueError('layout must be a JSON object, got %r' % (record,))
    per_stride = {key: record[key] for key in _CASCADE_STRIDE_KEYS
                  if key in record and hasattr(ModelLayout, key) and record.get('cascade')}
    try:
        layout = ModelLayout(record['strides'], record['num_anchors'], record['box_len'],
                             record['landmark_len'], record.get('cascade', 0), **per_stride)
    except KeyError as exc:
        raise ValueError('layout lacks the key %s' % exc) from None
    for flag in ('landmarks', 'blur', 'occlusion'):
        if flag in record and bool(record[flag]) != getattr(layout, flag):
            raise ValueError('layout says %s=%s but its lengths (box %d, landmark %d) say %s'
                             % (flag, record[flag], layout.box_len, layout.landmark_len,
                                getattr(layout, flag)))
    return layout


def _check_layout_matches_anchors(layout, anchor_cfg, dense_anchor):
    strides = strides_of(anchor_cfg)
    if tuple(layout.strides) != strides:
        raise ValueError('layout strides %s do not match the anchor strides %s'
                         % (list(layout.strides), list(strides)))
    per_position = anchors_per_position(anchor_cfg) * (2 if dense_anchor else 1)
    if layout.num_anchors != per_position:
        raise ValueError('layout has %d anchors per position, the anchors (dense_anchor=%s) '
                         'give %d' % (layout.num_anchors, dense_anchor, per_position))


def _plain(value):
    """JSON-ready copy of a config value (tuples and numpy values become lists / floats)."""
    if hasattr(value, 'tolist'):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def default_recipe():
    """The original recipe (the released models'): the ``mnet`` preset's values, which are the
    original's ``net3`` values (raw RGB, stds 1, anchors 32: (32, 16), 16: (8, 4), 8: (2, 1))."""
    from rcnn.config import generate_config
    cfg, _ = generate_config('mnet', 'retinaface')
    return Recipe.from_config(cfg, network=None)


def write_recipe(prefix, cfg, network, overrides=None):
    """Write ``<prefix>-recipe.json`` (atomically) from a training config; returns the path.

    Besides the recipe, the file keeps the whole training config (``training_config``) and,
    when given, the ``{dotted key: value}`` overrides it was built with
    (``config_overrides``); :func:`read_recipe` reads only the recipe.
    """
    from rcnn.config import config_to_plain
    record = Recipe.from_config(cfg, network).to_dict()
    record['training_config'] = config_to_plain(cfg)
    if overrides is not None:
        record['config_overrides'] = [[key, config_to_plain(value)]
                                      for key, value in dict(overrides).items()]
    text = json.dumps(record, indent=1, sort_keys=True)
    return atomic_write_text(recipe_path(prefix), text + '\n')


def _from_dict(record, path):
    if not isinstance(record, dict):
        raise RecipeError('recipe file %s does not hold a JSON object' % path)
    if record.get('format') != RECIPE_FORMAT:
        raise RecipeError('recipe file %s has format %r; this code reads format %d'
                          % (path, record.get('format'), RECIPE_FORMAT))
    try:
        recipe = Recipe(record.get('network'),
                        PixelTransform(record['pixel_means'], record['pixel_stds'],
                                       record['pixel_scale']),
                        BoxCoder(record['bbox_stds'], record['landmark_std']),
                        record['anchors'], record.get('dense_anchor', False), source=path,
                        layout=_recorded_layout(record))
    except KeyError as exc:
        raise RecipeError('recipe file %s lacks the key %s' % (path, exc)) from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise RecipeError('recipe file %s: %s' % (path, exc)) from None
    if 'strides' in record and list(record['strides']) != list(recipe.strides):
        raise RecipeError('recipe file %s: strides %s do not match its anchors %s'
                          % (path, record['strides'], list(recipe.strides)))
    return recipe


def _recorded_layout(record):
    """The layout a recipe file records: its ``layout``, else that of its training config,
    else None (the released heads on its anchors)."""
    if 'layout' in record:
        return layout_from_dict(record['layout'])
    config = record.get('training_config')
    if isinstance(config, dict) and 'RPN_ANCHOR_CFG' in config:
        from rcnn.config import config_from_record
        return ModelLayout.from_config(config_from_record(config))
    return None


def read_recipe(prefix):
    """The recipe in ``<prefix>-recipe.json``, or None when there is no such file.

    Raises:
        RecipeError: the file exists but is unreadable or malformed.
    """
    path = recipe_path(prefix)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, 'r', encoding='utf-8') as handle:
            record = json.load(handle)
    except (OSError, ValueError) as exc:
        raise RecipeError('recipe file %s is unreadable or not JSON: %s' % (path, exc)) from None
    return _from_dict(record, path)


#: metadata key under which an ONNX export keeps its recipe (:mod:`rcnn.deploy.onnx_export`)
ONNX_RECIPE_KEY = 'retinaface.recipe'


def read_onnx_recipe(path):
    """The recipe an ``.onnx`` export keeps in its metadata (:data:`ONNX_RECIPE_KEY`), or None
    when it has none.

    Raises:
        RecipeError: the metadata is not a valid recipe.
    """
    import onnx
    model = onnx.load(str(path), load_external_data=False)
    text = {entry.key: entry.value for entry in model.metadata_props}.get(ONNX_RECIPE_KEY)
    if text is None:
        return None
    where = '%s (metadata %s)' % (path, ONNX_RECIPE_KEY)
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise RecipeError('recipe of %s is not JSON: %s' % (where, exc)) from None
    return _from_dict(record, where)


def load_recipe(prefix):
    """The recipe of checkpoint ``prefix``: its file when present, else :func:`default_recipe`."""
    recipe = read_recipe(prefix)
    if recipe is None:
        logger.debug('no %s: using the original recipe', recipe_path(prefix))
        return default_recipe()
    return recipe
