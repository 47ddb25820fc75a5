"""Quality of each detected face: pose from the 5 landmarks, blur and visibility where the model
predicts them, and one value in [0, 1] to rank or filter faces before recognition.

Pose
    :func:`check_large_pose` is the original detector's classification
    (``RetinaFace.check_large_pose`` of insightface): eight angles between the landmark vectors
    (y pointing up) give a left, right, up and down score, and the first rule that fires names
    the pose: ``left >= 3`` -> left; ``left >= 2`` with the right eye / right mouth corner
    midpoint at or left of the box centre -> left; the same two rules mirrored -> right;
    ``up >= 2`` -> up; ``down >= 5`` -> down; else frontal. "Left" means the nose lies towards
    the image's left (the face turned to the image's left). :data:`POSE_NAMES` maps the codes.

    :func:`estimate_yaw_roll` gives angles in degrees. Roll is the angle of the line from the left
    to the right eye, clockwise on screen positive (image y points down). Yaw comes from how far
    the nose tip sits off the middle of the four other points, in the roll-corrected frame: on a
    head turned by ``yaw`` and seen without perspective, the outer points' half-width shrinks by
    ``cos(yaw)`` while the nose tip, :data:`NOSE_DEPTH` half-widths in front of them, moves by
    ``NOSE_DEPTH * sin(yaw)``; so ``yaw = atan(offset / (half_width * NOSE_DEPTH))``, positive when
    the nose is towards the image's right.

Quality value (:func:`quality_value`), the product of five factors in [0, 1]::

    quality = score * size * pose * sharpness * visibility
    size       = min(1, min(box w, box h) / FULL_QUALITY_SIZE)      (FULL_QUALITY_SIZE = 112)
    pose       = max(0, cos(yaw)) * (1 if check_large_pose is frontal else NON_FRONTAL_FACTOR)
    sharpness  = clip(1 - blur, 0, 1)                 (1 for a model without the blur output)
    visibility = mean over the 5 points of clip(visibility, 0, 1)  (1 without the output)

Why these factors: a recognition crop is 112x112, so a face smaller than that is upsampled and
loses detail in proportion; recognition degrades with yaw (roll is undone by alignment, so it
does not count); the blur output is trained on labels where higher means blurrier and the
visibility output on 1 = visible. ``NON_FRONTAL_FACTOR`` (0.5) halves faces the original's rule
calls profile/up/down, whatever the yaw estimate says.
"""
import dataclasses

import numpy as np

__all__ = ['POSE_NAMES', 'NOSE_DEPTH', 'FULL_QUALITY_SIZE', 'NON_FRONTAL_FACTOR',
           'FaceQuality', 'check_large_pose', 'pose_codes', 'estimate_yaw_roll',
           'quality_value', 'face_qualities']

#: check_large_pose codes -> names (the original's titles: Ret, L, R, U, D)
POSE_NAMES = ('frontal', 'left', 'right', 'up', 'down')
#: depth of the nose tip in front of the eyes and mouth corners, in half-widths of those points:
#: a generic adult head (pupils about 32 mm off the midline, mouth corners about 25 mm, the nose
#: tip about 25 mm in front of them)
NOSE_DEPTH = 0.9
#: face side (pixels) from which size no longer lowers the quality: the recognition crop's side
FULL_QUALITY_SIZE = 112.0
#: quality factor of a face check_large_pose does not call frontal
NON_FRONTAL_FACTOR = 0.5

_LEFT_EYE, _RIGHT_EYE, _NOSE, _LEFT_MOUTH, _RIGHT_MOUTH = range(5)


@dataclasses.dataclass
class FaceQuality:
    """One face's quality record (image pixels; angles in degrees).

    ``blur`` and ``visibility`` are None for a model without those outputs; ``landmarks``,
    ``pose``, ``yaw`` and ``roll`` are None for a model without landmarks (its quality value
    then leaves the pose factors out).
    """
    score: float
    box: tuple                 # x1 y1 x2 y2
    landmarks: tuple           # 5 x (x, y)
    size: float                # min(box w, box h)
    pose: str                  # one of POSE_NAMES
    yaw: float
    roll: float
    blur: float = None
    visibility: tuple = None   # 5 values, 1 = visible
    quality: float = 0.0

    def to_json(self, digits=2):
        """The record as a JSON-ready dict (coordinates rounded to ``digits``)."""
        record = {'score': round(self.score, 5),
                  'box': [round(v, digits) for v in self.box],
                  'size': round(self.size, digits), 'quality': round(self.quality, 4)}
        if self.landmarks is not None:
            record.update({
                'landmarks': [[round(x, digits), round(y, digits)] for x, y in self.landmarks],
                'pose': self.pose, 'yaw': round(self.yaw, 1), 'roll': round(self.roll, 1)})
        if self.blur is not None:
            record['blur'] = round(self.blur, 4)
        if self.visibility is not None:
            record['visibility'] = [round(v, 4) for v in self.visibility]
        return record


