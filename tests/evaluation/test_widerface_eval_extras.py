"""Prediction files with landmarks, the protocol read from manifest.json, and what
evaluate_widerface.py reports beside Easy / Medium / Hard (protocol, AP by size, NME)."""
import csv
import json
import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import evaluate_widerface
from rcnn.evaluation.provenance import UNKNOWN, folder_protocol
from rcnn.evaluation.widerface import (PredictionFormatError, read_prediction_file,
                                       read_predictions, load_label_ground_truth,
                                       write_prediction_file)

FIVE = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], dtype=np.float64)


# ----------------------------------------------------------------------------- files

def test_landmarks_are_written_after_the_score_and_read_back(tmp_path):
    path = tmp_path / 'e' / 'a.txt'
    boxes = np.array([[10.7, 20.2, 50.9, 80.1, 0.98765]])
    points = (FIVE + 0.26)[None]
    write_prediction_file(str(path), 'e/a.jpg', boxes, points)
    assert path.read_text() == ('e/a.jpg\n1\n10 20 40 59 0.98765 30.3 40.3 70.3 40.3 50.3 60.3 '
                                '35.3 80.3 65.3 80.3\n')
    values, landmarks = read_prediction_file(str(path), 'a', with_landmarks=True)
    np.testing.assert_allclose(values, [[10, 20, 40, 59, 0.98765]])
    np.testing.assert_allclose(landmarks, np.round(points, 1))
    # the default return is the (N, 5) boxes, as for files without landmarks
    np.testing.assert_allclose(read_prediction_file(str(path), 'a'), values)
    write_prediction_file(str(path), 'e/a.jpg', np.zeros((0, 5)), np.zeros((0, 5, 2)))
    boxes, landmarks = read_prediction_file(str(path), 'a', with_landmarks=True)
    assert boxes.shape == (0, 5) and landmarks is None


def test_files_in_the_submission_format_have_no_landmarks(tmp_path):
    path = tmp_path / 'a.txt'
    path.write_text('a.jpg\n2\n1 2 3 4 0.5\n5 6 7 8 0.25\n')
    boxes, landmarks = read_prediction_file(str(path), 'a', with_landmarks=True)
    np.testing.assert_array_equal(boxes, [[1, 2, 3, 4, 0.5], [5, 6, 7, 8, 0.25]])
    assert landmarks is None


@pytest.mark.parametrize('body, match', [
    ('a.jpg\n1\n1 2 3 4 0.5 1 2 3 4 5 6 7 8 9\n', r'a\.txt:3: expected "x y w h score" '
                                                  r'\(optionally followed by the 10 landmark'),
    ('a.jpg\n2\n1 2 3 4 0.5\n1 2 3 4 0.5 1 2 3 4 5 6 7 8 9 10\n',
     r'a\.txt:4: has 15 values but line 3 has 5'),
    ('a.jpg\n1\n1 2 3 4 0.5 1 2 3 4 5 6 7 8 9 nan\n', r'a\.txt:3: NaN'),
])
def test_malformed_landmark_rows_name_the_line(tmp_path, body, match):
    path = tmp_path / 'a.txt'
    path.write_text(body)
    with pytest.raises(PredictionFormatError, match=match):
        read_prediction_file(str(path), 'a', with_landmarks=True)


def test_writer_refuses_landmarks_that_do_not_fit(tmp_path):
    path = str(tmp_path / 'a.txt')
    with pytest.raises(ValueError, match=r'landmarks for a\.jpg must be \(1, 5, 2\)'):
        write_prediction_file(path, 'a.jpg', [[0, 0, 9, 9, 0.5]], np.zeros((2, 5, 2)))
    with pytest.raises(ValueError, match='NaN'):
        write_prediction_file(path, 'a.jpg', [[0, 0, 9, 9, 0.5]], np.full((1, 5, 2), np.nan))


