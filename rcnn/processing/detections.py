"""From the deploy graph's outputs to candidate faces: the anchors that pass the threshold,
decoded.

The detector (:mod:`rcnn.inference`) and the deploy checks (:mod:`rcnn.deploy`) both decode
with it, so it lives below both.

Per feature stride ``s`` the deploy graph has (``A`` anchors per position, each output
``(B, C, H_s, W_s)``):

* ``face_rpn_cls_prob_reshape_stride{s}``: C = 2A, channels ``[0, A)`` background and
  ``[A, 2A)`` face probability of anchor ``a``;
* ``face_rpn_bbox_pred_stride{s}``: C = LA with L = 4 (dx dy dw dh) or 5 (``USE_BLUR``: then a
  blur value), channel ``La + k``;
* ``face_rpn_landmark_pred_stride{s}`` (absent in a boxes-only model): C = 5PA with P = 2
  (x, y) or 3 (``USE_OCCLUSION``: x, y, visibility), channel ``5Pa + Pp + c`` = value c of
  point p (left eye, right eye, nose, left and right mouth corners);
* cascade stages (``CASCADE`` > 0), after those, in stage order: a class output (2A channels,
  as the first) and / or a box output (LA channels).

``L`` and ``P`` are read from the channel counts, as the original detector does, and checked
against the recipe's layout when one is given (:class:`DeployOutputs`).

Anchors are laid out position-major, anchor-minor (``anchors_plane(H, W, ...).reshape(-1, 4)``:
index ``(h * W + w) * A + a``), which is also the order in which passing anchors are pooled,
as in the original. Only the anchors whose face probability reaches the threshold are decoded,
and the strides are decoded together (one :class:`rcnn.processing.box_coder.BoxCoder` call,
which multiplies the deltas by the recipe's stds, then ``nonlinear_pred`` / ``landmark_pred``).

A cascade stage refines as the original detector: its class output, when it has one, replaces
the face probabilities (the threshold is applied to the last stage's); its box output decodes
the previous stage's boxes (the boxes take the place of the anchors), stage after stage.
Landmarks are decoded on the anchors. A blur value comes from the last box output.
"""
import collections
import re

import numpy as np

from rcnn.model_layout import (BLUR_BOX_LEN, BOX_LEN, DEPLOY_OUTPUT_KINDS, NUM_LANDMARKS,
                               deploy_output_names)
from rcnn.processing.bbox_transform import clip_boxes
from rcnn.processing.box_coder import BoxCoder

__all__ = ['Detections', 'DeployOutputs', 'StrideOutputs', 'decode_detections', 'empty_faces',
           'parse_output_name']

_DEFAULT_CODER = BoxCoder()
_CLS_KIND, _BOX_KIND, _LANDMARK_KIND = DEPLOY_OUTPUT_KINDS
#: ``<kind>_stride<s><suffix>``: every deploy output name (the suffix names a cascade stage)
_NAME = re.compile(r'^(?P<kind>.+?)_stride(?P<stride>\d+)(?P<suffix>.*)$')
#: values per landmark point -> landmark values per anchor
_POINT_LENS = (2, 3)


def parse_output_name(name):
    """``(kind, stride, suffix)`` of a deploy output name ``<kind>_stride<s><suffix>``
    (``('face_rpn_bbox_pred', 32, '_cas0')``), or None for another name."""
    match = _NAME.match(str(name))
    if match is None:
        return None
    return match.group('kind'), int(match.group('stride')), match.group('suffix')


def empty_faces(box_extra=0, point_len=2, landmarks=True):
    """The result of a detection that found nothing: faces (0, 5 + box_extra) float32 and
    landmarks (0, 5, point_len) float32 (None when ``landmarks`` is False)."""
    points = np.zeros((0, NUM_LANDMARKS, point_len), dtype=np.float32) if landmarks else None
    return np.zeros((0, 5 + box_extra), dtype=np.float32), points


