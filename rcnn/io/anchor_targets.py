"""The anchor-target generator: labels, box / landmark targets and weights of every anchor of
one image, in the training graph's input layout.

:class:`AnchorTargetGenerator` is built once (per loader worker) from small parts and called per
image; what it produces follows a :class:`rcnn.model_layout.ModelLayout` (strides, anchors per
position, box and landmark values per anchor):

* anchors: the base anchors of each stride laid over a feature map, cached per map size
  (:class:`rcnn.processing.generate_anchor.AnchorCache`); for stride s and a class-score map of
  H x W cells the anchors are ``anchors_plane(H, W, s, base anchors of s)``, position-major,
  anchor-minor (with ``DENSE_ANCHOR`` the base anchors are the plain ones followed by the same
  ones shifted by half a stride);
* the matcher (:class:`rcnn.processing.matcher.IoUMatcher`): labels 1 / 0 / -1 by IoU,
  force-positive, the border rule (anchors left out get label -1 and zero targets);
* the coder (:class:`rcnn.processing.box_coder.BoxCoder`): targets of every anchor against its
  matched face (zeros without faces);
* the sampler (:mod:`rcnn.processing.sampler`): with OHEM off, a random cap of positives and
  negatives drawn with the sample's generator; None when the graph's OHEM operator selects.

Values per anchor (docs/training-targets.md gives the reasons):

* box, 4 values: dx dy dw dh, weight 1 on positives; with ``USE_BLUR`` a 5th value, the matched
  face's blur (:attr:`FaceAnnotations.blur`, through :meth:`BoxCoder.encode_blur`), weight
  ``TRAIN.BLUR_WEIGHT`` (:data:`BLUR_WEIGHT`, the original's 0.1) on positives;
* landmarks, 10 values (x then y of each point), weight 1 on positives whose matched face has
  landmarks (visibility of its first point >= 0);
* landmarks with ``USE_OCCLUSION``, 15 values (x, y, visibility of each point): the visibility
  target is the point's visibility (1.0 visible, 0.0 occluded, through
  :meth:`BoxCoder.encode_visibility`); the weights of a point are
  (1, 1, ``TRAIN.VISIBILITY_WEIGHT``; :data:`VISIBILITY_WEIGHT`, the original's 0.1) on
  positives when the point is present and 0 when it is missing (visibility -1; its three
  targets are 0 too), so a face without landmarks trains none.

Faces of class 0 or -1 are left out. ``select_stride > 0`` then sets every label of the other
strides to -1 (their weights are left as they are, as in the original).

Output layout, per stride s (the shapes the training graph's inputs have), with ``A`` anchors
per position, ``B`` box values (4 or 5) and ``L`` landmark values (10 or 15) per anchor::

    {prefix}_label_stride{s}            (1, A*H*W)    index a*H*W + y*W + x
    {prefix}_bbox_target_stride{s}      (1, B*A, H*W) channel a*B + k at position y*W + x
    {prefix}_bbox_weight_stride{s}      (1, B*A, H*W)
    {prefix}_landmark_target_stride{s}  (1, L*A, H*W) channel a*L + (2|3)*point + value
    {prefix}_landmark_weight_stride{s}  (1, L*A, H*W)

The landmark arrays exist only when the layout has landmarks.
:meth:`AnchorTargetGenerator.label_shapes` gives these shapes without labelling an image.

NumPy only (no MXNet): the loader's worker processes run it.
"""
import numpy as np

from rcnn.model_layout import BOX_LEN, NUM_LANDMARKS, ModelLayout, label_name
from rcnn.model_layout import label_names as layout_label_names
from rcnn.processing.box_coder import BoxCoder
from rcnn.processing.generate_anchor import AnchorCache, generate_anchors_fpn
from rcnn.processing.matcher import IoUMatcher
from rcnn.processing.sampler import loader_sampler

__all__ = ['AnchorTargetGenerator', 'shared_anchor_cache', 'BLUR_WEIGHT', 'VISIBILITY_WEIGHT']

#: default weight of the blur value in a positive anchor's box weights (the original labeller's;
#: ``TRAIN.BLUR_WEIGHT``)
BLUR_WEIGHT = 0.1
#: default weight of a present point's visibility value in a positive anchor's landmark weights
#: (the original labeller's ``[1.0, 1.0, 0.1] * 5``; ``TRAIN.VISIBILITY_WEIGHT``)
VISIBILITY_WEIGHT = 0.1

