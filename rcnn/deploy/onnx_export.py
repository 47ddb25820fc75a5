"""ONNX export of RetinaFace deploy graphs, with a numerical check against MXNet.

MXNet 1.9.1's exporter (``mxnet.onnx``) cannot translate two things found in our graphs:

* ``SoftmaxActivation(mode='channel')`` (the released insightface graphs apply it to the
  ``(0, 2, -1, 0)``-reshaped scores): it is rewritten to the equivalent ``softmax(axis=1)``;
* ``BatchNorm(fix_gamma=True)`` (MXNet's default): the exporter ignores ``fix_gamma`` and would
  use the stored gamma, while MXNet multiplies by 1. The rewrite sets that gamma to ones and
  ``fix_gamma=False``, which computes the same function.

The exporter is driven at opset 13 (the newest opset its translations are written for; the
installed ``onnx`` may default to a newer one whose operator signatures differ), and the
exported graph is finished for onnxruntime:

* weights are initializers only, not also graph inputs: onnxruntime treats an initializer that
  is also an input as overridable and then cannot fold BatchNorm into the convolutions (about
  2x slower on mnet.25);
* neutral ``Div``/``Mul`` by a constant 1 (the exporter's softmax temperature) are removed, as
  are initializers no node uses;
* outputs are ordered as the MXNet symbol's outputs (``face_rpn_cls_prob_reshape_stride32``,
  ``..._bbox_pred_...``, ``..._landmark_pred_...`` for strides 32, 16, 8), named as in MXNet
  without the ``_output`` suffix.

Deformable convolutions (``USE_DCN``) become ONNX ``DeformConv`` (:mod:`rcnn.deploy.onnx_deformable`);
a graph that has one is converted to opset 19 after the export, the first opset with that
operator (IR version 9), and every other graph stays at the opset asked for.

With ``dynamic=True`` the batch, height and width of ``data`` are symbolic: every shape-bearing
op of our graphs converts to shape-agnostic ONNX (``Reshape (0, 2, -1, 0)`` keeps its 0/-1
codes, ``Crop`` against a reference becomes ``Slice`` to ``Shape(reference)``, nearest
``UpSampling`` becomes ``Resize`` by scales), so one file serves every input size.
"""
import contextlib
import hashlib
import json
import logging
import os
import re
import warnings

import numpy as np

from rcnn.model_layout import DATA_NAME, MXNET_OUTPUT_SUFFIX
from rcnn.checkpoint.files import checkpoint_name, params_path, symbol_path
from rcnn.utils import machine
from rcnn.utils.fileio import atomic_write_bytes
from rcnn.utils.param_names import fit_to_graph

logger = logging.getLogger(__name__)

#: opset the exported graphs declare (mxnet 1.9.1 ships translations for opsets 12 and 13)
DEFAULT_OPSET = 13
#: ONNX IR version matching opset 13 (ONNX 1.8), readable by every onnxruntime that runs opset 13
IR_VERSION = 7
#: IR version of the opset-19 graphs (ONNX 1.14) that deformable convolutions need
DEFORM_IR_VERSION = 9
DYNAMIC_DATA_SHAPE = ('batch', 3, 'height', 'width')
#: SoftmaxActivation mode -> equivalent softmax axis
_SOFTMAX_ACTIVATION_AXIS = {'channel': 1}
#: largest height or width of an exported input: the largest side the detector ever feeds the
#: network (``rcnn.inference.detector.MAX_SCALED_SIDE``); beyond it the graph is never run
MAX_INPUT_SIDE = 8192
#: the check runs MXNet, then onnxruntime, on the same input; MXNet's memory pool keeps its
#: activations while onnxruntime allocates its own, so both count
CHECK_MEMORY_FACTOR = 2.0
#: input side of the bind whose memory plan is scaled to the asked input size
_PLAN_REFERENCE_SIDE = 640


class ExportMismatchError(RuntimeError):
    """The ONNX graph's outputs differ from MXNet's beyond the tolerance."""


class CheckMemoryError(ValueError):
    """The check against MXNet would need more memory than the machine has available."""


class CheckCrashedError(RuntimeError):
    """The process running the check against MXNet died (a signal: a crash or the OOM killer)."""


def _import_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError('ONNX export needs the optional extras: '
                          'pip install -r requirements-deploy.txt -c requirements.txt') from exc
    return onnx


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError('onnxruntime is an optional extra: '
                          'pip install -r requirements-deploy.txt -c requirements.txt') from exc
    return onnxruntime


