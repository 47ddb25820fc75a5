"""The ``gt_boxes`` label of a cascade training graph: the faces of each crop, padded.

The cascade refine operator (:mod:`rcnn.symbol.cascade_refine`) labels refined anchors against
the crop's faces, so a ``CASCADE > 0`` graph has one more label input than the anchor labels
(the original's loader appends ``gt_boxes`` after them)::

    gt_boxes  (B, M, 5) float32   rows x1 y1 x2 y2 class of the crop's faces (crop pixels, the
                                  faces the anchor labels use: class not 0 / -1), then rows of
                                  -1; M = TRAIN.MAX_BBOX_PER_IMAGE

M is fixed by the config so every batch has the same shape (the graph is bound once). A crop
keeps at most the faces of its image, so :func:`check_face_capacity` refuses, before training
starts, a data set with an image of more than M faces (the original fails inside a worker
with a NumPy broadcast error).

:class:`CascadeTargets` wraps the anchor-target generator: same labels, plus ``gt_boxes``.
NumPy only (no MXNet): the loader's worker processes run it.
"""
import numpy as np

from rcnn.model_layout import GT_BOX_COLUMNS, GT_BOXES_NAME

__all__ = ['CascadeTargets', 'padded_gt_boxes', 'check_face_capacity', 'with_cascade_targets']

_PADDING = -1.0


def _labelled(faces):
    """The faces the anchor labels use (class not 0 / -1), as the anchor-target generator."""
    return faces.keep((faces.classes != 0) & (faces.classes != -1))


def padded_gt_boxes(faces, max_boxes):
    """(1, max_boxes, 5) float32 ``gt_boxes`` of one crop (module docstring).

    Args:
        faces: :class:`rcnn.dataset.annotations.FaceAnnotations` in crop pixels.
        max_boxes: rows M.
    Raises:
        ValueError: the crop keeps more than ``max_boxes`` faces.
    """
    faces = _labelled(faces)
    if len(faces) > max_boxes:
        raise ValueError('a crop keeps %d faces, more than TRAIN.MAX_BBOX_PER_IMAGE=%d: raise it '
                         'with --set TRAIN.MAX_BBOX_PER_IMAGE=N' % (len(faces), max_boxes))
    rows = np.full((1, int(max_boxes), GT_BOX_COLUMNS), _PADDING, dtype=np.float32)
    rows[0, :len(faces), :4] = faces.boxes
    rows[0, :len(faces), 4] = faces.classes
    return rows


def check_face_capacity(roidb, max_boxes):
    """Raise ValueError naming the first image with more than ``max_boxes`` faces, and the flag
    that raises the limit."""
    for record in roidb:
        count = len(np.asarray(record['boxes']).reshape(-1, 4))
        if count > max_boxes:
            raise ValueError('%s has %d faces, more than TRAIN.MAX_BBOX_PER_IMAGE=%d rows of the '
                             'cascade gt_boxes input: train with --set TRAIN.MAX_BBOX_PER_IMAGE=%d'
                             % (record.get('image'), count, max_boxes, count))


class CascadeTargets(object):
    """An anchor-target generator that also gives ``gt_boxes`` (module docstring).

    Args:
        targets: :class:`rcnn.io.anchor_targets.AnchorTargetGenerator`.
        max_boxes: ``TRAIN.MAX_BBOX_PER_IMAGE``.
    """

    def __init__(self, targets, max_boxes):
        self.targets = targets
        self.max_boxes = int(max_boxes)
        if self.max_boxes < 1:
            raise ValueError('TRAIN.MAX_BBOX_PER_IMAGE must be >= 1, got %r' % max_boxes)

    @property
    def label_names(self):
        """The anchor labels' names, then :data:`rcnn.model_layout.GT_BOXES_NAME`."""
        return list(self.targets.label_names) + [GT_BOXES_NAME]

    def label_shapes(self, feat_shapes, batch=1):
        """The anchor labels' shapes, then ``(gt_boxes, (batch, M, 5))``."""
        return (list(self.targets.label_shapes(feat_shapes, batch)) +
                [(GT_BOXES_NAME, (int(batch), self.max_boxes, GT_BOX_COLUMNS))])

    def __call__(self, feat_shapes, faces, im_info, rng=None, select_stride=0):
        """The anchor labels of one crop plus its ``gt_boxes`` (1, M, 5)."""
        labels = self.targets(feat_shapes, faces, im_info, rng, select_stride)
        labels[GT_BOXES_NAME] = padded_gt_boxes(faces, self.max_boxes)
        return labels

    def __getattr__(self, name):
        # everything else (with_landmarks, strides, ...) is the wrapped generator's
        if name == 'targets':
            raise AttributeError(name)
        return getattr(self.targets, name)

    def __repr__(self):
        return 'CascadeTargets(%r, max_boxes=%d)' % (self.targets, self.max_boxes)


def with_cascade_targets(targets, cfg):
    """``targets`` wrapped in :class:`CascadeTargets` when ``cfg.CASCADE > 0``, else itself."""
    if int(cfg.CASCADE) > 0:
        return CascadeTargets(targets, cfg.TRAIN.MAX_BBOX_PER_IMAGE)
    return targets
