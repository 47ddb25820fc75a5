"""Time of each detection option beside plain ``detect()`` on the same image, in one run.

Released mnet.25, CPU, threshold 0.5, scale 1.0. Scenes:

* ``photo``: ``bald_guys.jpg`` (a real group photo) at 1024 px wide: plain and
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
import time

import numpy as np

from bench.common import SHARED, print_rows

SCENES = ('photo', 'frame', '4k')
ROTATIONS = (0, 90, 180, 270)
#: scene -> [(option label, detect() keyword arguments)]; the first is plain detect()
OPTIONS = {
    'photo': [('plain', {}), ('rotations=(0, 90, 180, 270)', {'rotations': ROTATIONS})],
    'frame': [('plain', {}), ("tiles='low-res'", {'tiles': 'low-res'}),
              ("tiles='auto'", {'tiles': 'auto'})],
    '4k': [('plain', {}), ("tiles='tiles'", {'tiles': 'tiles'}),
           ("tiles='auto'", {'tiles': 'auto'})],
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


def run(quick=False, scenes=SCENES):
    """Rows (see :func:`bench.common.measure`) with ``scene``, ``option``, ``faces`` and
    ``x_plain`` (median / plain median on that scene).

    The options of a scene are timed in rounds, each round calling every option once in turn,
    so a change of the machine's load falls on all of them alike.
    """
    from retinaface import RetinaFace
    detector = RetinaFace(str(SHARED / 'models' / 'mnet.25' / 'mnet.25'), 0, ctx_id=-1)
    rows = []
    for scene in scenes:
        image = scene_image(scene)
        options = OPTIONS[scene]
        rounds = 1 if quick or scene == '4k' else 5
        # the first call of each option binds the network for its shapes: not timed
        faces = [len(detector.detect(image, threshold=0.5, **kwargs)[0])
                 for _, kwargs in options]
        times = [[] for _ in options]
        for _ in range(rounds):
            for spent, (_, kwargs) in zip(times, options):
                start = time.perf_counter()
                detector.detect(image, threshold=0.5, **kwargs)
                spent.append((time.perf_counter() - start) * 1000.0)
        plain_ms = float(np.median(times[0]))
        for (label, _), spent, count in zip(options, times, faces):
            row = _row('detect %s %dx%d: %s' % (scene, image.shape[1], image.shape[0], label),
                       spent, scene=scene, option=label, faces=count)
            row['x_plain'] = round(row['median_ms'] / plain_ms, 2)
            rows.append(row)
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
