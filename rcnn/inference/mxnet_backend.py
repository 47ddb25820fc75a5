"""MXNet backend: the deploy graph's forward pass, one bound executor per input shape.

``MXNetBackend(symbol, arg_params, aux_params, ctx)`` keeps only the deploy outputs of the
symbol, selected **by name** (``output_names``; by default the released layout's nine,
``face_rpn_cls_prob_reshape_stride{s}``, ``face_rpn_bbox_pred_stride{s}``,
``face_rpn_landmark_pred_stride{s}``; a graph listing them in another order, or a training graph
where they are internal nodes, works the same), and binds the graph once per distinct input
shape ``(B, 3, H, W)``. Executors are kept in a small LRU cache (``max_shapes``) and share the
parameter arrays, so a repeated size costs no rebind and no parameter copy. ``num_binds``
counts the executors created.

The executor of a new shape is derived from a *base* executor, bound from scratch for the
largest input seen so far, with ``Executor.reshape(allow_up_sizing=True)`` (as MXNet's
``Module`` does from its first executor), so it shares the base's memory. On an image pyramid
over varied image sizes (WIDER FACE mode 1) this cut the run time by ~25% and the peak memory
by ~40% compared with independent binds.

Bounded memory over endless new sizes (a service, a WIDER FACE run):

* MXNet appends every array a derived executor cannot fit into the base's free memory to the
  base's shared pool, for the base's lifetime, so a base that lives forever grows with every
  new shape. After ``rebase_after`` derived executors a fresh base is bound (same largest
  shape); the old base's memory goes with the last cached executor derived from it.
* MXNet's MKLDNN operators cache one primitive per input shape in process-wide maps, unbounded
  unless ``MXNET_MKLDNN_CACHE_NUM`` is set: :func:`import_mxnet` sets it to
  :data:`DEFAULT_MKLDNN_CACHE_NUM` when the environment does not (it is read at the first
  MKLDNN operation; ``-1`` restores MXNet's unbounded default).

* When the LRU cache drops an executor, glibc is asked to return free heap memory to the OS
  (:func:`rcnn.utils.memory.release_free_memory`; ``RETINAFACE_MALLOC_TRIM=0`` turns it off).

None changes a result: every executor computes the same graph on the same parameters.

``forward(data)`` takes ``(B, 3, H, W)`` float32 numpy and returns the selected outputs as numpy
arrays ``(B, C, H_s, W_s)``, in ``output_names`` order -- the interface every backend
implements.
The object is not thread-safe (one forward at a time).

Threads: MXNet reads ``OMP_NUM_THREADS`` (and ``MXNET_ENGINE_TYPE``) when it is imported.
:func:`import_mxnet` sets ``OMP_NUM_THREADS`` from ``threads`` if mxnet is not imported yet;
once it is, the thread count cannot be changed and a warning says so.
"""
import logging
import os
import sys
from collections import OrderedDict

import numpy as np

from rcnn.model_layout import DATA_NAME, FEATURE_STRIDES, MXNET_OUTPUT_SUFFIX
from rcnn.model_layout import deploy_output_names as released_output_names
from rcnn.utils.param_names import fit_to_graph
from rcnn.utils.memory import release_free_memory

__all__ = ['DATA_NAME', 'DEFAULT_STRIDES', 'ENGINES', 'import_mxnet', 'choose_engine',
           'make_context', 'select_outputs', 'MXNetBackend']

logger = logging.getLogger(__name__)

DEFAULT_STRIDES = FEATURE_STRIDES
#: executors kept bound; an image pyramid uses one shape per scale
DEFAULT_MAX_SHAPES = 8
#: a fresh base executor after this many derived ones (bounds MXNet's shared memory pool)
DEFAULT_REBASE_AFTER = 4 * DEFAULT_MAX_SHAPES
#: MKLDNN primitives kept per operator cache (MXNET_MKLDNN_CACHE_NUM; MXNet's default -1 keeps
#: one per input shape forever); set before the first forward unless the caller set it
DEFAULT_MKLDNN_CACHE_NUM = 1024
_OUTPUT_SUFFIX = MXNET_OUTPUT_SUFFIX
#: engine choice -> MXNET_ENGINE_TYPE (``threaded``: MXNet's default)
ENGINES = {'threaded': 'ThreadedEnginePerDevice', 'naive': 'NaiveEngine'}


