"""Scenes for the detection options: 4K images crowded with tiny faces, frames filled by one
face, and turned copies of any scene; exact labels as :mod:`tools.sample_data.scene`.

* :func:`render_tiny_face_scene`: a 3840x2160 cluttered background (the sample set's) holding
  faces of ``tiny_heights`` pixels (under 16 by default) on a jittered grid, far enough apart
  that no two footprints touch, plus a few mid-sized faces;
* :func:`render_large_face_scene`: a 1920x1080 frame with one face whose height is a fraction
  (0.6 to 0.95 by default) of the frame's height;
* :func:`rotate_scene`: a scene's image turned counterclockwise by 90, 180 or 270 degrees
  (``np.rot90``, exact) with its face boxes turned alike; :func:`rotated_val_scene` does it to
  an image of the sample set's val split.

Labels are ``x1 y1 x2 y2`` boxes (``x2 = x + w`` of the sample set's ``x y w h``), in the
pixel-index convention of the detector's flip and rotation (pixel ``x`` of a ``W`` wide image
mirrors to ``W - 1 - x``). Every scene is drawn from a numpy ``Generator`` alone, so a seed gives
the same image.
"""
import dataclasses
import math

import numpy as np

from tools.sample_data.face import draw_face, face_box, label_face
from tools.sample_data.scene import _add_fine_noise, _draw_background, _random_face_spec

__all__ = ['BigScene', 'TINY_FACE_HEIGHTS', 'render_tiny_face_scene', 'render_large_face_scene',
           'rotate_scene', 'rotate_boxes', 'rotated_val_scene', 'label_boxes']

#: head heights of the tiny faces, pixels (faces "under 16 px")
TINY_FACE_HEIGHTS = (9.0, 15.5)


@dataclasses.dataclass
class BigScene:
    """``image`` (H, W, 3) uint8 BGR; ``boxes`` (N, 4) float64 x1 y1 x2 y2 of its faces;
    ``tiny`` (N,) bool, the face is one of the tiny ones; ``angle``: degrees the scene was
    turned counterclockwise (0 for a drawn one)."""
    image: np.ndarray
    boxes: np.ndarray
    tiny: np.ndarray
    angle: int = 0


def label_boxes(labels):
    """(N, 4) float64 x1 y1 x2 y2 of :class:`tools.sample_data.face.FaceLabel` boxes."""
    if not labels:
        return np.zeros((0, 4))
    xywh = np.array([face.box for face in labels], dtype=np.float64)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:4]], axis=1)


def _draw(rng, canvas, specs):
    """Draw ``specs`` on ``canvas`` (in place); their labels after all are drawn."""
    id_map = np.zeros(canvas.shape[:2], np.uint16)
    for k, spec in enumerate(specs):
        draw_face(canvas, id_map, spec, k + 1)
    return [label_face(spec, id_map, k + 1) for k, spec in enumerate(specs)]


def _finish(rng, canvas):
    """The sample set's fine noise, on a canvas of any size (applied in blocks the noise bank
    covers)."""
    amplitude = float(rng.uniform(0.0, 8.0))
    block = 1024
    for y in range(0, canvas.shape[0], block):
        for x in range(0, canvas.shape[1], block):
            view = canvas[y:y + block, x:x + block]
            view[...] = _add_fine_noise(rng, view, amplitude)
    return canvas


def render_tiny_face_scene(rng, width=3840, height=2160, tiny_heights=TINY_FACE_HEIGHTS,
                           cell=96, medium_faces=6):
    """A big cluttered scene full of tiny faces: :class:`BigScene`.

    Args:
        rng: numpy Generator.
        width, height: image size in pixels.
        tiny_heights: (low, high) head heights of the tiny faces, drawn log-uniformly.
        cell: grid pitch of the tiny faces in pixels (one face per cell, jittered inside it).
        medium_faces: mid-sized faces (40 to 120 px) placed in free grid cells.
    """
    canvas = _draw_background(rng, height, width)
    cols, rows = width // cell, height // cell
    cells = rng.permutation(rows * cols)
    medium_cells = set(int(c) for c in cells[:medium_faces]) if medium_faces else set()
    specs, tiny = [], []
    low, high = math.log(tiny_heights[0]), math.log(tiny_heights[1])
    for index in range(rows * cols):
        row, col = divmod(index, cols)
        if index in medium_cells:
            continue
        size = float(np.exp(rng.uniform(low, high)))
        jitter = 0.5 * cell - size
        cx = (col + 0.5) * cell + float(rng.uniform(-jitter, jitter))
        cy = (row + 0.5) * cell + float(rng.uniform(-jitter, jitter))
        specs.append(_random_face_spec(rng, cx, cy, size))
        tiny.append(True)
    for index in sorted(medium_cells):
        row, col = divmod(index, cols)
        size = float(rng.uniform(40.0, 120.0))
        cx = float(np.clip((col + 0.5) * cell, size, width - size))
        cy = float(np.clip((row + 0.5) * cell, size, height - size))
        specs.append(_random_face_spec(rng, cx, cy, size))
        tiny.append(False)
    # the medium faces are drawn last, over any tiny face they cover; those are not counted
    labels = _draw(rng, canvas, specs)
    boxes = label_boxes(labels)
    tiny = np.array(tiny, dtype=bool)
    covered = _covered_by(boxes, ~tiny)
    keep = ~(tiny & covered)
    return BigScene(_finish(rng, canvas), boxes[keep], tiny[keep])


