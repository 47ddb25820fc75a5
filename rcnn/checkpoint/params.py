"""Symbol and parameter files: ``<prefix>-symbol.json`` + ``<prefix>-%04d.params``.

* :func:`load_checkpoint` reads a checkpoint and fits the params file to its own graph
  (:func:`fit_params`): BatchNorm statistics are renamed between their two spellings
  (``_running_mean/var`` of Gluon blocks, ``_moving_mean/var`` of the symbol API) in the
  direction the graph asks for, only to fill a name the graph needs
  (:mod:`rcnn.utils.param_names`). The released mnet.25 (graph ``_moving_``, backbone params
  ``_running_``) and the checkpoints the original ``train.py`` writes from a Gluon backbone
  (``_running_`` in both) load alike. A graph array still missing, an array whose shape differs
  from the graph's, or a NaN/Inf value is refused at load with the file and the arrays named.
* :func:`load_params` reads a params file alone (no graph to ask): BatchNorm statistics get the
  ``_moving_`` spelling of this project's graphs; NaN/Inf values are refused.
* :func:`compare_params` is the one comparison of parameters with the shapes a graph needs
  (missing, unexpected, mis-shaped); :func:`check_params`, :func:`fit_params` and train.py's
  resume all use it.
* :func:`check_params` compares a parameter set with what a symbol needs and raises
  :class:`ParamMismatchError` (a ``ValueError``) listing every missing, unexpected and
  mis-shaped array.
* :func:`select_params` keeps the arrays a (deploy) graph uses; :func:`params_digest` is the
  SHA-256 of a parameter set (the digest train.py logs).
* :func:`save_checkpoint` writes both files atomically (temporary file in the same folder,
  then ``os.replace``): a crash mid-save never leaves a truncated checkpoint behind.

Neck naming: the two released RetinaFace models name their neck differently (mnet.25:
``rf_c3_lateral``, ``rf_c2_det_conv1``, ``rf_c1_red_conv`` ...; R50: ``ssh_c3_lateral``,
``ssh_m2_det_conv1``, ``ssh_m1_red_conv`` ...). Our graphs reproduce each release's naming
(:mod:`rcnn.symbol`), so no renaming is needed or done here: a released checkpoint loads into
our deploy and training graphs as is (after the BatchNorm mapping above).
"""
import collections
import hashlib
import json
import logging
import os
import re

import mxnet as mx
import numpy as np

from rcnn.model_layout import DATA_NAME, LABEL_KINDS
from rcnn.checkpoint.files import params_path, symbol_path
from rcnn.utils.fileio import atomic_write
from rcnn.utils.param_names import BN_STAT_SPELLINGS, fit_names, other_spelling

__all__ = ['ParamMismatchError', 'LEGACY_AUX_SUFFIXES', 'LABEL_INPUT_PATTERN', 'load_symbol',
           'load_params', 'load_checkpoint', 'map_legacy_names', 'check_params', 'compare_params',
           'ParamComparison', 'fit_params', 'is_graph_input', 'save_checkpoint', 'params_payload',
           'read_ndarray_dict', 'select_params', 'params_digest']

logger = logging.getLogger(__name__)

#: legacy auxiliary-state suffix -> the suffix MXNet's BatchNorm symbol uses
LEGACY_AUX_SUFFIXES = dict(BN_STAT_SPELLINGS)
#: graph inputs that are labels of the training graph, not parameters
LABEL_INPUT_PATTERN = re.compile(
    r'^face_(%s)_stride\d+$' % '|'.join(LABEL_KINDS))
DEFAULT_DATA_SHAPES = {DATA_NAME: (1, 3, 640, 640)}
#: a second input size: parameter shapes that change with the input size are not checked
_OTHER_DATA_SHAPES = {DATA_NAME: (1, 3, 480, 352)}
#: MXNet's suffix of label variables (``SoftmaxOutput`` makes ``<name>_label``)
_LABEL_SUFFIX = '_label'
_MAX_LISTED = 20


