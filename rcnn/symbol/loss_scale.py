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
"""

__all__ = ['LOSS_SCALE_VARIANTS', 'check_loss_scale', 'loss_grad_scales']

LOSS_SCALE_VARIANTS = ('release', 'master')


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
