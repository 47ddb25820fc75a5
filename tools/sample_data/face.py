"""One drawn face: its geometry (:class:`FaceSpec`), sub-pixel drawing onto the canvas and the
object-id map, and its exact labels (:class:`FaceLabel`: box, 5 landmarks with visibility, blur,
evaluation settings). Rules: :mod:`tools.sample_data`.
"""
import dataclasses
import math

import cv2
import numpy as np

__all__ = ['SETTINGS', 'LANDMARK_MIN_HEIGHT', 'SETTING_RULES', 'FaceSpec', 'FaceLabel',
           'ellipse_bounds', 'face_box', 'face_landmarks', 'draw_face', 'draw_occluder',
           'draw_eye', 'clipped_pixel_box', 'box_inside_fraction', 'label_face', 'blur_score',
           'blur_sigma_for',
           'settings_description', 'Painter', 'to_image', 'PUPIL_COLOUR', 'MOUTH_SLIT_COLOUR',
           'SKIN_TONES', 'HAIR_COLOURS', 'IRIS_COLOURS']

SETTINGS = ('easy', 'medium', 'hard')
LANDMARK_MIN_HEIGHT = 16.0        # smaller faces get -1 landmarks (as in WIDER)

# Per setting: minimum clipped box side / height, minimum fraction of the head box inside the
# image, maximum number of occluded landmark points. Nested: each also requires the next one.
SETTING_RULES = {
    'hard': {'min_side': 6, 'min_height': 0, 'min_inside': 0.0, 'max_occluded': 5},
    'medium': {'min_side': 6, 'min_height': 24, 'min_inside': 0.5, 'max_occluded': 3},
    'easy': {'min_side': 6, 'min_height': 50, 'min_inside': 0.75, 'max_occluded': 1},
}

# Colours are BGR (OpenCV order).
SKIN_TONES = np.array([[196, 222, 250], [170, 205, 240], [150, 190, 235], [120, 165, 215],
                       [95, 140, 195], [70, 110, 165], [55, 85, 130], [40, 62, 100]], np.float64)
HAIR_COLOURS = np.array([[25, 25, 30], [30, 45, 70], [40, 70, 110], [90, 170, 210],
                         [150, 150, 150], [40, 60, 150], [15, 15, 15]], np.float64)
IRIS_COLOURS = np.array([[30, 60, 100], [150, 110, 50], [60, 120, 60], [60, 60, 60],
                         [20, 45, 80]], np.float64)
PUPIL_COLOUR = (12, 10, 10)
SCLERA_COLOUR = (238, 242, 242)
MOUTH_SLIT_COLOUR = (35, 25, 70)

# Face layout in head-local units: u along the head's width axis (in half-widths, image-left
# negative), v along its height axis (in half-heights, down positive).
EYE_U, EYE_V = 0.38, -0.12
NOSE_ROOT_V, NOSE_TIP_V = -0.02, 0.25
MOUTH_U, MOUTH_V = 0.32, 0.55
YAW_SHIFT = {'eyes': 0.22, 'nose': 0.40, 'mouth': 0.25}

_SHIFT = 4                        # OpenCV fixed-point bits for sub-pixel drawing
_ONE = 1 << _SHIFT
_SHIFT = 4                        # OpenCV fixed-point bits for sub-pixel drawing
_ONE = 1 << _SHIFT


def settings_description():
    """One line per evaluation setting (hard, medium, easy), for --help and the docs."""
    lines = []
    for name in ('hard', 'medium', 'easy'):
        rule = SETTING_RULES[name]
        clauses = ['min(w, h) >= %d' % rule['min_side']]
        if rule['min_height']:
            clauses.append('h >= %d' % rule['min_height'])
        if rule['min_inside']:
            clauses.append('>= %d%% of the head box inside the image'
                           % round(100 * rule['min_inside']))
        if rule['max_occluded'] < 5:
            clauses.append('<= %d occluded landmark points' % rule['max_occluded'])
        lines.append('%-6s: %s' % (name, ', '.join(clauses)))
    return lines


# ---------------------------------------------------------------------------------------------
# face geometry
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FaceSpec:
    """Everything needed to draw one face (pixel units, BGR colours).

    ``height`` is the head ellipse's full length along its own axis (2 * half-height) and
    ``aspect`` its height / width; ``angle`` is the in-plane rotation in degrees, clockwise on
    screen (OpenCV's ellipse convention); ``yaw`` in [-1, 1] shifts the features sideways.
    The ``*_jitter`` fields move the features in head-local units.
    """
    cx: float
    cy: float
    height: float
    aspect: float = 1.25
    angle: float = 0.0
    yaw: float = 0.0
    skin: tuple = (150, 190, 235)
    hair: tuple = None
    hair_style: int = 0
    iris: tuple = (30, 60, 100)
    eye_jitter: tuple = (0.0, 0.0)
    mouth_jitter: tuple = (0.0, 0.0)
    nose_jitter: float = 0.0

    @property
    def half_axes(self):
        """(half-width, half-height) of the head ellipse in pixels."""
        half_h = 0.5 * self.height
        return half_h / self.aspect, half_h


