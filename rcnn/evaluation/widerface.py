"""WIDER FACE evaluation: ground truth, submission files and the standard AP protocol.

Ground truth
    * the official ``.mat`` files (a directory holding ``wider_face_val.mat`` and
      ``wider_{easy,medium,hard}_val.mat``): ``wider_face_val.mat`` gives ``event_list``,
      ``file_list`` and ``face_bbx_list`` (``x y w h`` per face); each setting file gives
      ``gt_list``, the 1-based indices of the faces *kept* in that setting. The other faces
      of an image are "ignore" boxes in that setting.
    * a RetinaFace ``label.txt`` (val format: ``# event/name.jpg`` lines, each followed by one
      ``x y w h [...]`` line per face; extra columns such as landmarks are ignored). It has no
      difficulty labels, so the settings are split by box height ``h`` (see
      :data:`LABEL_MIN_HEIGHT`, derived from the official val split: 98% of the official val
      faces at least 50 px tall are kept in *easy*, 98% of those at least 30 px in *medium*).
      ``split='all'`` counts every face in every setting instead.

Predictions (the submission format, one file per image)
    ``<pred_dir>/<event>/<image>.txt``: line 1 the image name (``event/image.jpg`` or just the
    name), line 2 the number of boxes, then one ``x y w h score`` line per box, with
    ``w = x2 - x1`` and ``h = y2 - y1``. :func:`write_prediction_file` writes exactly this and
    :func:`read_prediction_file` reads it back. Given landmarks, each box line also carries the
    5 points ``x1 y1 ... x5 y5`` (15 values a line: write them only for evaluators that read
    this form, such as this one); the reader accepts either form and gives the points back.

Protocol (the standard WIDER FACE evaluation)
    1. Scores are min-max normalised over all predictions of the evaluated images (all equal
       scores normalise to 1.0 instead of dividing by zero).
    2. Per image, predictions are taken in descending score order. A prediction matches the
       ground-truth box of highest IoU (the first one on ties) when that IoU >= ``iou_thresh``
       (IoU with the +1 pixel convention on ``x1 y1 x2 = x + w, y2 = y + h``, in float64). If
       that box is an ignore box of the setting the prediction counts as neither true nor false
       positive; otherwise the first matching prediction recalls the face and later ones are
       false positives.
    3. For ``t`` in 0..999, ``thresh = 1 - (t + 1) / 1000``: precision = recalled faces /
       counted proposals with score >= thresh, recall = recalled faces / faces of the setting
       (images without predictions still count their faces). Images without any ground-truth
       box are skipped, as in the standard code (their predictions are not false positives).
    4. AP = VOC all-point interpolation of that curve.

    Because a prediction's status depends only on its own best ground truth, the greedy loop is
    equivalent to: a face is recalled at the highest score among the predictions matching it,
    and a prediction is counted unless it matches an ignore box. The evaluation is therefore
    vectorised: one IoU matrix per image (:func:`match_set`, shared by the three settings and
    the face-size bands of :mod:`rcnn.evaluation.size_bands`), then sorted counts against the
    1,000 thresholds over the whole set (:func:`setting_result`).
"""
import logging
import os
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from rcnn.dataset.label_file import NUM_LANDMARKS, LabelFormatError, read_label_file
from rcnn.utils.fileio import atomic_write_text

__all__ = ['SETTINGS', 'LABEL_MIN_HEIGHT', 'PredictionFormatError', 'WiderGroundTruth',
           'SettingResult', 'load_ground_truth', 'load_mat_ground_truth',
           'load_label_ground_truth', 'read_prediction_file', 'suspicious_rows',
           'read_predictions',
           'write_prediction_file', 'pairwise_iou', 'count_recalled', 'normalise_scores',
           'match_predictions', 'pr_thresholds', 'pr_curve', 'voc_ap', 'MatchedSet',
           'match_set', 'setting_result', 'evaluate_predictions', 'evaluate',
           'PREDICTION_LANDMARKS', 'BOX_COLUMNS', 'LANDMARK_COLUMNS']

logger = logging.getLogger(__name__)

SETTINGS = ('easy', 'medium', 'hard')
# label.txt ground truth, split='size': a face is counted in a setting when its box height
# (h of ``x y w h``) is at least this many pixels; smaller faces are ignore boxes there.
LABEL_MIN_HEIGHT = {'easy': 50.0, 'medium': 30.0, 'hard': 0.0}
NUM_THRESHOLDS = 1000
_MAX_LISTED = 10          # missing prediction files named in the warning
_IOU_CHUNK = 4096         # predictions per IoU block (bounds memory on huge files)
#: points per face in prediction files that carry landmarks
PREDICTION_LANDMARKS = NUM_LANDMARKS
#: columns of a prediction row: ``x y w h score``, optionally followed by ``x1 y1 ... x5 y5``
BOX_COLUMNS = 5
LANDMARK_COLUMNS = BOX_COLUMNS + 2 * PREDICTION_LANDMARKS


