"""Synthetic face scenes: a cluttered background with drawn faces and distractors, and the exact
labels of every face (box, 5 landmarks with visibility, blur, evaluation settings).

The rules (what is drawn, how labels and settings are derived) are documented in
:mod:`tools.sample_data`; :mod:`tools.sample_data.dataset` writes scenes as a WIDER-format set.
"""
import dataclasses
import math

import cv2
import numpy as np

__all__ = ['EVENTS', 'SETTINGS', 'SPLIT_CODES', 'LANDMARK_MIN_HEIGHT', 'SETTING_RULES', 'FaceSpec',
           'FaceLabel', 'Scene', 'ellipse_bounds', 'face_box', 'face_landmarks', 'draw_face',
           'label_face', 'render_scene', 'blur_score', 'settings_description', 'PUPIL_COLOUR',
           'MOUTH_SLIT_COLOUR']

# ---------------------------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------------------------
EVENTS = ('0--Parade', '1--Handshaking', '2--Demonstration', '3--Riot', '4--Dancing',
          '5--Car_Accident')
SETTINGS = ('easy', 'medium', 'hard')
SPLIT_CODES = {'train': 0, 'val': 1}

MIN_FACE_HEIGHT, MAX_FACE_HEIGHT = 8.0, 300.0
SMALL_FACE_HEIGHT = 24.0          # upper bound of the "small face" mode
SMALL_FACE_FRACTION = 0.15
MAX_FACES = 40
LANDMARK_MIN_HEIGHT = 16.0        # smaller faces get -1 landmarks (as in WIDER)
MAX_OVERLAP = 0.15                # intersection / smaller footprint area
FOOTPRINT_MARGIN = 0.15           # footprint = head box grown by this fraction per side
MAX_PLACEMENT_TRIES = 30
MIN_SHORT_SIDE, MAX_SHORT_SIDE, MAX_LONG_SIDE = 300, 800, 1024
ASPECT_RATIOS = (1.0, 4.0 / 3.0, 1.5, 16.0 / 9.0)

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
_NOISE_BANK_SIZE = MAX_LONG_SIDE + 128
_TEXT_CHARS = np.array(list('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '))
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
          cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN)


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


def _to_image(spec, uv):
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
    return _to_image(spec, points)


# ---------------------------------------------------------------------------------------------
# sub-pixel drawing (OpenCV fixed point); every shape goes to the canvas and the id map
# ---------------------------------------------------------------------------------------------
def _fixed(point):
    return int(round(point[0] * _ONE)), int(round(point[1] * _ONE))


def _fixed_len(length):
    return max(0, int(round(length * _ONE)))


class _Painter:
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


def _draw_eye(painter, centre, half_w, angle, iris):
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
    painter = _Painter(canvas, id_map, object_id, antialias)
    half_w, half_h = spec.half_axes
    if spec.hair is not None:
        centre_v, grow_w, grow_h = ((-0.14, 1.12, 1.0), (0.10, 1.25, 1.15))[spec.hair_style % 2]
        painter.ellipse(_to_image(spec, [0.0, centre_v])[0], (grow_w * half_w, grow_h * half_h),
                        spec.angle, spec.hair)
    painter.ellipse((spec.cx, spec.cy), (half_w, half_h), spec.angle, spec.skin)

    uv = _feature_uv(spec)
    eyes, nose, mouth = (_to_image(spec, uv[k]) for k in ('eyes', 'nose', 'mouth'))
    for eye in eyes:
        _draw_eye(painter, eye, half_w, spec.angle, spec.iris)

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


def _draw_occluder(rng, canvas, id_map, spec, object_id, antialias=True):
    """A hand/object shape over part of the face (random position in head-local units)."""
    painter = _Painter(canvas, id_map, object_id, antialias)
    half_w, half_h = spec.half_axes
    centre = _to_image(spec, rng.uniform(-0.9, 0.9, size=2))[0]
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


def _clipped_pixel_box(exact_box, width, height):
    """Exact x1 y1 x2 y2 -> whole-pixel clipped x y w h (4,) int64."""
    x1 = max(0, math.floor(exact_box[0]))
    y1 = max(0, math.floor(exact_box[1]))
    x2 = min(width - 1, math.ceil(exact_box[2]))
    y2 = min(height - 1, math.ceil(exact_box[3]))
    return np.array([x1, y1, x2 - x1, y2 - y1], np.int64)


def _inside_fraction(exact_box, width, height):
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