def _is_true(value):
    return str(value).strip().lower() in ('true', '1')


def onnx_output_name(mxnet_output_name):
    """ONNX name of an MXNet output: ``face_rpn_bbox_pred_stride32_output`` -> without ``_output``."""
    suffix = MXNET_OUTPUT_SUFFIX
    if mxnet_output_name.endswith(suffix):
        return mxnet_output_name[:-len(suffix)]
    return mxnet_output_name


def make_exportable(sym, arg_params, aux_params):
    """Rewrite a deploy graph into an equivalent one that MXNet's ONNX exporter translates.

    ``SoftmaxActivation(mode='channel')`` -> ``softmax(axis=1)``; ``BatchNorm(fix_gamma=True)``
    -> gamma set to ones and ``fix_gamma=False``. Returns ``(sym, arg_params, aux_params)``;
    the inputs are not modified (a changed gamma is a new array).
    """
    import mxnet as mx
    graph = json.loads(sym.tojson())
    nodes = graph['nodes']
    arg_params = dict(arg_params)
    rewritten = {'SoftmaxActivation': 0, 'BatchNorm': 0}
    for node in nodes:
        attrs = node.get('attrs', {})
        if node['op'] == 'SoftmaxActivation':
            mode = attrs.get('mode', 'instance')
            if mode not in _SOFTMAX_ACTIVATION_AXIS:
                raise ValueError('node %r: SoftmaxActivation(mode=%r) has no ONNX rewrite '
                                 '(only mode=channel)' % (node['name'], mode))
            node['op'] = 'softmax'
            node['attrs'] = {'axis': str(_SOFTMAX_ACTIVATION_AXIS[mode])}
            rewritten['SoftmaxActivation'] += 1
        elif node['op'] == 'BatchNorm' and _is_true(attrs.get('fix_gamma', 'True')):
            gamma_name = nodes[node['inputs'][1][0]]['name']
            if gamma_name not in arg_params:
                raise KeyError('BatchNorm %r: gamma %r missing from the parameters'
                               % (node['name'], gamma_name))
            gamma = arg_params[gamma_name]
            arg_params[gamma_name] = mx.nd.ones(gamma.shape, dtype=gamma.dtype)
            attrs['fix_gamma'] = 'False'
            node['attrs'] = attrs
            rewritten['BatchNorm'] += 1
    logger.info('rewrote %d SoftmaxActivation and %d fix_gamma BatchNorm nodes',
                rewritten['SoftmaxActivation'], rewritten['BatchNorm'])
    return mx.sym.load_json(json.dumps(graph)), arg_params, dict(aux_params)


def check_params_complete(sym, arg_params, aux_params):
    """Raise KeyError naming every argument / auxiliary state of ``sym`` without a value."""
    missing = [name for name in sym.list_arguments() if name != DATA_NAME and name not in arg_params]
    missing += [name for name in sym.list_auxiliary_states() if name not in aux_params]
    if missing:
        raise KeyError('parameters missing for %d graph inputs: %s%s' % (
            len(missing), ', '.join(missing[:10]), ' ...' if len(missing) > 10 else ''))


def parse_input_shape(text):
    """``'1,3,480,640'`` -> ``(1, 3, 480, 640)``; ValueError naming the argument otherwise."""
    try:
        shape = tuple(int(v) for v in str(text).replace('x', ',').split(','))
    except ValueError:
        raise ValueError('input shape %r: expected four comma-separated integers B,C,H,W' % (text,))
    return validate_input_shape(shape)


def validate_input_shape(shape):
    """``shape`` as a tuple of ints (batch, 3, height, width); ValueError otherwise."""
    shape = tuple(int(v) for v in shape)
    if len(shape) != 4 or min(shape) < 1 or shape[1] != 3:
        raise ValueError('input shape %r: expected (batch, 3, height, width) with positive sizes'
                         % (shape,))
    return shape


def check_input_side(height, width):
    """ValueError unless both sides are at most :data:`MAX_INPUT_SIDE` (the limit of the
    export tool's sizes; the library exports what it is asked)."""
    if max(int(height), int(width)) > MAX_INPUT_SIDE:
        raise ValueError('height and width must be at most %d (the largest side the detector '
                         'feeds the network), got %dx%d' % (MAX_INPUT_SIDE, height, width))


