"""Time of each detection option beside plain ``detect()`` on the same image, in one run.

Released mnet.25, CPU, threshold 0.5, scale 1.0. Scenes:

* ``photo``: ``bald_guys.jpg`` (a real group photo) at 1024 px wide: plain and
  ``rotations=(0, 90, 180, 270)``;
* ``frame``: a generated 1920x1080 frame filled by one face: plain, ``tiles='low-res'`` and
  ``tiles='auto'`` (which picks the low-res pass there);
* ``4k``: a generated 3840x2160 scene of tiny faces: plain, ``tiles='tiles'`` (tiles enlarged 3x)
  and ``tiles='auto'`` (tiles and the low-res pass).

Each row gives the median time and ``x_plain``, its ratio to plain ``detect()`` on that scene.

Usage: ``python -m bench.bench_options [--quick] [--scenes photo,frame,4k]``.
"""
import argparse

from bench.common import SHARED, measure, print_rows

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


def run(quick=False, scenes=SCENES):
    """Rows (see :func:`bench.common.measure`) with ``scene``, ``option``, ``faces`` and
    ``x_plain`` (median / plain median on that scene)."""
    from retinaface import RetinaFace
    detector = RetinaFace(str(SHARED / 'models' / 'mnet.25' / 'mnet.25'), 0, ctx_id=-1)
    rows = []
    for scene in scenes:
        image = scene_image(scene)
        heavy = scene == '4k'
        repeat = 1 if quick or heavy else 5
        warmup = 0 if quick and heavy else 1
        plain_ms = None
        for label, kwargs in OPTIONS[scene]:
            found = detector.detect(image, threshold=0.5, **kwargs)
            row = measure('detect %s %dx%d: %s' % (scene, image.shape[1], image.shape[0], label),
                          lambda: detector.detect(image, threshold=0.5, **kwargs),
                          repeat=repeat, warmup=warmup, scene=scene, option=label,
                          faces=len(found[0]))
            plain_ms = row['median_ms'] if plain_ms is None else plain_ms
            row['x_plain'] = round(row['median_ms'] / plain_ms, 2)
            rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='one timed call per option')
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
