"""Short synthetic video sequences with known face identities per frame, for tracking tests.

Each sequence has one static cluttered background (the scene generator's) and a few faces
("actors") drawn by the sample-set face painter, each with a fixed appearance and a straight
path at constant velocity, a slowly growing or shrinking size and a yaw that swings slowly.
Actors are drawn back to front in list order, so a later actor hides an earlier one where they
overlap. Kinds (:data:`SEQUENCE_KINDS`):

* ``moving``: three faces moving inside the frame in random directions, each in its own third;
* ``entering``: one face present throughout, two entering across the left and right borders;
* ``leaving``: two faces leaving across the right and top borders, one staying;
* ``crossing``: two faces on one horizontal line moving towards each other, the second passing
  in front of the first, plus a static third face.

Ground truth per frame (:class:`FrameTruth`): a face counts when its clipped box is at least
:data:`MIN_SIDE` px on each side, at least :data:`MIN_INSIDE` of its head box lies inside the
frame and at least :data:`MIN_VISIBLE` of its head pixels (head and hair, counted on the
object-id map) are not covered by a face in front. A face hidden behind another for a few
frames is therefore absent from those frames' truth and present again, with the same identity,
when it reappears.

Everything draws from ``numpy.random.default_rng(SeedSequence([seed, kind index]))``, so a seed
gives the same frames.
"""
import dataclasses
import math
import os

import cv2
import numpy as np

from tools.sample_data.face import (HAIR_COLOURS, IRIS_COLOURS, SKIN_TONES, FaceSpec,
                                    box_inside_fraction, draw_face, face_box, face_landmarks)
from tools.sample_data.scene import _draw_background

__all__ = ['SEQUENCE_KINDS', 'FRAME_SIZE', 'MIN_SIDE', 'MIN_INSIDE', 'MIN_VISIBLE', 'Actor',
           'FrameTruth', 'Sequence', 'make_sequence', 'render_frame', 'write_sequence',
           'read_mot_ground_truth']

SEQUENCE_KINDS = ('moving', 'entering', 'leaving', 'crossing')
FRAME_SIZE = (480, 360)           # width, height
NUM_FRAMES = 40
FPS = 10.0
MIN_SIDE = 8
MIN_INSIDE = 0.5
MIN_VISIBLE = 0.5
#: per-frame pixel noise amplitude (so consecutive frames are not identical)
NOISE_AMPLITUDE = 4


@dataclasses.dataclass(frozen=True)
class Actor:
    """One face of a sequence: ``spec`` at frame 0, moved by ``velocity`` (px/frame), its height
    multiplied by ``growth`` per frame, its yaw swinging by ``yaw_swing`` over a period of
    ``yaw_period`` frames; present in frames ``first <= t < last``."""
    identity: int
    spec: FaceSpec
    velocity: tuple
    growth: float = 1.0
    yaw_swing: float = 0.0
    yaw_period: float = 30.0
    first: int = 0
    last: int = 10 ** 9

    def at(self, t):
        """The actor's :class:`FaceSpec` in frame ``t``."""
        yaw = self.spec.yaw + self.yaw_swing * math.sin(2 * math.pi * t / self.yaw_period)
        return dataclasses.replace(
            self.spec, cx=self.spec.cx + self.velocity[0] * t,
            cy=self.spec.cy + self.velocity[1] * t, height=self.spec.height * self.growth ** t,
            yaw=float(np.clip(yaw, -0.8, 0.8)))


@dataclasses.dataclass
class FrameTruth:
    """The faces that count in one frame: ``identities`` (K,) int64, ``boxes`` (K, 4) float64
    x1 y1 x2 y2 clipped to the frame, ``landmarks`` (K, 5, 2) float64, ``visible`` (K,) share
    of each face's head pixels not covered by a face in front."""
    frame: int
    identities: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    visible: np.ndarray


@dataclasses.dataclass
class Sequence:
    """A rendered sequence: ``frames`` list of (H, W, 3) uint8 BGR, ``truth`` one
    :class:`FrameTruth` per frame."""
    name: str
    kind: str
    actors: list
    frames: list
    truth: list
    fps: float = FPS


def _appearance(rng):
    skin = np.clip(SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.uniform(-12, 12, 3), 0, 255)
    return {'skin': tuple(skin), 'hair': tuple(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]),
            'hair_style': int(rng.integers(2)),
            'iris': tuple(IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]),
            'aspect': float(rng.uniform(1.15, 1.35))}


