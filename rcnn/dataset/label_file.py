"""The RetinaFace ``label.txt`` format: the one reader and the one writer.

Every reader of a ``label.txt`` (the training/validation dataset, the evaluator's ground truth,
``tools/demo.py``) parses it with :func:`read_label_file`, and the sample-set generator writes it
with :func:`write_label_file`; all format errors are :class:`LabelFormatError` naming the file and
the line.

Format
    A sequence of image blocks. A block starts with ``# <path>`` (relative to ``images/``),
    optionally followed by ``<width> <height>`` when the file states the image size. Each
    following non-empty line is one face, in one of two formats decided per line by its count of
    numbers:

    * 20 numbers (train): ``x y w h`` then 5 x ``(px py flag)`` then ``blur``. Points are left
      eye, right eye, nose, left and right mouth corners. Flag ``0.0`` means visible and ``1.0``
      (any value > 0) not visible; a point written ``-1 -1 -1`` is missing. ``blur`` < 0 means
      "no attribute".
    * 4 numbers (val): ``x y w h`` only.

    A block with no face lines is an image without boxes (the test split has only ``# path``
    lines). Blank lines are skipped. Lines end at ``\n``, ``\r\n`` or ``\r`` (as a text-mode
    ``open`` reads them) and line numbers in messages count every line, as an editor shows them.
    A UTF-8 byte order mark at the start of the file is ignored (anywhere else it is an error).

Strictness
    The default (training data) refuses a face line before any ``# path`` line, a repeated image
    path, a count of numbers other than 4 or 20, a non-number, a non-finite value, a negative
    width or height, and an inconsistent landmark point (``-1 -1`` coordinates with a flag other
    than -1, or a negative flag on a present point).

    ``boxes_only=True`` (evaluation ground truth, as the standard WIDER FACE evaluation reads it)
    reads only ``x y w h`` of each face line: further columns are ignored, and negative sizes
    are kept (such a box can never be matched). The block structure is checked the same way.
"""
import numpy as np

from rcnn.utils.fileio import atomic_write_text
from rcnn.model_layout import NUM_LANDMARKS as _LAYOUT_NUM_LANDMARKS

__all__ = ['LabelFormatError', 'ParsedLabels', 'parse_label_text', 'read_label_file',
           'read_label_bytes', 'decode_label_bytes', 'count_images', 'format_number',
           'format_face_line', 'format_label_text', 'write_label_file', 'NUM_LANDMARKS',
           'TRAIN_LINE_LENGTH', 'BOX_ONLY_LINE_LENGTH', 'MISSING']

NUM_LANDMARKS = _LAYOUT_NUM_LANDMARKS          # the model layout's landmarks per face
TRAIN_LINE_LENGTH = 4 + 3 * NUM_LANDMARKS + 1   # x y w h, 5 x (x y flag), blur
BOX_ONLY_LINE_LENGTH = 4                        # x y w h
MISSING = -1.0                                  # a missing landmark coordinate / flag


class LabelFormatError(ValueError):
    """A label file that cannot be read; ``str()`` is ``file:line: reason`` (``file: reason``
    when the fault is not on one line). Attributes ``path``, ``line`` (1-based or None),
    ``reason``."""

    def __init__(self, path, line, reason):
        self.path, self.line, self.reason = path, line, reason
        location = '%s:%d' % (path, line) if line else str(path)
        super(LabelFormatError, self).__init__('%s: %s' % (location, reason))

    def __reduce__(self):
        return type(self), (self.path, self.line, self.reason)


class ParsedLabels:
    """Raw content of a label file, before image sizes and clipping.

    Attributes:
        image_names   list of M str, paths relative to ``images/``, file order
        header_sizes  list of M (height, width) from ``# path W H`` lines, or None
        face_rows     (N, 20) float64, x y w h, 5 x (x y flag), blur; 4-number
                      lines are padded with -1 landmarks and blur 0.0
        face_image    (N,) int64, index into ``image_names`` of each face
        face_lines    (N,) int64, 1-based line number of each face
        image_lines   (M,) int64, 1-based line number of each ``# path`` line
        label_path    str, the file the text came from (for messages)
    """

    def __init__(self, image_names, header_sizes, face_rows, face_image, face_lines,
                 image_lines=None, label_path='label.txt'):
        self.image_names = image_names
        self.header_sizes = header_sizes
        self.face_rows = face_rows
        self.face_image = face_image
        self.face_lines = face_lines
        self.image_lines = (np.zeros(len(image_names), np.int64) if image_lines is None
                            else np.asarray(image_lines, np.int64))
        self.label_path = label_path

    def faces_per_image(self):
        """(M,) int64, the number of face lines of each image."""
        return np.bincount(self.face_image, minlength=len(self.image_names))


