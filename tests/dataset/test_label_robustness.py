"""Label reader robustness: BOM, absurd boxes, drop reports, property-based parsing.

The properties use hypothesis: arbitrary text either parses into consistent ParsedLabels or
raises LabelFormatError whose message starts with ``<file>:<line>:``, never another exception;
well-formed files generated from random faces parse back to exactly those numbers.
"""
import importlib
import logging
import re

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rcnn.dataset import retinaface
from rcnn.dataset.label_file import LabelFormatError, parse_label_text

reader = importlib.import_module('rcnn.dataset.retinaface_dataset')
LOGGER = 'rcnn.dataset.retinaface_dataset'


def make_dataset(tmp_path, label_bytes, images, image_set='train'):
    """<tmp>/ds/<image_set>/{label.txt, images/<name>.png}; images: (name, height, width)."""
    set_dir = tmp_path / 'ds' / image_set
    (set_dir / 'images').mkdir(parents=True, exist_ok=True)
    for name, height, width in images:
        assert cv2.imwrite(str(set_dir / 'images' / name), np.zeros((height, width, 3), np.uint8))
    (set_dir / 'label.txt').write_bytes(label_bytes)
    return str(tmp_path / 'ds'), str(set_dir / 'label.txt')


# --------------------------------------------------------------------------- BOM
def test_a_utf8_bom_before_the_first_line_is_accepted(tmp_path):
    label = '\ufeff# a.png\n10 10 20 20\n# b.png\n1 2 3 4\n'.encode('utf-8')
    dataset_path, _ = make_dataset(tmp_path, label, [('a.png', 60, 80), ('b.png', 30, 30)],
                                   image_set='val')
    imdb = retinaface('val', None, dataset_path)
    assert imdb.num_images == 2
    roidb = imdb.gt_roidb()
    assert [r['image'].rsplit('/', 1)[1] for r in roidb] == ['a.png', 'b.png']
    np.testing.assert_array_equal(roidb[0]['boxes'], [[10, 10, 30, 30]])


def test_a_bom_elsewhere_is_still_an_error_naming_the_line():
    with pytest.raises(LabelFormatError, match=r'^l\.txt:2: '):
        parse_label_text('# a.png\n\ufeff1 2 3 4\n', 'l.txt')


@pytest.mark.parametrize('newline', ['\n', '\r\n', '\r'])
def test_line_numbers_follow_text_mode_line_endings(newline):
    text = newline.join(['# a.png', '1 2 3 4', '', '1 2 x 4']) + newline
    with pytest.raises(LabelFormatError, match=r"^l\.txt:4: 'x' is not a number"):
        parse_label_text(text, 'l.txt')


# --------------------------------------------------------------------------- absurd boxes
def test_a_box_leaving_the_image_by_more_than_its_size_is_dropped_naming_file_and_line(
        tmp_path, caplog):
    label = ('# a.png\n'
             '10 10 20 20\n'
             '300 5 1000000000 30\n'     # w = 1e9: 1e9 - 99 px outside, 99 inside
             '-500 5 530 30\n')           # 500 px left of the image, 29 inside
    dataset_path, label_file = make_dataset(tmp_path, label.encode(), [('a.png', 60, 400)])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (entry,) = retinaface('train', None, dataset_path).gt_roidb()
    np.testing.assert_array_equal(entry['boxes'], [[10, 10, 30, 30]])
    assert '%s:3: box x=300 y=5 w=1e+09 h=30' % label_file in caplog.text
    assert '%s:4: box x=-500' % label_file in caplog.text
    assert 'leaves the image by more than its own size' in caplog.text
    assert '2 leaving the image by more than their own size' in caplog.text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3             # two boxes, one line of totals


def test_boxes_cut_by_the_border_are_clipped_not_dropped(tmp_path):
    # 6 of 16 px outside on the right, 4 of 24 px above: less outside than inside
    label = '# a.png\n30 -4 16 24\n'
    dataset_path, _ = make_dataset(tmp_path, label.encode(), [('a.png', 50, 41)])
    (entry,) = retinaface('train', None, dataset_path).gt_roidb()
    np.testing.assert_array_equal(entry['boxes'], [[30, -4, 41, 20]])    # original clipping