class PredictionFormatError(ValueError):
    """A prediction file that does not follow the submission format."""


# ----------------------------------------------------------------------------- ground truth

@dataclass
class WiderGroundTruth:
    """Ground truth of an evaluation set.

    Attributes:
        events: per image, its event folder (``'0--Parade'``; ``''`` when there is none).
        names: per image, its file name without extension.
        boxes: per image, (G_i, 4) float64 ``x y w h``.
        keep: setting -> (sum G_i,) bool over all faces in image order; True when the face is
            counted in that setting, False for an ignore box.
        source: where it was read from (for messages).
    """
    events: list
    names: list
    boxes: list
    keep: dict
    source: str = ''
    face_offsets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        sizes = np.array([len(b) for b in self.boxes], dtype=np.int64)
        self.face_offsets = np.concatenate([[0], np.cumsum(sizes)])
        if not (len(self.events) == len(self.names) == len(self.boxes)):
            raise ValueError('%s: events, names and boxes differ in length' % self.source)
        for setting in SETTINGS:
            if setting not in self.keep:
                raise ValueError('%s: no %r setting' % (self.source, setting))
            if len(self.keep[setting]) != self.face_offsets[-1]:
                raise ValueError('%s: the %s keep mask has %d entries for %d faces' % (
                    self.source, setting, len(self.keep[setting]), self.face_offsets[-1]))

    @property
    def num_images(self):
        return len(self.names)

    def num_faces(self, setting=None):
        """Faces counted in ``setting`` (all faces when None)."""
        if setting is None:
            return int(self.face_offsets[-1])
        return int(np.count_nonzero(self.keep[setting]))

    def image_keep(self, setting, index):
        """(G_i,) bool: the faces of image ``index`` counted in ``setting``."""
        return self.keep[setting][self.face_offsets[index]:self.face_offsets[index + 1]]

    def prediction_path(self, pred_dir, index):
        """``<pred_dir>/<event>/<name>.txt`` for image ``index``."""
        return os.path.join(pred_dir, self.events[index], self.names[index] + '.txt')

    def select(self, image_indices):
        """A new ground truth restricted to ``image_indices`` (in that order)."""
        idx = [int(i) for i in image_indices]
        keep = {s: np.concatenate([np.zeros(0, bool)] + [self.image_keep(s, i) for i in idx])
                for s in SETTINGS}
        return WiderGroundTruth([self.events[i] for i in idx], [self.names[i] for i in idx],
                                [self.boxes[i] for i in idx], keep, self.source)


def _mat_string(cell):
    """A MATLAB char array cell as loaded by scipy (``array(['name'])``) -> str."""
    return str(np.asarray(cell).ravel()[0])


def _load_mat(path, keys):
    import scipy.io
    if not os.path.isfile(path):
        raise FileNotFoundError('WIDER ground truth file not found: %s' % path)
    try:
        data = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several types for a corrupt file
        raise ValueError('%s: not a readable .mat file (%s)' % (path, exc)) from exc
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError('%s: missing variable(s) %s' % (path, ', '.join(missing)))
    return data


def load_mat_ground_truth(gt_dir):
    """Read the official evaluation ground truth.

    Args:
        gt_dir: directory with ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat``.
    Returns:
        :class:`WiderGroundTruth`.
    """
    face_path = os.path.join(gt_dir, 'wider_face_val.mat')
    face = _load_mat(face_path, ('event_list', 'file_list', 'face_bbx_list'))
    event_cells = face['event_list'].ravel()
    file_cells = face['file_list'].ravel()
    bbox_cells = face['face_bbx_list'].ravel()
    if not (len(event_cells) == len(file_cells) == len(bbox_cells)):
        raise ValueError('%s: event_list, file_list and face_bbx_list differ in length' % face_path)
    events, names, boxes, event_sizes = [], [], [], []
    for e, event_cell in enumerate(event_cells):
        event = _mat_string(event_cell)
        files = np.asarray(file_cells[e]).ravel()
        bboxes = np.asarray(bbox_cells[e]).ravel()
        if len(files) != len(bboxes):
            raise ValueError('%s: event %s has %d files but %d box lists'
                             % (face_path, event, len(files), len(bboxes)))
        event_sizes.append(len(files))
        for name_cell, box_cell in zip(files, bboxes):
            box = np.asarray(box_cell, dtype=np.float64)
            if box.size % 4:
                raise ValueError('%s: %s/%s has a box list of shape %s, expected (N, 4)'
                                 % (face_path, event, _mat_string(name_cell), box.shape))
            events.append(event)
            names.append(_mat_string(name_cell))
            boxes.append(box.reshape(-1, 4))
    keep = {}
    for setting in SETTINGS:
        keep[setting] = _read_setting_keep(os.path.join(gt_dir, 'wider_%s_val.mat' % setting),
                                           events, names, boxes, event_sizes)
    return WiderGroundTruth(events, names, boxes, keep, source=gt_dir)