def to_image(spec, uv):
    """Head-local points ``uv`` (N, 2) -> image points (N, 2) float64 (x, y)."""
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    half_w, half_h = spec.half_axes
    theta = math.radians(spec.angle)
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    x_local = uv[:, 0] * half_w
    y_local = uv[:, 1] * half_h
    return np.stack([spec.cx + x_local * cos_t - y_local * sin_t,
                     spec.cy + x_local * sin_t + y_local * cos_t], axis=1)


def ellipse_bounds(cx, cy, half_w, half_h, angle_deg):
    """Tight box of a rotated ellipse: (4,) float64 x1 y1 x2 y2 (continuous coordinates)."""
    theta = math.radians(angle_deg)
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    extent_x = math.hypot(half_w * cos_t, half_h * sin_t)
    extent_y = math.hypot(half_w * sin_t, half_h * cos_t)
    return np.array([cx - extent_x, cy - extent_y, cx + extent_x, cy + extent_y])


def face_box(spec):
    """Tight box of the head ellipse: (4,) float64 x1 y1 x2 y2, before pixel rounding."""
    half_w, half_h = spec.half_axes
    return ellipse_bounds(spec.cx, spec.cy, half_w, half_h, spec.angle)


def _feature_uv(spec):
    """Head-local positions of the features: dict of (N, 2) arrays."""
    eye_du, eye_dv = spec.eye_jitter
    mouth_du, mouth_dv = spec.mouth_jitter
    eye_v = EYE_V + eye_dv
    eye_shift = YAW_SHIFT['eyes'] * spec.yaw
    mouth_v = MOUTH_V + mouth_dv
    mouth_shift = YAW_SHIFT['mouth'] * spec.yaw
    nose_u = YAW_SHIFT['nose'] * spec.yaw
    return {
        'eyes': np.array([[-EYE_U - eye_du + eye_shift, eye_v],
                          [EYE_U + eye_du + eye_shift, eye_v]]),
        'nose': np.array([[0.75 * nose_u, NOSE_ROOT_V], [nose_u, NOSE_TIP_V + spec.nose_jitter]]),
        'mouth': np.array([[-MOUTH_U - mouth_du + mouth_shift, mouth_v],
                           [MOUTH_U + mouth_du + mouth_shift, mouth_v]]),
    }


def face_landmarks(spec):
    """The five drawn points, (5, 2) float64 x y: left eye, right eye, nose tip, left and right
    mouth corner (image-left first for |angle| < 45 deg)."""
    uv = _feature_uv(spec)
    points = np.concatenate([uv['eyes'], uv['nose'][1:], uv['mouth']], axis=0)
    return to_image(spec, points)


# ---------------------------------------------------------------------------------------------
# sub-pixel drawing (OpenCV fixed point); every shape goes to the canvas and the id map
# ---------------------------------------------------------------------------------------------
def _fixed(point):
    return int(round(point[0] * _ONE)), int(round(point[1] * _ONE))


def _fixed_len(length):
    return max(0, int(round(length * _ONE)))


class Painter:
    """Draws each shape on the BGR canvas (anti-aliased) and with ``object_id`` on the id map
    (aliased, the pixels that belong to the object)."""

    def __init__(self, canvas, id_map, object_id, antialias=True):
        self.canvas = canvas
        self.id_map = id_map
        self.object_id = int(object_id)
        self.line_type = cv2.LINE_AA if antialias else cv2.LINE_8

    def ellipse(self, centre, half_axes, angle, colour, own=True):
        centre, axes = _fixed(centre), (_fixed_len(half_axes[0]), _fixed_len(half_axes[1]))
        cv2.ellipse(self.canvas, centre, axes, float(angle), 0, 360, _colour(colour), -1,
                    self.line_type, _SHIFT)
        if own and self.id_map is not None:
            cv2.ellipse(self.id_map, centre, axes, float(angle), 0, 360, self.object_id, -1,
                        cv2.LINE_8, _SHIFT)

    def circle(self, centre, radius, colour):
        cv2.circle(self.canvas, _fixed(centre), _fixed_len(radius), _colour(colour), -1,
                   self.line_type, _SHIFT)

    def line(self, start, end, colour, thickness):
        cv2.line(self.canvas, _fixed(start), _fixed(end), _colour(colour), int(thickness),
                 self.line_type, _SHIFT)

    def polygon(self, points, colour, own=True):
        pts = np.round(np.asarray(points) * _ONE).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(self.canvas, [pts], _colour(colour), self.line_type, _SHIFT)
        if own and self.id_map is not None:
            cv2.fillPoly(self.id_map, [pts], self.object_id, cv2.LINE_8, _SHIFT)


