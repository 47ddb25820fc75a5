"""The sample-set generator: synthetic face scenes and the WIDER-format data set built from them.

Not part of the ``rcnn`` library: used by ``tools/make_sample_data.py``, ``tools/demo.py`` and the
tests. Modules: :mod:`tools.sample_data.face` (one face: geometry, drawing, exact labels),
:mod:`tools.sample_data.scene` (one image: background, placement, distractors) and
:mod:`tools.sample_data.dataset` (the data set on disk).

WIDER FACE cannot ship with the project, so this package draws a data set whose labels are
exact by construction and writes it in the layout the real data uses::

    <out>/train/images/<event>/<name>.jpg   <out>/train/label.txt   (boxes, 5 landmarks, blur)
    <out>/val/images/<event>/<name>.jpg     <out>/val/label.txt     (boxes only)
    <out>/val/gt/wider_{face,easy,medium,hard}_val.mat              (official evaluation format)

Scenes
    A cluttered background (a smooth colour field, blotchy and fine noise, random shapes and
    text) of short side 300..800 px and long side up to 1024 px, then 0..40 faces and a few
    face-like distractors (plain skin ellipses, lone eyes) that are *not* faces. A face is a
    skin-toned head ellipse (in-plane rotation within +-20 deg, height/width 1.12..1.40) with
    optional hair drawn behind it, two eyes (sclera, iris, pupil), a nose ending in a darker
    tip, and a mouth (lips plus a slit between the two corners); some faces get an occluder
    drawn over them (the share ``occlusion``, 0.15 by default), some are cut by the image
    border. Face heights run from 8 to 300 px, log-uniform between bounds that shrink with the
    number of faces, so most images hold a few mid-sized or large faces and crowds hold small
    ones; about 15% of faces are small (8..24 px). Faces and distractors are placed so that
    two footprints (box + 15% margin) never overlap by more than 15% of the smaller one.

Labels (exact by construction)
    * box: the tight box of the rotated head ellipse (hair excluded), widened to whole pixels
      (``floor`` of the left/top bound, ``ceil`` of the right/bottom one), clipped to the image
      and written as ``x y w h`` with ``x2 = x + w``, ``y2 = y + h`` (``x + w <= W - 1``).
    * landmarks, in RetinaFace/WIDER order: 0 = eye on the image's left, 1 = eye on the
      image's right, 2 = nose tip, 3 / 4 = mouth corner on the image's left / right; each the
      exact drawn point (pupil centre, nose-tip centre, pointed ends of the mouth slit).
      Flag 0.0 = visible, 1.0 = not visible: a point counts as visible when the 3x3 pixels
      around it still belong to its face after everything else was drawn (occluders, other
      faces, distractors). Faces under
      :data:`LANDMARK_MIN_HEIGHT` px tall or with a point outside the image get ``-1 -1 -1``
      for all five points.
    * blur: ``-1`` for faces without landmarks, else ``0.2 + 0.7 * min(1, 10 * sigma / h)``
      rounded to 2 decimals, where ``sigma`` is the Gaussian blur applied to the whole image
      (0 for about 80% of the images) and ``h`` the face height: higher means blurrier. With
      ``face_blur`` > 0 (``make_sample_data.py --face-blur``) that share of the faces is also
      blurred on its own, at a level drawn uniformly in 0.3..0.9 whose sigma the rule gives
      back, blended in through a soft mask over the face; the two blurs compose
      (``sigma = hypot(scene sigma, face sigma)``). The default 0 draws no such blur.

Evaluation settings (by size; nested, hard >= medium >= easy), from the clipped label box
    * hard:   ``min(w, h) >= 6``
    * medium: hard and ``h >= 24``, at least 50% of the head box inside the image and at most
      3 of the 5 landmark points occluded
    * easy:   medium and ``h >= 50``, at least 75% of the head box inside the image and at most
      1 landmark point occluded
    ``wider_face_val.mat`` also carries the official per-face attribute lists (blur,
    expression, illumination, invalid, occlusion, pose as uint8 codes) derived from the same
    quantities, so the files have exactly the official keys, shapes and dtypes.

Determinism
    Image ``i`` of split ``s`` draws everything from ``numpy.random.default_rng(
    SeedSequence([seed, split_code, i]))`` and is written with a fixed JPEG quality, so the same
    seed gives the same bytes for every image, label file and ``.mat`` file (whose header text
    is fixed instead of scipy's creation time), with any number of worker processes.
"""
from tools.sample_data.dataset import (EVENTS, GENERATOR_NAME, MARKER_NAME,  # noqa: F401
                                       format_train_line, format_val_line, image_name, image_rng,
                                       make_sample_dataset, write_wider_mat_files)
from tools.sample_data.face import (LANDMARK_MIN_HEIGHT, MOUTH_SLIT_COLOUR,  # noqa: F401
                                    PUPIL_COLOUR, SETTING_RULES, SETTINGS, FaceLabel, FaceSpec,
                                    blur_score, draw_face, ellipse_bounds, face_box,
                                    face_landmarks, label_face, settings_description)
from tools.sample_data.scene import Scene, render_scene  # noqa: F401

__all__ = ['EVENTS', 'SETTINGS', 'LANDMARK_MIN_HEIGHT', 'SETTING_RULES', 'FaceSpec',
           'FaceLabel', 'Scene', 'ellipse_bounds', 'face_box', 'face_landmarks', 'draw_face',
           'label_face', 'render_scene', 'image_rng', 'make_sample_dataset',
           'image_name', 'blur_score', 'format_train_line', 'format_val_line',
           'write_wider_mat_files', 'settings_description', 'PUPIL_COLOUR', 'MOUTH_SLIT_COLOUR',
           'MARKER_NAME', 'GENERATOR_NAME']