def _signed_angle(base, towards_x, towards_y):
    """Angles (degrees, in [-180, 180]) from vector base->x to base->y with y pointing up.

    Args: (N, 2) arrays. Returns (N,) of their dtype.
    """
    vx = towards_x - base
    vy = towards_y - base
    angle_x = np.arctan2(-vx[:, 1], vx[:, 0])
    angle_y = np.arctan2(-vy[:, 1], vy[:, 0])
    d = np.degrees(angle_y - angle_x)
    return np.where(d < -180.0, d + np.float32(360.0), np.where(d > 180.0,
                                                               d - np.float32(360.0), d))


def _pose_scores(points):
    """(left, right, up, down) scores, each (N,), of (N, 5, 2) landmarks.

    In float32 arithmetic like the original (it casts the landmarks to float32), so faces on
    a rule's boundary fall on the same side.
    """
    p = points.astype(np.float32)
    le, re, nose, lm, rm = (p[:, i] for i in range(5))
    theta1 = _signed_angle(le, lm, nose)
    theta2 = _signed_angle(re, nose, rm)
    theta3 = _signed_angle(le, nose, re)
    theta4 = _signed_angle(re, le, nose)
    theta5 = _signed_angle(lm, rm, nose)
    theta6 = _signed_angle(rm, nose, lm)
    theta7 = _signed_angle(lm, nose, le)
    theta8 = _signed_angle(rm, re, nose)
    # the left test wins over the right one: a face with theta1 <= 0 keeps right = 0
    with np.errstate(divide='ignore', invalid='ignore'):
        left = np.where(theta1 <= 0, 10.0, np.where(theta2 <= 0, 0.0, theta2 / theta1))
        right = np.where(theta1 <= 0, 0.0, np.where(theta2 <= 0, 10.0, theta1 / theta2))
        up = np.where((theta3 <= 10) | (theta4 <= 10), 10.0,
                      np.maximum(theta1 / theta3, theta2 / theta4))
        down = np.where((theta5 <= 10) | (theta6 <= 10), 10.0,
                        np.maximum(theta7 / theta5, theta8 / theta6))
    return left, right, up, down