_MAX_PLANES = 48                 # anchor planes kept per cache (strides x feature-map sizes)
_MAX_SHARED_CACHES = 4
_shared_caches = {}              # base anchors -> AnchorCache, in this process


def shared_anchor_cache(base_anchors):
    """The process's :class:`AnchorCache` of ``{stride: (A, 4) base anchors}`` (one per set
    of base anchors, so generators built from the same recipe share their planes)."""
    key = tuple((int(s), np.asarray(a, np.float32).tobytes())
                for s, a in sorted(base_anchors.items()))
    cache = _shared_caches.get(key)
    if cache is None:
        if len(_shared_caches) >= _MAX_SHARED_CACHES:
            _shared_caches.clear()
        cache = _shared_caches[key] = AnchorCache(base_anchors, max_planes=_MAX_PLANES)
    return cache


def _stride_layout(values, height, width, num_anchors, per_anchor):
    """(H*W*A, per_anchor) position-major rows -> (1, per_anchor*A, H*W)."""
    return np.ascontiguousarray(
        values.reshape(height * width, num_anchors * per_anchor).T)[np.newaxis]


def _generator_layout(layout, anchor_cache, with_landmarks):
    """The :class:`ModelLayout` a generator labels for: ``layout`` itself, or for a stride
    sequence the ``net3`` values with the cache's anchor count; ``with_landmarks=False`` drops
    the landmark labels (the original ``assign_anchor_fpn(..., landmark=False)``)."""
    if not isinstance(layout, ModelLayout):
        strides = tuple(int(s) for s in layout)
        counts = {anchor_cache.num_anchors(s) for s in strides}
        if len(counts) != 1:
            raise ValueError('every stride must have the same number of anchors, got %s'
                             % sorted(counts))
        layout = ModelLayout(strides, counts.pop())
    if with_landmarks is not None and not with_landmarks and layout.landmarks:
        layout = ModelLayout(layout.strides, layout.num_anchors, layout.box_len, 0,
                             layout.cascade)
    elif with_landmarks and not layout.landmarks:
        raise ValueError('landmark labels asked for, but the layout has no landmark head '
                         '(FACE_LANDMARK is False): %r' % (layout,))
    for stride in layout.strides:
        if anchor_cache.num_anchors(stride) != layout.num_anchors:
            raise ValueError('stride %d has %d base anchors but the layout %d per position'
                             % (stride, anchor_cache.num_anchors(stride), layout.num_anchors))
    return layout


