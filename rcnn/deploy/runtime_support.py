"""Which runtime runs which of our exported ONNX operators.

Every operator our exports contain runs on onnxruntime's CPU provider (1.31.1 has a
``DeformConv`` kernel). OpenCV's DNN importer (4.11) has none for ``DeformConv``: loading such a
graph fails deep in the importer with a message that names neither the operator nor the reason.
:func:`check_runtime` refuses it beforehand, in one line naming the operator, its node and the
runtime.
"""
import logging

logger = logging.getLogger(__name__)

#: runtime -> ONNX operators of our exports it has no implementation of
MISSING_OPERATORS = {'opencv': ('DeformConv',)}
#: what each operator is in our graphs, for the message
OPERATOR_MEANING = {'DeformConv': 'deformable convolution, USE_DCN'}


class UnsupportedOperatorError(ValueError):
    """An ONNX graph has an operator that the runtime it is meant for cannot run."""


def runtime_label(runtime):
    """``'opencv'`` -> ``"OpenCV 4.11.0's dnn module"`` (with the installed version)."""
    if runtime == 'opencv':
        try:
            import cv2
            version = cv2.__version__
        except ImportError:
            version = '(not installed)'
        return "OpenCV %s's dnn module" % version
    return runtime


def unsupported_nodes(model, runtime):
    """``[(operator, node name), ...]`` of ``model`` (an ``onnx.ModelProto``) that ``runtime``
    cannot run, in graph order."""
    missing = MISSING_OPERATORS.get(runtime, ())
    return [(node.op_type, node.name or node.output[0]) for node in model.graph.node
            if node.op_type in missing and node.domain in ('', 'ai.onnx')]


def check_runtime(model, runtime, source=None):
    """Raise :class:`UnsupportedOperatorError` when ``runtime`` cannot run ``model``.

    Args:
        model: an ``onnx.ModelProto`` or the path of an ``.onnx`` file.
        runtime: a key of :data:`MISSING_OPERATORS` (other runtimes run everything).
        source: what to call the model in the message (default: its path).
    """
    if isinstance(model, (str, bytes)) or hasattr(model, '__fspath__'):
        import onnx
        source = source or str(model)
        model = onnx.load(str(model), load_external_data=False)
    nodes = unsupported_nodes(model, runtime)
    if nodes:
        operator, node = nodes[0]
        raise UnsupportedOperatorError(
            '%s cannot run %s: it has no ONNX %s (%s; node %s%s); run it with onnxruntime'
            % (runtime_label(runtime), source or 'this model', operator,
               OPERATOR_MEANING.get(operator, operator), node,
               ' and %d more' % (len(nodes) - 1) if len(nodes) > 1 else ''))
