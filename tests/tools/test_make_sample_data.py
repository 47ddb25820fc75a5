"""The synthetic WIDER-format sample set: drawn pixels vs labels, file formats, determinism."""
import hashlib
import math
import importlib
import importlib.util
import re
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import scipy.io as sio

from conftest import ROOT, shared_path
import tools.sample_data as synthetic
from tools.sample_data import (PUPIL_COLOUR, MOUTH_SLIT_COLOUR, FaceSpec, draw_face, face_box,
                               face_landmarks, label_face, make_sample_dataset, render_scene)

BACKGROUND = (200, 60, 20)          # BGR blue-ish, far from every skin tone
SKIN = (120, 165, 215)
HAIR = (25, 25, 30)
SETTINGS = ('easy', 'medium', 'hard')


def _blank(height=420, width=480):
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = BACKGROUND
    return canvas, np.zeros((height, width), np.uint16)


def _colour_mask(image, colour, tol=0):
    diff = np.abs(image.astype(np.int16) - np.array(colour, np.int16)).max(axis=2)
    return diff <= tol


def _mask_bounds(mask):
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max(), ys.max()


# ------------------------------------------------------------------ one face, flat background

@pytest.mark.parametrize('antialias', [False, True])
@pytest.mark.parametrize('angle,aspect,hair,style', [(0.0, 1.25, None, 0), (17.0, 1.35, HAIR, 0),
                                                     (-12.5, 1.15, HAIR, 1)])
def test_box_tightly_bounds_the_skin_pixels(antialias, angle, aspect, hair, style):
    canvas, id_map = _blank()
    spec = FaceSpec(cx=231.3, cy=197.8, height=180.0, aspect=aspect, angle=angle, yaw=0.2,
                    skin=SKIN, hair=hair, hair_style=style)
    draw_face(canvas, id_map, spec, 7, antialias=antialias)
    # anti-aliased edges blend with the background: only pixels within 3 levels of the skin
    skin_x1, skin_y1, skin_x2, skin_y2 = _mask_bounds(_colour_mask(canvas, SKIN, tol=3))
    x1, y1, x2, y2 = face_box(spec)
    # pixel centres inside the continuous box, and no more than one pixel short of it
    assert x1 - 0.5 <= skin_x1 <= x1 + 1.0 and x2 - 1.0 <= skin_x2 <= x2 + 0.5
    assert y1 - 0.5 <= skin_y1 <= y1 + 1.0 and y2 - 1.0 <= skin_y2 <= y2 + 0.5

    label = label_face(spec, id_map, 7)
    x, y, w, h = label.box
    assert x <= skin_x1 <= x + 1 and x + w - 1 <= skin_x2 <= x + w
    assert y <= skin_y1 <= y + 1 and y + h - 1 <= skin_y2 <= y + h
    # the face's own pixels in the id map are the head (and hair), never the background
    assert (id_map[_colour_mask(canvas, SKIN)] == 7).all()


