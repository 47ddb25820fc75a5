"""tools/detect.py --track on a generated sequence (a video and a folder of frames) and
--quality records, with the released mnet.25."""
import json
import subprocess
import sys

import cv2
import pytest

from conftest import ROOT
from tools.sample_data.video import make_sequence, write_sequence

SCRIPT = ROOT / 'tools' / 'detect.py'


@pytest.fixture(scope='module')
def sequence_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('sequences')
    sequence = make_sequence('leaving', seed=0, num_frames=16)
    frames = write_sequence(sequence, str(folder), video=True)
    return sequence, folder / (sequence.name + '.avi'), frames


def _run(mnet25_prefix, *args):
    return subprocess.run([sys.executable, str(SCRIPT), '--prefix', mnet25_prefix, '--gpu', '-1',
                           '--thresh', '0.3'] + [str(a) for a in args],
                          capture_output=True, text=True, cwd=str(ROOT), timeout=600)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_track_a_video_json_lines_and_best_shots(mnet25_prefix, sequence_files, tmp_path):
    sequence, video, _ = sequence_files
    out = tmp_path / 'out'
    result = _run(mnet25_prefix, video, '--out', out, '--json', '--track', '--quality')
    assert result.returncode == 0, result.stderr
    assert 'track(s), best shots in' in result.stdout
    lines = _lines(out / (sequence.name + '.jsonl'))
    assert [line['frame'] for line in lines] == list(range(16))
    tracks = {}
    for line in lines:
        ids = [face['track'] for face in line['faces'] if face['track'] is not None]
        assert len(ids) == len(set(ids))                 # one face per track and frame
        for face in line['faces']:
            assert 0.0 <= face['quality'] <= 1.0 and face['pose'] in (
                'frontal', 'left', 'right', 'up', 'down')
            if face['track'] is not None:
                tracks.setdefault(face['track'], []).append((line['frame'], face))
                assert len(face['smoothed_landmarks']) == 5
    assert tracks, 'no face was tracked'
    # the face that stays (identity 1, at the left) keeps one track id from frame 1 on
    staying = [t for t, faces in tracks.items()
               if all(f['box'][2] < 0.45 * 480 for _, f in faces)]
    assert len(staying) == 1 and len(tracks[staying[0]]) >= 12

    best = json.loads((out / 'best_shots' / (sequence.name + '_best_shots.json')).read_text())
    assert sorted(r['track'] for r in best) == sorted(tracks)
    for record in best:
        crop = cv2.imread(record['crop'])
        assert crop.shape == (112, 112, 3)
        qualities = {frame: f['quality'] for frame, f in tracks[record['track']]}
        assert record['frame'] in qualities
        assert record['quality'] == pytest.approx(max(qualities.values()), abs=1e-3)


def test_track_a_folder_of_frames(mnet25_prefix, sequence_files, tmp_path):
    sequence, _, frames = sequence_files
    out = tmp_path / 'out'
    shots = tmp_path / 'shots'
    result = _run(mnet25_prefix, frames, '--out', out, '--json', '--track', '--no-draw',
                  '--best-shots', shots, '--every', '2')
    assert result.returncode == 0, result.stderr
    lines = _lines(out / (sequence.name + '.jsonl'))
    assert [line['frame'] for line in lines] == list(range(0, 16, 2))
    assert 'quality' not in lines[0]['faces'][0]             # only with --quality
    assert any(face['track'] is not None for line in lines for face in line['faces'])
    assert list(shots.glob('%s_track*_f*.png' % sequence.name))
    assert not (out / (sequence.name + '.mp4')).exists()


def test_quality_records_of_an_image(mnet25_prefix, tmp_path):
    from conftest import shared_path
    image = shared_path('images', 'Tom_Cruise_avp_2014_4.jpg')
    result = _run(mnet25_prefix, image, '--out', tmp_path, '--json', '--quality', '--no-draw')
    assert result.returncode == 0, result.stderr
    faces = json.loads((tmp_path / 'detections.json').read_text())[0]['faces']
    assert faces and {'size', 'pose', 'yaw', 'roll', 'quality'} <= set(faces[0])
    assert 'blur' not in faces[0]                             # mnet.25 has no blur output


def test_track_without_a_video_is_refused(mnet25_prefix, tmp_path):
    from conftest import shared_path
    image = shared_path('images', 'Tom_Cruise_avp_2014_4.jpg')
    result = _run(mnet25_prefix, image, '--out', tmp_path, '--track')
    assert result.returncode == 2
    assert '--track needs a video' in result.stderr
    result = _run(mnet25_prefix, image, '--out', tmp_path, '--best-shots', tmp_path)
    assert result.returncode == 2 and '--best-shots needs --track' in result.stderr