def choose_engine(choice, on_gpu):
    """Set ``MXNET_ENGINE_TYPE`` for inference before mxnet is imported.

    ``choice``: ``'threaded'``, ``'naive'`` (each operator runs in the calling thread: measured
    faster for CPU inference, the default engine gains nothing from a second OMP thread), or
    ``'auto'``: naive on the CPU, MXNet's default on a GPU. A ``MXNET_ENGINE_TYPE`` already in
    the environment is kept with ``'auto'``. Once mxnet is imported nothing changes (a warning
    says so when that differs from the choice).

    Returns:
        the engine type MXNet uses (or will use).
    """
    if choice not in ('auto',) + tuple(ENGINES):
        raise ValueError('engine must be auto, %s; got %r' % (', '.join(ENGINES), choice))
    current = os.environ.get('MXNET_ENGINE_TYPE') or ENGINES['threaded']
    if choice == 'auto':
        if os.environ.get('MXNET_ENGINE_TYPE'):
            return current
        wanted = ENGINES['threaded' if on_gpu else 'naive']
    else:
        wanted = ENGINES[choice]
    if 'mxnet' in sys.modules:
        if wanted != current:
            logger.warning('engine %s ignored: mxnet was imported before with %s', wanted,
                           current)
        return current
    os.environ['MXNET_ENGINE_TYPE'] = wanted
    return wanted


def import_mxnet(threads=None):
    """Import and return mxnet, first setting ``OMP_NUM_THREADS`` to ``threads`` when given
    and mxnet is not imported yet (later it has no effect: a warning is logged),
    ``MXNET_MKLDNN_CACHE_NUM`` to :data:`DEFAULT_MKLDNN_CACHE_NUM` and ``MXNET_SUBGRAPH_VERBOSE``
    to 0 unless already set (MXNet would print "Subgraph backend MKLDNN is activated" for every
    executor it binds, through the progress bars of the CLIs)."""
    os.environ.setdefault('MXNET_MKLDNN_CACHE_NUM', str(DEFAULT_MKLDNN_CACHE_NUM))
    os.environ.setdefault('MXNET_SUBGRAPH_VERBOSE', '0')
    if threads is not None:
        threads = int(threads)
        if threads < 1:
            raise ValueError('threads must be >= 1, got %d' % threads)
        if 'mxnet' not in sys.modules:
            os.environ['OMP_NUM_THREADS'] = str(threads)
        elif os.environ.get('OMP_NUM_THREADS') != str(threads):
            logger.warning('threads=%d ignored: mxnet was imported before with OMP_NUM_THREADS=%s;'
                           ' set OMP_NUM_THREADS before importing mxnet', threads,
                           os.environ.get('OMP_NUM_THREADS', '(unset)'))
    import mxnet
    return mxnet


def make_context(ctx_id):
    """``mx.cpu()`` for ``ctx_id < 0``, else ``mx.gpu(ctx_id)`` after checking it exists."""
    mx = import_mxnet()
    ctx_id = int(ctx_id)
    if ctx_id < 0:
        return mx.cpu()
    if not mx.runtime.Features().is_enabled('CUDA'):
        raise ValueError('ctx_id=%d asks for GPU %d, but this MXNet build has no GPU support; '
                         'pass --gpu -1 (ctx_id=-1) to run on the CPU' % (ctx_id, ctx_id))
    num_gpus = mx.context.num_gpus()
    if num_gpus == 0:
        raise ValueError('ctx_id=%d asks for GPU %d, but no GPU is visible to this MXNet build; '
                         'pass --gpu -1 (ctx_id=-1) to run on the CPU' % (ctx_id, ctx_id))
    if ctx_id >= num_gpus:
        raise ValueError('ctx_id=%d: only %d GPU(s) visible (ids 0..%d); pass ctx_id=-1 for the '
                         'CPU' % (ctx_id, num_gpus, num_gpus - 1))
    return mx.gpu(ctx_id)