def _read_setting_keep(path, events, names, boxes, event_sizes):
    """(total faces,) bool keep mask from a setting file's 1-based ``gt_list`` indices."""
    gt_cells = _load_mat(path, ('gt_list',))['gt_list'].ravel()
    if len(gt_cells) != len(event_sizes):
        raise ValueError('%s: gt_list has %d events, wider_face_val.mat has %d'
                         % (path, len(gt_cells), len(event_sizes)))
    masks = []
    image = 0
    for e, size in enumerate(event_sizes):
        cells = np.asarray(gt_cells[e]).ravel()
        if len(cells) != size:
            raise ValueError('%s: event %s lists %d images in gt_list, wider_face_val.mat has %d'
                             % (path, events[image] if size else e, len(cells), size))
        for cell in cells:
            index = np.asarray(cell).ravel().astype(np.int64)
            mask = np.zeros(len(boxes[image]), dtype=bool)
            if index.size:
                if index.min() < 1 or index.max() > len(mask):
                    raise ValueError('%s: %s/%s keeps face index %d, the image has %d faces'
                                     % (path, events[image], names[image],
                                        index.max() if index.max() > len(mask) else index.min(),
                                        len(mask)))
                mask[index - 1] = True
            masks.append(mask)
            image += 1
    return np.concatenate([np.zeros(0, bool)] + masks)


def load_label_ground_truth(label_path, split='size', min_height=None):
    """Read a RetinaFace ``label.txt`` as evaluation ground truth.

    Args:
        label_path: file of ``# event/name.jpg`` lines, each followed by ``x y w h [...]`` lines,
            read by :func:`rcnn.dataset.label_file.read_label_file` with ``boxes_only=True``
            (errors are its ``LabelFormatError``, a ValueError naming the file and line).
        split: ``'size'`` keeps a face in a setting when its height >= ``min_height[setting]``;
            ``'all'`` counts every face in every setting.
        min_height: setting -> pixels; defaults to :data:`LABEL_MIN_HEIGHT`.
    Returns:
        :class:`WiderGroundTruth`.
    """
    if split not in ('size', 'all'):
        raise ValueError("split must be 'size' or 'all', got %r" % (split,))
    thresholds = dict(LABEL_MIN_HEIGHT if min_height is None else min_height)
    parsed = read_label_file(label_path, boxes_only=True)
    if not parsed.image_names:
        raise LabelFormatError(label_path, None, 'no "# image" line found')
    events = [os.path.dirname(path) for path in parsed.image_names]
    names = [os.path.splitext(os.path.basename(path))[0] for path in parsed.image_names]
    ends = np.cumsum(parsed.faces_per_image())
    rows = np.split(parsed.face_rows[:, :4], ends[:-1])
    boxes = [np.ascontiguousarray(r, dtype=np.float64) for r in rows]
    negative = np.flatnonzero((parsed.face_rows[:, 2] < 0) | (parsed.face_rows[:, 3] < 0))
    if len(negative):
        logger.warning('%s: %d face(s) with a negative width or height (kept, as the standard '
                       'evaluation does; they can never be matched), first at %s',
                       label_path, len(negative), ', '.join(
                           'line %d (x y w h = %s)' % (parsed.face_lines[i], ' '.join(
                               '%g' % v for v in parsed.face_rows[i, :4]))
                           for i in negative[:3]))
    all_boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    if split == 'all':
        keep = {s: np.ones(len(all_boxes), dtype=bool) for s in SETTINGS}
    else:
        keep = {s: all_boxes[:, 3] >= float(thresholds[s]) for s in SETTINGS}
    return WiderGroundTruth(events, names, boxes, keep, source=label_path)


def load_ground_truth(gt_path, label_split='size'):
    """Ground truth from a directory of the 4 official ``.mat`` files, or a ``label.txt``.

    A directory without ``wider_face_val.mat`` but with a ``label.txt`` uses the latter.
    """
    if os.path.isdir(gt_path):
        if os.path.isfile(os.path.join(gt_path, 'wider_face_val.mat')):
            return load_mat_ground_truth(gt_path)
        label = os.path.join(gt_path, 'label.txt')
        if os.path.isfile(label):
            return load_label_ground_truth(label, split=label_split)
        raise FileNotFoundError('--gt %s: no wider_face_val.mat (+ wider_{easy,medium,hard}_val'
                                '.mat) and no label.txt in this directory' % gt_path)
    if os.path.isfile(gt_path):
        if gt_path.endswith('.mat'):
            return load_mat_ground_truth(os.path.dirname(gt_path) or '.')
        return load_label_ground_truth(gt_path, split=label_split)
    raise FileNotFoundError('ground truth not found: %s' % gt_path)