def test_read_predictions_gives_none_for_missing_files(tmp_path, caplog):
    label = tmp_path / 'label.txt'
    label.write_text('# e/a.jpg\n0 0 10 10\n# e/b.jpg\n0 0 10 10\n')
    gt = load_label_ground_truth(str(label), split='all')
    write_prediction_file(str(tmp_path / 'p' / 'e' / 'a.txt'), 'e/a.jpg', [[0, 0, 9, 9, 0.5]],
                          FIVE[None])
    with caplog.at_level(logging.WARNING):
        boxes, points = read_predictions(str(tmp_path / 'p'), gt, with_landmarks=True)
    assert [len(b) for b in boxes] == [1, 0] and points[1] is None
    np.testing.assert_allclose(points[0], FIVE[None])


# ----------------------------------------------------------------------------- protocol

@pytest.mark.parametrize('manifest, name, source', [
    ({'protocol': 'vga', 'mode': 1}, 'vga', 'manifest.json protocol'),
    ({'protocol': {'protocol': 'original', 'flip': False}}, 'original', 'manifest.json protocol'),
    ({'mode': 0}, 'single', 'manifest.json mode 0'),
    ({'mode': 1}, 'pyramid', 'manifest.json mode 1'),
    ({'mode': 2}, 'pyramid-nms', 'manifest.json mode 2'),
    ({'epoch': 0}, UNKNOWN, 'manifest.json names no protocol'),
    (None, UNKNOWN, 'no manifest.json'),
])
def test_protocol_of_a_prediction_folder(tmp_path, manifest, name, source):
    if manifest is not None:
        (tmp_path / 'manifest.json').write_text(json.dumps(manifest))
    protocol = folder_protocol(str(tmp_path))
    assert (protocol.name, protocol.source) == (name, source)


def test_an_unreadable_manifest_leaves_the_protocol_unknown(tmp_path, caplog):
    (tmp_path / 'manifest.json').write_text('{not json')
    with caplog.at_level(logging.WARNING):
        assert folder_protocol(str(tmp_path)).name == UNKNOWN
    assert 'protocol unknown' in caplog.text


# ----------------------------------------------------------------------------- the CLI

def _landmark_set(tmp_path):
    """A train-style label.txt (2 faces with points, 1 without) and predictions with points."""
    label = tmp_path / 'label.txt'
    line = ' '.join('%g %g 0.0' % tuple(p) for p in FIVE)
    label.write_text('# 0--e/a.jpg\n0 0 100 100 %s 0.5\n'
                     '200 0 20 20 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1\n'
                     '# 0--e/b.jpg\n0 0 100 100 %s 0.5\n' % (line, line))
    pred = tmp_path / 'pred'
    write_prediction_file(str(pred / '0--e' / 'a.txt'), '0--e/a.jpg',
                          [[0, 0, 100, 100, 0.9], [200, 0, 220, 20, 0.7]],
                          np.stack([FIVE + [3, 4], FIVE]))                  # NME 0.05
    write_prediction_file(str(pred / '0--e' / 'b.txt'), '0--e/b.jpg',
                          [[0, 0, 100, 100, 0.8]], (FIVE + [0, 20])[None])  # NME 0.2
    (pred / 'manifest.json').write_text(json.dumps({'protocol': 'original', 'epoch': 0}))
    return label, pred


def test_cli_reports_protocol_size_bands_and_nme(tmp_path, capsys):
    label, pred = _landmark_set(tmp_path)
    out_json, out_csv, curves = tmp_path / 'r.json', tmp_path / 'r.csv', tmp_path / 'curves'
    rc = evaluate_widerface.main(['--pred', str(pred), '--gt', str(label), '--label-split',
                                  'all', '--json', str(out_json), '--csv', str(out_csv),
                                  '--curves', str(curves), '--quiet'])
    out = capsys.readouterr().out
    assert rc == 0
    assert 'Protocol: original (one pass at scale 1) [manifest.json protocol]' in out
    assert 'Hard   Val AP: 1.0000  (3 faces)' in out
    assert '<16 - (0)  16-32 1.0000 (1)  32-64 - (0)  64-128 1.0000 (2)' in out
    # NME: (0.05 + 0.2) / 2; AUC@0.1 = (0.05 + 0) / 2 / 0.1; one face of two fails
    assert ('Landmark NME (/ sqrt(w*h) of the gt box, score >= 0.5): 0.1250 on 2 of 2 faces; '
            'AUC@0.1 0.250, failure rate@0.1 0.500') in out
    summary, = json.loads(out_json.read_text())
    assert summary['protocol'] == 'original' and summary['ap_hard'] == 1.0
    assert summary['ap_lt16'] is None and summary['nme'] == pytest.approx(0.125)
    rows = list(csv.DictReader(out_csv.open()))
    assert rows[0]['protocol'] == 'original' and rows[0]['ap_64_128'] == '1'
    assert rows[0]['nme_failure_rate'] == '0.5'
    import cv2
    assert cv2.imread(str(curves / 'nme_ced.png')).shape == (600, 700, 3)
    assert (curves / 'nme_ced.csv').read_text().splitlines()[1:] == ['pred,0.050000',
                                                                     'pred,0.200000']


