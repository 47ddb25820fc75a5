"""The original pipeline's name for anchor labelling: :func:`assign_anchor_fpn`.

The work is done by :class:`rcnn.io.anchor_targets.AnchorTargetGenerator`; the loader builds
one per worker. This function keeps the original's call (``gt_label`` dict and a config) for
code written against it: it builds the recipe's generator (the anchor planes are shared per
process) and labels one image.
"""
import numpy as np

from rcnn.dataset.annotations import FaceAnnotations
from rcnn.io.anchor_targets import AnchorTargetGenerator
from rcnn.model_layout import NUM_LANDMARKS

__all__ = ['assign_anchor_fpn', 'faces_from_gt_label']


def faces_from_gt_label(gt_label, with_landmarks):
    """:class:`FaceAnnotations` of an original ``gt_label``: ``gt_boxes`` (K, 5) x1 y1 x2 y2
    class, ``gt_landmarks`` (K, 5, 3) x y visibility (read only when ``with_landmarks``),
    ``gt_blur`` (K,) (optional, the original loader's key with ``USE_BLUR``; 0 without)."""
    gt_boxes = np.asarray(gt_label['gt_boxes'], dtype=np.float32).reshape(-1, 5)
    landmarks = visibility = blur = None
    if gt_label.get('gt_blur') is not None:
        blur = np.asarray(gt_label['gt_blur'], dtype=np.float32).reshape(-1)
        if len(blur) != len(gt_boxes):
            raise ValueError('gt_blur has %d faces but gt_boxes %d' % (len(blur), len(gt_boxes)))
    if with_landmarks:
        points = np.asarray(gt_label['gt_landmarks'], dtype=np.float32).reshape(
            -1, NUM_LANDMARKS, 3)
        if len(points) != len(gt_boxes):
            raise ValueError('gt_landmarks has %d faces but gt_boxes %d'
                             % (len(points), len(gt_boxes)))
        landmarks, visibility = points[:, :, :2], points[:, :, 2]
    return FaceAnnotations(gt_boxes[:, :4], landmarks, visibility, blur, classes=gt_boxes[:, 4])


def assign_anchor_fpn(feat_shape, gt_label, im_info, landmark=False, prefix='face',
                      select_stride=0, *, cfg, rng=None):
    """Anchor labels, box and landmark targets and weights of one image.

    Args:
        feat_shape: per stride of the recipe's layout (coarse to fine), the class-score shape
            (..., H, W).
        gt_label: ``{'gt_boxes': (K, 5) float x1 y1 x2 y2 class, 'gt_landmarks': (K, 5, 3),
            'gt_blur': (K,)}``; ``gt_landmarks`` is needed only when ``landmark``, ``gt_blur``
            only with ``cfg.USE_BLUR`` (0 without).
        im_info: [height, width, scale] of the network input.
        landmark: also return landmark targets and weights (the recipe must have landmarks).
        prefix: label name prefix.
        select_stride: when > 0, labels of every other stride become -1.
        cfg: config (keyword only); rng: numpy Generator of the random sampler.
    Returns:
        dict name -> float32 array (layouts in :mod:`rcnn.io.anchor_targets`).
    """
    generator = AnchorTargetGenerator.from_config(cfg, with_landmarks=landmark, prefix=prefix)
    return generator(feat_shape, faces_from_gt_label(gt_label, landmark), im_info, rng=rng,
                     select_stride=select_stride)
