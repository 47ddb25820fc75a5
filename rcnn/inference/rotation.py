"""Rotated passes: detect faces turned by 90, 180 or 270 degrees (phones, scanned albums).

RetinaFace is trained on upright faces: on photos turned by 90, 180 or 270 degrees the released
mnet.25 misses most faces (it finds 23 to 30% of the real dlib photos' faces there, all of
them upright; docs/detection-options.md). With ``rotations=(0, 90, 180, 270)``
the image is also run turned counterclockwise by each angle, where such a face stands upright,
and the candidates of every pass are mapped back and merged once (:func:`detect_rotations`).

Geometry. ``np.rot90`` turns the pixel grid exactly (no interpolation). Pixel ``(x, y)`` of the
rotated image comes from pixel

* 90:  ``(W - 1 - y, x)``
* 180: ``(W - 1 - x, H - 1 - y)``
* 270: ``(y, H - 1 - x)``

of the ``W x H`` original, the pixel-index convention of the flip-back
(:mod:`rcnn.processing.mirror`): mapping back is exact and a box's corners stay integers if
they were. A rotation does not mirror, so the landmarks keep their names: the "left eye" of a
face found upright in a rotated pass is that face's own left-eye point, wherever it lies in the
original image, and :func:`rcnn.inference.align.align_faces` on the mapped landmarks gives an
upright crop.

Upright angle. RetinaFace's landmarks follow a face turned by up to about 90 degrees (a face
lying on its side in a pass still gets its eyes and mouth where they are), so each candidate's
roll in its own pass is read from them (:func:`landmark_roll`: the direction from the eyes'
midpoint to the mouth's, clockwise from straight down). Its upright angle is the pass's angle
plus that roll rounded to a multiple of 90: the face is turned clockwise by that many degrees
in the image; turning the image counterclockwise by it makes the face upright. An upside-down
face is the exception: its landmarks are often laid out upright, so only the scores tell the
180-degree passes apart.

Merge. A face upright in one pass is often found, sometimes with a higher (saturated) score and
a box of swapped sides, in the passes where it lies on its side. A candidate upright in its
pass (roll within +-45 degrees) is therefore preferred: a sideways candidate overlapping an
upright one by at least the detector's NMS IoU is dropped (:func:`prefer_upright`); the rest go
through the detector's one merge (NMS or box voting), so a face found only sideways is kept.
"""
import numpy as np

from rcnn.inference.input_check import InvalidInputError
from rcnn.inference.postprocess import merge_detections
from rcnn.processing.bbox_transform import bbox_overlaps
from rcnn.processing.detections import Detections

__all__ = ['ROTATIONS', 'check_rotations', 'rotate_image', 'rotated_shape', 'unrotate_points',
           'unrotate_boxes', 'unrotate_detections', 'landmark_roll', 'upright_angles',
           'prefer_upright', 'result_sources', 'detect_rotations']

#: the angles a pass may run at, degrees counterclockwise
ROTATIONS = (0, 90, 180, 270)
#: a candidate whose landmark roll is within this many degrees counts as upright in its pass
UPRIGHT_ROLL = 45.0
#: side candidates compared with the upright ones per block (bounds the IoU matrix)
_IOU_BLOCK = 1024


def check_rotations(rotations):
    """Rotations as a tuple of distinct ints from :data:`ROTATIONS`, in the given order.

    Raises:
        InvalidInputError (a ValueError) for an empty list, another angle or a repeated one.
    """
    if isinstance(rotations, (int, np.integer)):
        rotations = (rotations,)
    try:
        angles = tuple(int(r) for r in rotations)
    except (TypeError, ValueError):
        raise InvalidInputError('rotations must be a list of angles from %s, got %r'
                                % (list(ROTATIONS), rotations)) from None
    if not angles:
        raise InvalidInputError('rotations is empty; pass e.g. (0,) or (0, 90, 180, 270)')
    bad = [a for a in angles if a not in ROTATIONS]
    if bad or any(float(a) != float(r) for a, r in zip(angles, rotations)):
        raise InvalidInputError('rotations must be angles from %s (degrees counterclockwise), '
                                'got %r' % (list(ROTATIONS), rotations))
    if len(set(angles)) != len(angles):
        raise InvalidInputError('rotations %r repeats an angle' % (rotations,))
    return angles