def _actor(rng, identity, cx, cy, height, velocity, **kwargs):
    spec = FaceSpec(cx=float(cx), cy=float(cy), height=float(height),
                    angle=float(rng.uniform(-10, 10)), yaw=float(rng.uniform(-0.3, 0.3)),
                    **_appearance(rng))
    return Actor(identity=identity, spec=spec, velocity=tuple(float(v) for v in velocity),
                 yaw_swing=float(rng.uniform(0.1, 0.35)), yaw_period=float(rng.uniform(20, 40)),
                 **kwargs)


def _actors(kind, rng, width, height, num_frames):
    """The actors of one sequence kind (identities 1, 2, 3)."""
    heights = rng.uniform(75, 105, size=3)
    if kind == 'moving':
        actors = []
        for k, (cx, cy) in enumerate(((0.2, 0.35), (0.5, 0.65), (0.8, 0.35))):
            start = np.array([cx * width, cy * height])
            # a target in the face's own third of the frame: the paths stay inside the frame
            # and apart (crossings are the crossing kind's)
            target = np.array([(cx + rng.uniform(-0.08, 0.08)) * width,
                               rng.uniform(0.3, 0.7) * height])
            actors.append(_actor(rng, k + 1, *start, heights[k], (target - start) / num_frames,
                                 growth=float(rng.uniform(0.995, 1.008))))
        return actors
    if kind == 'entering':
        speed = width * 0.9 / num_frames
        return [_actor(rng, 1, 0.5 * width, 0.5 * height, heights[0], (0.0, 0.3)),
                _actor(rng, 2, -0.6 * heights[1], 0.3 * height, heights[1], (speed, 0.0),
                       first=int(0.1 * num_frames)),
                _actor(rng, 3, width + 0.6 * heights[2], 0.7 * height, heights[2], (-speed, 0.0),
                       first=int(0.3 * num_frames))]
    if kind == 'leaving':
        speed = width * 0.8 / num_frames
        return [_actor(rng, 1, 0.25 * width, 0.6 * height, heights[0], (0.3, 0.0)),
                _actor(rng, 2, 0.55 * width, 0.35 * height, heights[1], (speed, 0.0)),
                _actor(rng, 3, 0.8 * width, 0.55 * height, heights[2],
                       (0.0, -height * 1.2 / num_frames))]
    if kind == 'crossing':
        speed = width * 0.75 / num_frames
        cy = 0.45 * height
        return [_actor(rng, 1, 0.12 * width, cy, heights[0], (speed, 0.15)),
                _actor(rng, 2, 0.88 * width, cy + 6, heights[1], (-speed, -0.15)),
                _actor(rng, 3, 0.5 * width, 0.82 * height, 0.8 * heights[2], (0.0, 0.0))]
    raise ValueError('unknown sequence kind %r; choose from %s'
                     % (kind, ', '.join(SEQUENCE_KINDS)))


def _own_pixels(spec, shape):
    """How many frame pixels ``spec`` covers when drawn alone."""
    id_map = np.zeros(shape, np.uint16)
    draw_face(np.zeros(shape + (3,), np.uint8), id_map, spec, 1, antialias=False)
    return int(np.count_nonzero(id_map))