def forward_memory_bytes(sym, input_shape):
    """MXNet's memory plan (activations and workspace, bytes) of an inference forward of
    ``sym`` at ``input_shape`` (B, 3, H, W), or None when MXNet does not report it.

    The plan of a bind at :data:`_PLAN_REFERENCE_SIDE` squared (its buffers are reserved, not
    touched) is scaled by the number of input pixels: activations grow linearly with them.
    """
    import mxnet as mx
    side = _PLAN_REFERENCE_SIDE
    executor = sym.simple_bind(mx.cpu(), grad_req='null', **{DATA_NAME: (1, 3, side, side)})
    match = re.search(r'Total (\d+) MB allocated', executor.debug_str())
    del executor
    if match is None:
        return None
    batch, _, height, width = input_shape
    return int(match.group(1)) * 2 ** 20 * batch * height * width / float(side * side)


def check_verification_memory(sym, input_shapes, available=None):
    """Refuse a check whose forwards would not fit in the available memory (the process would
    be killed by the kernel's OOM killer, with nothing on stderr).

    Args:
        input_shapes: the (B, 3, H, W) inputs of the check.
        available: bytes available (None: :func:`rcnn.utils.machine.available_memory`).
    Raises:
        CheckMemoryError naming the input, the estimate and the available memory.
    """
    available = machine.available_memory() if available is None else available
    if available is None:
        return
    for shape in input_shapes:
        planned = forward_memory_bytes(sym, shape)
        if planned is None:
            return
        needed = CHECK_MEMORY_FACTOR * planned
        if needed > available:
            raise CheckMemoryError(
                'checking the export at input %s against MXNet needs about %.1f GB (MXNet and '
                'onnxruntime forwards), %.1f GB of memory are available'
                % ('x'.join(map(str, shape)), needed / 2 ** 30, available / 2 ** 30))


def _finish_graph(graph, output_order):
    """Initializers out of the inputs, neutral Div/Mul removed, unused initializers dropped,
    outputs put in ``output_order``."""
    from onnx import numpy_helper
    initializers = {init.name: init for init in graph.initializer}
    data_inputs = [inp for inp in graph.input if inp.name not in initializers]
    del graph.input[:]
    graph.input.extend(data_inputs)

    graph_outputs = {out.name for out in graph.output}
    replace = {}
    kept_nodes = []
    for node in graph.node:
        inputs = [replace.get(name, name) for name in node.input]
        del node.input[:]
        node.input.extend(inputs)
        if (node.op_type in ('Div', 'Mul') and len(node.input) == 2 and node.input[1] in initializers
                and node.output[0] not in graph_outputs):
            value = numpy_helper.to_array(initializers[node.input[1]])
            if value.size == 1 and float(value.reshape(-1)[0]) == 1.0:
                replace[node.output[0]] = node.input[0]
                continue
        kept_nodes.append(node)
    del graph.node[:]
    graph.node.extend(kept_nodes)

    used = {name for node in graph.node for name in node.input}
    used.update(out.name for out in graph.output)
    kept_init = [init for init in graph.initializer if init.name in used]
    dropped = len(graph.initializer) - len(kept_init)
    del graph.initializer[:]
    graph.initializer.extend(kept_init)

    by_name = {out.name: out for out in graph.output}
    if sorted(by_name) != sorted(output_order):
        raise RuntimeError('exported outputs %s differ from the symbol outputs %s'
                           % (sorted(by_name), sorted(output_order)))
    ordered = [by_name[name] for name in output_order]
    del graph.output[:]
    graph.output.extend(ordered)
    logger.info('finished graph: %d nodes, %d initializers (%d unused dropped), %d neutral ops removed',
                len(graph.node), len(graph.initializer), dropped, len(replace))


