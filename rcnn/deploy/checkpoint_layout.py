"""The layout of a checkpoint, read from its files, for the exporters.

Export, the runtime check and INT8 quantization take the layout of a checkpoint (strides,
anchors per position, box and landmark lengths, see :class:`rcnn.model_layout.ModelLayout`)
from the checkpoint itself:

* ``<prefix>-recipe.json`` with the training config that training stores in it
  (``training_config``): ``ModelLayout.from_config`` of that config;
* a recipe without the training config: its anchors (strides, anchors per position, dense
  anchors) and the graph's box and landmark head widths;
* no recipe (the released insightface models): the ``net3`` layout.

:func:`checkpoint_layout` then checks the graph against the layout: each deploy output of the
layout must be a graph output with ``A x length`` channels. A checkpoint whose graph and recipe
disagree is refused with one line naming both files.

The exporters store the layout in the ONNX file (metadata ``retinaface.layout``,
:func:`rcnn.recipe.layout_to_dict`, the recipe file's form); :func:`onnx_model_layout`
reads it back, so a backend given only an
``.onnx`` file knows its strides, anchors and outputs.
"""
import logging

from rcnn.model_layout import (DATA_NAME, MXNET_OUTPUT_SUFFIX, NUM_CLASSES, ModelLayout,
                               anchors_per_position, strides_of)
from rcnn.recipe import layout_from_dict

logger = logging.getLogger(__name__)

#: input side at which the head widths are read from the graph (every stride divides it)
_PROBE_SIDE = 256


class LayoutMismatchError(ValueError):
    """A checkpoint's graph does not have the outputs its recipe's layout says."""


def _config_of(training_config):
    from rcnn.config import config_from_record
    return config_from_record(training_config)


def recipe_layout(prefix):
    """The layout the checkpoint's files declare, or None when ``<prefix>-recipe.json`` has no
    training config (see the module docstring); ``ModelLayout()`` (``net3``) without a recipe.

    Raises:
        :class:`rcnn.recipe.RecipeError` naming the file when it is malformed.
    """
    import json
    import os
    from rcnn.checkpoint.files import recipe_path
    from rcnn.recipe import RecipeError, read_recipe
    recipe = read_recipe(prefix)
    if recipe is None:
        return ModelLayout()
    with open(recipe_path(prefix), 'r', encoding='utf-8') as handle:
        record = json.load(handle)
    training_config = record.get('training_config')
    if training_config is None:
        return None
    try:
        return ModelLayout.from_config(_config_of(training_config))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RecipeError('recipe file %s: training_config gives no model layout: %s'
                          % (os.path.basename(recipe_path(prefix)), exc)) from None


def output_channels(sym, side=_PROBE_SIDE):
    """``{output name without _output: channels}`` of ``sym`` at a ``side x side`` input."""
    _, out_shapes, _ = sym.infer_shape(**{DATA_NAME: (1, 3, side, side)})
    return {_strip(name): int(shape[1]) for name, shape in zip(sym.list_outputs(), out_shapes)
            if len(shape) == 4}


def _strip(name):
    return name[:-len(MXNET_OUTPUT_SUFFIX)] if name.endswith(MXNET_OUTPUT_SUFFIX) else name


def expected_channels(layout):
    """``{deploy output name: channels}`` of ``layout``: ``2A``, ``box_len x A`` and
    ``landmark_len x A`` per stride."""
    lengths = (NUM_CLASSES, layout.box_len, layout.landmark_len)
    return {'%s_stride%d' % (kind, stride): layout.num_anchors * length
            for stride in layout.strides
            for kind, length in zip(layout.deploy_output_kinds, lengths)}


def _layout_from_graph(recipe, channels):
    """The layout of a recipe without training config: its anchors, the graph's head widths."""
    strides = strides_of(recipe.anchor_cfg)
    anchors = anchors_per_position(recipe.anchor_cfg) * (2 if recipe.dense_anchor else 1)
    first = strides[0]
    box = channels.get('face_rpn_bbox_pred_stride%d' % first, 4 * anchors) // anchors
    landmark = channels.get('face_rpn_landmark_pred_stride%d' % first, 0) // anchors
    return ModelLayout(strides, anchors, box, landmark)


def check_graph_layout(sym, layout, where='the graph'):
    """Raise :class:`LayoutMismatchError` (one line, naming ``where``) unless every deploy
    output of ``layout`` is an output of ``sym`` with the layout's channel count."""
    channels = output_channels(sym)
    expected = expected_channels(layout)
    missing = [name for name in expected if name not in channels]
    if missing:
        raise LayoutMismatchError('%s lacks the outputs %s of its layout %r (it has %s)'
                                  % (where, ', '.join(missing), layout, ', '.join(channels)))
    wrong = ['%s has %d channels, not %d' % (name, channels[name], count)
             for name, count in expected.items() if channels[name] != count]
    if wrong:
        raise LayoutMismatchError('%s does not match its layout %r: %s'
                                  % (where, layout, '; '.join(wrong)))


def checkpoint_layout(prefix, sym):
    """The checked layout of checkpoint ``prefix`` whose graph is ``sym`` (see the module
    docstring).

    Raises:
        LayoutMismatchError naming the symbol and recipe files when they disagree;
        :class:`rcnn.recipe.RecipeError` for a malformed recipe.
    """
    import os
    from rcnn.checkpoint.files import recipe_path, symbol_path
    from rcnn.recipe import read_recipe
    layout = recipe_layout(prefix)
    if layout is None:
        layout = _layout_from_graph(read_recipe(prefix), output_channels(sym))
    source = recipe_path(prefix) if os.path.isfile(recipe_path(prefix)) else 'the net3 layout'
    check_graph_layout(sym, layout, '%s (layout from %s)' % (symbol_path(prefix), source))
    logger.info('%s: %r', prefix, layout)
    return layout


#: metadata key of the layout in an exported ONNX file
ONNX_LAYOUT_KEY = 'retinaface.layout'


def onnx_model_layout(model):
    """The layout stored in an exported ONNX model (a ``ModelProto`` or a path), or None when
    the file has none (exported by another tool).

    Raises:
        ValueError naming the file when the stored layout is malformed.
    """
    import json
    source = 'the ONNX model'
    if not hasattr(model, 'metadata_props'):
        import onnx
        source = str(model)
        model = onnx.load(str(model), load_external_data=False)
    for entry in model.metadata_props:
        if entry.key == ONNX_LAYOUT_KEY:
            try:
                return layout_from_dict(json.loads(entry.value))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError('%s: metadata %s is not a model layout: %s'
                                 % (source, ONNX_LAYOUT_KEY, exc)) from None
    return None