def blur_score(blur_sigma, face_height):
    """Label blur in [0.2, 0.9]: higher = blurrier relative to the face's height."""
    return round(0.2 + 0.7 * min(1.0, 10.0 * blur_sigma / max(face_height, 1.0)), 2)


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
    return FaceLabel(box=_clipped_pixel_box(exact_box, width, height), landmarks=landmarks,
                     blur=blur, inside_fraction=_inside_fraction(exact_box, width, height),
                     occluded_points=occluded_points, yaw=spec.yaw)


# ---------------------------------------------------------------------------------------------
# scenes
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Scene:
    """One rendered image: ``image`` (H, W, 3) uint8 BGR, ``faces`` labels and the ``specs``
    they were drawn from (same order), ``blur_sigma`` of the final blur (0 = none)."""
    image: np.ndarray
    faces: list
    specs: list = dataclasses.field(default_factory=list)
    blur_sigma: float = 0.0


_NOISE_BANK = None


def _noise_bank():
    """A fixed (S, S, 3) uint8 block of uniform noise in [0, 64), built once per process."""
    global _NOISE_BANK
    if _NOISE_BANK is None:
        bank_rng = np.random.default_rng(20190502)
        _NOISE_BANK = bank_rng.integers(0, 64, size=(_NOISE_BANK_SIZE, _NOISE_BANK_SIZE, 3),
                                        dtype=np.uint8)
    return _NOISE_BANK


def _add_fine_noise(rng, image, amplitude):
    """Add +-amplitude uniform noise, cut at a random offset of the shared noise bank."""
    height, width = image.shape[:2]
    bank = _noise_bank()
    oy = int(rng.integers(0, bank.shape[0] - height + 1))
    ox = int(rng.integers(0, bank.shape[1] - width + 1))
    crop = bank[oy:oy + height, ox:ox + width]
    return cv2.addWeighted(image, 1.0, crop, amplitude / 32.0, -amplitude)


def _sample_image_size(rng):
    short = int(rng.integers(MIN_SHORT_SIDE, MAX_SHORT_SIDE + 1))
    ratio = ASPECT_RATIOS[rng.integers(len(ASPECT_RATIOS))]
    long_side = min(MAX_LONG_SIDE, int(round(short * ratio)))
    return (short, long_side) if rng.random() < 0.7 else (long_side, short)


def _random_colour(rng):
    return tuple(float(c) for c in rng.uniform(0, 255, size=3))


