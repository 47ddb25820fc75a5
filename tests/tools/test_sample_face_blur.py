"""Faces blurred on their own at known levels (``face_blur``): the pixels are the Gaussian the
label names, sharpness falls as the label rises, and the option leaves the standard set alone."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from scipy.stats import spearmanr

from conftest import ROOT
from tools.sample_data import (FaceSpec, blur_score, draw_face, face_box, image_rng,
                               make_sample_dataset, render_scene)
from tools.sample_data.face import blur_sigma_for
from tools.sample_data.scene import FACE_BLUR_LEVELS, _blur_face

SKIN = (120, 165, 215)


def test_sigma_is_the_inverse_of_the_label_rule():
    # blur_score: 0.2 + 0.7 * min(1, 10 * sigma / h); a 100 px face at label 0.55 -> sigma 5
    assert blur_sigma_for(0.55, 100.0) == pytest.approx(5.0)
    for level in (0.3, 0.47, 0.9):
        for height in (20.0, 64.0, 250.0):
            assert blur_score(blur_sigma_for(level, height), height) == pytest.approx(level)


def test_the_face_gets_the_gaussian_and_the_rest_stays():
    canvas = np.zeros((400, 600, 3), np.uint8)
    canvas[:, :, 0] = np.arange(600, dtype=np.uint8)[None, :] % 256     # a ramp and stripes
    canvas[::7, :, 1] = 255
    spec = FaceSpec(cx=200.0, cy=200.0, height=120.0, skin=SKIN)
    draw_face(canvas, None, spec, 1)
    original = canvas.copy()
    sigma = 4.0
    _blur_face(canvas, spec, sigma)
    whole = cv2.GaussianBlur(original, (0, 0), sigma)
    # the face's middle is the whole-image Gaussian of the same sigma (mask 1 there)
    middle = (slice(170, 231), slice(175, 226))
    assert np.abs(canvas[middle].astype(int) - whole[middle].astype(int)).max() <= 1
    # far from the face (beyond its reach) nothing changed
    assert (canvas[:, 400:] == original[:, 400:]).all()
    assert (canvas[:, :200 - 150] == original[:, :200 - 150]).all()


def _face_sharpness(image, face):
    """Mean absolute Laplacian inside the middle of a labelled face box (the drawn features:
    eyes, nose, mouth), per unit of the face's height so big and small faces compare."""
    x, y, w, h = (int(v) for v in face.box)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float64)
    inner = grey[y + h // 5:y + h - h // 5, x + w // 5:x + w - w // 5]
    return float(np.abs(cv2.Laplacian(inner, cv2.CV_64F)).mean()) * h


def test_labels_rise_as_the_drawn_faces_lose_sharpness():
    """Over generated scenes, the labelled blur of faces blurred on their own ranks against an
    independent sharpness measure of their pixels: the blurrier the label, the flatter the face."""
    labels, sharpness, own = [], [], []
    for index in range(12):
        scene = render_scene(image_rng(3, 'train', index), post_effects=False, face_blur=0.6)
        for face, spec, sigma in zip(scene.faces, scene.specs, scene.face_blur_sigmas):
            height = face_box(spec)[3] - face_box(spec)[1]
            if face.blur < 0 or height < 40 or face.occluded_points or face.inside_fraction < 1:
                continue
            labels.append(face.blur)
            sharpness.append(_face_sharpness(scene.image, face))
            own.append(sigma > 0)
    labels, own = np.array(labels), np.array(own)
    assert own.sum() >= 8 and (~own).sum() >= 8, (own.sum(), (~own).sum())
    # faces not blurred on their own keep the label of the unblurred scene; the others lie in
    # the drawn range
    assert (labels[~own] == 0.2).all()
    assert ((labels[own] >= FACE_BLUR_LEVELS[0] - 0.005)
            & (labels[own] <= FACE_BLUR_LEVELS[1] + 0.005)).all()
    assert spearmanr(labels, sharpness)[0] < -0.6


def test_without_the_option_the_scenes_are_the_standard_ones():
    for index in range(4):
        standard = render_scene(image_rng(0, 'val', index))
        blurred = render_scene(image_rng(0, 'val', index), face_blur=1.0)
        assert standard.face_blur_sigmas == (0.0,) * len(standard.specs)
        # the same faces are placed (placement is drawn before any blur) ...
        assert [f.box.tolist() for f in standard.faces] == [f.box.tolist() for f in blurred.faces]
        # ... and with face_blur=1 every labelled one is blurred on its own
        labelled = [f.blur >= 0 for f in blurred.faces]
        assert all(s > 0 for s, keep in zip(blurred.face_blur_sigmas, labelled) if keep)


def test_the_data_set_records_the_share_and_refuses_a_bad_one(tmp_path):
    summary = make_sample_dataset(tmp_path / 'set', n_train=2, n_val=1, seed=0, progress=False,
                                  face_blur=0.5)
    marker = json.loads((tmp_path / 'set' / 'sample_set.json').read_text())
    assert marker['face_blur'] == 0.5 and summary['images'] == {'train': 2, 'val': 1}
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match='face_blur'):
            make_sample_dataset(tmp_path / 'other', n_train=1, n_val=0, progress=False,
                                face_blur=bad)
    # the demo does not take such a set for the standard one it would draw
    from tools.demo import sample_set_ready
    assert not sample_set_ready(str(tmp_path / 'set'), 2, 1, 0)


def test_cli_flag():
    script = str(ROOT / 'tools' / 'make_sample_data.py')
    help_text = subprocess.run([sys.executable, script, '--help'], capture_output=True,
                               text=True, check=True).stdout
    assert '--face-blur' in help_text and '(default: 0.0)' in help_text
    bad = subprocess.run([sys.executable, script, '--face-blur', '2'], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and '--face-blur' in bad.stderr and 'Traceback' not in bad.stderr


def test_a_marker_without_the_shares_is_a_standard_sets(tmp_path):
    from tools.sample_data.dataset import STANDARD_DRAWING, read_marker
    assert read_marker(str(tmp_path)) is None
    (tmp_path / 'sample_set.json').write_text(json.dumps({'seed': 4, 'train': 2, 'val': 1}))
    assert read_marker(str(tmp_path)) == dict(STANDARD_DRAWING, seed=4, train=2, val=1)
    assert STANDARD_DRAWING == {'face_blur': 0.0, 'occlusion': 0.15}
    (tmp_path / 'sample_set.json').write_text('{not json')
    with pytest.raises(ValueError, match=r'sample_set\.json: not a sample-set marker'):
        read_marker(str(tmp_path))
