"""``train.py --pretrained``: ImageNet backbones (or any checkpoint) mapped onto our training graph.

The original never trains from scratch: mnet starts from an ImageNet MobileNet-0.25, resnet from
the MXNet model-zoo ``resnet-50``. Two public forms of such weights are read:

* **symbolic checkpoint** -- ``--pretrained PREFIX --pretrained_epoch N`` reads
  ``PREFIX-%04d.params`` (``arg:`` / ``aux:`` names; the symbol file is not needed), or the
  ``.params`` file itself. The model-zoo ``resnet-50`` names (``bn_data``, ``conv0``,
  ``stageN_unitM_*``, ``bn1``) are those of our resnet graph; a Gluon export of MobileNet
  (``mobilenet0_conv0_weight`` ...) those of our mnet graph. Legacy BatchNorm statistics
  ``*_running_mean/var`` become ``*_moving_mean/var``.
* **Gluon model-zoo parameter file** (``save_parameters``, structural names such as
  ``features.0.weight``; e.g. ``mobilenet0.25-<hash>.params``, ``resnet50_v2-<hash>.params``):
  for mnet, the names ``mxnet.gluon.model_zoo.vision.mobilenet0_25`` gives its parameters
  (``mobilenet0_conv0_weight``, ``mobilenet0_batchnorm0_gamma``, ...: the released mnet.25
  graph's); for resnet, ``resnet50_v2`` (the pre-activation ResNet-50 of our graph) mapped
  layer by layer: ``features.0`` -> ``bn_data``, ``features.1`` -> ``conv0``, ``features.2`` ->
  ``bn0``, ``features.{5..8}.{u}.{bn1,conv1,bn2,conv2,bn3,conv3,downsample}`` ->
  ``stage{1..4}_unit{u+1}_{bn1,...,conv3,sc}``, ``features.9`` -> ``bn1``. Files saved with the
  older ``save_params`` (full names) are read by name.

The arrays are matched to the graph by name: those present are **loaded**, graph parameters the
file lacks are **fresh** (initialised as from scratch), file arrays the graph lacks (the
classifier) are **ignored**; the three counts are logged. A file with an array of the wrong
shape, or with NaN / Inf values, is refused naming the first such array (in graph order); a
file sharing no name with the graph is refused naming the file and the first names expected.
"""
import logging
import os
import re

import numpy as np

from rcnn.checkpoint.files import params_path
from rcnn.checkpoint.params import LEGACY_AUX_SUFFIXES, read_ndarray_dict

__all__ = ['PretrainedError', 'PretrainedParams', 'load_pretrained', 'read_pretrained',
           'pretrained_path',
           'gluon_graph_names']

logger = logging.getLogger(__name__)

_AUX_SUFFIXES = ('_moving_mean', '_moving_var')
_SHOWN_NAMES = 5
#: Gluon ResNetV2 ``features`` index -> our layer name (the stages are 5..8)
_RESNET_V2_LAYERS = {0: 'bn_data', 1: 'conv0', 2: 'bn0', 9: 'bn1'}
_RESNET_V2_STAGE = re.compile(r'^features\.([5-8])\.(\d+)\.(bn[123]|conv[123]|downsample)\.(\w+)$')
_RESNET_V2_LAYER = re.compile(r'^features\.(\d+)\.(\w+)$')


class PretrainedError(ValueError):
    """A --pretrained file that cannot start this training graph."""


class PretrainedParams(object):
    """What a pretrained file gives the graph.

    Attributes:
        arg_params, aux_params: name -> NDArray, only the graph's names (shapes checked).
        loaded: graph names taken from the file, in graph order (args then aux).
        fresh: graph names the file lacks (initialised), in graph order.
        ignored: file names the graph lacks (after mapping), sorted.
        form: 'symbolic checkpoint' or 'Gluon parameter file'.
        path: the file read.
    """

    def __init__(self, arg_params, aux_params, loaded, fresh, ignored, form, path):
        self.arg_params, self.aux_params = arg_params, aux_params
        self.loaded, self.fresh, self.ignored = loaded, fresh, ignored
        self.form, self.path = form, path

    def summary(self):
        """One log line: the counts and the first names of each group."""
        def names(items):
            shown = ', '.join(items[:_SHOWN_NAMES])
            return shown + (' ...' if len(items) > _SHOWN_NAMES else '')
        return ('pretrained %s %s: %d arrays loaded, %d initialised fresh (%s), %d ignored (%s)'
                % (self.form, self.path, len(self.loaded), len(self.fresh), names(self.fresh),
                   len(self.ignored), names(self.ignored)))


def _rename_legacy_aux(name):
    for legacy, current in LEGACY_AUX_SUFFIXES.items():
        if name.endswith(legacy):
            return name[:-len(legacy)] + current
    return name


def _mobilenet_names(keys):
    """Gluon mobilenet0_25 structural name -> the name its block gives the parameter."""
    from mxnet.gluon.model_zoo import vision
    net = vision.mobilenet0_25(pretrained=False)
    by_key = {key: 'mobilenet0_' + param.name[len(net.prefix):]
              for key, param in net._collect_params_with_prefix().items()}
    return {key: by_key[key] for key in keys if key in by_key}


def _resnet_v2_names(keys):
    """Gluon resnet50_v2 structural name -> our resnet graph's name (see the module docstring)."""
    mapped = {}
    for key in keys:
        stage = _RESNET_V2_STAGE.match(key)
        if stage:
            index, unit, layer, attr = stage.groups()
            layer = 'sc' if layer == 'downsample' else layer
            mapped[key] = 'stage%d_unit%d_%s_%s' % (int(index) - 4, int(unit) + 1, layer, attr)
            continue
        single = _RESNET_V2_LAYER.match(key)
        if single and int(single.group(1)) in _RESNET_V2_LAYERS:
            mapped[key] = '%s_%s' % (_RESNET_V2_LAYERS[int(single.group(1))], single.group(2))
    return mapped