def _draw_background(rng, height, width):
    """Smooth colour field + blotches + random shapes and text: (H, W, 3) uint8."""
    # a smooth colour field (a few random colours interpolated) mixed with blotches, both at
    # low resolution, then one upsampling to full size
    cell = int(rng.choice([4, 8, 16, 32]))
    low_size = (max(1, width // cell), max(1, height // cell))
    grid = rng.integers(0, 256, size=(int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3),
                        dtype=np.uint8)
    field_low = cv2.resize(grid, low_size, interpolation=cv2.INTER_CUBIC)
    blotches = rng.integers(0, 256, size=(low_size[1], low_size[0], 3), dtype=np.uint8)
    weight = float(rng.uniform(0.05, 0.45))
    mixed = cv2.addWeighted(field_low, 1.0 - weight, blotches, weight, 0.0)
    canvas = cv2.resize(mixed, (width, height), interpolation=cv2.INTER_LINEAR)

    for _ in range(int(rng.integers(10, 41))):
        kind = int(rng.integers(5))
        colour = _random_colour(rng)
        thickness = -1 if rng.random() < 0.5 else int(rng.integers(1, 5))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(4, max(5, min(width, height) // 3)))
        if kind == 0:
            cv2.rectangle(canvas, (x, y), (x + int(rng.integers(4, 2 * size)),
                                           y + int(rng.integers(4, 2 * size))),
                          colour, thickness, cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(canvas, (x, y), size, colour, thickness, cv2.LINE_AA)
        elif kind == 2:
            cv2.ellipse(canvas, (x, y), (size, int(rng.integers(2, size + 1))),
                        float(rng.uniform(0, 180)), 0, 360, colour, thickness, cv2.LINE_AA)
        elif kind == 3:
            cv2.line(canvas, (x, y), (int(rng.integers(0, width)), int(rng.integers(0, height))),
                     colour, max(1, thickness), cv2.LINE_AA)
        else:
            pts = (rng.uniform(-size, size, size=(int(rng.integers(3, 7)), 2)) + (x, y))
            cv2.fillPoly(canvas, [pts.astype(np.int32).reshape(-1, 1, 2)], colour, cv2.LINE_AA)

    for _ in range(int(rng.integers(0, 6))):
        text = ''.join(rng.choice(_TEXT_CHARS, size=int(rng.integers(3, 13))))
        scale = float(rng.uniform(0.5, 3.0))
        cv2.putText(canvas, text, (int(rng.integers(0, width)), int(rng.integers(10, height))),
                    _FONTS[int(rng.integers(len(_FONTS)))], scale, _random_colour(rng),
                    int(rng.integers(1, 4)), cv2.LINE_AA)
    return canvas


def _sample_face_count(rng):
    """Mostly a few faces: P(0) 4%, 1..4 60%, 5..12 26%, 13..40 10%."""
    mode = rng.choice(4, p=[0.04, 0.60, 0.26, 0.10])
    low, high = ((0, 0), (1, 4), (5, 12), (13, MAX_FACES))[mode]
    return int(rng.integers(low, high + 1))


def _sample_face_heights(rng, count, short_side):
    """(count,) float64 head heights: log-uniform in [hi / 8, hi], hi shrinking with the count,
    and with probability SMALL_FACE_FRACTION log-uniform in the small range [8, 24]."""
    high = min(MAX_FACE_HEIGHT, 0.7 * short_side, 1.3 * short_side / math.sqrt(max(count, 1)))
    low = max(MIN_FACE_HEIGHT, high / 8.0)
    heights = np.exp(rng.uniform(math.log(low), math.log(high), size=count))
    small = rng.random(count) < SMALL_FACE_FRACTION
    heights[small] = np.exp(rng.uniform(math.log(MIN_FACE_HEIGHT), math.log(SMALL_FACE_HEIGHT),
                                        size=int(small.sum())))
    return heights


def _random_face_spec(rng, cx, cy, height):
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.uniform(-12, 12, size=3)
    hair = None
    if rng.random() < 0.75:
        hair = tuple(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.uniform(-10, 10, size=3))
    return FaceSpec(
        cx=cx, cy=cy, height=height, aspect=float(rng.uniform(1.12, 1.40)),
        angle=float(rng.uniform(-20, 20)), yaw=float(rng.uniform(-0.6, 0.6)),
        skin=tuple(np.clip(skin, 0, 255)), hair=hair, hair_style=int(rng.integers(2)),
        iris=tuple(IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]),
        eye_jitter=tuple(rng.uniform(-0.04, 0.04, size=2)),
        mouth_jitter=tuple(rng.uniform(-0.05, 0.05, size=2)),
        nose_jitter=float(rng.uniform(-0.04, 0.04)))


def _footprint(box):
    margin_w = FOOTPRINT_MARGIN * (box[2] - box[0])
    margin_h = FOOTPRINT_MARGIN * (box[3] - box[1])
    return np.array([box[0] - margin_w, box[1] - margin_h, box[2] + margin_w, box[3] + margin_h])


def _overlaps_too_much(footprint, placed):
    """Whether ``footprint`` (4,) overlaps any of ``placed`` (N, 4) by more than MAX_OVERLAP of
    the smaller area."""
    if len(placed) == 0:
        return False
    placed = np.asarray(placed)
    inter_w = np.maximum(0.0, np.minimum(placed[:, 2], footprint[2])
                         - np.maximum(placed[:, 0], footprint[0]))
    inter_h = np.maximum(0.0, np.minimum(placed[:, 3], footprint[3])
                         - np.maximum(placed[:, 1], footprint[1]))
    areas = (placed[:, 2] - placed[:, 0]) * (placed[:, 3] - placed[:, 1])
    own_area = (footprint[2] - footprint[0]) * (footprint[3] - footprint[1])
    return bool((inter_w * inter_h > MAX_OVERLAP * np.minimum(areas, own_area)).any())


def _place_face(rng, height, width, image_h, footprints):
    """A FaceSpec of ``height`` placed without heavy overlap (some cut by the border), or None.

    The face's looks are drawn once; each try only draws a new position."""
    if height + 2 > min(width, image_h):
        return None
    spec = _random_face_spec(rng, 0.0, 0.0, float(height))
    extents = face_box(spec)            # relative to the centre
    half = 0.5 * height
    for _ in range(MAX_PLACEMENT_TRIES):
        if rng.random() < 0.12:         # cut by the border
            cx = float(rng.uniform(-0.35 * height, width - 1 + 0.35 * height))
            cy = float(rng.uniform(-0.35 * height, image_h - 1 + 0.35 * height))
        else:                           # inside: the box is never wider/taller than ``height``
            cx = float(rng.uniform(half + 1, width - 2 - half))
            cy = float(rng.uniform(half + 1, image_h - 2 - half))
        box = extents + (cx, cy, cx, cy)
        if _inside_fraction(box, width, image_h) < 0.45:
            continue
        pixel_box = _clipped_pixel_box(box, width, image_h)
        if min(pixel_box[2], pixel_box[3]) < 4:
            continue
        footprint = _footprint(box)
        if _overlaps_too_much(footprint, footprints):
            continue
        footprints.append(footprint)
        return dataclasses.replace(spec, cx=cx, cy=cy)
    return None


def _place_distractor(rng, width, image_h, footprints):
    """('head' | 'eye', FaceSpec giving its looks) placed without heavy overlap, or None."""
    kind = 'head' if rng.random() < 0.5 else 'eye'
    size = float(np.exp(rng.uniform(math.log(10), math.log(min(200.0, 0.5 * min(width, image_h))))))
    if kind == 'eye':
        size = min(size, 60.0)
    spec = _random_face_spec(rng, 0.0, 0.0, size)
    extents = face_box(spec)
    for _ in range(MAX_PLACEMENT_TRIES):
        cx = float(rng.uniform(0, width - 1))
        cy = float(rng.uniform(0, image_h - 1))
        footprint = _footprint(extents + (cx, cy, cx, cy))
        if not _overlaps_too_much(footprint, footprints):
            footprints.append(footprint)
            return kind, dataclasses.replace(spec, cx=cx, cy=cy)
    return None


def _draw_distractor(canvas, id_map, kind, spec, object_id, antialias=True):
    painter = _Painter(canvas, id_map, object_id, antialias)
    half_w, half_h = spec.half_axes
    if kind == 'head':   # a plain skin ellipse, maybe with hair, no features
        if spec.hair is not None:
            painter.ellipse(_to_image(spec, [0.0, -0.14])[0], (1.12 * half_w, half_h), spec.angle,
                            spec.hair)
        painter.ellipse((spec.cx, spec.cy), (half_w, half_h), spec.angle, spec.skin)
    else:                # one eye on its own
        _draw_eye(painter, (spec.cx, spec.cy), half_w, spec.angle, spec.iris)


def render_scene(rng, post_effects=True, antialias=True):
    """Draw one random scene with ``rng`` (numpy Generator): :class:`Scene`.

    ``post_effects=False`` skips the final blur and fine noise (so drawn colours stay exact);
    ``antialias=False`` draws everything aliased.
    """
    image_h, width = _sample_image_size(rng)
    canvas = _draw_background(rng, image_h, width)
    id_map = np.zeros((image_h, width), np.uint16)

    footprints = []
    heights = _sample_face_heights(rng, _sample_face_count(rng), min(image_h, width))
    specs = [spec for spec in (_place_face(rng, h, width, image_h, footprints) for h in heights)
             if spec is not None]
    distractors = [d for d in (_place_distractor(rng, width, image_h, footprints)
                               for _ in range(int(rng.integers(0, 5)))) if d is not None]
    occluded = rng.random(len(specs)) < 0.15

    # draw faces and distractors in random order; an occluder right after its face
    items = ([('face', k) for k in range(len(specs))]
             + [('distractor', k) for k in range(len(distractors))])
    for item in rng.permutation(len(items)):
        kind, k = items[item]
        if kind == 'face':
            draw_face(canvas, id_map, specs[k], k + 1, antialias)
            if occluded[k]:
                _draw_occluder(rng, canvas, id_map, specs[k], 2000 + k, antialias)
        else:
            _draw_distractor(canvas, id_map, *distractors[k], 1000 + k, antialias)

    blur_sigma = 0.0
    if post_effects:
        if rng.random() < 0.2:
            blur_sigma = float(rng.uniform(0.6, 1.6))
            canvas = cv2.GaussianBlur(canvas, (0, 0), blur_sigma)
        amplitude = float(rng.uniform(0.0, 12.0))
        canvas = _add_fine_noise(rng, canvas, amplitude)
    faces = [label_face(spec, id_map, k + 1, blur_sigma) for k, spec in enumerate(specs)]
    return Scene(image=canvas, faces=faces, specs=specs, blur_sigma=blur_sigma)