def test_landmarks_are_the_drawn_feature_points():
    canvas, id_map = _blank()
    spec = FaceSpec(cx=240.0, cy=210.0, height=220.0, aspect=1.3, angle=14.0, yaw=0.35,
                    skin=SKIN, hair=HAIR, iris=(150, 110, 50))
    draw_face(canvas, id_map, spec, 1, antialias=False)
    points = face_landmarks(spec)

    # eyes: the pupil (a filled circle) is centred on the landmark
    pupils = _colour_mask(canvas, PUPIL_COLOUR)
    count, labels = cv2.connectedComponents(pupils.astype(np.uint8))
    assert count - 1 == 2, 'expected two pupils'
    centroids = sorted((np.argwhere(labels == k)[:, ::-1].mean(axis=0) for k in (1, 2)),
                       key=lambda c: c[0])
    np.testing.assert_allclose(points[0], centroids[0], atol=0.5)
    np.testing.assert_allclose(points[1], centroids[1], atol=0.5)
    for eye in points[:2]:
        assert tuple(canvas[int(round(eye[1])), int(round(eye[0]))]) == PUPIL_COLOUR

    # nose tip: a darker blob than the skin sits on the landmark
    tip = canvas[int(round(points[2][1])), int(round(points[2][0]))].astype(int)
    assert (tip < np.array(SKIN) - 20).all()

    # mouth corners: the two ends of the mouth slit
    slit = np.argwhere(_colour_mask(canvas, MOUTH_SLIT_COLOUR))[:, ::-1].astype(float)
    direction = (points[4] - points[3]) / np.linalg.norm(points[4] - points[3])
    along = slit @ direction
    np.testing.assert_allclose(slit[along.argmin()], points[3], atol=1.5)
    np.testing.assert_allclose(slit[along.argmax()], points[4], atol=1.5)

    # the features turn with the head: the eye line is perpendicular to the head's long axis,
    # measured from the pixels (second moments of the skin-coloured region)
    ys, xs = np.nonzero(_colour_mask(canvas, SKIN))
    cov = np.cov(np.stack([xs, ys]))
    long_axis = np.linalg.eigh(cov)[1][:, 1]
    eye_line = (points[1] - points[0]) / np.linalg.norm(points[1] - points[0])
    assert abs(float(eye_line @ long_axis)) < math.sin(math.radians(3))
    assert math.degrees(math.atan2(eye_line[1], eye_line[0])) == pytest.approx(14.0, abs=3)

    # WIDER order: image-left points first; all visible on an unoccluded face
    assert points[0][0] < points[1][0] and points[3][0] < points[4][0]
    assert points[0][1] < points[2][1] < min(points[3][1], points[4][1])
    label = label_face(spec, id_map, 1)
    np.testing.assert_allclose(label.landmarks[:, :2], points)
    assert (label.landmarks[:, 2] == 0.0).all()
    assert label.occluded_points == 0 and label.blur == 0.2


def test_occluded_points_are_flagged():
    canvas, id_map = _blank()
    spec = FaceSpec(cx=240.0, cy=210.0, height=200.0, angle=-8.0, skin=SKIN)
    draw_face(canvas, id_map, spec, 3)
    right_eye, nose = face_landmarks(spec)[[1, 2]]
    # something drawn later over the image-right eye and the nose tip only
    for point in (right_eye, nose):
        corner1 = tuple(int(v) for v in np.round(point - 6))
        corner2 = tuple(int(v) for v in np.round(point + 6))
        cv2.rectangle(canvas, corner1, corner2, (0, 255, 0), -1)
        cv2.rectangle(id_map, corner1, corner2, 99, -1)
    label = label_face(spec, id_map, 3)
    assert label.landmarks[:, 2].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]
    assert label.occluded_points == 2
    assert label.in_setting('medium') and not label.in_setting('easy')


def test_small_and_cut_faces():
    canvas, id_map = _blank(300, 400)
    small = FaceSpec(cx=100.0, cy=100.0, height=12.0, skin=SKIN)
    cut = FaceSpec(cx=385.0, cy=150.0, height=120.0, skin=SKIN)   # right part outside
    draw_face(canvas, id_map, small, 1)
    draw_face(canvas, id_map, cut, 2)
    small_label, cut_label = label_face(small, id_map, 1), label_face(cut, id_map, 2)
    assert (small_label.landmarks == -1).all() and small_label.blur == -1
    assert (cut_label.landmarks == -1).all() and cut_label.blur == -1   # a point is outside
    x, y, w, h = cut_label.box
    assert x + w == 399 and x > 300 and h >= 119
    # the clipped box still covers every skin pixel of the cut face
    skin_x1, _, skin_x2, _ = _mask_bounds(_colour_mask(canvas, SKIN) & (id_map == 2))
    assert x <= skin_x1 and skin_x2 <= x + w
    assert 0.5 < cut_label.inside_fraction < 0.75


def test_scene_labels_match_the_pixels():
    """In whole scenes drawn without blur/noise, every visible eye shows its pupil colour,
    boxes lie in the image and hold their face's skin, and the variety asked for is there."""
    seen = {'occluded': 0, 'no_landmarks': 0, 'cut': 0, 'faces': 0, 'big': 0, 'small': 0}
    for index in range(30):
        scene = render_scene(synthetic.image_rng(11, 'train', index), post_effects=False)
        image = scene.image
        height, width = image.shape[:2]
        for face, spec in zip(scene.faces, scene.specs):
            x, y, w, h = face.box
            assert 0 <= x and 0 <= y and w > 0 and h > 0
            assert x + w <= width - 1 and y + h <= height - 1
            box_pixels = image[y:y + h + 1, x:x + w + 1]
            assert _colour_mask(box_pixels, spec.skin, tol=1).any()
            seen['faces'] += 1
            seen['big'] += h >= 100
            seen['small'] += h < 24
            seen['cut'] += face.inside_fraction < 1.0
            if face.landmarks[0, 2] < 0:
                seen['no_landmarks'] += 1
                continue
            for point, flag in zip(face.landmarks[:2], face.landmarks[:2, 2]):
                colour = tuple(image[int(round(point[1])), int(round(point[0]))])
                if flag == 0.0:
                    assert colour == PUPIL_COLOUR
            seen['occluded'] += int((face.landmarks[:, 2] == 1.0).any())
    assert seen['faces'] > 60
    assert all(seen[key] > 0 for key in seen), seen


