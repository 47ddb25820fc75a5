"""The original detector's ``network`` names: the recipe each one stands for.

``RetinaFace(prefix, epoch, network=...)`` of the original fixes, from the name alone, the
feature strides, the anchors and the pixel transform of a checkpoint (insightface
``retinaface.py``; ``x3``, ``x3a``, ``x5`` exist only in its later versions). Here a name gives
a :class:`rcnn.recipe.Recipe`; a checkpoint's own recipe file, when present, wins over it (see
:class:`rcnn.inference.detector.RetinaFace`).

==========  =====================  ==========================================  ============
name        strides                anchor scales (x BASE_SIZE 16 px)           ratios
==========  =====================  ==========================================  ============
``net3``    32, 16, 8              (32, 16), (8, 4), (2, 1)                     1
``net3a``   32, 16, 8              as net3                                      1, 1.5
``net4``    32, 16, 8, 4           as net3, stride 4 (2, 1)                     1
``net4a``   32, 16, 8, 4           as net4                                      1, 1.5
``net5``    64, 32, 16, 8, 4       three per stride, 2^(k/3), k = 0..14 from    1
                                   stride 4 up (:func:`rcnn.config.anchor_table`
                                   ``RAC_RETINA``)
``net5a``   64, 32, 16, 8, 4       as net5                                      1, 1.5
``net6``    128, 64, 32, 16, 8, 4  32, 16, 8, 4, 2, 1 (one per stride)          1
``ssh``     32, 16, 8              as net3                                      1
``vgg``     32, 16, 8              as net3                                      1
``x3``      32, 16, 8              as net3                                      1
``x3a``     32, 16, 8              as net3                                      1, 1.5
``x5``      64, 32, 16, 8, 4       as net5                                      1
==========  =====================  ==========================================  ============

Pixels (BGR order, as the original lists them): ``ssh`` and ``vgg`` subtract the ImageNet means
(103.939, 116.779, 123.68); ``x3``, ``x3a`` and ``x5`` subtract (103.52, 116.28, 123.675) and
divide by (57.375, 57.12, 58.395); every other name feeds raw RGB values. The box coder is the
identity (stds 1) for every name, as in the original. The heads are taken from the graph (the
original reads them from its outputs): the layout of a name has the released heads (4 box and
10 landmark values); :class:`rcnn.inference.detector.RetinaFace` corrects it from the
checkpoint's outputs.
"""
from rcnn.processing.box_coder import BoxCoder
from rcnn.processing.pixels import PixelTransform

__all__ = ['NETWORK_NAMES', 'network_anchor_cfg', 'network_recipe']

_RATIO_1 = (1.0,)
_RATIOS_1_15 = (1.0, 1.5)
_IMAGENET_MEANS = (103.939, 116.779, 123.68)
_X_MEANS = (103.52, 116.28, 123.675)
_X_STDS = (57.375, 57.12, 58.395)

#: name -> (stride family, anchor ratios, pixel means (BGR), pixel stds (BGR))
_NETWORKS = {
    'net3': ('fmc3', _RATIO_1, None, None),
    'net3a': ('fmc3', _RATIOS_1_15, None, None),
    'net4': ('fmc4', _RATIO_1, None, None),
    'net4a': ('fmc4', _RATIOS_1_15, None, None),
    'net5': ('fmc5', _RATIO_1, None, None),
    'net5a': ('fmc5', _RATIOS_1_15, None, None),
    'net6': ('fmc6', _RATIO_1, None, None),
    'ssh': ('fmc3', _RATIO_1, _IMAGENET_MEANS, None),
    'vgg': ('fmc3', _RATIO_1, _IMAGENET_MEANS, None),
    'x3': ('fmc3', _RATIO_1, _X_MEANS, _X_STDS),
    'x3a': ('fmc3', _RATIOS_1_15, _X_MEANS, _X_STDS),
    'x5': ('fmc5', _RATIO_1, _X_MEANS, _X_STDS),
}
#: every ``network`` name the original detector accepts
NETWORK_NAMES = tuple(_NETWORKS)


def _entry(scales, ratios):
    return {'SCALES': tuple(scales), 'BASE_SIZE': 16, 'RATIOS': tuple(ratios)}


def _retina_scales():
    """stride -> the three scales of the five-level family: a running product of 2^(1/3) from
    1 at stride 4 upwards (the original's loop, so the floats are the same)."""
    step = 2.0 ** (1.0 / 3)
    scale = 1.0
    scales = {}
    for stride in (4, 8, 16, 32, 64):
        own = []
        for _ in range(3):
            own.append(scale)
            scale *= step
        scales[stride] = own
    return scales


def _family_scales(family):
    """stride -> anchor scales of a stride family (the original's ``fmc``)."""
    ssh = {32: (32, 16), 16: (8, 4), 8: (2, 1)}
    if family == 'fmc3':
        return ssh
    if family == 'fmc4':
        return {**ssh, 4: (2, 1)}
    if family == 'fmc6':
        return {128: (32,), 64: (16,), 32: (8,), 16: (4,), 8: (2,), 4: (1,)}
    return _retina_scales()


def _check_name(network):
    if network not in _NETWORKS:
        raise ValueError('unknown network %r; the original detector\'s names are %s'
                         % (network, ', '.join(NETWORK_NAMES)))


def network_anchor_cfg(network):
    """The ``RPN_ANCHOR_CFG`` (string stride keys) of a network name.

    Raises:
        ValueError: not one of :data:`NETWORK_NAMES`.
    """
    _check_name(network)
    family, ratios = _NETWORKS[network][:2]
    return {str(stride): _entry(scales, ratios)
            for stride, scales in _family_scales(family).items()}


def network_recipe(network):
    """The :class:`rcnn.recipe.Recipe` a network name stands for (no dense anchors, the
    released heads, stds 1; pixels as the module notes say).

    Raises:
        ValueError: not one of :data:`NETWORK_NAMES`.
    """
    from rcnn.recipe import Recipe
    _check_name(network)
    means, stds = _NETWORKS[network][2:]
    pixels = PixelTransform(means or (0.0, 0.0, 0.0), stds or (1.0, 1.0, 1.0), 1.0)
    return Recipe(None, pixels, BoxCoder(), network_anchor_cfg(network))
