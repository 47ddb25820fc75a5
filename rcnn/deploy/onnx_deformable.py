"""ONNX translations of MXNet's deformable convolutions (``USE_DCN`` graphs).

MXNet 1.9.1's exporter (``mxnet.onnx.mx2onnx``) has no translation for
``_contrib_DeformableConvolution`` (DCN v1) nor ``_contrib_ModulatedDeformableConvolution``
(DCN v2). :func:`register` adds both, to ONNX ``DeformConv`` (default domain, opset 19):

* MXNet's inputs are ``data, offset, weight[, bias]`` (v1) and ``data, offset, mask,
  weight[, bias]`` (v2); ONNX's are ``X, W, offset, B, mask`` (optional ``B`` left empty when
  MXNet has ``no_bias``);
* both lay the offsets out as ``(N, deformable_groups * kH * kW * 2, oH, oW)``: for kernel tap
  ``(i, j)`` of group ``g`` the channel ``2 * ((g * kH + i) * kW + j)`` holds the vertical and
  the next one the horizontal shift, sampled bilinearly; the mask (v2) is ``(N, deformable_groups * kH * kW, oH, oW)`` and multiplies each sample;
* ``kernel / stride / dilate / pad / num_group / num_deformable_group`` map to ``kernel_shape /
  strides / dilations / pads (begin and end) / group / offset_group``.

DCN v2 is exactly ONNX's ``DeformConv``, border included (a sample's corners outside the input
count as zero). DCN v1 is not at the border: MXNet's v1 kernel gives
zero to a sample at ``y < 0`` or ``x < 0`` (ONNX blends it with zero down to ``-1``) and, for a
sample in the last row or column (``H - 1 <= y < H``), reads that row instead of blending it
with zero. The v1 translation therefore computes, in the graph, each sample's position
``y = oy * stride - pad + i * dilate + offset_y`` (and ``x``), a mask that is 1 where
``0 <= y < H`` and ``0 <= x < W`` (0 elsewhere), and the offsets of the clamped positions
``min(y, H - 1)``, ``min(x, W - 1)``; ``DeformConv`` with that mask then computes MXNet's v1.

The exporter itself is driven at opset 13 (:mod:`rcnn.deploy.onnx_export`), so a graph with a
``DeformConv`` node is afterwards converted to opset 19 (:func:`upgrade_to_deform_opset`).
"""
import logging

from rcnn.deploy.onnx_nodes import NodeBuilder

logger = logging.getLogger(__name__)

#: the ONNX operator the deformable convolutions become
ONNX_OP = 'DeformConv'
#: the first opset of the default ONNX domain that has ``DeformConv``
DEFORM_CONV_OPSET = 19
#: MXNet op name -> whether it takes a mask (DCN v2)
MXNET_OPS = {'_contrib_DeformableConvolution': False,
             '_contrib_ModulatedDeformableConvolution': True}
#: domain the DeformConv nodes are parked in while the rest of the graph changes opset: the
#: version converter knows no DeformConv below opset 19 and leaves other domains alone
_PARKING_DOMAIN = 'retinaface.deformconv'

_registered = False


def _int_tuple(text):
    """``'(3, 3)'`` -> ``(3, 3)``; ``'()'`` or missing -> ``()``."""
    text = str(text or '()').strip('()[] ')
    return tuple(int(v) for v in text.split(',') if v.strip() not in ('', 'None'))


def deform_conv_attributes(attrs):
    """ONNX ``DeformConv`` attributes of an MXNet deformable convolution's ``attrs``.

    ``{'kernel': '(3, 3)', 'pad': '(1, 1)', 'num_deformable_group': '2'}`` ->
    ``{'kernel_shape': (3, 3), 'strides': (1, 1), 'dilations': (1, 1), 'pads': (1, 1, 1, 1),
    'group': 1, 'offset_group': 2}`` (MXNet's defaults: stride and dilation 1, no padding).
    """
    kernel = _int_tuple(attrs.get('kernel'))
    if len(kernel) != 2:
        raise ValueError('deformable convolution: 2-D kernel expected, got %r'
                         % attrs.get('kernel'))
    if attrs.get('layout', 'None') not in ('None', 'NCHW'):
        raise ValueError('deformable convolution: layout %s has no ONNX DeformConv form (NCHW '
                         'only)' % attrs['layout'])
    stride = _int_tuple(attrs.get('stride')) or (1, 1)
    dilate = _int_tuple(attrs.get('dilate')) or (1, 1)
    pad = _int_tuple(attrs.get('pad')) or (0, 0)
    return {'kernel_shape': kernel, 'strides': stride, 'dilations': dilate,
            'pads': tuple(pad) + tuple(pad), 'group': int(attrs.get('num_group', 1)),
            'offset_group': int(attrs.get('num_deformable_group', 1))}


