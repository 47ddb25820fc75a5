"""Synthetic face scenes: a cluttered background, faces placed without heavy overlap and
face-like distractors, drawn by :mod:`tools.sample_data.face`; :func:`render_scene` returns the
image with the exact labels of its faces. Rules: :mod:`tools.sample_data`.
"""
import dataclasses
import math

import cv2
import numpy as np

from tools.sample_data.face import (HAIR_COLOURS, IRIS_COLOURS, SKIN_TONES, FaceSpec, Painter,
                                    blur_sigma_for, box_inside_fraction, clipped_pixel_box,
                                    draw_eye, draw_face, draw_occluder, face_box, label_face,
                                    to_image)

__all__ = ['Scene', 'render_scene', 'FACE_BLUR_LEVELS', 'OCCLUSION']

MIN_FACE_HEIGHT, MAX_FACE_HEIGHT = 8.0, 300.0
SMALL_FACE_HEIGHT = 24.0          # upper bound of the "small face" mode
SMALL_FACE_FRACTION = 0.15
MAX_FACES = 40
MAX_OVERLAP = 0.15                # intersection / smaller footprint area
FOOTPRINT_MARGIN = 0.15           # footprint = head box grown by this fraction per side
MAX_PLACEMENT_TRIES = 30
MIN_SHORT_SIDE, MAX_SHORT_SIDE, MAX_LONG_SIDE = 300, 800, 1024
ASPECT_RATIOS = (1.0, 4.0 / 3.0, 1.5, 16.0 / 9.0)

_NOISE_BANK_SIZE = MAX_LONG_SIDE + 128
_TEXT_CHARS = np.array(list('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '))
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
          cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN)


# ---------------------------------------------------------------------------------------------
# scenes
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Scene:
    """One rendered image: ``image`` (H, W, 3) uint8 BGR, ``faces`` labels and the ``specs``
    they were drawn from (same order), ``blur_sigma`` of the final blur (0 = none) and
    ``face_blur_sigmas`` (one per spec) of the blur each face got on its own (0 = none)."""
    image: np.ndarray
    faces: list
    specs: list = dataclasses.field(default_factory=list)
    blur_sigma: float = 0.0
    face_blur_sigmas: tuple = ()


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
        if box_inside_fraction(box, width, image_h) < 0.45:
            continue
        pixel_box = clipped_pixel_box(box, width, image_h)
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
    painter = Painter(canvas, id_map, object_id, antialias)
    half_w, half_h = spec.half_axes
    if kind == 'head':   # a plain skin ellipse, maybe with hair, no features
        if spec.hair is not None:
            painter.ellipse(to_image(spec, [0.0, -0.14])[0], (1.12 * half_w, half_h), spec.angle,
                            spec.hair)
        painter.ellipse((spec.cx, spec.cy), (half_w, half_h), spec.angle, spec.skin)
    else:                # one eye on its own
        draw_eye(painter, (spec.cx, spec.cy), half_w, spec.angle, spec.iris)


#: blur levels (labels) a face blurred on its own is drawn at: uniform in this range
FACE_BLUR_LEVELS = (0.3, 0.9)
#: the soft mask of a face's own blur covers its head ellipse grown by this factor (hair too)
FACE_BLUR_REACH = 1.3


def _blur_face(canvas, spec, sigma):
    """Blur ``canvas`` in place around one face: a Gaussian of ``sigma`` blended in through a
    soft elliptical mask, so the face is blurred and the rest of the scene is not."""
    half_w, half_h = spec.half_axes
    reach = FACE_BLUR_REACH * max(half_w, half_h) + 3.0 * sigma
    height, width = canvas.shape[:2]
    x1, y1 = max(0, int(spec.cx - reach)), max(0, int(spec.cy - reach))
    x2, y2 = min(width, int(math.ceil(spec.cx + reach)) + 1), \
        min(height, int(math.ceil(spec.cy + reach)) + 1)
    if x2 <= x1 or y2 <= y1:
        return
    region = canvas[y1:y2, x1:x2]
    mask = np.zeros(region.shape[:2], np.float32)
    cv2.ellipse(mask, (int(round(spec.cx - x1)), int(round(spec.cy - y1))),
                (max(1, int(round(FACE_BLUR_REACH * half_w))),
                 max(1, int(round(FACE_BLUR_REACH * half_h)))), spec.angle, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, sigma))[:, :, None]
    blurred = cv2.GaussianBlur(region, (0, 0), sigma).astype(np.float32)
    region[...] = np.clip(np.rint(mask * blurred + (1.0 - mask) * region), 0, 255).astype(np.uint8)