def render_frame(background, actors, t, rng=None):
    """Frame ``t`` of a sequence: the image and its :class:`FrameTruth`.

    Args:
        background: (H, W, 3) uint8 BGR.
        actors: list of :class:`Actor`, back to front.
        rng: a numpy Generator for the pixel noise (None: no noise).
    """
    height, width = background.shape[:2]
    canvas = background.copy()
    id_map = np.zeros((height, width), np.uint16)
    present = [a for a in actors if a.first <= t < a.last]
    specs = [a.at(t) for a in present]
    for actor, spec in zip(present, specs):
        draw_face(canvas, id_map, spec, actor.identity)
    if rng is not None and NOISE_AMPLITUDE:
        noise = rng.integers(-NOISE_AMPLITUDE, NOISE_AMPLITUDE + 1, size=canvas.shape)
        canvas = np.clip(canvas.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    ids, boxes, points, visible = [], [], [], []
    for actor, spec in zip(present, specs):
        exact = face_box(spec)
        own = _own_pixels(spec, (height, width))
        shown = int(np.count_nonzero(id_map == actor.identity))
        box = np.array([max(0.0, exact[0]), max(0.0, exact[1]), min(width - 1.0, exact[2]),
                        min(height - 1.0, exact[3])])
        fraction = shown / own if own else 0.0
        if (min(box[2] - box[0], box[3] - box[1]) >= MIN_SIDE
                and box_inside_fraction(exact, width, height) >= MIN_INSIDE
                and fraction >= MIN_VISIBLE):
            ids.append(actor.identity)
            boxes.append(box)
            points.append(face_landmarks(spec))
            visible.append(fraction)
    truth = FrameTruth(frame=t, identities=np.array(ids, np.int64),
                       boxes=np.array(boxes, np.float64).reshape(-1, 4),
                       landmarks=np.array(points, np.float64).reshape(-1, 5, 2),
                       visible=np.array(visible, np.float64))
    return canvas, truth


def make_sequence(kind, seed=0, num_frames=NUM_FRAMES, size=FRAME_SIZE):
    """Render one sequence of ``kind`` (see :data:`SEQUENCE_KINDS`): :class:`Sequence`."""
    if kind not in SEQUENCE_KINDS:
        raise ValueError('unknown sequence kind %r; choose from %s'
                         % (kind, ', '.join(SEQUENCE_KINDS)))
    if int(num_frames) < 2:
        raise ValueError('num_frames must be at least 2, got %r' % (num_frames,))
    width, height = int(size[0]), int(size[1])
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), SEQUENCE_KINDS.index(kind)]))
    background = _draw_background(rng, height, width)
    actors = _actors(kind, rng, width, height, int(num_frames))
    frames, truth = [], []
    for t in range(int(num_frames)):
        image, frame_truth = render_frame(background, actors, t, rng)
        frames.append(image)
        truth.append(frame_truth)
    return Sequence(name='%s_%d' % (kind, seed), kind=kind, actors=actors, frames=frames,
                    truth=truth)


def write_sequence(sequence, folder, video=False):
    """Write ``folder/<name>/frame_%04d.png`` and ``folder/<name>/gt.txt`` (MOTChallenge
    lines ``frame, id, x, y, w, h, 1, -1, -1, -1``, frames from 1); with ``video`` also
    ``folder/<name>.avi`` (MJPEG). Returns the sequence folder."""
    out = os.path.join(folder, sequence.name)
    os.makedirs(out, exist_ok=True)
    for t, image in enumerate(sequence.frames):
        if not cv2.imwrite(os.path.join(out, 'frame_%04d.png' % t), image):
            raise OSError('cannot write %s' % os.path.join(out, 'frame_%04d.png' % t))
    with open(os.path.join(out, 'gt.txt'), 'w') as f:
        for truth in sequence.truth:
            for identity, box in zip(truth.identities, truth.boxes):
                f.write('%d,%d,%.2f,%.2f,%.2f,%.2f,1,-1,-1,-1\n' % (
                    truth.frame + 1, identity, box[0], box[1], box[2] - box[0], box[3] - box[1]))
    if video:
        height, width = sequence.frames[0].shape[:2]
        writer = cv2.VideoWriter(os.path.join(folder, sequence.name + '.avi'),
                                 cv2.VideoWriter_fourcc(*'MJPG'), sequence.fps, (width, height))
        for image in sequence.frames:
            writer.write(image)
        writer.release()
    return out


def read_mot_ground_truth(path):
    """``{frame (0-based): (identities (K,) int64, boxes (K, 4) float64 x1 y1 x2 y2)}`` from a
    MOTChallenge ``gt.txt`` as :func:`write_sequence` writes it.

    Raises:
        ValueError naming the file and line for a line that is not 10 numbers.
    """
    rows = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                values = [float(v) for v in line.split(',')]
            except ValueError:
                values = []
            if len(values) != 10:
                raise ValueError('%s:%d: expected 10 comma-separated numbers (MOTChallenge '
                                 'frame, id, x, y, w, h, ...), got %r' % (path, number,
                                                                          line.strip()))
            frame, identity, x, y, w, h = values[:6]
            rows.setdefault(int(frame) - 1, []).append((int(identity), [x, y, x + w, y + h]))
    return {frame: (np.array([r[0] for r in items], np.int64),
                    np.array([r[1] for r in items], np.float64).reshape(-1, 4))
            for frame, items in rows.items()}