# ----------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------

_BOX_ONLY_PADDING = [MISSING] * (3 * NUM_LANDMARKS) + [0.0]
_BOM = '\ufeff'


def _parse_header_line(line, label_path, line_no):
    """``# path [W H]`` -> (path, (height, width) or None)."""
    tokens = line[1:].split()
    if not tokens:
        raise LabelFormatError(label_path, line_no, '"#" line without an image path')
    if len(tokens) == 1:
        return tokens[0], None
    if len(tokens) == 3:
        try:
            width, height = int(tokens[1]), int(tokens[2])
        except ValueError:
            width = height = 0
        if width > 0 and height > 0:
            return tokens[0], (height, width)
    raise LabelFormatError(label_path, line_no, 'expected "# <image path>" or "# <image path> '
                                                '<width> <height>", got %r' % line)


def _bad_count_error(tokens, label_path, line_no):
    return LabelFormatError(label_path, line_no, 'expected %d numbers (x y w h) or %d (x y w h, '
                            '5 x (x y flag), blur), got %d' % (BOX_ONLY_LINE_LENGTH,
                                                              TRAIN_LINE_LENGTH, len(tokens)))


def _not_a_number_error(tokens, label_path, line_no):
    bad = next(token for token in tokens if not _is_float(token))
    return LabelFormatError(label_path, line_no, '%r is not a number' % bad)


def _is_float(token):
    try:
        float(token)
    except ValueError:
        return False
    return True


def parse_label_text(text, label_path='label.txt', boxes_only=False):
    """Parse the text of a label file into :class:`ParsedLabels`.

    ``label_path`` is only used in error messages; ``boxes_only`` selects the evaluation
    strictness (module docstring). Raises :class:`LabelFormatError` (``file:line: reason``).
    """
    image_names, header_sizes, first_line_of = [], [], {}
    values, row_image, row_lines = [], [], []
    extend_values = values.extend
    if text.startswith(_BOM):
        text = text[1:]
    lines = text.replace('\r\n', '\n').replace('\r', '\n').split('\n')
    for line_no, raw_line in enumerate(lines, 1):
        line = raw_line.strip()
        if not line:
            continue
        if line.startswith('#'):
            name, size = _parse_header_line(line, label_path, line_no)
            if name in first_line_of:
                raise LabelFormatError(label_path, line_no, 'image %s already listed at line %d'
                                       % (name, first_line_of[name]))
            first_line_of[name] = line_no
            image_names.append(name)
            header_sizes.append(size)
            continue
        if not image_names:
            raise LabelFormatError(label_path, line_no,
                                   'face line before any "# <image path>" line')
        tokens = line.split()
        if boxes_only:
            if len(tokens) < BOX_ONLY_LINE_LENGTH:
                raise LabelFormatError(label_path, line_no,
                                       'expected "x y w h [...]", got %r' % line)
            tokens = tokens[:BOX_ONLY_LINE_LENGTH]
        elif len(tokens) != TRAIN_LINE_LENGTH and len(tokens) != BOX_ONLY_LINE_LENGTH:
            raise _bad_count_error(tokens, label_path, line_no)
        try:
            extend_values(map(float, tokens))   # flat list: ~2x faster than a list per line
        except ValueError:
            raise _not_a_number_error(tokens, label_path, line_no) from None
        if len(tokens) == BOX_ONLY_LINE_LENGTH:
            extend_values(_BOX_ONLY_PADDING)
        row_image.append(len(image_names) - 1)
        row_lines.append(line_no)
    face_rows = np.array(values, np.float64).reshape(-1, TRAIN_LINE_LENGTH)
    face_lines = np.array(row_lines, np.int64)
    _check_face_values(face_rows, face_lines, label_path, boxes_only)
    return ParsedLabels(image_names, header_sizes, face_rows, np.array(row_image, np.int64),
                        face_lines, [first_line_of[name] for name in image_names], label_path)


def _raise_at_first(bad_rows, face_lines, label_path, reason):
    """Raise LabelFormatError for the first True in ``bad_rows`` (N,) bool, if any."""
    if bad_rows.any():
        first = int(np.argmax(bad_rows))
        raise LabelFormatError(label_path, int(face_lines[first]), reason(first))