def _draw_face_blur(rng, canvas, specs, face_blur):
    """Blur each face on its own with probability ``face_blur``, at a level drawn uniformly in
    :data:`FACE_BLUR_LEVELS` of its label rule. Returns the (len(specs),) sigmas (0 = not
    blurred). Draws nothing from ``rng`` when ``face_blur`` is 0, so such scenes are the ones
    drawn without the option."""
    sigmas = np.zeros(len(specs))
    if face_blur <= 0 or not specs:
        return sigmas
    chosen = rng.random(len(specs)) < face_blur
    levels = rng.uniform(*FACE_BLUR_LEVELS, size=len(specs))
    for k in np.flatnonzero(chosen):
        box = face_box(specs[k])
        sigmas[k] = blur_sigma_for(levels[k], box[3] - box[1])
        _blur_face(canvas, specs[k], sigmas[k])
    return sigmas


#: share of faces that get an occluder drawn over them in the standard set
OCCLUSION = 0.15


def render_scene(rng, post_effects=True, antialias=True, face_blur=0.0, occlusion=OCCLUSION):
    """Draw one random scene with ``rng`` (numpy Generator): :class:`Scene`.

    ``post_effects=False`` skips the final blur and fine noise (so drawn colours stay exact);
    ``antialias=False`` draws everything aliased; ``face_blur`` in [0, 1] is the share of faces
    blurred on their own at a drawn level (:func:`_draw_face_blur`; 0 draws no such blur);
    ``occlusion`` in [0, 1] the share of faces with an occluder over them.
    """
    for name, share in (('face_blur', face_blur), ('occlusion', occlusion)):
        if not 0.0 <= share <= 1.0:
            raise ValueError('%s must be in [0, 1], got %r' % (name, share))
    image_h, width = _sample_image_size(rng)
    canvas = _draw_background(rng, image_h, width)
    id_map = np.zeros((image_h, width), np.uint16)

    footprints = []
    heights = _sample_face_heights(rng, _sample_face_count(rng), min(image_h, width))
    specs = [spec for spec in (_place_face(rng, h, width, image_h, footprints) for h in heights)
             if spec is not None]
    distractors = [d for d in (_place_distractor(rng, width, image_h, footprints)
                               for _ in range(int(rng.integers(0, 5)))) if d is not None]
    occluded = rng.random(len(specs)) < occlusion

    # draw faces and distractors in random order; an occluder right after its face
    items = ([('face', k) for k in range(len(specs))]
             + [('distractor', k) for k in range(len(distractors))])
    for item in rng.permutation(len(items)):
        kind, k = items[item]
        if kind == 'face':
            draw_face(canvas, id_map, specs[k], k + 1, antialias)
            if occluded[k]:
                draw_occluder(rng, canvas, id_map, specs[k], 2000 + k, antialias)
        else:
            _draw_distractor(canvas, id_map, *distractors[k], 1000 + k, antialias)

    face_sigmas = _draw_face_blur(rng, canvas, specs, face_blur)
    blur_sigma = 0.0
    if post_effects:
        if rng.random() < 0.2:
            blur_sigma = float(rng.uniform(0.6, 1.6))
            canvas = cv2.GaussianBlur(canvas, (0, 0), blur_sigma)
        amplitude = float(rng.uniform(0.0, 12.0))
        canvas = _add_fine_noise(rng, canvas, amplitude)
    # a face blurred on its own and then with the whole image: the two Gaussians compose
    faces = [label_face(spec, id_map, k + 1, math.hypot(blur_sigma, face_sigmas[k]))
             for k, spec in enumerate(specs)]
    return Scene(image=canvas, faces=faces, specs=specs, blur_sigma=blur_sigma,
                 face_blur_sigmas=tuple(float(v) for v in face_sigmas))
