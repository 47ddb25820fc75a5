"""Time of each detection option beside plain ``detect()`` on the same image, in one run.

Released mnet.25, CPU, threshold 0.5, scale 1.0. Scenes:

* ``photo``: ``bald_guys.jpg`` (a real group photo) at 1024 px wide: plain, ``quality=True``
  (the quality records), ``quality=True`` followed by ``FaceTracker.update`` (one tracker fed
  the photo frame after frame, as a still video: detection, records, matching, smoothing and
  best-shot crops of one video frame; its row also gives ``update_ms``, the tracker's share) and
  ``rotations=(0, 90, 180, 270)``;
* ``frame``: a generated 1920x1080 frame filled by one face: plain, ``tiles='low-res'`` and
  ``tiles='auto'`` (which picks the low-res pass there);
* ``4k``: a generated 3840x2160 scene of tiny faces: plain, ``tiles='tiles'`` (tiles enlarged 3x)
  and ``tiles='auto'`` (tiles and the low-res pass).

The options of a scene are timed in turn, round after round (5 rounds; 1 with ``--quick`` and
for the 4K scene, whose tiles take a minute on one CPU thread), after one untimed call each.
Each row gives the median time and ``x_plain``, its ratio to plain ``detect()`` on that scene.

Usage: ``python -m bench.bench_options [--quick] [--scenes photo,frame,4k]``.
"""
import argparse
import collections
import time

import numpy as np

from bench.common import SHARED, print_rows

SCENES = ('photo', 'frame', '4k')
ROTATIONS = (0, 90, 180, 270)
#: one timed row: ``detect(image, threshold=0.5, **kwargs)``, then with ``track`` the faces
#: fed to a FaceTracker
Option = collections.namedtuple('Option', 'label kwargs track')


def _option(label, track=False, **kwargs):
    return Option(label, kwargs, track)


#: scene -> options; the first is plain detect()
OPTIONS = {
    'photo': [_option('plain'), _option('quality=True', quality=True),
              _option('quality=True + FaceTracker.update', track=True, quality=True),
              _option('rotations=(0, 90, 180, 270)', rotations=ROTATIONS)],
    'frame': [_option('plain'), _option("tiles='low-res'", tiles='low-res'),
              _option("tiles='auto'", tiles='auto')],
    '4k': [_option('plain'), _option("tiles='tiles'", tiles='tiles'),
           _option("tiles='auto'", tiles='auto')],
}


def scene_image(name):
    """The (H, W, 3) BGR image of a scene."""
    import cv2
    import numpy as np
    from tools.sample_data.big_scenes import render_large_face_scene, render_tiny_face_scene
    if name == 'photo':
        path = SHARED / 'images' / 'bald_guys.jpg'
        image = cv2.imread(str(path))
        if image is None:
            raise FileNotFoundError('%s not found (../shared is absent)' % path)
        return cv2.resize(image, (1024, int(round(image.shape[0] * 1024 / image.shape[1]))),
                          interpolation=cv2.INTER_AREA)
    if name == 'frame':
        return render_large_face_scene(np.random.default_rng(100)).image
    if name == '4k':
        return render_tiny_face_scene(np.random.default_rng(0)).image
    raise ValueError('unknown scene %r; scenes: %s' % (name, ', '.join(SCENES)))


def _row(name, times_ms, **extra):
    """A row in :func:`bench.common.measure`'s format from per-call times in ms."""
    times = np.asarray(times_ms)
    row = {'name': name, 'median_ms': float(np.median(times)),
           'p10_ms': float(np.percentile(times, 10)), 'p90_ms': float(np.percentile(times, 90)),
           'min_ms': float(times.min()), 'repeat': int(len(times))}
    row.update(extra)
    return row


class _TimedOption(object):
    """One option on one image: each :meth:`call` runs it once and records its time (and,
    with tracking, the tracker's share and the faces it returned)."""

    def __init__(self, detector, image, option):
        from rcnn.inference.tracking import FaceTracker
        self.detector, self.image, self.option = detector, image, option
        self.tracker = FaceTracker() if option.track else None
        self.times_ms, self.update_ms = [], []
        self.faces = self.tracked = 0

    def call(self, timed=True):
        start = time.perf_counter()
        result = self.detector.detect(self.image, threshold=0.5, **self.option.kwargs)
        if self.tracker is not None:
            faces, landmarks, records = result
            update_start = time.perf_counter()
            self.tracked = len(self.tracker.update(faces, landmarks, records, image=self.image))
            update_ms = (time.perf_counter() - update_start) * 1000.0
        spent_ms = (time.perf_counter() - start) * 1000.0
        self.faces = len(result[0])
        if timed:
            self.times_ms.append(spent_ms)
            if self.tracker is not None:
                self.update_ms.append(update_ms)

    def row(self, scene, plain_ms):
        extra = {'scene': scene, 'option': self.option.label, 'faces': self.faces}
        if self.tracker is not None:
            extra.update(tracked=self.tracked,
                         update_ms=round(float(np.median(self.update_ms)), 3))
        row = _row('detect %s %dx%d: %s' % (scene, self.image.shape[1], self.image.shape[0],
                                            self.option.label), self.times_ms, **extra)
        row['x_plain'] = round(row['median_ms'] / plain_ms, 2)
        return row


def run(quick=False, scenes=SCENES):
    """Rows (see :func:`bench.common.measure`) with ``scene``, ``option``, ``faces`` and
    ``x_plain`` (median / plain median on that scene); a tracking row also has ``tracked`` (the
    faces the tracker returned on the last frame) and ``update_ms`` (median of the tracker's
    ``update`` alone).

    The options of a scene are timed in rounds, each round calling every option once in turn,
    so a change of the machine's load falls on all of them alike.
    """
    from retinaface import RetinaFace
    detector = RetinaFace(str(SHARED / 'models' / 'mnet.25' / 'mnet.25'), 0, ctx_id=-1)
    rows = []
    for scene in scenes:
        image = scene_image(scene)
        options = [_TimedOption(detector, image, option) for option in OPTIONS[scene]]
        rounds = 1 if quick or scene == '4k' else 5
        # the first call of each option binds the network for its shapes (and gives a tracker
        # its first frame): not timed
        for option in options:
            option.call(timed=False)
        for _ in range(rounds):
            for option in options:
                option.call()
        plain_ms = float(np.median(options[0].times_ms))
        rows.extend(option.row(scene, plain_ms) for option in options)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='one round (one timed call per '
                        'option)')
    parser.add_argument('--scenes', default=','.join(SCENES),
                        help='comma-separated scenes from %s (default: all)' % ', '.join(SCENES))
    args = parser.parse_args(argv)
    scenes = [s for s in args.scenes.split(',') if s]
    unknown = [s for s in scenes if s not in SCENES]
    if unknown:
        parser.error('--scenes: unknown %s; choose from %s' % (', '.join(unknown),
                                                              ', '.join(SCENES)))
    print_rows(run(args.quick, scenes))
    return 0


if __name__ == '__main__':
    import sys
    sys.exit(main())