class AnchorTargetGenerator(object):
    """Anchor labels and targets of one image (module docstring).

    Args:
        layout: :class:`ModelLayout` (strides in the graph's order, anchors per position, box
            and landmark values per anchor), or a sequence of strides for the ``net3`` values.
        anchor_cache: :class:`AnchorCache` holding the base anchors of every stride.
        matcher: :class:`IoUMatcher`.
        coder: :class:`BoxCoder`.
        sampler: callable ``(labels (N,), rng) -> labels`` applied in place, or None.
        with_landmarks: False leaves out the landmark labels of a layout that has them; None
            (or True) keeps the layout's.
        prefix: label name prefix.
    """

    def __init__(self, layout, anchor_cache, matcher, coder, sampler=None, with_landmarks=None,
                 prefix='face', blur_weight=BLUR_WEIGHT, visibility_weight=VISIBILITY_WEIGHT):
        self.layout = _generator_layout(layout, anchor_cache, with_landmarks)
        self.strides = self.layout.strides
        self.anchor_cache = anchor_cache
        self.matcher = matcher
        self.coder = coder
        self.sampler = sampler
        self.prefix = prefix
        self.blur_weight = float(blur_weight)
        self.visibility_weight = float(visibility_weight)

    @classmethod
    def from_config(cls, cfg, with_landmarks=None, prefix='face'):
        """The generator of a recipe: its :meth:`ModelLayout.from_config` (``RPN_ANCHOR_CFG``,
        ``DENSE_ANCHOR``, ``USE_BLUR``, ``FACE_LANDMARK``, ``USE_OCCLUSION``; landmarks left
        out when ``with_landmarks`` is False), the matcher's, coder's and sampler's keys and
        ``TRAIN.BLUR_WEIGHT`` / ``TRAIN.VISIBILITY_WEIGHT``."""
        layout = ModelLayout.from_config(cfg)
        base = generate_anchors_fpn(dense_anchor=bool(cfg.DENSE_ANCHOR), cfg=cfg)
        return cls(layout, shared_anchor_cache(dict(zip(layout.strides, base))),
                   IoUMatcher.from_config(cfg), BoxCoder.from_config(cfg), loader_sampler(cfg),
                   with_landmarks, prefix, cfg.TRAIN.BLUR_WEIGHT, cfg.TRAIN.VISIBILITY_WEIGHT)

    # ------------------------------------------------------------------ layout
    @property
    def with_landmarks(self):
        """Whether landmark targets and weights are produced."""
        return self.layout.landmarks

    @property
    def label_names(self):
        """Label array names in the loader's order: per stride label, bbox target / weight
        (and landmark target / weight)."""
        return layout_label_names(self.strides, landmarks=self.with_landmarks,
                                  prefix=self.prefix)

    def label_shapes(self, feat_shapes, batch=1):
        """``[(name, shape)]`` of the label arrays for class-score maps ``feat_shapes``
        ((..., H, W) per stride), batch axis ``batch``; no image is labelled."""
        shapes = {}
        lengths = (('bbox', self.layout.box_len), ('landmark', self.layout.landmark_len))
        for stride, (height, width) in zip(self.strides, self._feature_sizes(feat_shapes)):
            num_anchors = self.layout.num_anchors
            positions = height * width

            def name(kind, stride=stride):
                return label_name(kind, stride, self.prefix)
            shapes[name('label')] = (batch, num_anchors * positions)
            for kind, length in lengths:
                shapes[name(kind + '_target')] = (batch, length * num_anchors, positions)
                shapes[name(kind + '_weight')] = (batch, length * num_anchors, positions)
        return [(name, shapes[name]) for name in self.label_names]

    def _feature_sizes(self, feat_shapes):
        if len(feat_shapes) != len(self.strides):
            raise ValueError('feat_shape has %d entries but there are %d strides (%s)'
                             % (len(feat_shapes), len(self.strides),
                                ', '.join(map(str, self.strides))))
        return [(int(shape[-2]), int(shape[-1])) for shape in feat_shapes]

    # ------------------------------------------------------------------ labelling
    def __call__(self, feat_shapes, faces, im_info, rng=None, select_stride=0):
        """Labels of one image.

        Args:
            feat_shapes: per stride, the class-score shape (..., H, W).
            faces: :class:`FaceAnnotations` in input pixels.
            im_info: [height, width, scale] of the network input (or a (1, 3) array), for the
                border rule.
            rng: numpy Generator of the random sampler (a fresh one when None).
            select_stride: when > 0, labels of every other stride become -1.
        Returns:
            dict name -> float32 array, layouts in the module docstring.
        """
        planes = [self.anchor_cache.plane(stride, height, width)
                  for stride, (height, width) in zip(self.strides,
                                                     self._feature_sizes(feat_shapes))]
        anchors = np.concatenate([plane.reshape(-1, 4) for plane in planes])
        im_info = np.asarray(im_info, dtype=np.float64).reshape(-1)
        inside = self.matcher.inside_border(planes, self.strides, im_info[0], im_info[1])
        faces = faces.keep((faces.classes != 0) & (faces.classes != -1))
        if len(faces):
            labels, matched = self.matcher.match(anchors, planes, faces.boxes)
        else:
            labels, matched = np.zeros(len(anchors), dtype=np.float32), None
        bbox_targets = self._box_targets(anchors, faces, matched)
        landmark_targets, landmark_present = self._landmark_targets(anchors, faces, matched)
        if inside is not None:
            outside = ~inside
            labels[outside] = -1
            bbox_targets[outside] = 0
            landmark_targets[outside] = 0
        if self.sampler is not None:
            self.sampler(labels, np.random.default_rng() if rng is None else rng)
        bbox_weights, landmark_weights = self._weights(labels == 1, landmark_present)
        return self._per_stride_outputs(planes, labels, bbox_targets, bbox_weights,
                                        landmark_targets, landmark_weights, select_stride)

    def _box_targets(self, anchors, faces, matched):
        """(N, box_len) float32: dx dy dw dh of every anchor against its matched face, and
        with blur the face's blur value; zeros without faces."""
        targets = np.zeros((len(anchors), self.layout.box_len), dtype=np.float32)
        if matched is not None:
            targets[:, :BOX_LEN] = self.coder.encode_boxes(anchors, faces.boxes[matched])
            if self.layout.blur:
                targets[:, BOX_LEN] = self.coder.encode_blur(faces.blur[matched])
        return targets

    def _landmark_targets(self, anchors, faces, matched):
        """Landmark targets (N, landmark_len) float32 against the matched faces, and which of
        them carry a weight: (N,) bool "the matched face has landmarks" for 10 values, (N, 5)
        bool "the matched point is present" for 15; zeros / False without faces."""
        num = len(anchors)
        per_point = self.layout.occlusion
        present = np.zeros((num, NUM_LANDMARKS) if per_point else num, dtype=bool)
        targets = np.zeros((num, self.layout.landmark_len), dtype=np.float32)
        if matched is None or not self.layout.landmarks:
            return targets, present
        coordinates = self.coder.encode_landmarks(anchors, faces.landmarks[matched])
        visibility = faces.visibility[matched]                          # (N, 5)
        if not per_point:
            targets[:] = coordinates
            return targets, visibility[:, 0] >= 0
        present = visibility >= 0
        points = targets.reshape(num, NUM_LANDMARKS, 3)
        points[:, :, :2] = coordinates.reshape(num, NUM_LANDMARKS, 2)
        points[:, :, 2] = self.coder.encode_visibility(visibility)
        points[~present] = 0          # a missing point's placeholders mean nothing
        return targets, present

    def _weights(self, positive, landmark_present):
        """Box (N, box_len) and landmark (N, landmark_len) float32 weights of the anchors."""
        num = len(positive)
        box_values = np.ones(self.layout.box_len, dtype=np.float32)
        box_values[BOX_LEN:] = self.blur_weight
        if self.layout.blur:
            bbox_weights = positive.astype(np.float32)[:, None] * box_values
        else:
            bbox_weights = np.broadcast_to(positive.astype(np.float32)[:, None], (num, BOX_LEN))
        if not self.layout.occlusion:
            landmark_weights = np.broadcast_to(
                (positive & landmark_present).astype(np.float32)[:, None],
                (num, self.layout.landmark_len))
            return bbox_weights, landmark_weights
        point_values = np.array([1.0, 1.0, self.visibility_weight], dtype=np.float32)
        weighted = (positive[:, None] & landmark_present).astype(np.float32)     # (N, 5)
        landmark_weights = (weighted[:, :, None] * point_values).reshape(num, -1)
        return bbox_weights, landmark_weights

    def _per_stride_outputs(self, planes, labels, bbox_targets, bbox_weights, landmark_targets,
                            landmark_weights, select_stride):
        """Split the concatenated per-anchor arrays by stride into the graph's layouts."""
        box_len, landmark_len = self.layout.box_len, self.layout.landmark_len
        label_dict, start = {}, 0
        for stride, plane in zip(self.strides, planes):
            height, width, num_anchors = plane.shape[:3]
            part = slice(start, start + height * width * num_anchors)
            start = part.stop
            stride_labels = labels[part].reshape(height, width, num_anchors).transpose(2, 0, 1)
            if select_stride > 0 and stride != select_stride:
                stride_labels = np.full_like(stride_labels, -1)

            def name(kind, stride=stride):
                return label_name(kind, stride, self.prefix)
            layout = (height, width, num_anchors)
            label_dict[name('label')] = np.ascontiguousarray(stride_labels).reshape(1, -1)
            label_dict[name('bbox_target')] = _stride_layout(bbox_targets[part], *layout, box_len)
            label_dict[name('bbox_weight')] = _stride_layout(bbox_weights[part], *layout, box_len)
            if self.with_landmarks:
                label_dict[name('landmark_target')] = _stride_layout(
                    landmark_targets[part], *layout, landmark_len)
                label_dict[name('landmark_weight')] = _stride_layout(
                    landmark_weights[part], *layout, landmark_len)
        return label_dict

    def __repr__(self):
        return ('AnchorTargetGenerator(layout=%r, matcher=%s, sampler=%s, coder=%r)'
                % (self.layout, type(self.matcher).__name__, type(self.sampler).__name__,
                   self.coder))