def build_onnx_model(sym, arg_params, aux_params, input_shape=(1, 3, 640, 640), dynamic=False,
                     opset=DEFAULT_OPSET, metadata=None):
    """The checked ``onnx.ModelProto`` of a deploy graph (see :func:`export_onnx` for the
    arguments); nothing is written."""
    onnx = _import_onnx()
    import mxnet.onnx  # noqa: F401  (registers the op translations)
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    from rcnn.deploy import onnx_deformable
    onnx_deformable.register()

    input_shape = validate_input_shape(input_shape)
    if opset not in (12, 13):
        raise ValueError('opset %r: mxnet 1.9.1 translates to opsets 12 and 13 only' % (opset,))
    if DATA_NAME not in sym.list_inputs():
        raise ValueError('the graph has no input named %r' % DATA_NAME)
    arg_params, aux_params = fit_to_graph(sym, arg_params, aux_params)
    check_params_complete(sym, arg_params, aux_params)
    export_sym, export_args, export_aux = make_exportable(sym, arg_params, aux_params)
    params = dict(export_args)
    params.update(export_aux)
    output_order = [onnx_output_name(name) for name in sym.list_outputs()]
    deformable = onnx_deformable.has_deformable(export_sym)
    if deformable:
        # converted to opset 19 below; the exporter's newest translations convert best
        opset = DEFAULT_OPSET

    with warnings.catch_warnings(), _no_intermediate_graph_check(onnx):
        # the exporter uses onnx.mapping, deprecated (still present) in onnx 1.18
        warnings.simplefilter('ignore', DeprecationWarning)
        graph = MXNetGraph().create_onnx_graph_proto(
            export_sym, params, in_shapes=[input_shape], in_types=[onnx.TensorProto.FLOAT],
            opset_version=opset, dynamic=dynamic,
            dynamic_input_shapes=[DYNAMIC_DATA_SHAPE] if dynamic else None)
    _finish_graph(graph, output_order)
    model = onnx.helper.make_model(graph, producer_name='retinaface-mxnet',
                                   opset_imports=[onnx.helper.make_opsetid('', opset)])
    model.ir_version = IR_VERSION
    if deformable:
        onnx_deformable.upgrade_to_deform_opset(model)
        model.ir_version = DEFORM_IR_VERSION
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    onnx.checker.check_model(model)
    return model


@contextlib.contextmanager
def _no_intermediate_graph_check(onnx):
    """While active, ``onnx.checker.check_graph`` does nothing.

    mxnet's exporter checks the graph it builds with onnx's default context, the newest opset
    onnx knows, not the opset it translates to: some of its opset-13 translations are refused
    there (``ReduceMax`` with an ``axes`` attribute, which the ``USE_MAXOUT`` class heads
    export to, takes its axes as an input from opset 18). :func:`build_onnx_model` checks the
    finished model at its declared opset instead.
    """
    original = onnx.checker.check_graph
    onnx.checker.check_graph = lambda *args, **kwargs: None
    try:
        yield
    finally:
        onnx.checker.check_graph = original


def model_opset(model):
    """The default-domain opset an ``onnx.ModelProto`` declares."""
    return max(entry.version for entry in model.opset_import if entry.domain in ('', 'ai.onnx'))


def export_onnx(sym, arg_params, aux_params, onnx_path, input_shape=(1, 3, 640, 640),
                dynamic=False, opset=DEFAULT_OPSET, metadata=None):
    """Export a deploy graph to ``onnx_path`` (written atomically) and return the path.

    Parameters
    ----------
    sym, arg_params, aux_params : the deploy checkpoint (one input named ``data``).
    input_shape : (B, 3, H, W) used by the exporter's shape inference; it is the model's fixed
        input shape unless ``dynamic``.
    dynamic : symbolic ``batch``, ``height`` and ``width`` for ``data``.
    opset : ONNX opset to declare (12 or 13; a graph with deformable convolutions is converted
        to opset 19).
    metadata : optional ``{key: str}`` stored in the model's metadata_props.
    """
    model = build_onnx_model(sym, arg_params, aux_params, input_shape=input_shape,
                             dynamic=dynamic, opset=opset, metadata=metadata)
    atomic_write_bytes(onnx_path, model.SerializeToString())
    logger.info('exported %s (opset %d, %s input %s)', onnx_path, model_opset(model),
                'dynamic' if dynamic else 'fixed', DYNAMIC_DATA_SHAPE if dynamic else input_shape)
    return onnx_path


def mxnet_forward(sym, arg_params, aux_params, data):
    """Reference forward of the (original, unrewritten) MXNet graph on CPU.

    data: (B, 3, H, W) float32. Returns ``{onnx output name: ndarray}``.
    """
    import mxnet as mx
    module = mx.mod.Module(sym, data_names=[DATA_NAME], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[(DATA_NAME, data.shape)], for_training=False)
    module.set_params(arg_params, aux_params, allow_missing=False, allow_extra=True)
    module.forward(mx.io.DataBatch([mx.nd.array(data)]), is_train=False)
    return {onnx_output_name(name): out.asnumpy()
            for name, out in zip(sym.list_outputs(), module.get_outputs())}


