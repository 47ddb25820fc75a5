"""The faces of one image as one object that moves with its pixels: :class:`FaceAnnotations`.

Every geometric change of an image (mirror, resize, crop) is applied to its faces with the
matching method, so boxes, points, visibility and blur can never drift apart. The roidb record
(a dict, the storage format the reader, its cache and the loader's shared memory use) converts
to and from it with :meth:`FaceAnnotations.from_record` / :meth:`FaceAnnotations.record_fields`.

Conventions: pixel coordinates of the image the faces lie on; boxes x1 y1 x2 y2 (the +1 pixel
convention of the pipeline: width = x2 - x1 + 1); points in the order of
:mod:`rcnn.model_layout` (left eye, right eye, nose, left and right mouth corner, as seen).
A missing point has visibility -1; its coordinates are placeholders that move with the others
and mean nothing (the reader stores -1, a resize or crop changes them like any coordinate).
"""
import numpy as np

from rcnn.model_layout import FLIP_LANDMARK_ORDER, NUM_LANDMARKS
from rcnn.processing.mirror import mirror_boxes, mirror_landmarks

__all__ = ['FaceAnnotations', 'MISSING_POINT']

#: visibility (and, in the reader, coordinates) of a point the label file does not give
MISSING_POINT = -1.0


class FaceAnnotations(object):
    """K faces of one image.

    Attributes:
        boxes: (K, 4) float32, x1 y1 x2 y2.
        landmarks: (K, 5, 2) float32, x y per point.
        visibility: (K, 5) float32, 1.0 visible, 0.0 present but not visible, -1 missing
            (the label file's per-point flag, turned the pipeline's way by the reader).
        blur: (K,) float32, the label file's blur attribute (the reader's defaults applied);
            the fifth box target with ``USE_BLUR``.
        classes: (K,) int, 1 for a face; a face of class 0 is left out of the anchor labels,
            -1 is ignored by them.
    """

    def __init__(self, boxes, landmarks=None, visibility=None, blur=None, classes=None):
        self.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        count = len(self.boxes)
        self.landmarks = (np.full((count, NUM_LANDMARKS, 2), MISSING_POINT, np.float32)
                          if landmarks is None
                          else np.asarray(landmarks, dtype=np.float32).reshape(
                              count, NUM_LANDMARKS, 2))
        self.visibility = (np.full((count, NUM_LANDMARKS), MISSING_POINT, np.float32)
                           if visibility is None
                           else np.asarray(visibility, dtype=np.float32).reshape(
                               count, NUM_LANDMARKS))
        self.blur = (np.zeros(count, np.float32) if blur is None
                     else np.asarray(blur, dtype=np.float32).reshape(count))
        self.classes = (np.ones(count, np.int32) if classes is None
                        else np.asarray(classes).reshape(count))

    # ------------------------------------------------------------------ record form
    @classmethod
    def from_record(cls, record):
        """The faces of a roidb record: ``boxes`` (K, 4), ``landmarks`` (K, 5, 3) x y
        visibility (optional: all missing), ``blur`` (K,) (optional: 0), ``gt_classes``."""
        boxes = np.asarray(record['boxes'], dtype=np.float32).reshape(-1, 4)
        points = record.get('landmarks')
        landmarks = visibility = None
        if points is not None:
            points = np.asarray(points, dtype=np.float32).reshape(-1, NUM_LANDMARKS, 3)
            landmarks, visibility = points[:, :, :2], points[:, :, 2]
        return cls(boxes, landmarks, visibility, record.get('blur'), record['gt_classes'])

    def record_fields(self):
        """``{'boxes', 'landmarks' (K, 5, 3) x y visibility, 'blur', 'gt_classes'}`` for a
        roidb record."""
        points = np.concatenate([self.landmarks, self.visibility[:, :, None]], axis=2)
        return {'boxes': self.boxes, 'landmarks': points, 'blur': self.blur,
                'gt_classes': self.classes}

    # ------------------------------------------------------------------ geometry
    @property
    def missing(self):
        """(K, 5) bool, the points the label file does not give."""
        return self.visibility == MISSING_POINT

    def flip(self, width):
        """The faces of the image mirrored left-right (``x' = width - x - 1``, points
        renumbered; missing points keep their placeholders)."""
        mirrored = self._with()
        mirrored.boxes = mirror_boxes(self.boxes, width)
        mirrored.landmarks = mirror_landmarks(self.landmarks, width, self.missing)
        mirrored.visibility = self.visibility[:, list(FLIP_LANDMARK_ORDER)]
        return mirrored

    def scale(self, factor):
        """The faces of the image resized by ``factor`` (boxes and every point's x, y)."""
        scaled = self._with()
        scaled.boxes = self.boxes * factor
        scaled.landmarks = self.landmarks * factor
        return scaled

    def shift(self, dx, dy):
        """The faces with ``(dx, dy)`` added to every x, y (a crop at (left, up) is
        ``shift(-left, -up)``)."""
        shifted = self._with()
        shifted.boxes = self.boxes + np.array([dx, dy, dx, dy], dtype=np.float32)
        shifted.landmarks = self.landmarks + np.array([dx, dy], dtype=np.float32)
        return shifted

    def keep(self, mask):
        """The faces selected by a (K,) bool mask (or an index array), in order."""
        return FaceAnnotations(self.boxes[mask], self.landmarks[mask], self.visibility[mask],
                               self.blur[mask], self.classes[mask])

    # ------------------------------------------------------------------ misc
    def _with(self):
        return FaceAnnotations(self.boxes, self.landmarks, self.visibility, self.blur,
                               self.classes)

    def __len__(self):
        return len(self.boxes)

    def __repr__(self):
        return 'FaceAnnotations(%d faces)' % len(self)