# ----------------------------------------------------------------------------- predictions

def write_prediction_file(path, image_name_line, boxes, landmarks=None):
    """Write one image's detections in the submission format, atomically.

    Args:
        path: destination ``.txt`` (parent folders are created).
        image_name_line: first line, e.g. ``'0--Parade/0_Parade_marchingband_1_465.jpg'``.
        boxes: (N, 5) float, ``x1 y1 x2 y2 score``; written as ``'%d %d %d %d %g'`` of
            ``x1, y1, x2 - x1, y2 - y1, score``.
        landmarks: optional (N, 5, 2) float, the 5 points ``(x, y)`` of each box; appended to
            its line as 10 ``%.1f`` values ``x1 y1 ... x5 y5``. Without them the file is exactly
            the submission format.
    """
    name = str(image_name_line).strip()
    if not name or '\n' in name or '\r' in name:
        raise ValueError('image_name_line must be one non-empty line, got %r' % (image_name_line,))
    dets = np.asarray(boxes, dtype=np.float64)
    if dets.size == 0:
        dets = dets.reshape(0, 5)
    if dets.ndim != 2 or dets.shape[1] != 5:
        raise ValueError('boxes must be (N, 5) x1 y1 x2 y2 score, got shape %s' % (dets.shape,))
    if not np.all(np.isfinite(dets)):
        raise ValueError('boxes for %s contain NaN or infinite values' % name)
    lines = [name, str(len(dets))]
    rows = ['%d %d %d %d %g' % (x1, y1, x2 - x1, y2 - y1, score)
            for x1, y1, x2, y2, score in dets.tolist()]
    if landmarks is not None:
        flat = _checked_landmarks(landmarks, len(dets), name).reshape(
            len(dets), 2 * PREDICTION_LANDMARKS)
        rows = [row + ' ' + ' '.join('%.1f' % v for v in values)
                for row, values in zip(rows, flat.tolist())]
    lines += rows
    atomic_write_text(path, '\n'.join(lines) + '\n')