def pose_codes(landmarks, boxes):
    """Vectorised :func:`check_large_pose` over faces.

    Args:
        landmarks: (N, 5, 2) (or (N, 5, 3): the third column is ignored) x y.
        boxes: (N, >=4) x1 y1 x2 y2 ...
    Returns:
        codes (N,) int (index into :data:`POSE_NAMES`), scores (N, 4) float64 left, right,
        up, down.
    """
    points = np.asarray(landmarks, dtype=np.float32).reshape(-1, 5, np.shape(landmarks)[-1])
    points = points[:, :, :2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(len(points), -1)
    left, right, up, down = _pose_scores(points)
    box_centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    left_side_x = (points[:, _LEFT_EYE, 0] + points[:, _LEFT_MOUTH, 0]) / 2
    right_side_x = (points[:, _RIGHT_EYE, 0] + points[:, _RIGHT_MOUTH, 0]) / 2
    # the rules in the original's order; the first that fires wins
    rules = [(left >= 3.0, 1), ((left >= 2.0) & (right_side_x <= box_centre_x), 1),
             (right >= 3.0, 2), ((right >= 2.0) & (left_side_x >= box_centre_x), 2),
             (up >= 2.0, 3), (down >= 5.0, 4)]
    codes = np.zeros(len(points), dtype=np.int64)
    for fired, code in reversed(rules):
        codes = np.where(fired, code, codes)
    return codes, np.stack([left, right, up, down], axis=1)


def check_large_pose(landmark, bbox):
    """The original's pose test of one face.

    Args:
        landmark: (5, 2) x y (left eye, right eye, nose, left and right mouth corners).
        bbox: 4 numbers x1 y1 x2 y2.
    Returns:
        ``(code, left_score, right_score, up_score, down_score)`` as the original: code 0
        frontal, 1 left, 2 right, 3 up, 4 down (:data:`POSE_NAMES`).
    Raises:
        ValueError for other shapes.
    """
    landmark = np.asarray(landmark)
    if landmark.shape != (5, 2) or len(bbox) != 4:
        raise ValueError('check_large_pose takes landmark (5, 2) and bbox of 4 numbers, got '
                         '%s and %d numbers' % (landmark.shape, len(bbox)))
    codes, scores = pose_codes(landmark[None], np.asarray(bbox, np.float64)[None])
    return (int(codes[0]),) + tuple(float(s) for s in scores[0])


def estimate_yaw_roll(landmarks):
    """Yaw and roll in degrees from 5 landmarks (see the module docstring).

    Args:
        landmarks: (N, 5, 2) x y (a third column is ignored).
    Returns:
        yaw (N,), roll (N,) float64; yaw > 0: nose towards the image's right; roll > 0:
        clockwise on screen.
    """
    p = np.asarray(landmarks, dtype=np.float64)[..., :2].reshape(-1, 5, 2)
    eye_vector = p[:, _RIGHT_EYE] - p[:, _LEFT_EYE]
    roll = np.degrees(np.arctan2(eye_vector[:, 1], eye_vector[:, 0]))
    theta = np.radians(roll)
    # x of every point along the roll-corrected eye axis
    along = p[:, :, 0] * np.cos(theta)[:, None] + p[:, :, 1] * np.sin(theta)[:, None]
    outer = along[:, [_LEFT_EYE, _RIGHT_EYE, _LEFT_MOUTH, _RIGHT_MOUTH]]
    centre = outer.mean(axis=1)
    half_width = ((along[:, _RIGHT_EYE] - along[:, _LEFT_EYE])
                  + (along[:, _RIGHT_MOUTH] - along[:, _LEFT_MOUTH])) / 4
    offset = along[:, _NOSE] - centre
    yaw = np.degrees(np.arctan2(offset, NOSE_DEPTH * np.maximum(half_width, 1e-6)))
    return yaw, roll


def quality_value(scores, sizes, yaw, codes, blur=None, visibility=None):
    """The quality rule of the module docstring, vectorised.

    Args:
        scores, sizes, yaw (degrees), codes (check_large_pose codes): (N,) each.
        blur: (N,) or None; visibility: (N, 5) or None.
    Returns:
        (N,) float64 in [0, 1].
    """
    scores = np.clip(np.asarray(scores, np.float64), 0.0, 1.0)
    size = np.clip(np.asarray(sizes, np.float64) / FULL_QUALITY_SIZE, 0.0, 1.0)
    pose = np.maximum(0.0, np.cos(np.radians(yaw))) * np.where(
        np.asarray(codes) == 0, 1.0, NON_FRONTAL_FACTOR)
    value = scores * size * pose
    if blur is not None:
        value = value * np.clip(1.0 - np.asarray(blur, np.float64), 0.0, 1.0)
    if visibility is not None:
        value = value * np.clip(np.asarray(visibility, np.float64), 0.0, 1.0).mean(axis=1)
    return np.clip(value, 0.0, 1.0)


def face_qualities(faces, landmarks):
    """Quality records of detected faces.

    Args:
        faces: (N, 5) float32 x1 y1 x2 y2 score, or (N, 6) with column 5 the predicted blur
            (a model with ``USE_BLUR``).
        landmarks: (N, 5, 2) float32 x y, or (N, 5, 3) with [..., 2] the predicted visibility
            (a model with ``USE_OCCLUSION``), or None (a model without landmarks).
    Returns:
        list of N :class:`FaceQuality`, in the order of ``faces``.
    Raises:
        ValueError for shapes other than those.
    """
    faces = np.asarray(faces, dtype=np.float64)
    if faces.ndim != 2 or faces.shape[1] not in (5, 6):
        raise ValueError('faces must be (N, 5) or (N, 6) (x1 y1 x2 y2 score [blur]), got %s'
                         % (faces.shape,))
    if landmarks is None:
        return _boxes_only_qualities(faces)
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 3 or points.shape != (len(faces), 5, points.shape[-1]) or points.shape[-1] not in (2, 3):
        raise ValueError('landmarks must be (%d, 5, 2) or (%d, 5, 3), got %s'
                         % (len(faces), len(faces), points.shape))
    if not len(faces):
        return []
    sizes = np.minimum(faces[:, 2] - faces[:, 0], faces[:, 3] - faces[:, 1])
    codes, _ = pose_codes(points[:, :, :2], faces[:, :4])
    yaw, roll = estimate_yaw_roll(points)
    blur = faces[:, 5] if faces.shape[1] == 6 else None
    visibility = points[:, :, 2] if points.shape[-1] == 3 else None
    values = quality_value(faces[:, 4], sizes, yaw, codes, blur, visibility)
    records = []
    for i in range(len(faces)):
        records.append(FaceQuality(
            score=float(faces[i, 4]), box=tuple(float(v) for v in faces[i, :4]),
            landmarks=tuple((float(x), float(y)) for x, y in points[i, :, :2]),
            size=float(sizes[i]), pose=POSE_NAMES[codes[i]], yaw=float(yaw[i]),
            roll=float(roll[i]), blur=None if blur is None else float(blur[i]),
            visibility=None if visibility is None else tuple(float(v) for v in visibility[i]),
            quality=float(values[i])))
    return records


def _boxes_only_qualities(faces):
    """Records of a model without landmarks: score, size and blur; no pose factors."""
    sizes = np.minimum(faces[:, 2] - faces[:, 0], faces[:, 3] - faces[:, 1])
    blur = faces[:, 5] if faces.shape[1] == 6 else None
    frontal = np.zeros(len(faces), dtype=np.int64)
    values = quality_value(faces[:, 4], sizes, np.zeros(len(faces)), frontal, blur, None)
    return [FaceQuality(score=float(faces[i, 4]), box=tuple(float(v) for v in faces[i, :4]),
                        landmarks=None, size=float(sizes[i]), pose=None, yaw=None, roll=None,
                        blur=None if blur is None else float(blur[i]), quality=float(values[i]))
            for i in range(len(faces))]