def test_cli_says_why_there_is_no_nme(tmp_path, capsys):
    label, pred = _landmark_set(tmp_path)
    val = tmp_path / 'val.txt'
    val.write_text('# 0--e/a.jpg\n0 0 100 100\n200 0 20 20\n# 0--e/b.jpg\n0 0 100 100\n')
    assert evaluate_widerface.main(['--pred', str(pred), '--gt', str(val), '--quiet']) == 0
    out = capsys.readouterr().out
    assert 'Landmark NME: not computed (no landmark ground truth: give --gt-labels' in out
    # --gt-labels gives it for the same images
    assert evaluate_widerface.main(['--pred', str(pred), '--gt', str(val), '--gt-labels',
                                    str(label), '--quiet']) == 0
    assert 'Landmark NME (/ sqrt(w*h) of the gt box, score >= 0.5): 0.1250' in \
        capsys.readouterr().out
    # a --gt-labels without points is an error, one line
    assert evaluate_widerface.main(['--pred', str(pred), '--gt', str(val), '--gt-labels',
                                    str(val), '--quiet']) == 2
    assert 'no face line carries landmarks' in capsys.readouterr().err


def test_help_shows_runnable_examples_and_every_default(capsys):
    with pytest.raises(SystemExit):
        evaluate_widerface.parse_args(['--help'])
    text = capsys.readouterr().out
    assert '--compare ./wout_mnet ./wout_r50 --names mnet R50 --curves ./curves' in text
    assert '<gt>' not in text
    options = text.split('options:')[1]
    for flag in ('--iou', '--nme-threshold', '--nme-min-score', '--label-split', '--curves',
                 '--json', '--csv', '--names', '--gt-labels', '--strict', '--quiet'):
        entry = options.split(flag, 1)[1].split('\n  --', 1)[0]
        assert 'default' in entry or 'required' in entry, flag


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(faces=st.lists(st.tuples(st.integers(-50, 3000), st.integers(-50, 3000),
                                st.floats(0, 1, allow_nan=False),
                                st.lists(st.floats(-100, 4000, allow_nan=False), min_size=10,
                                         max_size=10)), max_size=6))
def test_written_landmarks_read_back_to_a_tenth_of_a_pixel(tmp_path, faces):
    dets = np.array([[x, y, x + 20, y + 30, s] for x, y, s, _ in faces]).reshape(-1, 5)
    points = np.array([p for _, _, _, p in faces]).reshape(-1, 5, 2)
    path = tmp_path / 'a.txt'
    write_prediction_file(str(path), 'e/a.jpg', dets, points)
    boxes, landmarks = read_prediction_file(str(path), 'a', with_landmarks=True)
    assert boxes.shape == (len(faces), 5)
    if faces:
        np.testing.assert_allclose(landmarks, points, atol=0.05 + 1e-9)


def test_cli_names_an_unknown_protocol(tmp_path, capsys):
    label, pred = _landmark_set(tmp_path)
    (pred / 'manifest.json').unlink()
    assert evaluate_widerface.main(['--pred', str(pred), '--gt', str(label), '--quiet']) == 0
    assert 'Protocol: unknown [no manifest.json]' in capsys.readouterr().out