def _checked_landmarks(landmarks, num_boxes, name):
    """(num_boxes, 5, 2) float64 of ``landmarks``; ValueError naming the image otherwise."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.size == 0 and num_boxes == 0:
        return points.reshape(0, PREDICTION_LANDMARKS, 2)
    if points.shape != (num_boxes, PREDICTION_LANDMARKS, 2):
        raise ValueError('landmarks for %s must be (%d, %d, 2) to go with %d boxes, got shape %s'
                         % (name, num_boxes, PREDICTION_LANDMARKS, num_boxes, points.shape))
    if not np.all(np.isfinite(points)):
        raise ValueError('landmarks for %s contain NaN or infinite values' % name)
    return points


def _format_error(path, line_no, message):
    return PredictionFormatError('%s:%d: %s' % (path, line_no, message))


def _read_lines(path):
    """The text lines of a file (UTF-8, an optional BOM dropped, any newline convention), with
    the line numbers an editor shows."""
    with open(path, 'rb') as f:
        data = f.read()
    try:
        text = data.decode('utf-8-sig')
    except UnicodeDecodeError as err:
        raise _format_error(path, data[:err.start].count(b'\n') + 1,
                            'not UTF-8 text (byte 0x%02x)' % data[err.start]) from None
    lines = text.replace('\r\n', '\n').replace('\r', '\n').split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    return lines


def _parse_rows(path, line_numbers, rows):
    """(N, 5) or (N, 15) float64 of the box rows; a format error naming the first bad line."""
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError:
        pass
    values = []
    for n, r in zip(line_numbers, rows):
        try:
            values.append([float(v) for v in r])
        except ValueError:
            raise _format_error(path, int(n), 'not a number in %r' % ' '.join(r)) from None
    return np.array(values, dtype=np.float64)


def suspicious_rows(path, line_numbers, values):
    """Messages (``file:line: ...``) about rows that parse but are probably wrong: a negative
    width or height (such a box can never match a face) and a score outside [0, 1] (scores are
    min-max normalised over all files, so one extreme score such as 1e30 squeezes every other
    score into one end of the curve). At most one message per kind, with the count.
    """
    messages = []
    checks = (((values[:, 2] < 0) | (values[:, 3] < 0), 'negative width or height'),
              ((values[:, 4] < 0) | (values[:, 4] > 1),
               'score outside [0, 1] (scores are min-max normalised over all files: an extreme '
               'one squeezes all others together)'))
    for bad, what in checks:
        if bad.any():
            first = int(np.argmax(bad))
            messages.append('%s:%d: %s: %s%s' % (
                path, int(line_numbers[first]), what,
                ' '.join('%g' % v for v in values[first]),
                ' (and %d more line(s) in this file)' % (bad.sum() - 1) if bad.sum() > 1 else ''))
    return messages


def read_prediction_file(path, expected_name=None, notes=None, with_landmarks=False):
    """Read one submission file.

    Box rows are ``x y w h score`` (the submission format) or ``x y w h score`` followed by the
    10 landmark values ``x1 y1 ... x5 y5`` (as :func:`write_prediction_file` writes them with
    ``landmarks``); all rows of a file have the same number of columns.

    Args:
        path: the ``.txt`` file.
        expected_name: image name without extension; when given, line 1 must name that image.
        notes: a list receiving the :func:`suspicious_rows` messages; when None they are
            logged as warnings.
        with_landmarks: also return the landmarks.
    Returns:
        (N, 5) float64, ``x y w h score`` as written; with ``with_landmarks`` the pair
        ``(boxes, landmarks)``, landmarks (N, 5, 2) float64 or None when the file has none.
    Raises:
        PredictionFormatError: naming the file and line (malformed line, non-finite value,
            not UTF-8) or the file (count line disagreeing with the boxes). Negative sizes and
            scores outside [0, 1] are accepted, as by the standard code, with a warning.
    """
    lines = _read_lines(path)
    if not lines or not lines[0].strip():
        raise _format_error(path, 1, 'missing image name line')
    header = lines[0].strip()
    if expected_name is not None:
        header_name = os.path.splitext(os.path.basename(header.replace('\\', '/')))[0]
        if header_name != expected_name:
            raise _format_error(path, 1, 'names image %r, expected %r' % (header, expected_name))
    if len(lines) < 2:
        raise _format_error(path, 2, 'missing box count line')
    try:
        count = int(lines[1].strip())
    except ValueError:
        raise _format_error(path, 2, 'box count must be an integer, got %r' % lines[1]) from None
    if count < 0:
        raise _format_error(path, 2, 'negative box count %d' % count)
    rows = [line.split() for line in lines[2:]]
    line_numbers = np.flatnonzero([len(r) > 0 for r in rows]) + 3
    rows = [r for r in rows if r]
    _check_row_lengths(path, lines, line_numbers, rows)
    if len(rows) != count:
        raise _format_error(path, 2, 'announces %d boxes but the file has %d'
                            % (count, len(rows)))
    if not rows:
        boxes = np.zeros((0, BOX_COLUMNS), dtype=np.float64)
        return (boxes, None) if with_landmarks else boxes
    values = _parse_rows(path, line_numbers, rows)
    bad = ~np.all(np.isfinite(values), axis=1)
    if bad.any():
        raise _format_error(path, int(line_numbers[np.argmax(bad)]), 'NaN or infinite value')
    boxes = np.ascontiguousarray(values[:, :BOX_COLUMNS])
    messages = suspicious_rows(path, line_numbers, boxes)
    if notes is None:
        for message in messages:
            logger.warning('%s', message)
    else:
        notes.extend(messages)
    if not with_landmarks:
        return boxes
    if values.shape[1] == BOX_COLUMNS:
        return boxes, None
    return boxes, values[:, BOX_COLUMNS:].reshape(-1, PREDICTION_LANDMARKS, 2)


def _check_row_lengths(path, lines, line_numbers, rows):
    """Every box row has 5 or 15 values, the same count on every row; else a located error."""
    wrong = [n for n, r in zip(line_numbers, rows) if len(r) not in (BOX_COLUMNS,
                                                                     LANDMARK_COLUMNS)]
    if wrong:
        raise _format_error(path, int(wrong[0]), 'expected "x y w h score" (optionally followed '
                            'by the %d landmark values "x1 y1 ... x5 y5"), got %r'
                            % (2 * PREDICTION_LANDMARKS, lines[wrong[0] - 1].strip()))
    if rows:
        first = len(rows[0])
        mixed = [n for n, r in zip(line_numbers, rows) if len(r) != first]
        if mixed:
            raise _format_error(path, int(mixed[0]), 'has %d values but line %d has %d (a file '
                                'gives landmarks on every box line or on none)'
                                % (len(lines[mixed[0] - 1].split()), int(line_numbers[0]),
                                   first))


def _list_names(items, limit=_MAX_LISTED):
    shown = ', '.join(items[:limit])
    if len(items) > limit:
        shown += ' ... and %d more' % (len(items) - limit)
    return shown


def read_predictions(pred_dir, gt, strict=False, progress=False, with_landmarks=False):
    """Read the prediction file of every ground-truth image.

    Args:
        pred_dir: folder with ``<event>/<image>.txt`` files.
        gt: :class:`WiderGroundTruth` (anything with ``num_images``, ``events``, ``names`` and
            ``prediction_path``).
        strict: a missing file raises instead of counting as no detections.
        progress: show a tqdm bar.
        with_landmarks: also return the landmarks.
    Returns:
        list (one per gt image) of (N_i, 5) float64 ``x y w h score``; with ``with_landmarks``
        the pair ``(boxes, landmarks)``, landmarks a list of (N_i, 5, 2) float64 or None (a
        file without landmarks, or no file).
    """
    if not os.path.isdir(pred_dir):
        raise FileNotFoundError('prediction folder not found: %s' % pred_dir)
    predictions, points, missing, notes = [], [], [], []
    for i in tqdm(range(gt.num_images), desc='reading predictions', unit='img',
                  disable=not progress):
        path = gt.prediction_path(pred_dir, i)
        try:
            boxes, landmarks = read_prediction_file(path, expected_name=gt.names[i],
                                                    notes=notes, with_landmarks=True)
        except FileNotFoundError:
            missing.append(os.path.join(gt.events[i], gt.names[i] + '.txt'))
            boxes, landmarks = np.zeros((0, BOX_COLUMNS), dtype=np.float64), None
        predictions.append(boxes)
        points.append(landmarks)
    for message in notes[:_MAX_LISTED]:
        logger.warning('%s', message)
    if len(notes) > _MAX_LISTED:
        logger.warning('%d such warnings in total (the first %d shown)', len(notes), _MAX_LISTED)
    if missing:
        if len(missing) == gt.num_images:
            raise FileNotFoundError('no prediction file found under %s for any of the %d images '
                                    '(expected <pred>/<event>/<image>.txt, e.g. %s)'
                                    % (pred_dir, gt.num_images, gt.prediction_path(pred_dir, 0)))
        message = '%d of %d images have no prediction file under %s: %s' % (
            len(missing), gt.num_images, pred_dir, _list_names(missing))
        if strict:
            raise FileNotFoundError(message)
        logger.warning('%s (counted as no detections)', message)
    return (predictions, points) if with_landmarks else predictions


# ----------------------------------------------------------------------------- matching

def pairwise_iou(boxes, query_boxes):
    """IoU with the +1 pixel convention, in float64 (the reference evaluator's precision).

    Args:
        boxes: (N, 4+) ``x1 y1 x2 y2``.
        query_boxes: (K, 4+) ``x1 y1 x2 y2``.
    Returns:
        (N, K) float64; 0 where the boxes do not overlap.
    """
    a, b = _as_boxes(boxes), _as_boxes(query_boxes)
    iw = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
          + 1.0)
    ih = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
          + 1.0)
    np.maximum(iw, 0.0, out=iw)
    np.maximum(ih, 0.0, out=ih)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0] + 1.0) * (a[:, 3] - a[:, 1] + 1.0)
    area_b = (b[:, 2] - b[:, 0] + 1.0) * (b[:, 3] - b[:, 1] + 1.0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)


def _as_boxes(boxes):
    """Any (N, 4+) box array or list (N may be 0) -> (N, 4+) float64."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] < 4:
        raise ValueError('boxes must be (N, 4+), got shape %s' % (arr.shape,))
    return arr


def _xywh_to_xyxy(boxes):
    """(N, 4+) ``x y w h`` -> (N, 4) ``x1 y1 x2 y2`` with x2 = x + w (the evaluator's rule)."""
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:4]], axis=1)


