"""A small builder of ONNX nodes and constants under unique names, for the graph parts the
exporters write themselves (the DCN v1 border rule, the insightface detector head)."""
import numpy as np


class NodeBuilder(object):
    """Appends nodes to :attr:`nodes` and constants to ``initializers``.

    Args:
        initializers: the list (or repeated protobuf field) the constants go to, e.g.
            ``model.graph.initializer``.
        prefix: prefix of every name, ``<prefix>/<hint>_<n>``.
    """

    def __init__(self, initializers, prefix):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.initializers = initializers
        self.prefix = prefix
        self.count = 0
        self.nodes = []

    def name(self, hint):
        self.count += 1
        return '%s/%s_%d' % (self.prefix, hint, self.count)

    def const(self, value, hint='const', dtype=np.float32):
        """A constant tensor of ``value`` in ``dtype``; returns its name."""
        name = self.name(hint)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value, dtype=dtype),
                                                              name))
        return name

    def op(self, op_type, inputs, hint=None, output=None, **attrs):
        """A node ``op_type(inputs)`` with one output (named ``output`` or after ``hint``);
        returns the output's name."""
        output = output or self.name(hint or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [output],
                                                name=self.name(op_type), **attrs))
        return output