# ------------------------------------------------------------------ the data set on disk

@pytest.fixture(scope='module')
def sample_set(tmp_path_factory):
    out = tmp_path_factory.mktemp('sample') / 'set'
    start = time.perf_counter()
    summary = make_sample_dataset(out, n_train=6, n_val=4, seed=0, progress=False)
    return out, summary, time.perf_counter() - start


def _read_label_file(path):
    """Independent parser: [(image path, [row of floats, ...]), ...]."""
    entries = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith('# '):
            entries.append((line[2:], []))
        else:
            assert entries, '%s:%d: face line before any image' % (path, line_no)
            entries[-1][1].append([float(v) for v in line.split()])
    return entries


def test_small_set_generates_quickly(sample_set):
    out, summary, seconds = sample_set
    assert summary['images'] == {'train': 6, 'val': 4}
    assert seconds < 30, 'generating 10 images took %.1f s' % seconds


def test_train_labels_parse_and_lie_in_the_image(sample_set):
    out = sample_set[0]
    entries = _read_label_file(out / 'train' / 'label.txt')
    assert len(entries) == 6
    num_faces = 0
    for rel_path, rows in entries:
        assert re.fullmatch(r'\d+--\w+/\d+_\w+_train_\d+\.jpg', rel_path), rel_path
        image = cv2.imread(str(out / 'train' / 'images' / rel_path))
        assert image is not None, rel_path
        height, width = image.shape[:2]
        assert 300 <= min(height, width) <= 800 and max(height, width) <= 1024
        for row in rows:
            num_faces += 1
            assert len(row) == 20
            x, y, w, h = row[:4]
            assert all(v == int(v) for v in row[:4])
            assert x >= 0 and y >= 0 and w > 0 and h > 0
            assert x + w <= width - 1 and y + h <= height - 1
            points = np.array(row[4:19]).reshape(5, 3)
            blur = row[19]
            if (points == -1).all():
                assert blur == -1
            else:
                assert set(points[:, 2]) <= {0.0, 1.0}
                assert 0.2 <= blur <= 0.9
                # the landmarks lie in the face box
                assert (points[:, 0] >= x).all() and (points[:, 0] <= x + w).all()
                assert (points[:, 1] >= y).all() and (points[:, 1] <= y + h).all()
                assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]
    assert num_faces == sample_set[1]['faces']['train']


def test_val_labels_are_boxes_only(sample_set):
    out = sample_set[0]
    entries = _read_label_file(out / 'val' / 'label.txt')
    assert len(entries) == 4
    for rel_path, rows in entries:
        assert re.fullmatch(r'\d+--\w+/\d+_\w+_val_\d+\.jpg', rel_path), rel_path
        image = cv2.imread(str(out / 'val' / 'images' / rel_path))
        height, width = image.shape[:2]
        for row in rows:
            assert len(row) == 4
            x, y, w, h = row
            assert x >= 0 and y >= 0 and w > 0 and h > 0
            assert x + w <= width - 1 and y + h <= height - 1


def _signatures(mat, key):
    """Set of signatures of every leaf-level entry of ``mat[key]``."""
    top = mat[key]
    result = set()
    for outer in top.flat:
        outer = np.asarray(outer)
        if outer.dtype == object:
            for inner in outer.flat:
                result.add((top.dtype.str, top.shape[1], outer.dtype.str, outer.shape[1])
                           + _leaf(inner))
        else:
            result.add((top.dtype.str, top.shape[1]) + _leaf(outer))
    return result


def _leaf(value):
    value = np.asarray(value)
    if value.dtype.kind == 'U':          # a MATLAB char array: 1-d, any length
        return ('U', value.ndim)
    return (value.dtype.str, value.ndim, value.shape[1] if value.ndim == 2 else None)