def _colour(colour):
    return tuple(int(round(c)) for c in colour[:3])


def _scaled(colour, factor):
    return tuple(min(255.0, max(0.0, c * factor)) for c in colour)


def draw_eye(painter, centre, half_w, angle, iris):
    """Sclera ellipse, iris and pupil, all centred on ``centre`` (the landmark)."""
    pupil_r = max(1.0, 0.045 * half_w * 2.0)
    iris_r = max(pupil_r + 0.5, 0.09 * half_w * 2.0)
    sclera = (max(iris_r + 0.5, 0.19 * half_w * 2.0), max(iris_r, 0.105 * half_w * 2.0))
    painter.ellipse(centre, sclera, angle, SCLERA_COLOUR, own=False)
    painter.circle(centre, iris_r, iris)
    painter.circle(centre, pupil_r, PUPIL_COLOUR)


def draw_face(canvas, id_map, spec, object_id, antialias=True):
    """Draw ``spec`` onto ``canvas`` (H, W, 3) uint8 and mark its pixels (head and hair) with
    ``object_id`` in ``id_map`` (H, W) uint16 (may be None). Returns the (5, 2) landmarks."""
    painter = Painter(canvas, id_map, object_id, antialias)
    half_w, half_h = spec.half_axes
    if spec.hair is not None:
        centre_v, grow_w, grow_h = ((-0.14, 1.12, 1.0), (0.10, 1.25, 1.15))[spec.hair_style % 2]
        painter.ellipse(to_image(spec, [0.0, centre_v])[0], (grow_w * half_w, grow_h * half_h),
                        spec.angle, spec.hair)
    painter.ellipse((spec.cx, spec.cy), (half_w, half_h), spec.angle, spec.skin)

    uv = _feature_uv(spec)
    eyes, nose, mouth = (to_image(spec, uv[k]) for k in ('eyes', 'nose', 'mouth'))
    for eye in eyes:
        draw_eye(painter, eye, half_w, spec.angle, spec.iris)

    nose_width = max(1, int(round(0.07 * half_w)))
    painter.line(nose[0], nose[1], _scaled(spec.skin, 0.78), nose_width)
    painter.circle(nose[1], max(1.0, 0.07 * half_w), _scaled(spec.skin, 0.6))

    mouth_centre = mouth.mean(axis=0)
    mouth_half_len = 0.5 * float(np.hypot(*(mouth[1] - mouth[0])))
    mouth_angle = math.degrees(math.atan2(mouth[1][1] - mouth[0][1], mouth[1][0] - mouth[0][0]))
    lips = (0.55 * spec.skin[0] + 40, 0.45 * spec.skin[1] + 20, 0.5 * spec.skin[2] + 90)
    painter.ellipse(mouth_centre, (mouth_half_len, max(1.0, 0.09 * half_h)), mouth_angle, lips,
                    own=False)
    # the slit: a thin lens pointed at the two corners, so the corners are its extreme points
    normal = np.array([-(mouth[1][1] - mouth[0][1]), mouth[1][0] - mouth[0][0]])
    normal *= max(0.6, 0.025 * half_h) / max(1e-9, float(np.hypot(*normal)))
    painter.polygon([mouth[0], mouth_centre + normal, mouth[1], mouth_centre - normal],
                    MOUTH_SLIT_COLOUR, own=False)
    return face_landmarks(spec)


def draw_occluder(rng, canvas, id_map, spec, object_id, antialias=True):
    """A hand/object shape over part of the face (random position in head-local units)."""
    painter = Painter(canvas, id_map, object_id, antialias)
    half_w, half_h = spec.half_axes
    centre = to_image(spec, rng.uniform(-0.9, 0.9, size=2))[0]
    size = (rng.uniform(0.35, 0.8) * half_w, rng.uniform(0.25, 0.6) * half_h)
    colour = rng.uniform(0, 255, size=3)
    angle = spec.angle + rng.uniform(-30, 30)
    if rng.random() < 0.5:
        painter.ellipse(centre, size, angle, colour)
    else:
        rect = cv2.boxPoints(((float(centre[0]), float(centre[1])),
                              (2.0 * size[0], 2.0 * size[1]), float(angle)))
        painter.polygon(rect, colour)