def rotate_image(image, angle):
    """``image`` (H, W, ...) turned counterclockwise by ``angle`` (0/90/180/270), contiguous
    (the image itself for 0)."""
    if angle == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, angle // 90))


def rotated_shape(height, width, angle):
    """(height, width) of an image of that size turned by ``angle``."""
    return (width, height) if angle in (90, 270) else (height, width)


def unrotate_points(points, angle, height, width):
    """Points of the rotated image -> points of the ``width x height`` original.

    Args:
        points: (..., 2) float x y in the image turned counterclockwise by ``angle``.
        height, width: the original image's size.
    Returns:
        (..., 2) array of the same dtype (a copy).
    """
    points = np.asarray(points)
    x, y = points[..., 0], points[..., 1]
    if angle == 0:
        pair = (x, y)
    elif angle == 90:
        pair = (width - 1 - y, x)
    elif angle == 180:
        pair = (width - 1 - x, height - 1 - y)
    elif angle == 270:
        pair = (y, height - 1 - x)
    else:
        raise ValueError('angle must be one of %s, got %r' % (list(ROTATIONS), angle))
    return np.stack(pair, axis=-1).astype(points.dtype, copy=False)


def unrotate_boxes(boxes, angle, height, width):
    """Boxes of the rotated image -> boxes of the original.

    Args:
        boxes: (N, 4) x1 y1 x2 y2 in the image turned by ``angle``.
    Returns:
        (N, 4) x1 y1 x2 y2 (x1 <= x2, y1 <= y2), same dtype.
    """
    boxes = np.asarray(boxes)
    corners = unrotate_points(boxes.reshape(-1, 2, 2), angle, height, width)   # (N, 2, 2)
    return np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)


def unrotate_detections(detections, angle, height, width):
    """:class:`Detections` of the rotated image in the coordinates of the original (new
    object; the landmarks keep their order, a rotation does not mirror)."""
    if angle == 0:
        return detections
    return detections.mapped(unrotate_boxes(detections.boxes, angle, height, width),
                             lambda points: unrotate_points(points, angle, height, width))


def landmark_roll(landmarks):
    """Roll of each face from its 5 landmarks, in degrees, clockwise on screen, in (-180, 180]:
    the angle from straight down to the vector from the eyes' midpoint to the mouth corners'
    midpoint (0 for an upright face).

    Args:
        landmarks: (N, 5, P) x y [visibility]: left eye, right eye, nose, left and right mouth
            corners.
    Returns:
        (N,) float64.
    """
    points = np.asarray(landmarks, dtype=np.float64)[..., :2]
    down = points[:, 3:5].mean(axis=1) - points[:, 0:2].mean(axis=1)          # (N, 2)
    # a face turned clockwise by t has its eye-to-mouth vector at (-sin t, cos t)
    roll = np.degrees(np.arctan2(-down[:, 0], down[:, 1]))
    return np.where(roll <= -180.0, roll + 360.0, roll) + 0.0      # + 0.0: no -0.0


def upright_angles(landmarks, pass_angle):
    """(N,) int64 upright angle (0/90/180/270) of candidates found in a pass at ``pass_angle``,
    landmarks in that pass's coordinates: the pass angle plus the roll rounded to 90 degrees."""
    quarter = np.round(landmark_roll(landmarks) / 90.0).astype(np.int64) * 90
    return (int(pass_angle) + quarter) % 360


def _pass_angles(found, pass_angle):
    """``(upright angles (N,) int64, upright in the pass (N,) bool)`` of one pass's candidates;
    a model without landmarks has no roll to read: each face is taken as upright in the pass
    that found it."""
    if found.landmarks is None:
        return (np.full(len(found), int(pass_angle) % 360, dtype=np.int64),
                np.ones(len(found), dtype=bool))
    return (upright_angles(found.landmarks, pass_angle),
            np.abs(landmark_roll(found.landmarks)) < UPRIGHT_ROLL)


