"""The evaluator's readers on hostile input: a UTF-8 BOM is accepted, negative sizes
and extreme scores are warned with file and line, and any file either parses or raises
PredictionFormatError naming file:line -- never another exception (hypothesis)."""
import logging
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rcnn.evaluation.widerface import (PredictionFormatError, evaluate, load_label_ground_truth,
                                       read_prediction_file, write_prediction_file)

BOM = '\ufeff'


def test_label_ground_truth_with_a_bom(tmp_path):
    label = tmp_path / 'label.txt'
    label.write_text(BOM + '# 0--e/a.jpg\n10 10 60 60\n# 0--e/b.jpg\n5 5 20 40 1 2\n',
                     encoding='utf-8')
    gt = load_label_ground_truth(str(label))
    assert gt.names == ['a', 'b'] and gt.events == ['0--e', '0--e']
    np.testing.assert_array_equal(gt.boxes[1], [[5, 5, 20, 40]])


def test_prediction_file_with_a_bom_and_crlf(tmp_path):
    path = tmp_path / 'a.txt'
    path.write_bytes((BOM + '0--e/a.jpg\r\n1\r\n10 10 50 50 0.9\r\n').encode('utf-8'))
    np.testing.assert_array_equal(read_prediction_file(str(path), 'a'), [[10, 10, 50, 50, 0.9]])


def test_negative_ground_truth_sizes_are_warned_with_the_line(tmp_path, caplog):
    label = tmp_path / 'label.txt'
    label.write_text('# 0--e/a.jpg\n10 10 60 60\n10 10 -5 60\n# 0--e/b.jpg\n1 1 4 -2\n')
    with caplog.at_level(logging.WARNING):
        gt = load_label_ground_truth(str(label))
    assert gt.num_faces() == 3
    text = ' '.join(r.getMessage() for r in caplog.records)
    assert 'label.txt: 2 face(s) with a negative width or height' in text
    assert 'line 3 (x y w h = 10 10 -5 60)' in text and 'line 5' in text


def test_negative_sizes_and_extreme_scores_in_predictions_are_warned(tmp_path, caplog):
    path = tmp_path / 'a.txt'
    path.write_text('a.jpg\n3\n10 10 50 50 0.9\n10 10 -4 50 0.5\n1 1 9 9 1e30\n')
    with caplog.at_level(logging.WARNING):
        values = read_prediction_file(str(path), 'a')
    assert values.shape == (3, 5)            # accepted, as by the standard code
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith('%s:4: negative width or height' % path) for m in messages)
    assert any(m.startswith('%s:5: score outside [0, 1]' % path) and '1e+30' in m
               for m in messages)
    # a clean file says nothing
    caplog.clear()
    path.write_text('a.jpg\n1\n10 10 50 50 0.9\n')
    with caplog.at_level(logging.WARNING):
        read_prediction_file(str(path), 'a')
    assert not caplog.records


def test_evaluation_names_the_file_with_the_extreme_score(tmp_path, caplog):
    label = tmp_path / 'label.txt'
    label.write_text('# 0--e/a.jpg\n10 10 60 60\n# 0--e/b.jpg\n100 100 60 60\n')
    pred = tmp_path / 'pred' / '0--e'
    pred.mkdir(parents=True)
    write_prediction_file(str(pred / 'a.txt'), '0--e/a.jpg', [[10, 10, 70, 70, 0.9]])
    write_prediction_file(str(pred / 'b.txt'), '0--e/b.jpg', [[100, 100, 160, 160, 1e30],
                                                               [0, 0, 5, 5, 0.8]])
    with caplog.at_level(logging.WARNING):
        evaluate(str(tmp_path / 'pred'), str(label), label_split='all')
    assert any(re.search(r'b\.txt:3: score outside \[0, 1\]', r.getMessage())
               for r in caplog.records)


def test_undecodable_bytes_are_a_format_error_with_the_line(tmp_path):
    path = tmp_path / 'a.txt'
    path.write_bytes(b'a.jpg\n1\n1 2 3 4 \xff0.5\n')
    with pytest.raises(PredictionFormatError, match=r'a\.txt:3: not UTF-8'):
        read_prediction_file(str(path))


def test_python_number_spellings_still_parse(tmp_path):
    """'1_0' is a float to Python but not to numpy: the reader must not crash on it."""
    path = tmp_path / 'a.txt'
    path.write_text('a.jpg\n1\n1_0 2 3 4 0.5\n')
    np.testing.assert_array_equal(read_prediction_file(str(path)), [[10, 2, 3, 4, 0.5]])


# ----------------------------------------------------------------------------- properties

_LOCATION = re.compile(r'^(?P<path>.+\.txt):(?P<line>\d+): \S')
_NUMBER = st.one_of(st.integers(-10 ** 6, 10 ** 6).map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(['nan', '-inf', '1e400', '1_0', '0x10', '', '.', '-',
                                     '\u0661', '1,5']))
_LINE = st.one_of(st.lists(_NUMBER, min_size=0, max_size=7).map(' '.join),
                  st.text(max_size=30))
_FILE_TEXT = st.one_of(
    st.text(max_size=200),
    st.builds(lambda name, count, rows, sep, bom: (bom + sep.join([name, count] + rows)),
              st.sampled_from(['a.jpg', 'e/a.jpg', ' a.jpg ', 'b.jpg', '', '#']),
              st.one_of(st.integers(-2, 6).map(str), st.text(max_size=3)),
              st.lists(_LINE, max_size=6), st.sampled_from(['\n', '\r\n', '\r', '\n\n']),
              st.sampled_from(['', BOM])))


def _check(path, data):
    path.write_bytes(data)
    try:
        values = read_prediction_file(str(path), expected_name='a')
    except PredictionFormatError as err:
        match = _LOCATION.match(str(err))
        assert match and match.group('path') == str(path), str(err)
        assert int(match.group('line')) >= 1 and '\n' not in str(err)
        return
    assert values.dtype == np.float64 and values.ndim == 2 and values.shape[1] == 5
    assert np.isfinite(values).all()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(text=_FILE_TEXT)
def test_any_text_parses_or_raises_a_located_format_error(tmp_path, text):
    _check(tmp_path / 'a.txt', text.encode('utf-8', errors='surrogatepass'))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_any_bytes_parse_or_raise_a_located_format_error(tmp_path, data):
    _check(tmp_path / 'a.txt', data)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(boxes=st.lists(st.tuples(*[st.integers(-50, 3000)] * 4,
                                st.floats(0, 1, allow_nan=False)), max_size=8))
def test_written_files_read_back(tmp_path, boxes):
    """What write_prediction_file writes, read_prediction_file returns (x y w h, %g score)."""
    dets = np.array([[x, y, x + w, y + h, s] for x, y, w, h, s in boxes],
                    dtype=np.float64).reshape(-1, 5)
    path = tmp_path / 'a.txt'
    write_prediction_file(str(path), 'e/a.jpg', dets)
    values = read_prediction_file(str(path), expected_name='a')
    expected = np.column_stack([dets[:, :2], dets[:, 2:4] - dets[:, :2], dets[:, 4]])
    np.testing.assert_allclose(values, expected.reshape(-1, 5), rtol=1e-5, atol=1e-6)