def count_recalled(pred_boxes, gt_boxes, iou_thresh=0.5):
    """Number of ground-truth boxes overlapped by some prediction with IoU >= ``iou_thresh``.

    Args:
        pred_boxes: (N, 4+) ``x1 y1 x2 y2`` (extra columns such as the score are ignored).
        gt_boxes: (G, 4+) ``x1 y1 x2 y2``.
    Returns:
        int in [0, G].
    """
    gt = np.asarray(gt_boxes, dtype=np.float64)
    pred = np.asarray(pred_boxes, dtype=np.float64)
    if gt.size == 0 or pred.size == 0:
        return 0
    return int(np.count_nonzero(pairwise_iou(gt[:, :4], pred[:, :4]).max(axis=1) >= iou_thresh))


def match_predictions(pred_boxes, gt_boxes, iou_thresh=0.5):
    """Best ground truth of every prediction.

    Args:
        pred_boxes: (P, 4+) ``x y w h``.
        gt_boxes: (G, 4) ``x y w h``, G >= 1.
    Returns:
        best_gt (P,) int64 index of the highest-IoU box (first on ties),
        matched (P,) bool, that IoU >= ``iou_thresh``.
    """
    gt_xyxy = _xywh_to_xyxy(np.asarray(gt_boxes, dtype=np.float64))
    pred_xyxy = _xywh_to_xyxy(np.asarray(pred_boxes, dtype=np.float64))
    best_gt = np.empty(len(pred_xyxy), dtype=np.int64)
    matched = np.empty(len(pred_xyxy), dtype=bool)
    for start in range(0, len(pred_xyxy), _IOU_CHUNK):
        iou = pairwise_iou(pred_xyxy[start:start + _IOU_CHUNK], gt_xyxy)
        best = iou.argmax(axis=1)
        best_gt[start:start + len(best)] = best
        matched[start:start + len(best)] = iou[np.arange(len(best)), best] >= iou_thresh
    return best_gt, matched


