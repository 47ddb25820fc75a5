"""tools/detect.py on checkpoints of other layouts: a model without landmarks and one with the
blur and visibility heads (small graphs of tests/deploy/layout_graphs.py with their recipes)."""
import json
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / 'tests' / 'deploy'))
from layout_graphs import save_layout_checkpoint  # noqa: E402
from test_detect_cli import load_cli  # noqa: E402


@pytest.fixture(scope='module')
def cli():
    return load_cli()


@pytest.fixture
def picture(tmp_path):
    """A 96x128 picture with a bright blob: the random heads find something somewhere."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(96, 128, 3), dtype=np.uint8)
    path = tmp_path / 'picture.jpg'
    cv2.imwrite(str(path), image)
    return path


def _run(cli, prefix, picture, out, *flags):
    return cli.main(['--prefix', str(prefix), '--gpu', '-1', str(picture), '--out', str(out),
                     '--thresh', '0.0', *flags])


def test_a_model_without_landmarks_draws_and_lists_boxes(cli, picture, tmp_path):
    from retinaface import RetinaFace
    prefix = tmp_path / 'boxes'
    save_layout_checkpoint(str(prefix), 'boxes_only')
    out = tmp_path / 'out'
    assert _run(cli, prefix, picture, out, '--json', '--quality', '--rotations', '0', '90') == 0
    record, = json.loads((out / 'detections.json').read_text())
    faces, landmarks, angles, _ = RetinaFace(str(prefix), 0, ctx_id=-1).detect(
        cv2.imread(str(picture)), threshold=0.0, rotations=(0, 90), quality=True)
    assert landmarks is None and len(record['faces']) == len(faces) > 0
    assert all('landmarks' not in face and 'pose' not in face for face in record['faces'])
    np.testing.assert_allclose([f['box'] for f in record['faces']], faces[:, :4], atol=0.01)
    assert [f['angle'] for f in record['faces']] == angles.tolist()
    assert (out / 'picture.jpg').exists()


@pytest.mark.parametrize('flag', [['--crops', 'CROPS'], ['--track']])
def test_flags_that_need_landmarks_are_refused_for_a_model_without(cli, picture, tmp_path,
                                                                   capsys, flag):
    prefix = tmp_path / 'boxes'
    save_layout_checkpoint(str(prefix), 'boxes_only')
    flag = [str(tmp_path / v) if v == 'CROPS' else v for v in flag]
    inputs = picture.parent if '--track' in flag else picture      # --track: a folder of frames
    assert _run(cli, prefix, inputs, tmp_path / 'out', *flag) != 0
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert '%s needs the 5 landmarks' % flag[0] in error and 'FACE_LANDMARK=False' in error


def test_blur_and_visibility_values_reach_the_json(cli, picture, tmp_path):
    from retinaface import RetinaFace
    prefix = tmp_path / 'heads'
    save_layout_checkpoint(str(prefix), 'blur_occlusion')
    out = tmp_path / 'out'
    assert _run(cli, prefix, picture, out, '--json', '--no-draw') == 0
    record, = json.loads((out / 'detections.json').read_text())
    faces, landmarks = RetinaFace(str(prefix), 0, ctx_id=-1).detect(cv2.imread(str(picture)),
                                                                    threshold=0.0)
    assert faces.shape[1] == 6 and landmarks.shape[1:] == (5, 3) and len(faces) > 0
    np.testing.assert_allclose([f['blur'] for f in record['faces']], faces[:, 5], atol=1e-4)
    np.testing.assert_allclose([f['visibility'] for f in record['faces']], landmarks[:, :, 2],
                               atol=1e-4)
    np.testing.assert_allclose([f['landmarks'] for f in record['faces']], landmarks[:, :, :2],
                               atol=0.01)
