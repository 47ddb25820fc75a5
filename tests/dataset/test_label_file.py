"""The label.txt module (rcnn/dataset/label_file.py): hand-written files parsed, the writer's
text read back, the one error type with file and line, the evaluation (boxes-only) strictness."""
import pickle

import numpy as np
import pytest

from rcnn.dataset.label_file import (LabelFormatError, count_images, format_face_line,
                                     format_label_text, format_number, parse_label_text,
                                     read_label_file, write_label_file)

TRAIN_LINE = '10 20 30 40 12.5 25.0 0.0 30.0 25.0 1.0 -1 -1 -1 20.0 40.0 0.0 31.0 41.0 0.0 0.45'


def test_hand_written_file_parses_into_rows_lines_and_images():
    text = '# a/one.jpg\n%s\n\n# a/two.jpg 640 480\n1 2 3 4\n# b/three.jpg\n' % TRAIN_LINE
    parsed = parse_label_text(text, 'x/label.txt')
    assert parsed.image_names == ['a/one.jpg', 'a/two.jpg', 'b/three.jpg']
    assert parsed.header_sizes == [None, (480, 640), None]
    assert parsed.face_image.tolist() == [0, 1]
    assert parsed.face_lines.tolist() == [2, 5]          # the blank line 3 still counts
    assert parsed.faces_per_image().tolist() == [1, 1, 0]
    np.testing.assert_array_equal(parsed.face_rows[0], [float(v) for v in TRAIN_LINE.split()])
    # a 4-number line: box, then 5 missing points and blur 0.0
    np.testing.assert_array_equal(parsed.face_rows[1], [1, 2, 3, 4] + [-1] * 15 + [0.0])


@pytest.mark.parametrize('text, line, fragment', [
    ('1 2 3 4\n', 1, 'face line before any'),
    ('# a.jpg\n# a.jpg\n', 2, 'already listed at line 1'),
    ('# a.jpg\n1 2 3\n', 2, 'expected 4 numbers'),
    ('# a.jpg\n1 2 x 4\n', 2, "'x' is not a number"),
    ('# a.jpg\n1 2 nan 4\n', 2, 'non-finite'),
    ('# a.jpg\n\n1 2 -3 4\n', 3, 'negative box size'),
    ('# a.jpg 640\n', 1, 'expected "# <image path>"'),
    ('#\n', 1, 'without an image path'),
])
def test_errors_carry_file_and_line(text, line, fragment):
    with pytest.raises(LabelFormatError) as info:
        parse_label_text(text, 'set/label.txt')
    error = info.value
    assert (error.path, error.line) == ('set/label.txt', line)
    assert str(error).startswith('set/label.txt:%d: ' % line)
    assert fragment in str(error)
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))        # crosses process boundaries intact
    assert (copy.path, copy.line, str(copy)) == (error.path, error.line, str(error))


def test_inconsistent_landmark_point_is_refused():
    bad = TRAIN_LINE.replace('-1 -1 -1', '-1 -1 0.0')
    with pytest.raises(LabelFormatError, match=r'label\.txt:2: landmark point 2'):
        parse_label_text('# a.jpg\n%s\n' % bad)


def test_boxes_only_reads_four_columns_and_keeps_negative_sizes():
    text = '# e/a.jpg\n1 2 -3 4 extra columns\n5 6 7 8\n'
    with pytest.raises(LabelFormatError):
        parse_label_text(text)
    parsed = parse_label_text(text, boxes_only=True)
    np.testing.assert_array_equal(parsed.face_rows[:, :4], [[1, 2, -3, 4], [5, 6, 7, 8]])
    with pytest.raises(LabelFormatError, match=r'label\.txt:2: expected "x y w h \[\.\.\.\]"'):
        parse_label_text('# e/a.jpg\n1 2 3\n', boxes_only=True)


def test_read_label_file_names_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='label file not found: .*nowhere'):
        read_label_file(str(tmp_path / 'nowhere'))
    path = tmp_path / 'label.txt'
    path.write_bytes(b'# a.jpg\n1 2 3 4\n# b\xff.jpg\n')
    with pytest.raises(LabelFormatError, match=r'label\.txt:3: not UTF-8'):
        read_label_file(str(path))


def test_count_images_counts_header_lines_only():
    assert count_images(b'# a.jpg\n1 2 3 4\n  # b.jpg\n\n') == 2


def test_number_and_line_formats():
    assert [format_number(v) for v in (12, np.int64(-3), 12.3456, 0.0, -1.0, 0.25)] == \
        ['12', '-3', '12.346', '0.0', '-1.0', '0.25']
    assert format_face_line(np.array([1, 2, 3, 4])) == '1 2 3 4'
    landmarks = np.array([[12.5, 25, 0], [30, 25, 1], [-1, -1, -1], [20, 40, 0], [31, 41, 0]])
    assert format_face_line(np.array([10, 20, 30, 40]), landmarks, 0.45) == TRAIN_LINE.replace(
        '-1 -1 -1', '-1.0 -1.0 -1.0')
    with pytest.raises(ValueError):
        format_face_line([1, 2, 3])
    with pytest.raises(ValueError, match='without spaces'):
        format_label_text([('a b.jpg', [])])


def test_written_file_reads_back(tmp_path):
    landmarks = np.array([[12.5, 25, 0], [30, 25, 1], [-1, -1, -1], [20, 40, 0], [31, 41, 0]])
    images = [('e/a.jpg', [format_face_line(np.array([10, 20, 30, 40]), landmarks, 0.45),
                           format_face_line(np.array([1, 2, 3, 4]))]),
              ('e/empty.jpg', [])]
    path = tmp_path / 'label.txt'
    write_label_file(str(path), images)
    assert path.read_text() == ('# e/a.jpg\n10 20 30 40 12.5 25.0 0.0 30.0 25.0 1.0 -1.0 -1.0 '
                                '-1.0 20.0 40.0 0.0 31.0 41.0 0.0 0.45\n1 2 3 4\n# e/empty.jpg\n')
    parsed = read_label_file(str(path))
    assert parsed.image_names == ['e/a.jpg', 'e/empty.jpg']
    np.testing.assert_array_equal(parsed.face_rows[0, 4:19].reshape(5, 3), landmarks)
    assert parsed.faces_per_image().tolist() == [2, 0]
    assert format_label_text([]) == ''