def prefer_upright(detections, upright, iou_threshold):
    """Drop the sideways candidates that overlap an upright one.

    Args:
        detections: pooled :class:`Detections` of every pass, in image coordinates.
        upright: (N,) bool, the candidate's face is upright in its own pass.
        iou_threshold: the merge's IoU (+1 convention, as the NMS).
    Returns:
        (N,) bool, the candidates to keep: every upright one and the sideways ones whose IoU
        with every upright one is below ``iou_threshold``.
    """
    keep = upright.copy()
    sideways = np.nonzero(~upright)[0]
    if not upright.any():
        keep[sideways] = True
        return keep
    upright_boxes = detections.boxes[upright].astype(np.float64)
    for start in range(0, len(sideways), _IOU_BLOCK):
        block = sideways[start:start + _IOU_BLOCK]
        overlaps = bbox_overlaps(detections.boxes[block].astype(np.float64), upright_boxes)
        keep[block] = overlaps.max(axis=1) < iou_threshold
    return keep


def result_sources(candidates, faces, landmarks):
    """Index of the candidate each merged face comes from.

    NMS keeps candidates as they are and box voting returns each cluster's top score and top
    landmarks, so a result's score and landmarks are those of exactly one candidate (the
    best-scoring one when several coincide).

    Args:
        candidates: the pooled :class:`Detections` the results were merged from.
        faces: (M, 5) merged faces; landmarks: (M, 5, 2).
    Returns:
        (M,) int64 candidate indices.
    """
    if len(faces) == 0:
        return np.zeros(0, dtype=np.int64)
    # only candidates carrying a result's score can be its source: few, so a dict is cheap
    maybe = np.nonzero(np.isin(candidates.scores, faces[:, 4]))[0]
    maybe = maybe[np.argsort(-candidates.scores[maybe], kind='stable')]
    if landmarks is None:                  # a model without landmarks: the score alone
        landmarks = np.zeros((len(faces), 0), dtype=np.float32)
        points = np.zeros((len(maybe), 0), dtype=np.float32)
    else:
        points = candidates.landmarks[maybe].reshape(len(maybe), -1)
    keys = np.concatenate([candidates.scores[maybe, None], points], axis=1)
    source = {}
    for index, key in zip(maybe[::-1], keys[::-1].astype(np.float32)):
        source[key.tobytes()] = index          # written last: the best-scoring duplicate
    wanted = np.concatenate([faces[:, 4:5], landmarks.reshape(len(faces), -1)], axis=1)
    try:
        return np.array([source[row.tobytes()] for row in wanted.astype(np.float32)],
                        dtype=np.int64)
    except KeyError:
        raise RuntimeError('a merged face matches no candidate: the merge no longer returns '
                           'candidate scores and landmarks as they are') from None


def detect_rotations(model, image, rotations, candidates_of):
    """Faces of ``image`` over the rotated passes, merged once.

    Args:
        model: the detector's parts (``nms_threshold``, ``vote``).
        image: (H, W, 3) BGR, validated.
        rotations: angles from :data:`ROTATIONS` (see :func:`check_rotations`).
        candidates_of: function (rotated image) -> :class:`Detections` in its coordinates,
            e.g. every scale (and tile) of the one pipeline.
    Returns:
        faces (N, 5 + E) float32 x1 y1 x2 y2 score [blur], landmarks (N, 5, P) float32 (None
        for a model without landmarks), angles (N,) int64 (each face's upright angle, see the
        module notes), by descending score, in the coordinates of ``image``.
    """
    height, width = image.shape[:2]
    parts, angles, upright = [], [], []
    for angle in rotations:
        found = candidates_of(rotate_image(image, angle))
        pass_upright, in_pass = _pass_angles(found, angle)
        angles.append(pass_upright)
        upright.append(in_pass)
        parts.append(unrotate_detections(found, angle, height, width))
    pooled = Detections.concatenate(parts)
    angles, upright = np.concatenate(angles), np.concatenate(upright)
    if len(rotations) > 1:
        keep = prefer_upright(pooled, upright, model.nms_threshold)
        pooled = pooled.select(keep)
        angles = angles[keep]
    faces, landmarks = merge_detections(pooled, model.nms_threshold, model.vote)
    return faces, landmarks, angles[result_sources(pooled, faces, landmarks)]