class ParamMismatchError(ValueError):
    """Parameters do not fit a symbol; ``missing``, ``unexpected``, ``misshaped`` hold the details."""

    def __init__(self, message, missing=(), unexpected=(), misshaped=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.misshaped = list(misshaped)


def _require_file(path, what):
    if not os.path.isfile(path):
        raise FileNotFoundError('%s %s not found' % (what, path))


def _error_summary(exc):
    """The informative line of an MXNet error (its message follows a C++ traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines
              if not line.startswith(('Traceback', 'File ', 'Stack trace', '[bt]'))]
    return useful[0] if useful else (lines[-1] if lines else type(exc).__name__)


def load_symbol(prefix):
    """Load ``<prefix>-symbol.json``; a missing or unreadable file raises naming the file."""
    path = symbol_path(prefix)
    _require_file(path, 'checkpoint symbol file')
    try:
        with open(path, 'r') as handle:
            json.load(handle)
        return mx.sym.load(path)
    except (ValueError, mx.base.MXNetError) as exc:
        raise ValueError('checkpoint symbol file %s is corrupt or not an MXNet symbol: %s'
                         % (path, _error_summary(exc))) from exc


def map_legacy_names(aux_params, source='params'):
    """Rename ``*_running_mean/var`` auxiliary states to ``*_moving_mean/var``.

    Args:
        aux_params: name -> array.
        source: shown in errors (the file the names come from).
    Returns:
        a new dict with the mapped names (other names unchanged).
    Raises:
        ValueError: when a legacy name and its mapped name are both present.
    """
    mapped = {}
    for name, value in aux_params.items():
        new_name = name
        for legacy, current in LEGACY_AUX_SUFFIXES.items():
            if name.endswith(legacy):
                new_name = name[:-len(legacy)] + current
                break
        if new_name in mapped or (new_name != name and new_name in aux_params):
            raise ValueError('%s holds both %s and %s' % (source, name, new_name))
        mapped[new_name] = value
    return mapped


def read_ndarray_dict(path, what='checkpoint params file', error=ValueError):
    """``mx.nd.load(path)`` of a file of named arrays -> {stored name: NDArray}.

    ``what`` names the file in messages (e.g. ``'--pretrained'``); ``error`` is the exception
    class raised for a corrupt file, an unnamed list of arrays or a file with no array.
    """
    _require_file(path, what)
    try:
        saved = mx.nd.load(path)
    except mx.base.MXNetError as exc:
        raise error('%s %s is corrupt or not an MXNet params file: %s'
                    % (what, path, _error_summary(exc))) from exc
    if not isinstance(saved, dict):
        raise error('%s %s holds an unnamed list of %d arrays, expected named arrays'
                    % (what, path, len(saved)))
    if not saved:
        raise error('%s %s holds no array' % (what, path))
    return saved


def _read_params(path):
    """``path`` -> ``(arg_params, aux_params)`` with the names as stored (``arg:`` / ``aux:``
    stripped). Missing, corrupt or malformed files and NaN/Inf values raise naming the file."""
    saved = read_ndarray_dict(path)
    arg_params, aux_params = {}, {}
    for key, value in saved.items():
        kind, sep, name = key.partition(':')
        if not sep or kind not in ('arg', 'aux') or not name:
            raise ValueError('checkpoint params file %s: key %r is neither arg:<name> nor '
                             'aux:<name>' % (path, key))
        (arg_params if kind == 'arg' else aux_params)[name] = value
    _check_finite(path, arg_params, aux_params)
    return arg_params, aux_params


def _check_finite(path, arg_params, aux_params):
    """Raise ValueError naming every floating-point array of the file holding NaN or Inf."""
    broken = []
    for kind, params in (('arg', arg_params), ('aux', aux_params)):
        for name in sorted(params):
            values = params[name].asnumpy()
            if values.dtype.kind != 'f' or np.isfinite(values).all():
                continue
            broken.append('%s:%s (%d NaN, %d Inf of %d values)' % (
                kind, name, int(np.isnan(values).sum()), int(np.isinf(values).sum()),
                values.size))
    if broken:
        raise ValueError('checkpoint params file %s holds non-finite values (NaN/Inf), refusing '
                         'to load it: %s' % (path, _format_list('array(s)', broken)))


def load_params(prefix, epoch):
    """Load ``<prefix>-%04d.params`` -> ``(arg_params, aux_params)`` (name -> NDArray, CPU).

    Keys in the file are ``arg:<name>`` / ``aux:<name>``. With no graph to ask, BatchNorm
    statistics get the ``_moving_`` spelling of this project's graphs
    (:func:`map_legacy_names`); :func:`load_checkpoint` fits the names to the checkpoint's
    own graph instead. Missing, corrupt or malformed files, and NaN/Inf values, raise an error
    naming the file (and the arrays).
    """
    path = params_path(prefix, epoch)
    arg_params, aux_params = _read_params(path)
    renamed = sum(1 for name in aux_params if name.endswith(tuple(LEGACY_AUX_SUFFIXES)))
    aux_params = map_legacy_names(aux_params, source=path)
    if renamed:
        logger.info('%s: renamed %d legacy BatchNorm statistics (*_running_mean/var)', path, renamed)
    return arg_params, aux_params


def load_checkpoint(prefix, epoch):
    """Load a checkpoint -> ``(symbol, arg_params, aux_params)``, the params fitted to the
    symbol (:func:`fit_params`: BatchNorm spellings reconciled, every graph array present and
    of the graph's shape, all values finite); arrays the graph does not use are kept."""
    sym = load_symbol(prefix)
    path = params_path(prefix, epoch)
    arg_params, aux_params = _read_params(path)
    arg_params, aux_params = fit_params(sym, arg_params, aux_params, source='params file %s' % path,
                                        graph='graph %s' % symbol_path(prefix))
    return sym, arg_params, aux_params


def is_graph_input(name):
    """Whether a graph argument is an input rather than a parameter: ``data``, the training
    labels (:data:`LABEL_INPUT_PATTERN`) or an MXNet label variable (``*_label``)."""
    return (name in DEFAULT_DATA_SHAPES or bool(LABEL_INPUT_PATTERN.match(name))
            or name.endswith(_LABEL_SUFFIX))


def _size_independent_shapes(sym):
    """``(arg shapes, aux shapes)`` of ``sym``'s arrays whose shape does not depend on the input
    size (inferred at two sizes; partially known shapes are left out); ``({}, {})`` when the
    graph has no ``data`` input or MXNet cannot infer its shapes."""
    if DATA_NAME not in sym.list_arguments():
        return {}, {}
    inferred = []
    for data_shapes in (DEFAULT_DATA_SHAPES, _OTHER_DATA_SHAPES):
        try:
            arg_shapes, _, aux_shapes = sym.infer_shape_partial(**data_shapes)
        except mx.base.MXNetError as exc:
            logger.warning('cannot infer the graph\'s parameter shapes (%s); shapes not checked '
                           'at load', _error_summary(exc))
            return {}, {}
        inferred.append((dict(zip(sym.list_arguments(), arg_shapes or [])),
                         dict(zip(sym.list_auxiliary_states(), aux_shapes or []))))
    stable = []
    for first, second in zip(*inferred):
        stable.append({name: tuple(shape) for name, shape in first.items()
                       if shape and 0 not in shape and tuple(shape) == tuple(second.get(name, ()))})
    return stable[0], stable[1]


ParamComparison = collections.namedtuple('ParamComparison', 'missing unexpected misshaped')


def compare_params(arg_shapes, aux_shapes, arg_params, aux_params):
    """Compare parameters with the shapes a graph needs: the one parameter-vs-graph check
    (:func:`check_params`, :func:`fit_params` and train.py's resume use it).

    Args:
        arg_shapes / aux_shapes: name -> shape the graph needs for its parameters / auxiliary
            states (no inputs); an empty shape or one with a 0 is unknown and not compared.
        arg_params / aux_params: name -> array (anything with ``.shape``) provided.
    Returns:
        :class:`ParamComparison` of three sorted lists: ``missing`` and ``unexpected``
        (``'arg:<name>'`` / ``'aux:<name>'``), ``misshaped``
        (``'arg:<name> has shape (..), the graph needs (..)'``).
    """
    missing, unexpected, misshaped = [], [], []
    for kind, expected, given in (('arg', arg_shapes, arg_params), ('aux', aux_shapes, aux_params)):
        for name in sorted(set(expected) - set(given)):
            missing.append('%s:%s' % (kind, name))
        for name in sorted(set(given) - set(expected)):
            unexpected.append('%s:%s' % (kind, name))
        for name in sorted(set(expected) & set(given)):
            want, got = tuple(expected[name]), _shape_of(given[name])
            if want and 0 not in want and want != got:
                misshaped.append('%s:%s has shape %s, the graph needs %s' % (kind, name, got, want))
    return ParamComparison(missing, unexpected, misshaped)


def fit_params(sym, arg_params, aux_params, source='the parameters', graph='the graph'):
    """Fit ``arg_params`` / ``aux_params`` to what ``sym`` asks for.

    Each kind's names are reconciled with :func:`rcnn.utils.param_names.fit_names` (BatchNorm
    ``_running_`` <-> ``_moving_``, only to fill a name the graph needs); then every graph
    array must be present and have the graph's shape (where it does not depend on the input
    size). Arrays the graph does not use are kept.

    Args:
        sym: the graph; its inputs (:func:`is_graph_input`) need no value.
        source, graph: what the params and the graph come from, for messages (their files).
    Returns:
        ``(arg_params, aux_params)``, new dicts.
    Raises:
        ParamMismatchError: listing the graph arrays still missing (and the unused arrays of
            ``source``), or the mis-shaped arrays with both shapes.
    """
    wanted_args = [name for name in sym.list_arguments() if not is_graph_input(name)]
    arg_params, renamed_args, missing_args = fit_names(wanted_args, arg_params)
    aux_params, renamed_aux, missing_aux = fit_names(sym.list_auxiliary_states(), aux_params)
    renamed = renamed_args + renamed_aux
    if renamed:
        logger.info('%s: %d BatchNorm statistic(s) renamed to the graph\'s spelling (%s -> %s%s)',
                    source, len(renamed), renamed[0][0], renamed[0][1],
                    ', ...' if len(renamed) > 1 else '')
    missing = ['arg:%s' % n for n in missing_args] + ['aux:%s' % n for n in missing_aux]
    if missing:
        unused = ['arg:%s' % n for n in sorted(set(arg_params) - set(wanted_args))]
        unused += ['aux:%s' % n for n in sorted(set(aux_params) - set(sym.list_auxiliary_states()))]
        message = '%s does not fit %s: %s' % (source, graph, _format_list(
            'array(s) the graph needs are missing', missing))
        if any(other_spelling(name) for name in missing):
            message += ' (BatchNorm statistics were looked up under both spellings, _running_ and ' \
                       '_moving_)'
        if unused:
            message += '; %s' % _format_list('array(s) of the file the graph does not use', unused)
        raise ParamMismatchError(message, missing=missing, unexpected=unused)
    arg_shapes, aux_shapes = _size_independent_shapes(sym)
    misshaped = compare_params(arg_shapes, aux_shapes, arg_params, aux_params).misshaped
    if misshaped:
        raise ParamMismatchError('%s does not fit %s: %s' % (
            source, graph, _format_list('mis-shaped array(s)', misshaped)), misshaped=misshaped)
    return arg_params, aux_params


def _shape_of(value):
    return tuple(int(d) for d in value.shape)


def _format_list(title, items):
    shown = ', '.join(items[:_MAX_LISTED])
    more = '' if len(items) <= _MAX_LISTED else ' ... (%d more)' % (len(items) - _MAX_LISTED)
    return '%s (%d): %s%s' % (title, len(items), shown, more)


def check_params(sym, arg_params, aux_params, data_shapes=None, input_names=None):
    """Check that ``arg_params`` / ``aux_params`` are exactly what ``sym`` needs.

    Args:
        sym: the symbol (deploy or training graph).
        arg_params, aux_params: name -> NDArray or numpy array.
        data_shapes: input name -> shape used to infer the parameter shapes
            (default ``{'data': (1, 3, 640, 640)}``).
        input_names: graph arguments that are inputs, not parameters; by default the keys of
            ``data_shapes`` plus the training labels (:data:`LABEL_INPUT_PATTERN`).
    Raises:
        ParamMismatchError: listing missing, unexpected and mis-shaped parameters
            (``arg:<name> has shape (..), the graph needs (..)``).
    """
    data_shapes = dict(DEFAULT_DATA_SHAPES if data_shapes is None else data_shapes)
    if input_names is None:
        input_names = set(data_shapes) | {name for name in sym.list_arguments()
                                          if LABEL_INPUT_PATTERN.match(name)}
    else:
        input_names = set(input_names) | set(data_shapes)
    arg_shapes, _, aux_shapes = sym.infer_shape_partial(**data_shapes)
    expected_args = {name: tuple(shape) for name, shape in zip(sym.list_arguments(), arg_shapes)
                     if name not in input_names}
    expected_aux = {name: tuple(shape)
                    for name, shape in zip(sym.list_auxiliary_states(), aux_shapes)}

    missing, unexpected, misshaped = compare_params(expected_args, expected_aux, arg_params,
                                                    aux_params)
    if missing or unexpected or misshaped:
        parts = [_format_list(title, items) for title, items in
                 (('missing', missing), ('unexpected', unexpected), ('mis-shaped', misshaped))
                 if items]
        raise ParamMismatchError('parameters do not fit the symbol: ' + '; '.join(parts),
                                 missing, unexpected, misshaped)


def _as_ndarray(value):
    if isinstance(value, mx.nd.NDArray):
        return value.as_in_context(mx.cpu())
    return mx.nd.array(np.asarray(value), dtype=np.asarray(value).dtype)


def params_payload(arg_params, aux_params):
    """The dict ``mx.nd.save`` writes to a .params file: ``arg:<name>`` / ``aux:<name>`` ->
    NDArray. Raises ValueError when a name is in both."""
    overlap = set(arg_params) & set(aux_params)
    if overlap:
        raise ValueError('names in both arg_params and aux_params: %s' % sorted(overlap))
    saved = {'arg:%s' % name: _as_ndarray(value) for name, value in arg_params.items()}
    saved.update({'aux:%s' % name: _as_ndarray(value) for name, value in aux_params.items()})
    return saved


def save_checkpoint(prefix, epoch, sym, arg_params, aux_params):
    """Write ``<prefix>-symbol.json`` and ``<prefix>-%04d.params`` atomically.

    Args:
        prefix: path prefix; its folder is created if needed.
        epoch: integer epoch number in the params file name.
        sym: symbol to save (``None`` saves the params only).
        arg_params, aux_params: name -> NDArray or numpy array, stored as ``arg:`` / ``aux:``.
    Returns:
        ``(symbol_path or None, params_path)``.
    """
    saved = params_payload(arg_params, aux_params)
    sym_file = None
    if sym is not None:
        sym_file = symbol_path(prefix)
        atomic_write(sym_file, sym.save)
    param_file = params_path(prefix, epoch)
    atomic_write(param_file, lambda tmp: mx.nd.save(tmp, saved))
    logger.info('saved checkpoint %s', param_file)
    return sym_file, param_file


def select_params(sym, arg_params, aux_params):
    """The subsets of ``arg_params`` / ``aux_params`` that ``sym`` uses (deploy graph)."""
    arg_names = set(sym.list_arguments())
    aux_names = set(sym.list_auxiliary_states())
    return ({k: v for k, v in arg_params.items() if k in arg_names},
            {k: v for k, v in aux_params.items() if k in aux_names})


def params_digest(params):
    """SHA-256 over the sorted names and bytes of a name -> NDArray dict."""
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(params[name].asnumpy()).tobytes())
    return digest.hexdigest()