class Detections(object):
    """Candidate faces of one or more passes, before NMS.

    Attributes:
        boxes: (N, 4) float32, x1 y1 x2 y2 in the coordinates of the pass input.
        scores: (N,) float32 face probabilities.
        landmarks: (N, 5, P) float32 points, P = 2 (x, y) or 3 (x, y, raw visibility value);
            None for a model without landmarks.
        extras: (N, E) float32 raw box-head values after the four deltas (E = 1: the blur
            value of a ``USE_BLUR`` model), E = 0 otherwise.
    """
    __slots__ = ('boxes', 'scores', 'landmarks', 'extras')

    def __init__(self, boxes, scores, landmarks, extras=None):
        self.boxes = boxes
        self.scores = scores
        self.landmarks = landmarks
        if extras is None:
            extras = np.zeros((len(scores), 0), dtype=np.float32)
        self.extras = extras

    def __len__(self):
        return len(self.scores)

    @classmethod
    def concatenate(cls, parts):
        parts = list(parts)
        if not parts:
            faces, points = empty_faces()
            return cls(faces[:, :4], faces[:, 4], points)
        landmarks = None
        if parts[0].landmarks is not None:
            landmarks = np.concatenate([p.landmarks for p in parts])
        return cls(np.concatenate([p.boxes for p in parts]),
                   np.concatenate([p.scores for p in parts]), landmarks,
                   np.concatenate([p.extras for p in parts]))


class StrideOutputs(collections.namedtuple('StrideOutputs', 'stride cls box landmark cascade')):
    """Where one stride's outputs sit in a backend's output list.

    Fields:
        stride: the feature stride.
        cls, box: indices of the class-probability and box outputs.
        landmark: index of the landmark output, None without landmarks.
        cascade: per cascade stage, ``(class index or None, box index or None)``.
    """
    __slots__ = ()

    @property
    def indices(self):
        """Every output index of this stride."""
        found = [self.cls, self.box, self.landmark]
        for stage in self.cascade:
            found.extend(stage)
        return [i for i in found if i is not None]


class DeployOutputs(object):
    """The deploy outputs a decoder reads, by stride: which output is which.

    Args:
        names: output names in the backend's order (each ``<kind>_stride<s>[<suffix>]``).
        strides: the strides to decode, coarse to fine; every one needs a class and a box
            output.
        box_len: box values per anchor the outputs must have (4 or 5); None: any of those.
        point_len: values per landmark point the outputs must have (2 or 3); None: any.
    Raises:
        ValueError: a stride lacks its class or box output, or a name is not a deploy output.

    A name whose kind is one of :data:`rcnn.model_layout.DEPLOY_OUTPUT_KINDS` and has no
    suffix is a first-stage output; every other name of the stride is a cascade output, a class
    output if its kind has ``cls`` in it, else a box output if it has ``bbox``; the outputs
    that add the same text to a first-stage name (``_cas0`` after or before ``_stride{s}``)
    form a stage, stages in the order they first appear.
    """

    def __init__(self, names, strides, box_len=None, point_len=None):
        self.names = [str(n) for n in names]
        self.strides = tuple(int(s) for s in strides)
        self.box_len = box_len
        self.point_len = point_len
        found = {s: {'cls': None, 'box': None, 'landmark': None, 'stages': {}}
                 for s in self.strides}
        for index, name in enumerate(self.names):
            parsed = parse_output_name(name)
            if parsed is None:
                raise ValueError('output %r is not a deploy output <kind>_stride<s>' % name)
            kind, stride, suffix = parsed
            if stride not in found:
                raise ValueError('output %r is of stride %d, not one of %s'
                                 % (name, stride, list(self.strides)))
            _place(found[stride], index, kind, suffix, name)
        self.per_stride = []
        for stride in self.strides:
            entry = found[stride]
            if entry['cls'] is None or entry['box'] is None:
                raise ValueError('the outputs %s lack the class or box output of stride %d'
                                 % (self.names, stride))
            stages = tuple((stage.get('cls'), stage.get('box'))
                           for stage in entry['stages'].values())
            self.per_stride.append(StrideOutputs(stride, entry['cls'], entry['box'],
                                                 entry['landmark'], stages))

    @classmethod
    def first_stage(cls, strides, landmarks=True):
        """The released layout's outputs: per stride class, box[, landmark]."""
        names = deploy_output_names(strides)
        if not landmarks:
            names = [n for n in names if not n.startswith(_LANDMARK_KIND + '_')]
        return cls(names, strides)

    @property
    def landmarks(self):
        """Whether the outputs have landmarks (every stride has, or none)."""
        return self.per_stride[0].landmark is not None

    @property
    def cascade(self):
        """Cascade stages of the stride with the most of them (0: none)."""
        return max(len(entry.cascade) for entry in self.per_stride)

    def stride_of(self, index):
        """The stride of output ``index``."""
        for entry in self.per_stride:
            if index in entry.indices:
                return entry.stride
        raise IndexError('output %d is not decoded' % index)

    def __len__(self):
        return len(self.names)

    def __repr__(self):
        return 'DeployOutputs(%s)' % self.names