def _check_face_values(face_rows, face_lines, label_path, boxes_only=False):
    """Vectorised value checks on (N, 20) face rows; errors name the first bad line."""
    _raise_at_first(~np.isfinite(face_rows).all(axis=1), face_lines, label_path,
                    lambda i: 'non-finite value')
    if boxes_only:
        return
    _raise_at_first((face_rows[:, 2:4] < 0).any(axis=1), face_lines, label_path,
                    lambda i: 'negative box size w=%g h=%g' % tuple(face_rows[i, 2:4]))
    points = face_rows[:, 4:4 + 3 * NUM_LANDMARKS].reshape(-1, NUM_LANDMARKS, 3)
    missing_xy = (points[:, :, 0] == MISSING) & (points[:, :, 1] == MISSING)
    flags = points[:, :, 2]
    bad_point = (missing_xy & (flags != MISSING)) | (~missing_xy & (flags < 0))
    _raise_at_first(bad_point.any(axis=1), face_lines, label_path,
                    lambda i: 'landmark point %d: missing points must be "-1 -1 -1" and present'
                              ' points need a flag >= 0' % int(np.argmax(bad_point[i])))


def read_label_bytes(label_path):
    """The bytes of a label file; ``FileNotFoundError('label file not found: ...')``."""
    try:
        with open(label_path, 'rb') as stream:
            return stream.read()
    except FileNotFoundError:
        raise FileNotFoundError('label file not found: %s' % label_path) from None


def decode_label_bytes(data, label_path='label.txt'):
    """UTF-8 text of a label file's bytes; :class:`LabelFormatError` naming the line otherwise."""
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as err:
        raise LabelFormatError(label_path, data[:err.start].count(b'\n') + 1,
                               'not UTF-8 text (%s)' % err) from None


def read_label_file(label_path, boxes_only=False, data=None):
    """Read and parse a label file (:func:`parse_label_text`).

    ``data``: the file's bytes when the caller already holds them (the dataset hashes them for
    its cache). Raises ``FileNotFoundError('label file not found: ...')`` or
    :class:`LabelFormatError`.
    """
    if data is None:
        data = read_label_bytes(label_path)
    return parse_label_text(decode_label_bytes(data, label_path), label_path, boxes_only)


def count_images(data):
    """Number of ``# path`` lines in a label file's bytes (no parsing, no checks)."""
    if data.startswith(_BOM.encode('utf-8')):
        data = data[len(_BOM.encode('utf-8')):]
    return sum(1 for line in data.splitlines() if line.lstrip().startswith(b'#'))


# ----------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------

def format_number(value):
    """Label-file text of one number: integers as ``12``, floats compact: ``12.346``, ``0.0``,
    ``-1.0`` (3 decimals at most)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return '%d' % value
    text = ('%.3f' % value).rstrip('0')
    return text + '0' if text.endswith('.') else text


def format_face_line(box, landmarks=None, blur=None):
    """One face line: ``x y w h`` (val), or with ``landmarks`` (5, 3) ``x y flag`` in the file's
    convention and ``blur`` the 20-number train line. Integer boxes are written as integers."""
    numbers = [format_number(v) for v in box]
    if landmarks is not None:
        numbers += [format_number(float(v)) for v in np.asarray(landmarks).reshape(-1)]
        numbers.append(format_number(float(blur)))
    if len(numbers) not in (BOX_ONLY_LINE_LENGTH, TRAIN_LINE_LENGTH):
        raise ValueError('a face line has %d or %d numbers, got %d'
                         % (BOX_ONLY_LINE_LENGTH, TRAIN_LINE_LENGTH, len(numbers)))
    return ' '.join(numbers)


def format_label_text(images):
    """Text of a label file from ``images``: iterable of (image path, list of face lines as
    made by :func:`format_face_line`)."""
    lines = []
    for image_name, face_lines in images:
        if not image_name or any(c.isspace() for c in image_name):
            raise ValueError('image path %r: must be non-empty, without spaces' % (image_name,))
        lines.append('# %s' % image_name)
        lines.extend(face_lines)
    return '\n'.join(lines) + ('\n' if lines else '')


def write_label_file(label_path, images):
    """Write :func:`format_label_text` of ``images`` to ``label_path`` (atomically)."""
    atomic_write_text(label_path, format_label_text(images))