# ---------------------------------------------------------------------------------------------
# labels
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FaceLabel:
    """One labelled face.

    ``box`` (4,) int64 x y w h (clipped, ``x2 = x + w``); ``landmarks`` (5, 3) float64 x y flag
    (0.0 visible, 1.0 occluded) or all -1; ``blur`` float (-1 without landmarks);
    ``inside_fraction`` share of the exact head box inside the image; ``occluded_points``
    landmark points covered by something drawn later (points inside the image only);
    ``yaw`` copied from the spec (for the pose attribute).
    """
    box: np.ndarray
    landmarks: np.ndarray
    blur: float
    inside_fraction: float
    occluded_points: int
    yaw: float = 0.0

    def in_setting(self, name):
        """Whether this face is kept in evaluation setting ``name`` (see SETTING_RULES)."""
        _, _, width, height = (int(v) for v in self.box)
        rule = SETTING_RULES[name]
        return (min(width, height) >= rule['min_side'] and height >= rule['min_height']
                and self.inside_fraction >= rule['min_inside']
                and self.occluded_points <= rule['max_occluded']
                and (name == 'hard' or self.in_setting('hard' if name == 'medium' else 'medium')))


def clipped_pixel_box(exact_box, width, height):
    """Exact x1 y1 x2 y2 -> whole-pixel clipped x y w h (4,) int64."""
    x1 = max(0, math.floor(exact_box[0]))
    y1 = max(0, math.floor(exact_box[1]))
    x2 = min(width - 1, math.ceil(exact_box[2]))
    y2 = min(height - 1, math.ceil(exact_box[3]))
    return np.array([x1, y1, x2 - x1, y2 - y1], np.int64)


def box_inside_fraction(exact_box, width, height):
    x1, y1, x2, y2 = exact_box
    inter_w = max(0.0, min(x2, width - 1.0) - max(x1, 0.0))
    inter_h = max(0.0, min(y2, height - 1.0) - max(y1, 0.0))
    return inter_w * inter_h / max(1e-9, (x2 - x1) * (y2 - y1))


def _points_visible(points, id_map, object_id):
    """(N,) bool: the 3x3 pixels around each point still belong to ``object_id``."""
    height, width = id_map.shape
    visible = np.zeros(len(points), bool)
    for k, (x, y) in enumerate(np.round(points).astype(np.int64)):
        if 1 <= x < width - 1 and 1 <= y < height - 1:
            visible[k] = bool((id_map[y - 1:y + 2, x - 1:x + 2] == object_id).all())
    return visible


#: the blur label rule: ``SHARP_BLUR + BLUR_RANGE * min(1, BLUR_PER_SIGMA * sigma / h)``
SHARP_BLUR, BLUR_RANGE, BLUR_PER_SIGMA = 0.2, 0.7, 10.0


def blur_score(blur_sigma, face_height):
    """Label blur in [0.2, 0.9]: higher = blurrier relative to the face's height."""
    return round(SHARP_BLUR + BLUR_RANGE * min(
        1.0, BLUR_PER_SIGMA * blur_sigma / max(face_height, 1.0)), 2)


def blur_sigma_for(level, face_height):
    """The Gaussian sigma (px) that :func:`blur_score` maps to ``level`` (in [0.2, 0.9]) for a
    face ``face_height`` px tall: the inverse of its rule."""
    return (level - SHARP_BLUR) / BLUR_RANGE * face_height / BLUR_PER_SIGMA


def label_face(spec, id_map, object_id, blur_sigma=0.0):
    """Label of a drawn face once the whole scene is drawn: :class:`FaceLabel`."""
    height, width = id_map.shape
    exact_box = face_box(spec)
    points = face_landmarks(spec)
    in_image = ((points[:, 0] >= 0) & (points[:, 0] <= width - 1)
                & (points[:, 1] >= 0) & (points[:, 1] <= height - 1))
    visible = _points_visible(points, id_map, object_id)
    occluded_points = int((in_image & ~visible).sum())
    face_height = exact_box[3] - exact_box[1]
    if in_image.all() and face_height >= LANDMARK_MIN_HEIGHT:
        flags = np.where(visible, 0.0, 1.0)
        landmarks = np.concatenate([points, flags[:, None]], axis=1)
        blur = blur_score(blur_sigma, face_height)
    else:
        landmarks = np.full((5, 3), -1.0)
        blur = -1.0
    return FaceLabel(box=clipped_pixel_box(exact_box, width, height), landmarks=landmarks,
                     blur=blur, inside_fraction=box_inside_fraction(exact_box, width, height),
                     occluded_points=occluded_points, yaw=spec.yaw)