def _place(entry, index, kind, suffix, name):
    """Record output ``index`` in its stride's ``entry`` (see :class:`DeployOutputs`)."""
    plain = {_CLS_KIND: 'cls', _BOX_KIND: 'box', _LANDMARK_KIND: 'landmark'}
    if not suffix and kind in plain and entry[plain[kind]] is None:
        entry[plain[kind]] = index
        return
    role = 'cls' if 'cls' in kind else 'box' if 'bbox' in kind else None
    # the stage is what the name adds to a first-stage name, before or after the stride
    # (``..._stride32_cas0`` or ``..._cas0_stride32``)
    known = [k for k in DEPLOY_OUTPUT_KINDS if kind.startswith(k)]
    stage = entry['stages'].setdefault(kind[len(known[0]):] + suffix if known else
                                       kind + suffix, {})
    if role is None or role in stage:
        raise ValueError('output %r is neither a first-stage output nor the one class / box '
                         'output of a cascade stage' % name)
    stage[role] = index


def _values_per_anchor(output, num_anchors, allowed, what, stride):
    channels = output.shape[1]
    per_anchor, rest = divmod(channels, num_anchors)
    if rest or per_anchor not in allowed:
        raise ValueError('the %s output of stride %d has %d channels; with %d anchors per '
                         'position it must have %s' % (
                             what, stride, channels, num_anchors,
                             ' or '.join(str(v * num_anchors) for v in allowed)))
    return per_anchor


def _gather(output, batch_index, num_anchors, per_anchor, anchor_ids, rows, cols):
    """(n, per_anchor) values of the passing anchors from one (B, A * per_anchor, H, W) output."""
    height, width = output.shape[2], output.shape[3]
    values = output[batch_index].reshape(num_anchors, per_anchor, height, width)
    return values[anchor_ids, :, rows, cols]