def create_session(onnx_path, threads=None, varying_shapes=False):
    """An onnxruntime CPU session with full graph optimisation and ``threads`` intra-op threads
    (None: onnxruntime's default, one per physical core).

    ``varying_shapes``: the session will see many input sizes (a detector): onnxruntime's
    memory-pattern planning, which caches one allocation plan per input shape for the session's
    lifetime, is turned off so memory stays bounded (outputs are unchanged)."""
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    if varying_shapes:
        options.enable_mem_pattern = False
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        if int(threads) < 1:
            raise ValueError('threads=%r: expected a positive thread count or None' % (threads,))
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(onnx_path), sess_options=options,
                                providers=['CPUExecutionProvider'])


def onnxruntime_forward(onnx_path, data, threads=None):
    """Run the ONNX graph on onnxruntime. Returns ``{output name: ndarray}``."""
    session = create_session(onnx_path, threads)
    names = [out.name for out in session.get_outputs()]
    outputs = session.run(names, {session.get_inputs()[0].name: np.ascontiguousarray(data, np.float32)})
    return dict(zip(names, outputs))


def compare_outputs(reference, candidate):
    """Per output: ``max_abs`` = max |a - b| and ``max_err`` = max_abs / max(1, max |a|), i.e.
    absolute for outputs within +-1 (probabilities, regression deltas) and relative to the
    output's scale for larger ones (float32 rounding grows with the magnitude of the values
    summed, so an element-wise relative error would flag cancellations). Shapes must agree."""
    missing = sorted(set(reference) - set(candidate))
    if missing:
        raise ExportMismatchError('outputs missing from the ONNX graph: %s' % missing)
    rows = []
    for name, ref in reference.items():
        got = candidate[name]
        if got.shape != ref.shape:
            raise ExportMismatchError('output %s: shape %s, MXNet gives %s' % (name, got.shape, ref.shape))
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        max_abs = float(diff.max()) if diff.size else 0.0
        scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
        rows.append({'output': name, 'shape': tuple(ref.shape), 'max_abs': max_abs,
                     'max_err': max_abs / scale})
    return rows


def verification_shapes(input_shape, dynamic):
    """Shapes of the check's inputs: ``input_shape``; with ``dynamic`` also an odd size at
    batch 2 (exercises the symbolic axes and the neck's Crop on non-multiples of 32)."""
    shapes = [tuple(input_shape)]
    if dynamic:
        batch, channels, height, width = input_shape
        shapes.append((2, channels, height + 37, width - 27 if width > 64 else width + 53))
    return shapes


def verification_inputs(input_shape, dynamic, seed=0):
    """Test inputs: raw-pixel-range noise at :func:`verification_shapes`.

    Returns a list of (B, 3, H, W) float32 arrays.
    """
    rng = np.random.RandomState(seed)
    return [rng.uniform(0, 255, size=shape).astype(np.float32)
            for shape in verification_shapes(input_shape, dynamic)]


def verify_onnx(onnx_path, sym, arg_params, aux_params, inputs, tol=1e-4, threads=None):
    """Run MXNet (original graph) and onnxruntime on each input; returns rows (see
    :func:`compare_outputs`, plus ``input_shape``) and raises ExportMismatchError if any
    ``max_err`` exceeds ``tol``."""
    rows = []
    for data in inputs:
        reference = mxnet_forward(sym, arg_params, aux_params, data)
        candidate = onnxruntime_forward(onnx_path, data, threads=threads)
        for row in compare_outputs(reference, candidate):
            row['input_shape'] = tuple(data.shape)
            rows.append(row)
    worst = max(rows, key=lambda row: row['max_err'])
    if worst['max_err'] > tol:
        raise ExportMismatchError('%s: output %s at input %s differs from MXNet by %.3g (> tol %.3g)'
                                  % (onnx_path, worst['output'], worst['input_shape'],
                                     worst['max_err'], tol))
    return rows


def _child_main(connection, function, args):
    """Body of :func:`call_in_child`'s process: sends ``('value', function(*args))`` or
    ``('error', exception)``."""
    try:
        connection.send(('value', function(*args)))
    except Exception as exc:  # handed to the parent, which raises it
        connection.send(('error', exc))
    finally:
        connection.close()