def test_keeping_outside_boxes_is_a_switch(tmp_path):
    label = '# a.png\n300 5 1000000000 30\n'
    dataset_path, _ = make_dataset(tmp_path, label.encode(), [('a.png', 60, 400)])
    (entry,) = retinaface('train', None, dataset_path, drop_outside_boxes=False).gt_roidb()
    np.testing.assert_array_equal(entry['boxes'], [[300, 5, 400, 35]])    # clipped to W


# --------------------------------------------------------------------------- drop reports
def test_drops_are_warnings_with_file_and_line_first_few_then_totals(tmp_path, caplog):
    lines = ['# a.png', '1 1 10 10']
    lines += ['%d 100 5 5' % (i + 200) for i in range(8)]        # 8 boxes below the image
    lines += ['# empty.png', '500 500 3 3']                       # its only box is outside
    dataset_path, label_file = make_dataset(
        tmp_path, ('\n'.join(lines) + '\n').encode(), [('a.png', 50, 50), ('empty.png', 50, 50)])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        roidb = retinaface('train', str(tmp_path), dataset_path).gt_roidb()
    assert len(roidb) == 1
    first = caplog.text
    listed = re.findall(r'label\.txt:(\d+): box ', first)
    assert listed == ['3', '4', '5', '6', '7'] and reader.DROPS_LOGGED == 5
    assert '%s:11: image %s dropped: no box left' % (
        label_file, roidb[0]['image'].replace('a.png', 'empty.png')) in first
    assert 'dropped 9 boxes empty after clipping to the image' in first
    assert 'dropped 1 images left without boxes (of 2)' in first
    assert all(r.levelno == logging.WARNING for r in caplog.records if 'dropped' in r.message)

    caplog.clear()                                                 # the cached roidb says it too
    with caplog.at_level(logging.INFO, logger=LOGGER):
        retinaface('train', str(tmp_path), dataset_path).gt_roidb()
    assert 'loaded from' in caplog.text
    assert 'dropped 9 boxes empty after clipping' in caplog.text
    assert '%s:3: box x=200' % label_file in caplog.text


# --------------------------------------------------------------------------- properties
LABEL_PATH = 'data/label.txt'
ERROR_START = re.compile(r'^%s:(\d+): ' % re.escape(LABEL_PATH))

# text built from the pieces a label file is made of, plus arbitrary characters
_TOKENS = st.sampled_from(['#', '# ', 'a.jpg', 'b/c.png', '0', '1', '-1', '-1.0', '0.0', '2.5',
                           '1e9', '-3', 'nan', 'inf', '-inf', '1e400', '0x10', '1_0', 'x', ' ',
                           '\t', '\n', '\r\n', '\r', '\ufeff', '\x0b', '\x1c', '\u2028', '\xa0'])
_LABELISH_TEXT = st.lists(st.one_of(_TOKENS, st.text(max_size=4)), max_size=80).map(''.join)


def _check_outcome(text):
    try:
        parsed = parse_label_text(text, LABEL_PATH)
    except LabelFormatError as err:
        match = ERROR_START.match(str(err))
        assert match, str(err)
        num_lines = len(text.replace('\r\n', '\n').replace('\r', '\n').split('\n'))
        assert 1 <= int(match.group(1)) <= num_lines
        return None
    num_faces = len(parsed.face_rows)
    assert parsed.face_rows.shape == (num_faces, 20)
    assert np.isfinite(parsed.face_rows).all() and (parsed.face_rows[:, 2:4] >= 0).all()
    assert parsed.face_image.shape == parsed.face_lines.shape == (num_faces,)
    assert len(parsed.image_names) == len(set(parsed.image_names)) == len(parsed.header_sizes)
    assert len(parsed.image_lines) == len(parsed.image_names)
    if num_faces:
        assert 0 <= parsed.face_image.min() and parsed.face_image.max() < len(parsed.image_names)
        assert (np.diff(parsed.face_lines) > 0).all()
    return parsed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_LABELISH_TEXT)