@pytest.mark.parametrize('name', ['face', 'easy', 'medium', 'hard'])
def test_mat_files_have_the_official_structure(sample_set, name):
    official_dir = shared_path('widerface_eval', 'ground_truth')
    official = sio.loadmat(str(official_dir / ('wider_%s_val.mat' % name)))
    ours = sio.loadmat(str(sample_set[0] / 'val' / 'gt' / ('wider_%s_val.mat' % name)))
    keys = sorted(k for k in official if not k.startswith('__'))
    assert sorted(k for k in ours if not k.startswith('__')) == keys
    for key in keys:
        mine, theirs = _signatures(ours, key), _signatures(official, key)
        assert mine, key
        # every structure we write (dtypes, shapes, nesting) also occurs in the official file
        assert mine <= theirs, (key, mine - theirs)
        assert ours[key].dtype == object and ours[key].ndim == 2 and ours[key].shape[1] == 1


def test_mat_files_agree_with_val_labels(sample_set):
    out = sample_set[0]
    face = sio.loadmat(str(out / 'val' / 'gt' / 'wider_face_val.mat'))
    entries = _read_label_file(out / 'val' / 'label.txt')
    from_mat = []
    for e in range(face['event_list'].shape[0]):
        event = str(face['event_list'][e, 0][0])
        for i in range(face['file_list'][e, 0].shape[0]):
            name = str(face['file_list'][e, 0][i, 0][0])
            boxes = face['face_bbx_list'][e, 0][i, 0]
            assert boxes.dtype == np.int32 and boxes.shape[1:] == (4,)
            from_mat.append(('%s/%s.jpg' % (event, name), boxes.tolist()))
    assert from_mat == [(path, [[int(v) for v in row] for row in rows]) for path, rows in entries]

    kept = {}
    for setting in SETTINGS:
        gt = sio.loadmat(str(out / 'val' / 'gt' / ('wider_%s_val.mat' % setting)))['gt_list']
        kept[setting] = []
        for e in range(gt.shape[0]):
            for i in range(gt[e, 0].shape[0]):
                index = gt[e, 0][i, 0]
                assert index.dtype == np.uint8 and index.ndim == 2 and index.shape[1] == 1
                kept[setting].append(set(index.ravel().tolist()))
    for k, (_, rows) in enumerate(entries):
        boxes = np.array(rows).reshape(-1, 4)
        hard, medium, easy = kept['hard'][k], kept['medium'][k], kept['easy'][k]
        assert easy <= medium <= hard <= set(range(1, len(boxes) + 1))   # 1-based, nested
        for index in range(1, len(boxes) + 1):
            w, h = boxes[index - 1, 2:]
            assert (index in hard) == (min(w, h) >= 6)
            if index in medium:
                assert h >= 24
            if index in easy:
                assert h >= 50
    assert sum(len(s) for s in kept['hard']) == sample_set[1]['faces_per_setting']['hard']