def normalise_scores(predictions):
    """Min-max normalise the score column over all images; returns new arrays.

    All-equal scores normalise to 1.0 (the standard code would divide by zero).
    """
    scores = [p[:, 4] for p in predictions if len(p)]
    if not scores:
        return [p.copy() for p in predictions]
    all_scores = np.concatenate(scores)
    low, high = all_scores.min(), all_scores.max()
    out = []
    for p in predictions:
        q = np.array(p, dtype=np.float64, copy=True)
        if len(q):
            q[:, 4] = (q[:, 4] - low) / (high - low) if high > low else 1.0
        out.append(q)
    return out


# ----------------------------------------------------------------------------- curves

def pr_thresholds(num=NUM_THRESHOLDS):
    """(num,) float64 score thresholds ``1 - (t + 1) / num``, descending."""
    return 1.0 - (np.arange(num) + 1) / num


def _count_at_least(values, thresholds):
    """For each threshold, how many ``values`` are >= it."""
    ordered = np.sort(values)
    return len(ordered) - np.searchsorted(ordered, thresholds, side='left')


def pr_curve(proposal_scores, recall_scores, num_faces, thresholds=None):
    """Precision / recall at each threshold.

    Args:
        proposal_scores: (M,) normalised scores of the counted proposals (not on ignore boxes).
        recall_scores: (F,) per counted face, the score at which it is recalled (-inf if never).
        num_faces: faces of the setting (the recall denominator).
        thresholds: (T,) descending thresholds, default :func:`pr_thresholds`.
    Returns:
        dict of (T,) arrays: thresholds, proposals, recalled, precision (NaN where there is no
        proposal), recall (NaN for every entry when num_faces is 0).
    """
    thresholds = pr_thresholds() if thresholds is None else np.asarray(thresholds, np.float64)
    proposals = _count_at_least(np.asarray(proposal_scores, np.float64), thresholds)
    recalled = _count_at_least(np.asarray(recall_scores, np.float64), thresholds)
    with np.errstate(invalid='ignore', divide='ignore'):
        precision = np.where(proposals > 0, recalled / np.maximum(proposals, 1), np.nan)
        recall = recalled / num_faces if num_faces else np.full(len(thresholds), np.nan)
    return {'thresholds': thresholds, 'proposals': proposals, 'recalled': recalled,
            'precision': precision, 'recall': recall}