def _select_level(outputs, entry, num_anchors, threshold, batch_index, decay, box_lens,
                  point_lens):
    """Passing anchors of one stride.

    Returns:
        flat anchor indices (n,) int64 (position-major, anchor-minor), their scores (n,), box
        deltas per stage [(n, L), ...] (first stage first), landmark deltas (n, 5, P) or None.
    """
    box_out = outputs[entry.box]
    height, width = box_out.shape[2], box_out.shape[3]
    cls_index = entry.cls
    for stage_cls, _ in entry.cascade:
        if stage_cls is not None:
            cls_index = stage_cls                 # the last stage's probabilities decide
    face_scores = outputs[cls_index][batch_index, num_anchors:, :height, :width]   # (A, H, W)
    if decay != 1.0:
        face_scores = face_scores * np.float32(decay)
    rows, cols, anchor_ids = np.nonzero((face_scores >= threshold).transpose(1, 2, 0))
    flat = (rows.astype(np.int64) * width + cols) * num_anchors + anchor_ids
    level_scores = face_scores[anchor_ids, rows, cols]
    box_indices = [entry.box] + [box for _, box in entry.cascade if box is not None]
    deltas = []
    for index in box_indices:
        box_len = _values_per_anchor(outputs[index], num_anchors, box_lens, 'box', entry.stride)
        deltas.append(_gather(outputs[index], batch_index, num_anchors, box_len, anchor_ids,
                              rows, cols))
    points = None
    if entry.landmark is not None:
        landmark_len = NUM_LANDMARKS * _values_per_anchor(
            outputs[entry.landmark], num_anchors, tuple(NUM_LANDMARKS * p for p in point_lens),
            'landmark', entry.stride) // NUM_LANDMARKS
        points = _gather(outputs[entry.landmark], batch_index, num_anchors, landmark_len,
                         anchor_ids, rows, cols)
        points = points.reshape(len(flat), NUM_LANDMARKS, landmark_len // NUM_LANDMARKS)
    return flat, level_scores, deltas, points


def _check_output_count(outputs, plan):
    if len(outputs) != len(plan):
        per_stride = len(plan) // len(plan.strides)
        raise ValueError('expected %d outputs (%d per stride %s), got %d'
                         % (len(plan), per_stride, list(plan.strides), len(outputs)))


def decode_detections(outputs, strides, anchor_cache, threshold, clip_shape, batch_index=0,
                      score_decay=None, coder=None, plan=None):
    """Faces of one network pass whose score reaches ``threshold``.

    Args:
        outputs: the deploy outputs, numpy arrays (B, C, H_s, W_s), in ``plan``'s order.
        strides: e.g. (32, 16, 8), coarse to fine.
        anchor_cache: :class:`AnchorCache` with base anchors for those strides.
        threshold: minimum face probability (after ``score_decay``).
        clip_shape: (height, width) the boxes are clipped to, in input pixels.
        batch_index: which image of the batch.
        score_decay: {stride: factor} multiplying that stride's scores before thresholding
            (the original's ``decay4`` on a stride-4 level).
        coder: the :class:`rcnn.processing.box_coder.BoxCoder` of the model's recipe (None: the
            released models' coder, every std 1).
        plan: the :class:`DeployOutputs` of ``outputs``; None: the released layout's 3 outputs
            per stride (:func:`rcnn.model_layout.deploy_output_names` order).
    Returns:
        :class:`Detections` in input coordinates, pooled stride by stride (coarse first).
    Raises:
        ValueError: wrong output count, or an output whose channels do not fit the anchors.
    """
    plan = DeployOutputs.first_stage(strides) if plan is None else plan
    _check_output_count(outputs, plan)
    box_lens = (BOX_LEN, BLUR_BOX_LEN) if plan.box_len is None else (plan.box_len,)
    point_lens = _POINT_LENS if plan.point_len is None else (plan.point_len,)
    anchors, scores, deltas, points = [], [], [], []
    for entry in plan.per_stride:
        num_anchors = anchor_cache.num_anchors(entry.stride)
        decay = (score_decay or {}).get(entry.stride, 1.0)
        _values_per_anchor(outputs[entry.cls], num_anchors, (2,), 'class', entry.stride)
        flat, level_scores, level_deltas, level_points = _select_level(
            outputs, entry, num_anchors, threshold, batch_index, decay, box_lens, point_lens)
        box_out = outputs[entry.box]
        plane = anchor_cache.get(entry.stride, box_out.shape[2], box_out.shape[3])
        anchors.append(plane[flat])
        scores.append(level_scores)
        deltas.append(level_deltas)
        points.append(level_points)
    coder = _DEFAULT_CODER if coder is None else coder
    anchors = np.concatenate(anchors)
    boxes, extras = _decode_boxes(coder, anchors, deltas)
    clip_boxes(boxes, clip_shape)
    landmarks = None
    if plan.landmarks:
        _check_same_width(points, 'landmark')
        landmarks = coder.decode_landmarks(
            anchors, np.concatenate(points).astype(np.float32, copy=False))
        landmarks = landmarks.astype(np.float32, copy=False)
    return Detections(boxes.astype(np.float32, copy=False),
                      np.concatenate(scores).astype(np.float32, copy=False), landmarks,
                      extras.astype(np.float32, copy=False))


def _check_same_width(parts, what):
    widths = {part.shape[-1] for part in parts}
    if len(widths) > 1:
        raise ValueError('the %s outputs of the strides give %s values per anchor; a model '
                         'has one count' % (what, sorted(widths)))


def _decode_boxes(coder, anchors, deltas_per_level):
    """Boxes (n, 4) and raw extra values (n, E) of every level's passing anchors.

    ``deltas_per_level``: per level, the box deltas of each stage [(n_l, L), ...]. Stage 0 is
    decoded on the anchors, every later stage on the boxes of the one before.
    """
    stages = {len(level) for level in deltas_per_level}
    if len(stages) > 1:
        # strides with different cascade depths: decode each level on its own
        parts = [_decode_boxes(coder, anchors_part, [level])
                 for anchors_part, level in zip(_split_rows(anchors, deltas_per_level),
                                                deltas_per_level)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    boxes = anchors
    extras = None
    for stage in range(stages.pop()):
        stage_deltas = [level[stage] for level in deltas_per_level]
        _check_same_width(stage_deltas, 'box')
        stage_deltas = np.concatenate(stage_deltas).astype(np.float32, copy=False)
        boxes = coder.decode_boxes(boxes, stage_deltas[:, :BOX_LEN]
                                   if stage_deltas.shape[1] > BOX_LEN else stage_deltas)
        extras = stage_deltas[:, BOX_LEN:]
    return boxes, np.ascontiguousarray(extras)


def _split_rows(rows, deltas_per_level):
    """``rows`` cut into the row counts of each level."""
    counts = np.cumsum([len(level[0]) for level in deltas_per_level])[:-1]
    return np.split(rows, counts)