_GLUON_MAPPERS = {'mnet': ('mobilenet0_25', _mobilenet_names),
                  'resnet': ('resnet50_v2', _resnet_v2_names)}


def gluon_graph_names(network, keys):
    """Structural Gluon names (``features.0.weight``) -> our graph's names, for ``network``.

    Keys that are already full parameter names (``save_params`` files: no dot) map to
    themselves; keys of no known layer are left out (they end up ignored). Legacy BatchNorm
    statistic names are renamed.
    """
    structural = [key for key in keys if '.' in key]
    mapped = _GLUON_MAPPERS[network][1](structural) if structural else {}
    mapped.update({key: key for key in keys if '.' not in key})
    return {key: _rename_legacy_aux(name) for key, name in mapped.items()}


def _split_symbolic(saved, path):
    arg_params, aux_params = {}, {}
    for key, value in saved.items():
        kind, _, name = key.partition(':')
        (arg_params if kind == 'arg' else aux_params)[_rename_legacy_aux(name)] = value
    return arg_params, aux_params


def _split_gluon(saved, network, path):
    names = gluon_graph_names(network, list(saved))
    unmapped = sorted(key for key in saved if key not in names and not key.startswith('output.'))
    if unmapped:
        logger.warning('%s: %d arrays of no %s layer (%s ...): not a %s parameter file?', path,
                       len(unmapped), _GLUON_MAPPERS[network][0], ', '.join(unmapped[:3]),
                       _GLUON_MAPPERS[network][0])
    arg_params, aux_params = {}, {}
    for key, value in saved.items():
        name = names.get(key, key)
        (aux_params if name.endswith(_AUX_SUFFIXES) else arg_params)[name] = value
    return arg_params, aux_params


def pretrained_path(source, epoch):
    """The file ``--pretrained source`` (with ``--pretrained_epoch epoch``) reads.

    Raises:
        FileNotFoundError: naming the flag and the path tried.
    """
    path = source if os.path.isfile(source) else params_path(source, epoch)
    if not os.path.isfile(path):
        raise FileNotFoundError('--pretrained %s: neither a file nor a checkpoint prefix (%s not '
                                'found; give PREFIX with --pretrained_epoch N, or a .params file)'
                                % (source, path))
    return path


def read_pretrained(source, epoch, network):
    """Read a pretrained file -> ``(arg_params, aux_params, form, path)`` in our names.

    Args:
        source: a checkpoint prefix (``PREFIX-%04d.params`` with ``epoch``) or a ``.params``
            file (symbolic ``arg:``/``aux:`` names, or a Gluon parameter file).
        network: 'mnet' or 'resnet' (which Gluon model the structural names belong to).
    Raises:
        FileNotFoundError / PretrainedError naming the file.
    """
    path = pretrained_path(source, epoch)
    saved = read_ndarray_dict(path, '--pretrained', PretrainedError)
    if all(key.startswith(('arg:', 'aux:')) for key in saved):
        arg_params, aux_params = _split_symbolic(saved, path)
        return arg_params, aux_params, 'symbolic checkpoint', path
    arg_params, aux_params = _split_gluon(saved, network, path)
    return arg_params, aux_params, 'Gluon parameter file', path


def _shape(value):
    return tuple(int(d) for d in value.shape)


def load_pretrained(source, epoch, network, arg_shapes, aux_shapes):
    """Map a pretrained file onto the training graph (see the module docstring).

    Args:
        source, epoch, network: as :func:`read_pretrained`.
        arg_shapes / aux_shapes: name -> shape of the graph's parameters / auxiliary states,
            in graph order.
    Returns:
        :class:`PretrainedParams`.
    Raises:
        PretrainedError: an array of the wrong shape (the first in graph order is named), or
            no array of the file fits a graph name.
    """
    arg_params, aux_params, form, path = read_pretrained(source, epoch, network)
    loaded, fresh = [], []
    for shapes, given in ((arg_shapes, arg_params), (aux_shapes, aux_params)):
        for name, shape in shapes.items():
            if name not in given:
                fresh.append(name)
                continue
            if _shape(given[name]) != tuple(shape):
                raise PretrainedError(
                    '--pretrained %s does not fit the %s graph: %s has shape %s, the graph needs '
                    '%s' % (path, network, name, _shape(given[name]), tuple(shape)))
            if not np.isfinite(given[name].asnumpy()).all():
                raise PretrainedError('--pretrained %s holds non-finite values (NaN/Inf) in %s, '
                                      'refusing to start from it' % (path, name))
            loaded.append(name)
    ignored = sorted([n for n in arg_params if n not in arg_shapes] +
                     [n for n in aux_params if n not in aux_shapes])
    if not loaded:
        expected = list(arg_shapes)[:_SHOWN_NAMES]
        raise PretrainedError(
            '--pretrained %s shares no parameter name with the %s graph (%s %d arrays, e.g. %s); '
            'expected names such as %s' % (path, network, form, len(arg_params) + len(aux_params),
                                           ', '.join(sorted(arg_params)[:3] or sorted(aux_params)[:3]),
                                           ', '.join(expected)))
    return PretrainedParams({n: v for n, v in arg_params.items() if n in arg_shapes},
                            {n: v for n, v in aux_params.items() if n in aux_shapes},
                            loaded, fresh, ignored, form, path)