def select_outputs(symbol, names):
    """A group of ``symbol``'s nodes named ``names`` (with or without ``_output``), in that order.

    Raises:
        ValueError listing the names the graph does not have.
    """
    mx = import_mxnet()
    internals = symbol.get_internals()
    available = internals.list_outputs()
    available_set = set(available)
    picked, missing = [], []
    for name in names:
        key = name if name in available_set else name + _OUTPUT_SUFFIX
        if key in available_set:
            picked.append(internals[key])
        else:
            missing.append(name)
    if missing:
        top = [n[:-len(_OUTPUT_SUFFIX)] if n.endswith(_OUTPUT_SUFFIX) else n
               for n in symbol.list_outputs()]
        raise ValueError('not a RetinaFace deploy graph: output(s) %s not found (its outputs: %s)'
                         % (', '.join(missing), ', '.join(top)))
    return mx.sym.Group(picked)


class MXNetBackend(object):
    """Forward pass of a RetinaFace graph with MXNet.

    Args:
        symbol: the deploy (or training) symbol.
        arg_params, aux_params: name -> NDArray, as from ``load_checkpoint`` (BatchNorm
            statistics in either spelling, see :mod:`rcnn.utils.param_names`).
        ctx: MXNet context (default CPU).
        strides: feature strides whose released-layout outputs are returned, coarse to fine
            (when ``output_names`` is None).
        output_names: the outputs to return, in this order (any layout: boxes only, blur,
            cascade); None: :func:`rcnn.model_layout.deploy_output_names` of ``strides``.
        max_shapes: bound executors kept (least recently used dropped first).
        rebase_after: executors derived from one base executor before a fresh base is bound
            (None: never, the unbounded behaviour of earlier versions; see the module notes).

    Attributes:
        output_names: the output names, in the order :meth:`forward` returns them.
        num_binds: executors bound so far (one per new input shape).
        concurrent_forward: False, one :meth:`forward` at a time (the executors share memory).
        num_rebases: base executors bound so far.
    """

    concurrent_forward = False

    def __init__(self, symbol, arg_params, aux_params, ctx=None, strides=DEFAULT_STRIDES,
                 max_shapes=DEFAULT_MAX_SHAPES, rebase_after=DEFAULT_REBASE_AFTER,
                 output_names=None):
        mx = import_mxnet()
        self.ctx = ctx if ctx is not None else mx.cpu()
        self.strides = tuple(int(s) for s in strides)
        self.output_names = (released_output_names(self.strides) if output_names is None
                             else [str(n) for n in output_names])
        self.symbol = select_outputs(symbol, self.output_names)
        if DATA_NAME not in self.symbol.list_arguments():
            raise ValueError('the graph has no %r input (its inputs: %s)'
                             % (DATA_NAME, ', '.join(self.symbol.list_arguments())))
        arg_params, aux_params = fit_to_graph(self.symbol, arg_params, aux_params)
        self.arg_params = self._params_on_ctx(
            [n for n in self.symbol.list_arguments() if n != DATA_NAME], arg_params, 'argument')
        self.aux_params = self._params_on_ctx(
            self.symbol.list_auxiliary_states(), aux_params, 'auxiliary state')
        self.max_shapes = int(max_shapes)
        if self.max_shapes < 1:
            raise ValueError('max_shapes must be >= 1, got %d' % self.max_shapes)
        if rebase_after is not None and int(rebase_after) < 1:
            raise ValueError('rebase_after must be >= 1 or None, got %r' % (rebase_after,))
        self.rebase_after = None if rebase_after is None else int(rebase_after)
        self._executors = OrderedDict()
        self._base = None             # executor of the largest input: new shapes share its memory
        self._base_shape = None
        self._derived = 0             # executors derived from the current base
        self.num_binds = 0
        self.num_rebases = 0
        self.trim_memory = os.environ.get('RETINAFACE_MALLOC_TRIM', '1') != '0'

    @classmethod
    def from_checkpoint(cls, prefix, epoch, ctx_id=-1, threads=None, **kwargs):
        """Load ``<prefix>-symbol.json`` / ``<prefix>-<epoch>.params`` and bind lazily.

        Args:
            ctx_id: < 0 for the CPU, else the GPU id.
            threads: OMP threads (effective only before mxnet is first imported).
        """
        import_mxnet(threads)
        ctx = make_context(ctx_id)
        from rcnn.checkpoint.params import load_checkpoint
        symbol, arg_params, aux_params = load_checkpoint(prefix, epoch)
        return cls(symbol, arg_params, aux_params, ctx=ctx, **kwargs)

    def _params_on_ctx(self, names, params, kind):
        params = params or {}
        missing = [n for n in names if n not in params]
        if missing:
            raise ValueError('the checkpoint lacks %d %s(s) the graph needs: %s%s' % (
                len(missing), kind, ', '.join(missing[:8]), ' ...' if len(missing) > 8 else ''))
        return {n: params[n].as_in_context(self.ctx) for n in names}

    def _bind(self, shape):
        """A new executor for ``shape`` bound from scratch (its own memory)."""
        mx = import_mxnet()
        args = dict(self.arg_params)
        args[DATA_NAME] = mx.nd.zeros(shape, ctx=self.ctx, dtype='float32')
        return self.symbol.bind(self.ctx, args=args, aux_states=self.aux_params,
                                grad_req='null')

    def _new_base(self, shape):
        """Bind a fresh base executor for ``shape``; executors derived from the old base keep
        its memory only until the LRU cache drops them."""
        self._base, self._base_shape, self._derived = self._bind(shape), shape, 0
        self.num_rebases += 1
        logger.debug('base executor #%d bound for input %s', self.num_rebases, shape)

    def executor(self, shape):
        """The executor bound for input ``shape`` (binding it on first use)."""
        shape = tuple(int(d) for d in shape)
        exe = self._executors.get(shape)
        if exe is not None:
            self._executors.move_to_end(shape)
            return exe
        if self._base is None or np.prod(shape) > np.prod(self._base_shape):
            self._new_base(shape)
        elif self.rebase_after is not None and self._derived >= self.rebase_after:
            self._new_base(self._base_shape)
        if shape == self._base_shape:
            exe = self._base
        else:
            exe = self._base.reshape(allow_up_sizing=True, **{DATA_NAME: shape})
            self._derived += 1
        self.num_binds += 1
        logger.debug('bound executor #%d for input %s', self.num_binds, shape)
        self._executors[shape] = exe
        if len(self._executors) > self.max_shapes:
            while len(self._executors) > self.max_shapes:
                self._executors.popitem(last=False)
            if self.trim_memory:
                release_free_memory()
        return exe

    def forward(self, data):
        """data: (B, 3, H, W) float32 numpy -> list of the outputs as numpy (B, C, H_s, W_s),
        in :attr:`output_names` order."""
        if not isinstance(data, np.ndarray) or data.ndim != 4 or data.shape[1] != 3:
            raise ValueError('data: expected a (B, 3, H, W) numpy array, got %s'
                             % (getattr(data, 'shape', type(data).__name__),))
        exe = self.executor(data.shape)
        exe.arg_dict[DATA_NAME][:] = np.ascontiguousarray(data, dtype=np.float32)
        exe.forward(is_train=False)
        return [out.asnumpy() for out in exe.outputs]

    def __repr__(self):
        return 'MXNetBackend(ctx=%s, strides=%s, bound_shapes=%s)' % (
            self.ctx, self.strides, list(self._executors))