def voc_ap(recall, precision):
    """VOC all-point interpolated AP of a curve with non-decreasing recall.

    NaN precisions (no proposal yet; recall is 0 there) are treated as 0.
    """
    mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.nan_to_num(np.asarray(precision, np.float64), nan=0.0),
                           [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@dataclass
class SettingResult:
    """AP of one setting and its PR curve (arrays of length 1000, thresholds descending)."""
    ap: float
    num_faces: int
    thresholds: np.ndarray
    proposals: np.ndarray
    recalled: np.ndarray
    precision: np.ndarray
    recall: np.ndarray


# ----------------------------------------------------------------------------- evaluation

@dataclass
class MatchedSet:
    """Every prediction of a set against the ground truth: the one IoU pass that the AP of
    each setting (:func:`setting_result`) and of each face-size band
    (:mod:`rcnn.evaluation.size_bands`) are counted from.

    Attributes (P predictions of the images that have faces, in image order; F faces):
        scores: (P,) float64 min-max normalised scores.
        boxes: (P, 4) float64 ``x y w h`` of the predictions.
        best_faces: (P,) int64 index (over all faces, image order) of each prediction's
            highest-IoU face.
        matched: (P,) bool, that IoU >= the match threshold.
        face_score: (F,) float64 score at which each face is recalled (-inf: never).
    """
    scores: np.ndarray
    boxes: np.ndarray
    best_faces: np.ndarray
    matched: np.ndarray
    face_score: np.ndarray


def match_set(predictions, gt, iou_thresh=0.5, progress=False):
    """Match every prediction to its best face (standard protocol steps 1-2).

    Args:
        predictions: list aligned with ``gt`` images of (N_i, 5) ``x y w h score`` (raw scores).
        gt: :class:`WiderGroundTruth`.
        iou_thresh: match threshold.
    Returns:
        :class:`MatchedSet`.
    """
    if len(predictions) != gt.num_images:
        raise ValueError('%d prediction arrays for %d ground-truth images'
                         % (len(predictions), gt.num_images))
    predictions = normalise_scores(predictions)
    kept, best_faces, matched = [], [], []
    skipped = 0
    for i in tqdm(range(gt.num_images), desc='matching', unit='img', disable=not progress):
        pred, gt_boxes = predictions[i], gt.boxes[i]
        if not len(pred):
            continue
        if not len(gt_boxes):
            skipped += 1       # the standard code skips images without faces
            continue
        best, hit = match_predictions(pred, gt_boxes, iou_thresh)
        kept.append(pred[:, :BOX_COLUMNS])
        best_faces.append(best + gt.face_offsets[i])
        matched.append(hit)
    if skipped:
        logger.info('%d images without ground-truth faces skipped (standard protocol)', skipped)
    kept = np.concatenate([np.zeros((0, BOX_COLUMNS))] + kept)
    best_faces = np.concatenate([np.zeros(0, np.int64)] + best_faces)
    matched = np.concatenate([np.zeros(0, bool)] + matched)
    scores = kept[:, 4]
    face_score = _face_recall_scores(scores[matched], best_faces[matched], gt.num_faces())
    return MatchedSet(scores=scores, boxes=np.ascontiguousarray(kept[:, :4]),
                      best_faces=best_faces, matched=matched, face_score=face_score)


def setting_result(matches, keep, counted=None, num_thresholds=NUM_THRESHOLDS):
    """AP and PR curve of one subset of the faces (standard protocol steps 3-4).

    Args:
        matches: :class:`MatchedSet`.
        keep: (F,) bool, the faces counted (the others are ignore boxes).
        counted: (P,) bool, the predictions counted as proposals; default: all but those whose
            best face is an ignore box (the standard rule).
    Returns:
        :class:`SettingResult` (AP NaN when no face is counted).
    """
    keep = np.asarray(keep, dtype=bool)
    if counted is None:
        counted = ~(matches.matched & ~keep[matches.best_faces])
    num_faces = int(np.count_nonzero(keep))
    curve = pr_curve(matches.scores[counted], matches.face_score[keep], num_faces,
                     pr_thresholds(num_thresholds))
    ap = voc_ap(curve['recall'], curve['precision']) if num_faces else float('nan')
    return SettingResult(ap=ap, num_faces=num_faces, **curve)


def evaluate_predictions(predictions, gt, iou_thresh=0.5, num_thresholds=NUM_THRESHOLDS,
                         progress=False, matches=None):
    """Standard WIDER FACE AP of each setting.

    Args:
        predictions: list aligned with ``gt`` images of (N_i, 5) ``x y w h score`` (raw scores).
        gt: :class:`WiderGroundTruth`.
        iou_thresh: match threshold.
        num_thresholds: points of the PR curve.
        matches: the :class:`MatchedSet` of these predictions when already computed
            (:func:`match_set`); ``predictions`` and ``iou_thresh`` are then not used.
    Returns:
        setting -> :class:`SettingResult`.
    """
    if matches is None:
        matches = match_set(predictions, gt, iou_thresh, progress=progress)
    results = {}
    for setting in SETTINGS:
        results[setting] = setting_result(matches, gt.keep[setting],
                                          num_thresholds=num_thresholds)
        if results[setting].num_faces == 0:
            logger.warning('%s: no face is counted in the %s setting; its AP is undefined',
                           gt.source, setting)
    return results


def _face_recall_scores(match_scores, match_faces, total_faces):
    """(total_faces,) the highest score among the predictions matching each face (-inf if none).

    In descending score order that is the prediction that first recalls the face.
    """
    face_score = np.full(total_faces, -np.inf)
    if len(match_faces):
        order = np.lexsort((-match_scores, match_faces))      # by face, then score descending
        faces_sorted = match_faces[order]
        first = np.flatnonzero(np.r_[True, faces_sorted[1:] != faces_sorted[:-1]])
        face_score[faces_sorted[first]] = match_scores[order[first]]
    return face_score


def evaluate(pred_dir, gt_path, iou_thresh=0.5, strict=False, label_split='size',
             progress=False):
    """Easy / Medium / Hard AP of a prediction folder.

    Args:
        pred_dir: folder of ``<event>/<image>.txt`` submission files.
        gt_path: directory of the official ``.mat`` files, or a ``label.txt``.
        iou_thresh: match threshold.
        strict: a missing prediction file is an error instead of "no detections".
        label_split: for a ``label.txt`` ground truth, ``'size'`` or ``'all'``.
    Returns:
        {'easy': ap, 'medium': ap, 'hard': ap}
    """
    gt = load_ground_truth(gt_path, label_split=label_split)
    predictions = read_predictions(pred_dir, gt, strict=strict, progress=progress)
    results = evaluate_predictions(predictions, gt, iou_thresh=iou_thresh, progress=progress)
    return {setting: results[setting].ap for setting in SETTINGS}