def _covered_by(boxes, covering):
    """(N,) bool: the box overlaps one of the boxes flagged ``covering`` (itself excepted)."""
    out = np.zeros(len(boxes), dtype=bool)
    for k in np.nonzero(covering)[0]:
        big = boxes[k]
        hit = ((boxes[:, 0] < big[2]) & (boxes[:, 2] > big[0]) & (boxes[:, 1] < big[3])
               & (boxes[:, 3] > big[1]))
        hit[k] = False
        out |= hit
    return out


def render_large_face_scene(rng, width=1920, height=1080, fractions=(0.6, 0.95)):
    """A frame filled by one face: :class:`BigScene` (``tiny`` all False).

    The head's height is a fraction, drawn uniformly from ``fractions``, of the frame's
    height; the whole head box lies inside the frame.
    """
    canvas = _draw_background(rng, height, width)
    size = float(rng.uniform(*fractions)) * height
    spec = _random_face_spec(rng, 0.0, 0.0, size)
    spec = dataclasses.replace(spec, angle=float(rng.uniform(-10, 10)))
    extents = face_box(spec)
    cx = float(rng.uniform(-extents[0] + 1, width - 2 - extents[2]))
    cy = float(rng.uniform(-extents[1] + 1, height - 2 - extents[3]))
    spec = dataclasses.replace(spec, cx=cx, cy=cy)
    labels = _draw(rng, canvas, [spec])
    return BigScene(_finish(rng, canvas), label_boxes(labels), np.zeros(1, dtype=bool))


def rotate_boxes(boxes, angle, height, width):
    """x1 y1 x2 y2 boxes of a ``width x height`` image -> boxes of the image turned
    counterclockwise by ``angle`` (``np.rot90(image, angle // 90)``, which takes pixel (x, y) to
    (y, W - 1 - x) for 90, (W - 1 - x, H - 1 - y) for 180, (H - 1 - y, x) for 270)."""
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    if angle == 0:
        return boxes.copy()
    if angle == 90:
        turned = (y1, width - 1 - x2, y2, width - 1 - x1)
    elif angle == 180:
        turned = (width - 1 - x2, height - 1 - y2, width - 1 - x1, height - 1 - y1)
    elif angle == 270:
        turned = (height - 1 - y2, x1, height - 1 - y1, x2)
    else:
        raise ValueError('angle must be 0, 90, 180 or 270, got %r' % (angle,))
    return np.stack(turned, axis=1)


def rotate_scene(image, boxes, angle):
    """(turned image, turned boxes) of an image with x1 y1 x2 y2 face ``boxes``."""
    height, width = image.shape[:2]
    turned = np.ascontiguousarray(np.rot90(image, angle // 90)) if angle else image
    return turned, rotate_boxes(np.asarray(boxes, dtype=np.float64), angle, height, width)


def rotated_val_scene(seed, index, angle):
    """Val image ``index`` of the sample set drawn with ``seed``, turned counterclockwise by
    ``angle``: :class:`BigScene` (``tiny``: faces under 16 px tall)."""
    from tools.sample_data.dataset import image_rng
    from tools.sample_data.scene import render_scene
    scene = render_scene(image_rng(seed, 'val', index))
    boxes = label_boxes(scene.faces)
    tiny = (boxes[:, 3] - boxes[:, 1]) < 16
    image, turned = rotate_scene(scene.image, boxes, angle)
    return BigScene(image, turned, tiny, int(angle))
