"""The anchor-target generator: labels, box / landmark targets and weights of every anchor of
one image, in the training graph's input layout.

:class:`AnchorTargetGenerator` is built once (per loader worker) from small parts and called per
image:

* anchors: the base anchors of each stride laid over a feature map, cached per map size
  (:class:`rcnn.processing.generate_anchor.AnchorCache`); for stride s and a class-score map of
  H x W cells the anchors are ``anchors_plane(H, W, s, base anchors of s)``, position-major,
  anchor-minor;
* the matcher (:class:`rcnn.processing.matcher.IoUMatcher`): labels 1 / 0 / -1 by IoU,
  force-positive, the border rule (anchors left out get label -1 and zero targets);
* the coder (:class:`rcnn.processing.box_coder.BoxCoder`): targets of every anchor against its
  matched face (zeros without faces); box weights 1 on positives, landmark weights 1 on
  positives whose matched face has landmarks (visibility of its first point >= 0);
* the sampler (:mod:`rcnn.processing.sampler`): with OHEM off, a random cap of positives and
  negatives drawn with the sample's generator; None when the graph's OHEM operator selects.

Faces of class 0 or -1 are left out. ``select_stride > 0`` then sets every label of the other
strides to -1 (their weights are left as they are, as in the original).

Output layout, per stride s (the shapes the training graph's inputs have)::

    {prefix}_label_stride{s}            (1, A*H*W)    index a*H*W + y*W + x
    {prefix}_bbox_target_stride{s}      (1, 4A, H*W)  channel a*4 + k at position y*W + x
    {prefix}_bbox_weight_stride{s}      (1, 4A, H*W)
    {prefix}_landmark_target_stride{s}  (1, 10A, H*W) channel a*10 + 2*point + (0 x | 1 y)
    {prefix}_landmark_weight_stride{s}  (1, 10A, H*W)

The landmark arrays exist only when the generator is built ``with_landmarks``.
:meth:`AnchorTargetGenerator.label_shapes` gives these shapes without labelling an image.

NumPy only (no MXNet): the loader's worker processes run it.
"""
import numpy as np

from rcnn.model_layout import BOX_LEN, LANDMARK_LEN, label_name
from rcnn.model_layout import label_names as layout_label_names
from rcnn.processing.box_coder import BoxCoder
from rcnn.processing.generate_anchor import AnchorCache, generate_anchors_fpn
from rcnn.processing.matcher import IoUMatcher
from rcnn.processing.sampler import loader_sampler

__all__ = ['AnchorTargetGenerator', 'shared_anchor_cache']

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