def call_in_child(function, args, input_shape, onnx_path):
    """``function(*args)`` (a module-level function) in a process of its own (``spawn``), so
    that a native crash of a forward (MXNet's MKLDNN kernels die with SIGFPE on some large
    inputs) or the OOM killer ends in an error rather than in the death of the caller.

    Args:
        input_shape, onnx_path: what the check runs on, for the message.
    Returns what ``function`` returned; raises what it raised, or CheckCrashedError naming the
    signal.
    """
    import multiprocessing
    import signal
    context = multiprocessing.get_context('spawn')
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(sender, function, tuple(args)))
    process.start()
    sender.close()
    try:
        message = receiver.recv()
    except EOFError:           # the child died before it could answer
        message = None
    process.join()
    if message is None:
        code = process.exitcode
        signum = -code if code is not None and code < 0 else None
        reason = 'signal %s' % signal.Signals(signum).name if signum else 'exit status %s' % code
        hint = {signal.SIGFPE: 'a floating-point exception in MXNet\'s MKLDNN kernels, which '
                               'fail on some large inputs; MXNET_MKLDNN_ENABLED=0 avoids them',
                signal.SIGKILL: 'killed, most likely by the OOM killer: not enough memory'}
        raise CheckCrashedError('the check against MXNet at input %s died with %s (%s); %s is '
                                'written but unchecked' % ('x'.join(map(str, input_shape)),
                                                           reason, hint.get(signum, 'a crash'),
                                                           onnx_path))
    kind, value = message
    if kind == 'error':
        raise value
    return value


def verify_checkpoint(prefix, epoch, onnx_path, input_shape, dynamic, tol=1e-4, threads=None):
    """:func:`verify_onnx` of ``onnx_path`` against the checkpoint it was exported from."""
    from rcnn.checkpoint.params import load_checkpoint
    sym, arg_params, aux_params = load_checkpoint(prefix, epoch)
    return verify_onnx(onnx_path, sym, arg_params, aux_params,
                       verification_inputs(input_shape, dynamic), tol=tol, threads=threads)


def export_checkpoint(prefix, epoch, onnx_path, input_shape=(1, 3, 640, 640), dynamic=False,
                      opset=DEFAULT_OPSET, verify=True, tol=1e-4, threads=None, isolate=False):
    """Load ``<prefix>-symbol.json`` / ``<prefix>-%04d.params`` (BatchNorm spellings fitted to the
    graph, see :func:`rcnn.checkpoint.params.load_checkpoint`), export,
    and (``verify``) check against MXNet. Returns ``(onnx_path, rows)`` (rows empty when not
    verified).

    ``isolate``: run the check in a process of its own (:func:`call_in_child`; a few seconds
    more to start it).

    Raises:
        CheckMemoryError, before anything is written, when the check would not fit in the
        available memory; CheckCrashedError when the isolated check died.
    """
    from rcnn.recipe import ONNX_RECIPE_KEY, layout_to_dict, load_recipe
    from rcnn.checkpoint.params import load_checkpoint
    from rcnn.deploy.checkpoint_layout import ONNX_LAYOUT_KEY, checkpoint_layout
    input_shape = validate_input_shape(input_shape)
    sym, arg_params, aux_params = load_checkpoint(prefix, epoch)
    layout = checkpoint_layout(prefix, sym)
    if verify:
        check_verification_memory(sym, verification_shapes(input_shape, dynamic))
    metadata = {'retinaface.source': checkpoint_name(os.path.basename(prefix), epoch),
                'retinaface.dynamic': str(bool(dynamic)),
                # the pixel transform and box coder the graph's inputs and outputs follow
                ONNX_RECIPE_KEY: json.dumps(load_recipe(prefix).to_dict(), sort_keys=True),
                # strides, anchors and head lengths: what a decoder of the outputs needs
                ONNX_LAYOUT_KEY: json.dumps(layout_to_dict(layout), sort_keys=True)}
    export_onnx(sym, arg_params, aux_params, onnx_path, input_shape=input_shape,
                dynamic=dynamic, opset=opset, metadata=metadata)
    rows = []
    if verify and isolate:
        rows = call_in_child(verify_checkpoint, (prefix, epoch, onnx_path, input_shape,
                                                 dynamic, tol, threads), input_shape, onnx_path)
    elif verify:
        rows = verify_onnx(onnx_path, sym, arg_params, aux_params,
                           verification_inputs(input_shape, dynamic), tol=tol, threads=threads)
    return onnx_path, rows


def checkpoint_digest(prefix, epoch, extra=''):
    """sha1 of the symbol and params files (and ``extra``): a cache key for exported files."""
    digest = hashlib.sha1()
    for path in (symbol_path(prefix), params_path(prefix, epoch)):
        if not os.path.isfile(path):
            raise FileNotFoundError('checkpoint file %s not found' % path)
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                digest.update(block)
    digest.update(extra.encode())
    return digest.hexdigest()
