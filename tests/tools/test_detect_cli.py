"""tools/detect.py on the real photos of ../shared/images with the released mnet.25."""
import importlib.util
import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT, shared_path

SCRIPT = ROOT / 'tools' / 'detect.py'


def load_cli():
    spec = importlib.util.spec_from_file_location('detect_cli', str(SCRIPT))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def cli():
    return load_cli()


@pytest.fixture
def photos(tmp_path):
    """A folder with Tom Cruise in a sub-folder, the dogs, and a broken .jpg."""
    folder = tmp_path / 'photos'
    (folder / 'people').mkdir(parents=True)
    shutil.copy(str(shared_path('images', 'Tom_Cruise_avp_2014_4.jpg')), str(folder / 'people'))
    shutil.copy(str(shared_path('images', 'dogs.jpg')), str(folder))
    (folder / 'notes.txt').write_text('not an image, not listed')
    return folder


def test_cli_draws_and_lists_faces(mnet25_prefix, photos, tmp_path):
    out = tmp_path / 'out'
    broken = photos / 'broken.jpg'
    broken.write_bytes(b'\xff\xd8 this is no jpeg')
    result = subprocess.run(
        [sys.executable, str(SCRIPT), '--prefix', mnet25_prefix, '--epoch', '0', '--gpu', '-1',
         str(photos),
         '--out', str(out), '--json', '--thresh', '0.5'],
        capture_output=True, text=True, cwd=str(ROOT), timeout=300)
    assert result.returncode == 1, result.stderr           # the broken image is reported
    assert 'broken.jpg' in result.stderr and 'broken.jpg' in result.stdout
    # the released weights are recognised by content and their licence named once
    assert result.stdout.count('non-commercial research use only') == 1
    records = json.loads((out / 'detections.json').read_text())
    by_name = {r['image'].split('/')[-1]: r for r in records}
    assert set(by_name) == {'broken.jpg', 'dogs.jpg', 'Tom_Cruise_avp_2014_4.jpg'}
    assert by_name['broken.jpg']['error']

    tom = by_name['Tom_Cruise_avp_2014_4.jpg']
    assert (tom['width'], tom['height']) == (565, 800)
    assert len(tom['faces']) == 1
    face = tom['faces'][0]
    assert face['score'] > 0.9 and len(face['landmarks']) == 5
    x1, y1, x2, y2 = face['box']
    eye_l, eye_r, nose, mouth_l, mouth_r = face['landmarks']
    assert x1 < eye_l[0] < nose[0] < eye_r[0] < x2           # left eye left of the nose
    assert y1 < eye_l[1] < nose[1] < mouth_l[1] < y2          # eyes above nose above mouth

    drawn = cv2.imread(str(out / 'people' / 'Tom_Cruise_avp_2014_4.jpg'))
    original = cv2.imread(str(photos / 'people' / 'Tom_Cruise_avp_2014_4.jpg'))
    assert drawn.shape == original.shape
    # the box outline is drawn in green on its edge
    edge = drawn[int(round(y1)), int(round(x1)) + 5:int(round(x2)) - 5].astype(int)
    assert np.mean(edge[:, 1] - edge[:, [0, 2]].max(axis=1)) > 100
    assert (out / 'dogs.jpg').is_file() and not (out / 'broken.jpg').exists()
    assert not list(out.rglob('.tmp-*'))


def test_cli_json_matches_detector(cli, mnet25_prefix, tmp_path):
    from retinaface import RetinaFace
    image_path = shared_path('images', 'bald_guys.jpg')
    out = tmp_path / 'out'
    argv = ['--prefix', mnet25_prefix, '--gpu', '-1', str(image_path), '--out', str(out), '--json',
            '--no-draw', '--scales', '0.5', '1.0']
    assert cli.main(argv) == 0
    assert not (out / 'bald_guys.jpg').exists()
    record, = json.loads((out / 'detections.json').read_text())
    faces, landmarks = RetinaFace(mnet25_prefix, 0, ctx_id=-1).detect(
        cv2.imread(str(image_path)), threshold=0.5, scales=[0.5, 1.0])
    assert len(record['faces']) == len(faces) >= 20
    np.testing.assert_allclose([f['box'] for f in record['faces']], faces[:, :4], atol=0.01)
    np.testing.assert_allclose([f['score'] for f in record['faces']], faces[:, 4], atol=1e-5)
    np.testing.assert_allclose([f['landmarks'] for f in record['faces']], landmarks, atol=0.01)


def test_cli_argument_errors(cli, mnet25_prefix, tmp_path, photos):
    with pytest.raises(SystemExit):
        cli.parse_args(['--prefix', 'p', 'x.jpg', '--out', 'o', '--no-draw'])
    with pytest.raises(SystemExit):
        cli.parse_args(['--prefix', 'p', 'x.jpg', '--out', 'o', '--scales', '0'])
    assert cli.main(['--prefix', mnet25_prefix, '--gpu', '-1', str(tmp_path / 'missing.jpg'),
                     '--out', str(tmp_path / 'o')]) == 2
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert cli.main(['--prefix', mnet25_prefix, '--gpu', '-1', str(empty),
                     '--out', str(tmp_path / 'o')]) == 2
    # two inputs that would overwrite each other's drawing
    with pytest.raises(ValueError, match='dogs.jpg'):
        cli.collect_images([str(photos), str(photos / 'dogs.jpg')])


def test_collect_images_recurses_in_order(cli, photos):
    pairs = cli.collect_images([str(photos)])
    assert [rel for _, rel in pairs] == ['dogs.jpg', 'people/Tom_Cruise_avp_2014_4.jpg']


def _label_ink(cli, shape, box):
    """Draw one face of score 0.987 on a grey image; returns (label background rows, label
    background columns, ink rows) where the background is the filled box colour and the ink
    the dark text on it, found from the pixels."""
    image = np.full(shape + (3,), 128, np.uint8)
    face = np.array([box + [0.987]], np.float32)
    points = np.tile(np.array([[box[0] + 5, box[1] + 5]], np.float32), (1, 5, 1))
    canvas = cli.draw_faces(image, face, points)
    green = np.all(canvas == cli.BOX_COLOUR, axis=2)
    ink = canvas.astype(int).sum(axis=2) < 100
    filled = green.sum(axis=1) > 0.5 * green.sum(axis=1).max()   # the label's rows
    rows = np.flatnonzero(filled)
    columns = np.flatnonzero(green[rows].sum(axis=0) == len(rows))
    return rows, columns, np.flatnonzero(ink.any(axis=1))


@pytest.mark.parametrize('shape', [(480, 640), (1545, 1986)])
def test_score_labels_are_readable_and_inside_the_image(cli, shape):
    height, width = shape
    # a face touching the top edge, one touching the right edge
    for box in ([100.0, 0.0, 180.0, 90.0], [width - 40.0, 200.0, width - 1.0, 260.0]):
        rows, columns, ink_rows = _label_ink(cli, shape, box)
        assert len(ink_rows) and len(columns)
        # the text is whole: background above and below its ink, all inside the image
        assert rows[0] < ink_rows[0] and ink_rows[-1] < rows[-1] < height
        assert columns[-1] < width
        ink_height = ink_rows[-1] - ink_rows[0] + 1
        assert ink_height >= 12                          # readable on a 640x480 photo
        assert ink_height >= 0.02 * min(shape)            # and in proportion on a large one