def _has_bias(attrs):
    return str(attrs.get('no_bias', 'False')).strip().lower() not in ('true', '1')


def _positions_along(make, shape, axis, step, pad, rank_shape):
    """``(o * step - pad)`` for ``o`` in ``range(shape[axis])``, float32, reshaped to
    ``rank_shape`` (e.g. ``(1, 1, -1, 1)`` for rows)."""
    import numpy as np
    size = make.op('Gather', [shape, make.const(axis, 'axis', np.int64)], 'size')
    index = make.op('Range', [make.const(0, 'zero', np.int64), size,
                              make.const(1, 'one', np.int64)], 'index')
    scaled = make.op('Mul', [make.op('Cast', [index], to=1), make.const(float(step), 'step')])
    shifted = make.op('Sub', [scaled, make.const(float(pad), 'pad', np.float32)])
    return make.op('Reshape', [shifted, make.const(rank_shape, 'shape', np.int64)])


def v1_mask_and_offsets(make, data, offset, attributes):
    """Nodes computing the mask and offsets with which ONNX ``DeformConv`` equals MXNet's DCN v1
    (see the module docstring). Returns the names of ``(offset, mask)``.

    Args:
        data: (N, C, H, W) input; offset: (N, G * kH * kW * 2, oH, oW) MXNet offsets.
        attributes: :func:`deform_conv_attributes`.
    """
    import numpy as np
    kernel_h, kernel_w = attributes['kernel_shape']
    groups = attributes['offset_group']
    stride_h, stride_w = attributes['strides']
    dilate_h, dilate_w = attributes['dilations']
    pad_h, pad_w = attributes['pads'][:2]
    # channel c = (g * kH + i) * kW + j of the (N, G * kH * kW, oH, oW) per-axis offsets
    taps = np.arange(groups * kernel_h * kernel_w) % (kernel_h * kernel_w)
    tap_y = (taps // kernel_w * dilate_h).astype(np.float32).reshape(1, -1, 1, 1)
    tap_x = (taps % kernel_w * dilate_w).astype(np.float32).reshape(1, -1, 1, 1)

    big = np.iinfo(np.int64).max
    offset_y, offset_x = (make.op('Slice', [offset, make.const([first], 'start', np.int64),
                                            make.const([big], 'end', np.int64),
                                            make.const([1], 'axis', np.int64),
                                            make.const([2], 'step', np.int64)])
                          for first in (0, 1))
    offset_shape = make.op('Shape', [offset], 'offset_shape')
    base_y = make.op('Add', [_positions_along(make, offset_shape, 2, stride_h, pad_h, (1, 1, -1, 1)),
                             make.const(tap_y, 'tap_y', np.float32)], 'base_y')
    base_x = make.op('Add', [_positions_along(make, offset_shape, 3, stride_w, pad_w, (1, 1, 1, -1)),
                             make.const(tap_x, 'tap_x', np.float32)], 'base_x')
    sample_y = make.op('Add', [base_y, offset_y], 'sample_y')
    sample_x = make.op('Add', [base_x, offset_x], 'sample_x')

    data_shape = make.op('Cast', [make.op('Shape', [data], 'data_shape')], to=1)
    height = make.op('Gather', [data_shape, make.const(2, 'axis', np.int64)], 'height')
    width = make.op('Gather', [data_shape, make.const(3, 'axis', np.int64)], 'width')
    zero = make.const(0.0, 'zero', np.float32)
    inside = make.op('And', [make.op('And', [make.op('GreaterOrEqual', [sample_y, zero]),
                                             make.op('Less', [sample_y, height])]),
                             make.op('And', [make.op('GreaterOrEqual', [sample_x, zero]),
                                             make.op('Less', [sample_x, width])])], 'inside')
    mask = make.op('Cast', [inside], 'mask', to=1)

    one = make.const(1.0, 'one', np.float32)
    clamped_y = make.op('Sub', [make.op('Min', [sample_y, make.op('Sub', [height, one])]), base_y])
    clamped_x = make.op('Sub', [make.op('Min', [sample_x, make.op('Sub', [width, one])]), base_x])
    axis2 = make.const([2], 'axes', np.int64)
    pairs = make.op('Concat', [make.op('Unsqueeze', [clamped_y, axis2]),
                               make.op('Unsqueeze', [clamped_x, axis2])], axis=2)
    return make.op('Reshape', [pairs, offset_shape], 'offset'), mask


def _converter(with_mask):
    """The mx2onnx translation function of DCN v1 (``with_mask`` False) or v2."""
    def convert(node, **kwargs):
        from onnx.helper import make_node
        from mxnet.onnx.mx2onnx._op_translations._op_translations_opset12 import get_inputs
        name, inputs, attrs = get_inputs(node, kwargs)
        bias = _has_bias(attrs)
        expected = 3 + int(with_mask) + int(bias)
        if len(inputs) != expected:
            raise ValueError('deformable convolution %s: %d inputs, expected %d'
                             % (name, len(inputs), expected))
        attributes = deform_conv_attributes(attrs)
        make = NodeBuilder(kwargs['initializer'], name)
        if with_mask:
            data, offset, mask, weight = inputs[:4]
        else:
            data, offset, weight = inputs[:3]
            offset, mask = v1_mask_and_offsets(make, data, offset, attributes)
        onnx_inputs = [data, weight, offset, inputs[-1] if bias else '', mask]
        return make.nodes + [make_node(ONNX_OP, onnx_inputs, [name], name=name, **attributes)]
    return convert


def register():
    """Add the two translations to MXNet's exporter (once per process)."""
    global _registered
    if _registered:
        return
    import mxnet.onnx  # noqa: F401  (the exporter's own translations first)
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    for op_name, with_mask in MXNET_OPS.items():
        for opset in (12, 13):
            MXNetGraph.register(op_name, opset_version=opset)(_converter(with_mask))
    _registered = True


def has_deformable(sym):
    """Whether the MXNet graph ``sym`` has a deformable convolution."""
    import json
    return any(node['op'] in MXNET_OPS for node in json.loads(sym.tojson())['nodes'])


def upgrade_to_deform_opset(model, opset=DEFORM_CONV_OPSET):
    """Convert ``model`` (an opset-13 ``ModelProto`` whose ``DeformConv`` nodes are not yet
    valid at that opset) to ``opset`` (>= 19) in place; returns it.

    The other nodes go through ONNX's version converter (which rewrites the operators whose
    signature changed, e.g. reductions taking their axes as an input from opset 18); the
    ``DeformConv`` nodes wait in a private domain meanwhile and are put back unchanged.
    """
    import onnx
    from onnx import helper, version_converter
    if opset < DEFORM_CONV_OPSET:
        raise ValueError('opset %d: ONNX DeformConv needs opset %d or newer'
                         % (opset, DEFORM_CONV_OPSET))
    parked = [node for node in model.graph.node if node.op_type == ONNX_OP and not node.domain]
    for node in parked:
        node.domain = _PARKING_DOMAIN
    model.opset_import.append(helper.make_opsetid(_PARKING_DOMAIN, 1))
    converted = version_converter.convert_version(model, opset)
    for node in converted.graph.node:
        if node.domain == _PARKING_DOMAIN:
            node.domain = ''
    kept = [entry for entry in converted.opset_import if entry.domain != _PARKING_DOMAIN]
    del converted.opset_import[:]
    converted.opset_import.extend(kept)
    model.CopyFrom(converted)
    logger.info('converted to opset %d for %d DeformConv nodes', opset, len(parked))
    onnx.checker.check_model(model)
    return model
