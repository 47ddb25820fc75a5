"""Gradient scales of the box and landmark losses: the two historical variants of the original.

``cfg.TRAIN.LOSS_SCALE`` (``train.py --loss_scale``) picks one; ``lr_mult`` is the head's loss
weight (1 for the face heads), ``N = cfg.TRAIN.RPN_BATCH_SIZE`` (256), ``B =
cfg.TRAIN.BATCH_IMAGES`` (images per device) and ``L = cfg.LANDMARK_LR_MULT`` (mnet 2.5,
resnet 2.0):

=========== ================================ ======================================
variant     box ``MakeLoss`` grad_scale      landmark ``MakeLoss`` grad_scale
=========== ================================ ======================================
``release`` ``lr_mult / N``                  ``0.4 * L * lr_mult / N``
``master``  ``0.25 * lr_mult * B / N``       ``0.4 * L * 0.25 * lr_mult * B / N``
=========== ================================ ======================================

``release`` is the May 2019 code that trained the released models (insightface
``RetinaFace/rcnn/symbol/symbol_common.py``, ``LR_MODE == 0``); ``master`` is
``detection/retinaface/rcnn/symbol/symbol_common.py`` since October 2019 (4x the release scale
for mnet's B = 16, 2x for resnet's B = 8). The class loss (``SoftmaxOutput``,
``grad_scale = lr_mult``, 'valid' normalisation) is the same in both.

``cfg.LR_MODE = 1`` replaces both variants: the box and landmark losses are divided by the
number of positive anchors the OHEM operator kept in the batch (plus 0.001), with grad scales
``0.5 * lr_mult`` and ``0.2 * L * lr_mult`` (:func:`count_normalised_grad_scales`, master's
values; the May 2019 code had 0.25 and 0.1 * L).
"""

__all__ = ['LOSS_SCALE_VARIANTS', 'LR_MODE_SCALED', 'LR_MODE_COUNT_NORMALISED',
           'COUNT_EPSILON', 'check_loss_scale', 'loss_grad_scales',
           'count_normalised_grad_scales']

LOSS_SCALE_VARIANTS = ('release', 'master')
#: ``cfg.LR_MODE`` values: fixed grad scales (``TRAIN.LOSS_SCALE``) / divided by the count
LR_MODE_SCALED, LR_MODE_COUNT_NORMALISED = 0, 1
#: added to the positive count before dividing (the original's guard against zero)
COUNT_EPSILON = 0.001


def check_loss_scale(variant):
    """Return ``variant`` if it is one of :data:`LOSS_SCALE_VARIANTS`, else raise ValueError."""
    if variant not in LOSS_SCALE_VARIANTS:
        raise ValueError('cfg.TRAIN.LOSS_SCALE must be one of %s, got %r'
                         % (', '.join(LOSS_SCALE_VARIANTS), variant))
    return variant


def loss_grad_scales(cfg, lr_mult=1.0):
    """``(box_grad_scale, landmark_grad_scale)`` of the training graph (see the module docstring).

    Args:
        cfg: config with ``TRAIN.LOSS_SCALE``, ``TRAIN.RPN_BATCH_SIZE``,
            ``TRAIN.BATCH_IMAGES`` and ``LANDMARK_LR_MULT``.
        lr_mult: loss weight of the head.
    """
    variant = check_loss_scale(cfg.TRAIN.LOSS_SCALE)
    anchors = float(cfg.TRAIN.RPN_BATCH_SIZE)
    if variant == 'release':
        box = lr_mult / anchors
    else:
        box = 0.25 * lr_mult * float(cfg.TRAIN.BATCH_IMAGES) / anchors
    if variant == 'release':
        landmark = 0.4 * float(cfg.LANDMARK_LR_MULT) * lr_mult / anchors
    else:
        landmark = 0.4 * float(cfg.LANDMARK_LR_MULT) * box
    return box, landmark


#: ``LR_MODE = 1`` box and landmark grad scales (the landmark's times ``LANDMARK_LR_MULT``) of
#: each variant: the May 2019 code's and insightface master's
COUNT_NORMALISED_SCALES = {'release': (0.25, 0.1), 'master': (0.5, 0.2)}


def count_normalised_grad_scales(cfg, lr_mult=1.0):
    """``(box_grad_scale, landmark_grad_scale)`` with ``LR_MODE = 1`` (the losses are divided
    by the positive count): ``b * lr_mult`` and ``l * LANDMARK_LR_MULT * lr_mult`` with
    ``(b, l)`` = (0.25, 0.1) for ``TRAIN.LOSS_SCALE = 'release'`` (the code of the released
    models) and (0.5, 0.2) for ``'master'``."""
    box, landmark = COUNT_NORMALISED_SCALES[check_loss_scale(cfg.TRAIN.LOSS_SCALE)]
    return box * lr_mult, landmark * float(cfg.LANDMARK_LR_MULT) * lr_mult
