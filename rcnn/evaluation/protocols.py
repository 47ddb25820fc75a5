"""Named WIDER FACE test protocols: everything that decides a result besides the model.

Published WIDER FACE numbers for the same checkpoint differ by tens of AP points because each
table tests differently. A protocol fixes the input scales, flips, the merge (NMS or box voting),
the NMS threshold and the score threshold of the written boxes, and its name is recorded with
every result (``manifest.json`` of a prediction folder, the evaluator's report).

=========  ==============================================================  ====  ======  ====
name       scales                                                          flip  merge   thr
=========  ==============================================================  ====  ======  ====
vga        one pass, the image fitted inside a 640x480 canvas              no    NMS     0.02
original   one pass at scale 1 (the image as stored)                       no    NMS     0.02
single     one pass, short side 1600, long side at most 2150               no    NMS     0.02
pyramid    short sides 500, 800, 1100, 1400, 1700 relative to a base        yes   voting  0.02
           scale (short side 800, long side at most 1200)
=========  ==============================================================  ====  ======  ====

``single`` and ``pyramid`` are the original ``test_widerface.py``'s mode 0 and mode 1; its
mode 2 (the pyramid with NMS) is kept as ``pyramid-nms``. The original README's and the paper's
WIDER FACE figures use the pyramid.
"""
import collections

from rcnn.processing.scale_rule import fit_inside_scale, fit_scale

__all__ = ['Protocol', 'PROTOCOLS', 'MODE_PROTOCOLS', 'DEFAULT_PROTOCOL', 'get_protocol',
           'PYRAMID_SIZES', 'PYRAMID_TARGET_SIZE', 'PYRAMID_MAX_SIZE',
           'SINGLE_TARGET_SIZE', 'SINGLE_MAX_SIZE', 'VGA_CANVAS']

#: ``single`` (mode 0): one scale
SINGLE_TARGET_SIZE, SINGLE_MAX_SIZE = 1600, 2150
#: ``pyramid`` (modes 1 and 2): short sides relative to a base scale
PYRAMID_SIZES = (500, 800, 1100, 1400, 1700)
PYRAMID_TARGET_SIZE, PYRAMID_MAX_SIZE = 800, 1200
#: ``vga``: the canvas (long side, short side) the image is fitted into
VGA_CANVAS = (640, 480)
#: the score threshold of the original test_widerface.py's written boxes
SUBMISSION_THRESHOLD = 0.02
#: the detector's NMS threshold (the original RetinaFace default)
NMS_THRESHOLD = 0.4


class Protocol(collections.namedtuple(
        'Protocol', 'name description scale_kind flip vote nms threshold')):
    """One test protocol.

    Fields:
        name: the protocol's name (``--protocol``).
        description: one line for reports and ``--help``.
        scale_kind: ``'vga'``, ``'original'``, ``'single'`` or ``'pyramid'``.
        flip: every scale is also run mirrored.
        vote: merge by box voting (else NMS).
        nms: NMS / voting IoU threshold.
        threshold: score threshold of the written boxes.
    """

    def scales(self, height, width):
        """Scales (list of float) for an image of ``height x width`` pixels."""
        if self.scale_kind == 'original':
            return [1.0]
        if self.scale_kind == 'vga':
            return [fit_inside_scale(height, width, *VGA_CANVAS)]
        if self.scale_kind == 'single':
            return [fit_scale(height, width, SINGLE_TARGET_SIZE, SINGLE_MAX_SIZE)]
        base = fit_scale(height, width, PYRAMID_TARGET_SIZE, PYRAMID_MAX_SIZE)
        return [float(size) / PYRAMID_TARGET_SIZE * base for size in PYRAMID_SIZES]

    def settings(self):
        """What the protocol fixes, as a JSON-ready dict (for manifests and reports)."""
        scales = {'vga': {'canvas': list(VGA_CANVAS)},
                  'original': {'scale': 1.0},
                  'single': {'target_size': SINGLE_TARGET_SIZE, 'max_size': SINGLE_MAX_SIZE},
                  'pyramid': {'pyramid_sizes': list(PYRAMID_SIZES),
                              'target_size': PYRAMID_TARGET_SIZE,
                              'max_size': PYRAMID_MAX_SIZE}}[self.scale_kind]
        return {'protocol': self.name, 'scales': scales, 'flip': self.flip,
                'merge': 'vote' if self.vote else 'nms', 'nms': self.nms,
                'thresh': self.threshold}


def _protocols():
    rows = [
        ('vga', 'one pass fitted inside 640x480 (the SCRFD tables)', 'vga', False, False),
        ('original', 'one pass at scale 1', 'original', False, False),
        ('single', "one pass, short side 1600 / long side <= 2150 (the original's mode 0)",
         'single', False, False),
        ('pyramid', "pyramid 500-1700 + flips + box voting (the original's mode 1; the "
                    "paper's and the original README's figures)", 'pyramid', True, True),
        ('pyramid-nms', "pyramid 500-1700 + flips, NMS (the original's mode 2)",
         'pyramid', True, False),
    ]
    return collections.OrderedDict(
        (name, Protocol(name, text, kind, flip, vote, NMS_THRESHOLD, SUBMISSION_THRESHOLD))
        for name, text, kind, flip, vote in rows)


#: every protocol by name, in the order reports list them
PROTOCOLS = _protocols()
#: the original test_widerface.py's ``--mode`` values as protocol names
MODE_PROTOCOLS = {0: 'single', 1: 'pyramid', 2: 'pyramid-nms'}
#: the original's default mode (1)
DEFAULT_PROTOCOL = 'pyramid'


def get_protocol(name):
    """The protocol called ``name``; ValueError naming the known ones otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError('unknown protocol %r (known: %s)'
                         % (name, ', '.join(PROTOCOLS))) from None