def test_labelish_text_parses_or_raises_a_located_label_error(text):
    _check_outcome(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_raises_a_located_label_error(text):
    _check_outcome(text)


_COORD = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
_SIZE = st.floats(0, 1e6, allow_nan=False, allow_infinity=False)
_POINT = st.one_of(st.just((-1.0, -1.0, -1.0)),
                   st.tuples(_COORD, _COORD, st.sampled_from([0.0, 1.0])))
_TRAIN_FACE = st.tuples(_COORD, _COORD, _SIZE, _SIZE, st.lists(_POINT, min_size=5, max_size=5),
                        st.floats(-1, 1, allow_nan=False))
_VAL_FACE = st.tuples(_COORD, _COORD, _SIZE, _SIZE)
_IMAGE = st.tuples(st.booleans(), st.lists(st.one_of(_TRAIN_FACE, _VAL_FACE), max_size=4))


@settings(max_examples=200, deadline=None)
@given(st.lists(_IMAGE, max_size=6), st.booleans(), st.sampled_from(['\n', '\r\n']))
def test_well_formed_files_parse_back_to_their_numbers(images, bom, newline):
    lines, expected_rows, expected_image = [], [], []
    for number, (with_size, faces) in enumerate(images):
        lines.append('# img%d.jpg%s' % (number, ' 640 480' if with_size else ''))
        for face in faces:
            row = list(face[:4])
            if len(face) == 6:
                row += [v for point in face[4] for v in point] + [face[5]]
            lines.append(' '.join(repr(float(v)) for v in row))
            expected_rows.append(row if len(row) == 20 else row + [-1.0] * 15 + [0.0])
            expected_image.append(number)
    text = ('\ufeff' if bom else '') + newline.join(lines) + newline
    parsed = _check_outcome(text)
    assert parsed is not None
    assert parsed.image_names == ['img%d.jpg' % n for n in range(len(images))]
    assert parsed.header_sizes == [(480, 640) if with_size else None for with_size, _ in images]
    np.testing.assert_array_equal(parsed.face_rows,
                                  np.array(expected_rows, np.float64).reshape(-1, 20))
    np.testing.assert_array_equal(parsed.face_image, expected_image)


_ANY_VALUE = st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False)


@pytest.fixture(scope='module')
def one_image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp('images')
    (folder / 'a.jpg').write_bytes(b'')             # sizes come from the label file
    return str(folder)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_ANY_VALUE, _ANY_VALUE, st.floats(0, 1e12), st.floats(0, 1e12)),
                max_size=12),
       st.integers(1, 2000), st.integers(1, 2000), st.booleans())
def test_kept_boxes_lie_in_the_image_and_mostly_inside(one_image_dir, faces, width, height,
                                                         drop_outside):
    rows = np.array([list(face) + [-1.0] * 15 + [0.0] for face in faces],
                    np.float64).reshape(-1, 20)
    parsed = reader.ParsedLabels(['a.jpg'], [(height, width)], rows,
                                 np.zeros(len(rows), np.int64),
                                 np.arange(2, len(rows) + 2, dtype=np.int64), [1], LABEL_PATH)
    columns = reader.build_columns(parsed, one_image_dir, drop_outside_boxes=drop_outside)
    boxes = columns['boxes'].astype(np.float64)
    # the original's clipping: only the far corner, to W / H
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    kept_rows = rows[[i for i, face in enumerate(faces) if _kept_by_hand(face, width, height,
                                                                         drop_outside)]]
    assert len(boxes) == len(kept_rows) == int(columns['num_boxes'].sum())
    if drop_outside:       # less of each kept box outside the image than inside
        for x, y, w, h in kept_rows[:, :4]:
            for start, size, limit in ((x, w, width), (y, h, height)):
                inside = max(0.0, min(start + size, limit) - max(start, 0.0))
                assert size - inside <= inside


def _kept_by_hand(face, width, height, drop_outside):
    """One face, scalar arithmetic: does it survive clipping (and the outside rule)?"""
    x, y, w, h = face
    for start, size, limit in ((x, w, width), (y, h, height)):
        low = np.float32(start)                          # the near corner is not clipped
        high = np.float32(min(start + size, limit))      # the far one is, to W / H
        if not high - low > 0:
            return False
        inside = max(0.0, min(start + size, limit) - max(start, 0.0))
        if drop_outside and size - inside > inside:
            return False
    return True
