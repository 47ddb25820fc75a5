"""Convolution building blocks of the neck and the detection modules.

Parameter names and attributes follow the released graphs (``mnet.25-symbol.json``,
``R50-symbol.json``): weights ``Normal(0.01)`` with ``lr_mult`` 1, biases 0 with ``lr_mult`` 2
and the caller's ``wd_mult``; BatchNorm ``eps=2e-5``, ``momentum=0.9``, ``fix_gamma=False``.

With ``USE_DCN = 2`` the original turns every 3x3 stride-1 convolution these blocks build (the
neck's aggregation convolutions and every convolution of the detection modules) into a
modulated deformable one (:func:`rcnn.symbol.deformable.modulated_conv_bn`); :func:`conv_bn`
takes that switch as ``dcn`` (a :class:`rcnn.symbol.deformable.DeformableMode`).
"""
import mxnet as mx

from rcnn.symbol.deformable import DCN_CONTEXT, modulated_conv_bn

__all__ = ['NECK_BN_EPS', 'BN_MOMENTUM', 'WEIGHT_SIGMA', 'weight_var', 'bias_var', 'conv',
           'conv_bn', 'batch_norm']

#: BatchNorm epsilon of the neck and the detection modules
NECK_BN_EPS = 2e-5
BN_MOMENTUM = 0.9
#: standard deviation of the Normal initialisation of neck and head weights
WEIGHT_SIGMA = 0.01


def weight_var(name):
    """``{name}_weight``: Normal(0.01) initialisation, lr x1."""
    return mx.sym.Variable(name + '_weight', init=mx.init.Normal(WEIGHT_SIGMA), lr_mult=1.0)


def bias_var(name, wd_mult):
    """``{name}_bias``: zero initialisation, lr x2, weight decay x ``wd_mult``."""
    return mx.sym.Variable(name + '_bias', init=mx.init.Constant(0.0), lr_mult=2.0,
                           wd_mult=wd_mult)


def conv(data, name, num_filter, kernel, stride=1, bias_wd_mult=0.0, weight=None, bias=None):
    """Convolution with bias and 'same' padding; ``weight``/``bias`` variables may be shared."""
    pad = (kernel[0] // 2, kernel[1] // 2)
    return mx.sym.Convolution(data=data,
                              weight=weight_var(name) if weight is None else weight,
                              bias=bias_var(name, bias_wd_mult) if bias is None else bias,
                              kernel=kernel, pad=pad, stride=(stride, stride),
                              num_filter=num_filter, name=name)


def batch_norm(data, name):
    """The neck's BatchNorm (``eps=2e-5``, ``momentum=0.9``, learned gamma)."""
    return mx.sym.BatchNorm(data=data, name=name, eps=NECK_BN_EPS, momentum=BN_MOMENTUM,
                            fix_gamma=False)


def conv_bn(data, name, num_filter, kernel=(1, 1), stride=1, relu=True, bias_wd_mult=0.0,
            dcn=None):
    """Convolution + BatchNorm [+ ReLU], named ``name``, ``name_bn``, ``name_relu``.

    With ``dcn.version`` 2 (``cfg.USE_DCN``) a 3x3 stride-1 convolution is a modulated
    deformable one instead (:func:`modulated_conv_bn`: other parameter names, no bias), as the
    original builds it.
    """
    if dcn is not None and dcn.version >= DCN_CONTEXT and tuple(kernel) == (3, 3) \
            and stride == 1:
        return modulated_conv_bn(data, name, num_filter, relu=relu, sampled=dcn.sampled)
    out = batch_norm(conv(data, name, num_filter, kernel, stride, bias_wd_mult), name + '_bn')
    if relu:
        out = mx.sym.Activation(data=out, act_type='relu', name=name + '_relu')
    return out