class AnchorTargetGenerator(object):
    """Anchor labels and targets of one image (module docstring).

    Args:
        strides: feature strides, in the graph's order (e.g. (32, 16, 8)).
        anchor_cache: :class:`AnchorCache` holding the base anchors of every stride.
        matcher: :class:`IoUMatcher`.
        coder: :class:`BoxCoder`.
        sampler: callable ``(labels (N,), rng) -> labels`` applied in place, or None.
        with_landmarks: also produce landmark targets and weights.
        prefix: label name prefix.
    """

    def __init__(self, strides, anchor_cache, matcher, coder, sampler=None, with_landmarks=True,
                 prefix='face'):
        self.strides = tuple(int(s) for s in strides)
        self.anchor_cache = anchor_cache
        self.matcher = matcher
        self.coder = coder
        self.sampler = sampler
        self.with_landmarks = bool(with_landmarks)
        self.prefix = prefix

    @classmethod
    def from_config(cls, cfg, with_landmarks=None, prefix='face'):
        """The generator of a recipe (``RPN_FEAT_STRIDE``, ``RPN_ANCHOR_CFG``,
        ``DENSE_ANCHOR``, ``FACE_LANDMARK`` unless ``with_landmarks`` is given, the matcher's,
        coder's and sampler's keys); a ValueError for ``cfg.USE_BLUR`` (not supported)."""
        if cfg.USE_BLUR:
            raise ValueError('anchor targets: cfg.USE_BLUR is not supported')
        strides = [int(s) for s in cfg.RPN_FEAT_STRIDE]
        base = generate_anchors_fpn(dense_anchor=bool(cfg.DENSE_ANCHOR), cfg=cfg)
        return cls(strides, shared_anchor_cache(dict(zip(strides, base))),
                   IoUMatcher.from_config(cfg), BoxCoder.from_config(cfg), loader_sampler(cfg),
                   bool(cfg.FACE_LANDMARK) if with_landmarks is None else with_landmarks, prefix)

    # ------------------------------------------------------------------ layout
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
        for stride, (height, width) in zip(self.strides, self._feature_sizes(feat_shapes)):
            num_anchors = self.anchor_cache.num_anchors(stride)
            positions = height * width

            def name(kind, stride=stride):
                return label_name(kind, stride, self.prefix)
            shapes[name('label')] = (batch, num_anchors * positions)
            for kind, length in (('bbox', BOX_LEN), ('landmark', LANDMARK_LEN)):
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
        bbox_targets, landmark_targets, has_landmarks = self._targets(anchors, faces, matched)
        if inside is not None:
            outside = ~inside
            labels[outside] = -1
            bbox_targets[outside] = 0
            landmark_targets[outside] = 0
        if self.sampler is not None:
            self.sampler(labels, np.random.default_rng() if rng is None else rng)
        return self._per_stride_outputs(planes, labels, bbox_targets, landmark_targets,
                                        has_landmarks, select_stride)

    def _targets(self, anchors, faces, matched):
        """Box (N, 4) and landmark (N, 10) float32 targets of every anchor against its matched
        face, and (N,) bool "the matched face has landmarks"; zeros / False without faces."""
        num = len(anchors)
        bbox_targets = np.zeros((num, BOX_LEN), dtype=np.float32)
        landmark_targets = np.zeros((num, LANDMARK_LEN), dtype=np.float32)
        has_landmarks = np.zeros(num, dtype=bool)
        if matched is None:
            return bbox_targets, landmark_targets, has_landmarks
        bbox_targets[:] = self.coder.encode_boxes(anchors, faces.boxes[matched])
        if self.with_landmarks:
            landmark_targets[:] = self.coder.encode_landmarks(anchors, faces.landmarks[matched])
            has_landmarks = (faces.visibility[:, 0] >= 0)[matched]
        return bbox_targets, landmark_targets, has_landmarks

    def _per_stride_outputs(self, planes, labels, bbox_targets, landmark_targets,
                            has_landmarks, select_stride):
        """Split the concatenated per-anchor arrays by stride into the graph's layouts."""
        positive = labels == 1
        num = len(labels)
        bbox_weights = np.broadcast_to(positive.astype(np.float32)[:, None], (num, BOX_LEN))
        landmark_weights = np.broadcast_to(
            (positive & has_landmarks).astype(np.float32)[:, None], (num, LANDMARK_LEN))
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
            label_dict[name('bbox_target')] = _stride_layout(bbox_targets[part], *layout, BOX_LEN)
            label_dict[name('bbox_weight')] = _stride_layout(bbox_weights[part], *layout, BOX_LEN)
            if self.with_landmarks:
                label_dict[name('landmark_target')] = _stride_layout(
                    landmark_targets[part], *layout, LANDMARK_LEN)
                label_dict[name('landmark_weight')] = _stride_layout(
                    landmark_weights[part], *layout, LANDMARK_LEN)
        return label_dict

    def __repr__(self):
        return ('AnchorTargetGenerator(strides=%s, matcher=%s, sampler=%s, coder=%r, '
                'landmarks=%s)' % (self.strides, type(self.matcher).__name__,
                                   type(self.sampler).__name__, self.coder, self.with_landmarks))