def _hash_tree(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


def test_same_seed_same_bytes_different_seed_differs(tmp_path, monkeypatch):
    first = _hash_tree(_make(tmp_path / 'a', seed=5, workers=1))
    # another clock (scipy stamps .mat headers with time.asctime) and 2 processes: same bytes
    monkeypatch.setattr(time, 'asctime', lambda *args: 'Thu Jan  1 00:00:00 1970')
    again = _hash_tree(_make(tmp_path / 'b', seed=5, workers=2))
    other = _hash_tree(_make(tmp_path / 'c', seed=6, workers=1))
    assert len(first) == 5 + 2 + 4 + 1    # images, label files, .mat files, marker
    assert first == again
    images = [k for k in first if k.endswith('.jpg')]
    assert images and all(first[k] != other[k] for k in images)
    assert first['train/label.txt'] != other['train/label.txt']


def _make(out, seed, workers):
    make_sample_dataset(out, n_train=3, n_val=2, seed=seed, workers=workers, progress=False)
    return out


def test_refuses_to_overwrite_other_data(tmp_path):
    (tmp_path / 'precious.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path))):
        make_sample_dataset(tmp_path, n_train=1, n_val=0, progress=False)
    assert (tmp_path / 'precious.txt').read_text() == 'keep me'


def test_regenerating_replaces_a_previous_sample_set(tmp_path):
    make_sample_dataset(tmp_path, n_train=4, n_val=1, seed=1, progress=False)
    make_sample_dataset(tmp_path, n_train=2, n_val=1, seed=1, progress=False)
    images = sorted(p.name for p in (tmp_path / 'train' / 'images').rglob('*.jpg'))
    assert images == ['0_Parade_train_0.jpg', '1_Handshaking_train_1.jpg']


@pytest.mark.parametrize('kwargs,name', [({'n_train': -1}, 'n_train'), ({'n_val': 1.5}, 'n_val'),
                                         ({'seed': -3}, 'seed'),
                                         ({'jpeg_quality': 0}, 'jpeg_quality')])
def test_bad_arguments_are_named(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        arguments = dict({'n_train': 1, 'n_val': 1, 'progress': False}, **kwargs)
        make_sample_dataset(tmp_path, **arguments)


def test_cli_help_and_run(tmp_path):
    script = str(ROOT / 'tools' / 'make_sample_data.py')
    help_text = subprocess.run([sys.executable, script, '--help'], capture_output=True, text=True,
                               check=True).stdout
    for flag in ('--out', '--train', '--val', '--seed', '--workers', '--jpeg-quality', '--quiet'):
        assert flag in help_text
    assert 'easy' in help_text and 'h >= 50' in help_text and 'h >= 24' in help_text
    result = subprocess.run([sys.executable, script, '--out', str(tmp_path / 's'), '--train', '2',
                             '--val', '1', '--quiet'], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert 'train: 2 images' in result.stdout
    assert (tmp_path / 's' / 'val' / 'gt' / 'wider_hard_val.mat').is_file()
    bad = subprocess.run([sys.executable, script, '--train', '-2'], capture_output=True, text=True)
    assert bad.returncode != 0 and '--train' in bad.stderr


# ------------------------------------------------------------------ the project's own readers

def _require(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip('%s is not written yet' % module)
    return importlib.import_module(module)


def test_reader_parses_generated_labels(sample_set):
    from rcnn.config import generate_config
    from rcnn.dataset import RetinaFaceDataset
    out = sample_set[0]
    cfg, _ = generate_config('mnet', 'retinaface')
    roidb = RetinaFaceDataset('train', None, str(out), cfg).gt_roidb()
    entries = [e for e in _read_label_file(out / 'train' / 'label.txt') if e[1]]
    assert len(roidb) == len(entries)
    for entry, (rel_path, rows) in zip(roidb, entries):
        assert entry['image'].endswith(rel_path)
        rows = np.array(rows)
        expected_boxes = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], axis=1)
        np.testing.assert_allclose(entry['boxes'], expected_boxes)
        points = rows[:, 4:19].reshape(-1, 5, 3)
        has_points = points[:, 0, 2] >= 0
        np.testing.assert_allclose(entry['landmarks'][has_points, :, :2], points[has_points, :, :2],
                                   atol=1e-3)
        # file flag 0.0 (visible) -> 1.0 in the roidb, 1.0 (occluded) -> 0.0
        np.testing.assert_array_equal(entry['landmarks'][has_points, :, 2],
                                      1.0 - points[has_points, :, 2])
        assert (entry['landmarks'][~has_points] == -1).all()


def test_evaluator_loads_generated_ground_truth(sample_set, tmp_path):
    widerface = _require('rcnn.evaluation.widerface')
    out, summary = sample_set[0], sample_set[1]
    gt = widerface.load_mat_ground_truth(str(out / 'val' / 'gt'))
    entries = _read_label_file(out / 'val' / 'label.txt')
    assert ['%s/%s.jpg' % (e, n) for e, n in zip(gt.events, gt.names)] == [p for p, _ in entries]
    for setting in SETTINGS:
        assert gt.num_faces(setting) == summary['faces_per_setting'][setting]
    # perfect detections of every face score AP 1 in every setting
    for (rel_path, rows), event, name in zip(entries, gt.events, gt.names):
        boxes = np.array(rows, np.float64).reshape(-1, 4)
        dets = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:],
                               np.ones((len(boxes), 1))], axis=1)
        widerface.write_prediction_file(str(tmp_path / event / (name + '.txt')), rel_path, dets)
    aps = widerface.evaluate(str(tmp_path), str(out / 'val' / 'gt'))
    for setting in SETTINGS:
        if summary['faces_per_setting'][setting]:
            assert aps[setting] == pytest.approx(1.0)
