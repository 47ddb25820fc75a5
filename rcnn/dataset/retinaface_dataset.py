"""RetinaFace / WIDER FACE dataset: ``label.txt`` -> roidb (one dict per image).

Layout read (as the original insightface RetinaFace data)::

    <dataset_path>/<image_set>/label.txt
    <dataset_path>/<image_set>/images/<event>/<file>.jpg

The label file format and its errors are those of :mod:`rcnn.dataset.label_file`; image sizes
come from the file headers (:mod:`rcnn.dataset.image_header`) unless the label file states them
(``# path W H``).

Roidb entry (dict), K faces::

    image          str, full path of the image file
    height, width  int, image size in pixels (as ``cv2.imread`` returns it)
    boxes          (K, 4) float32, x1 y1 x2 y2 with x1 = x, y1 = y,
                   x2 = min(width, x + w), y2 = min(height, y + h) (the original
                   reader's clipping: the near corner is not clipped)
    landmarks      (K, 5, 3) float32, (x, y, visibility): 1.0 visible, 0.0 not
                   visible; all three -1 for a missing point (a face without
                   landmarks, e.g. every val face, is all -1)
    blur           (K,) float32; a train face whose blur is < 0 gets 0.3 and a
                   val face (4 numbers) 0.0, as in the original reader
    gt_classes     (K,) int32, 1 for every face
    flipped        bool, False (``append_flipped_images`` adds True entries)
    max_num_boxes  int, the largest K over the whole roidb (the same value in
                   every entry, as the original's running maximum ended up)

Boxes are clipped as the original reader does (only ``x2`` to ``W`` and ``y2``
to ``H``). Boxes that are empty after clipping (x1 >= x2 or y1 >= y2), narrower /
shorter than ``cfg.TRAIN.MIN_BOX_SIZE``, or (unless ``drop_outside_boxes=False``)
that leave the image by more than their own size (along x or y, the part of the
box outside the image is larger than the part inside: a ``w = 1e9`` typo, not a
face cut by the border) are dropped; for the ``train`` image set, images left
without boxes are dropped too. The first few drops are logged at WARNING with
``label.txt:line`` and the reason, then the totals (see :func:`build_columns`);
the report is kept in the cache and logged again when the cache is used.

Unreadable images: an image that is missing, cannot be opened (permissions), is empty or is not
an image is, for the ``train`` image set (``skip_unreadable``), left out with its boxes and
logged at WARNING with ``label.txt:line`` and the reason; the reader goes on with the others and
fails only when none of the listed images can be read. For the other image sets the first such
image raises :class:`ImageReadError` naming ``label.txt:line``. A size stated on a
``# path W H`` line is trusted (the file is only checked to exist and be readable); a box dropped
against such a size names that line as the source of the size.

Cache: the parsed roidb is stored under ``<root_path>/cache/`` (created when needed;
``root_path=None`` disables caching) as an ``.npz`` of plain arrays, read with
``allow_pickle=False``: a cache file can hold data only, never code. The file name holds the
dataset name and a short hash of the label file's path; it holds the roidb in column form (see
:func:`build_columns`), a key (the SHA-256 of the cache format version, the image set, the
images directory, the reader options and the label file's bytes) and the size and modification
time of every listed image file. The cache is used only when the key matches and no image file
changed (one ``stat`` per image); otherwise it is rebuilt, with an INFO line saying why. It is
written atomically (temporary file + ``os.replace``); an unreadable cache file is logged and
rebuilt, an unwritable cache directory is logged and the reader continues without it.

The dataset class is :class:`RetinaFaceDataset`; ``retinaface`` is its original name, kept as
an alias (``rcnn.dataset.retinaface`` is that class).
"""
import hashlib
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from rcnn.dataset.annotations import FaceAnnotations
from rcnn.dataset.image_header import ImageReadError, read_image_size
from rcnn.dataset.label_file import (NUM_LANDMARKS, TRAIN_LINE_LENGTH, MISSING, LabelFormatError,
                                     ParsedLabels, count_images, read_label_bytes,
                                     read_label_file)
from rcnn.utils.fileio import atomic_write_bytes

logger = logging.getLogger(__name__)

__all__ = ['RetinaFaceDataset', 'retinaface', 'append_flipped_images', 'flip_roidb_entry',
           'build_columns', 'roidb_from_columns', 'build_roidb', 'log_drop_messages',
           'LabelFormatError', 'ImageReadError', 'ParsedLabels', 'CACHE_FORMAT_VERSION']

CACHE_FORMAT_VERSION = 4         # the layout of the .npz cache file
MISSING_BLUR = 0.3                # original: a train face with blur < 0 gets 0.3
SIZE_THREADS = 4
SIZE_CHUNK = 64                   # image headers read per thread-pool task
PROGRESS_MIN_IMAGES = 200         # show a progress bar from this many images on
DROPS_LOGGED = 5                  # dropped boxes / images logged one by one (then totals)


# ----------------------------------------------------------------------------
# Image sizes of a whole label file
# ----------------------------------------------------------------------------

def _try_size(path):
    """(height, width, None) of an image, or (0, 0, reason) when it cannot be read."""
    try:
        height, width = read_image_size(path)
    except OSError as err:          # ImageReadError, or e.g. a permission error
        return 0, 0, str(err)
    return height, width, None


def _read_size_chunk(paths):
    return [_try_size(path) for path in paths]


def _check_listed(path):
    """None when an image whose size the label file states exists and can be opened, else
    the reason."""
    if not os.path.isfile(path):
        return 'image not found: %s' % path
    if not os.access(path, os.R_OK):
        return 'cannot read image %s: permission denied' % path
    return None


def _read_image_sizes(paths, known_sizes):
    """Image sizes and read problems for ``paths``; ``known_sizes[i]`` (h, w) or None.

    Unknown sizes are read from the headers by a few threads, each taking
    chunks of SIZE_CHUNK files (one task per file would cost more than the
    header read itself when the files are in the page cache; threads pay off on
    slow or network disks). Known sizes only need the file to exist and be readable.

    Returns:
        (heights (M,) int64, widths (M,) int64, problems: list of M str or None, the reason
        an image cannot be used).
    """
    heights = np.zeros(len(paths), np.int64)
    widths = np.zeros(len(paths), np.int64)
    problems = [None] * len(paths)
    to_read = []
    for i, (path, size) in enumerate(zip(paths, known_sizes)):
        if size is None:
            to_read.append(i)
            continue
        problems[i] = _check_listed(path)
        heights[i], widths[i] = size
    read_paths = [paths[i] for i in to_read]
    chunks = [read_paths[start:start + SIZE_CHUNK]
              for start in range(0, len(read_paths), SIZE_CHUNK)]
    sizes = []
    with tqdm(total=len(read_paths), desc='image sizes', unit='img', leave=False,
              disable=len(read_paths) < PROGRESS_MIN_IMAGES) as progress:
        if len(chunks) < 2:
            results = map(_read_size_chunk, chunks)
        else:
            pool = ThreadPoolExecutor(max_workers=min(SIZE_THREADS, len(chunks)))
            results = pool.map(_read_size_chunk, chunks)
        try:
            for chunk_sizes in results:
                sizes.extend(chunk_sizes)
                progress.update(len(chunk_sizes))
        finally:
            if len(chunks) >= 2:
                pool.shutdown(wait=True, cancel_futures=True)
    for i, (height, width, problem) in zip(to_read, sizes):
        heights[i], widths[i], problems[i] = height, width, problem
    return heights, widths, problems


# ----------------------------------------------------------------------------
# Roidb construction
# ----------------------------------------------------------------------------

def _clip_boxes(face_rows, face_heights, face_widths):
    """(N, 4) float32 x1 y1 x2 y2 from x y w h rows, as the original reader: x1 = x, y1 = y,
    x2 = min(W, x + w), y2 = min(H, y + h) (only the far corner is clipped, to W / H)."""
    x, y, w, h = (face_rows[:, i] for i in range(4))
    boxes = np.stack([x, y, np.minimum(x + w, face_widths.astype(np.float64)),
                      np.minimum(y + h, face_heights.astype(np.float64))], axis=1)
    return boxes.astype(np.float32)


def _convert_landmarks(face_rows):
    """(N, 5, 3) float32 landmarks, file flags (0 = visible) turned into visibility (1 = visible)."""
    points = face_rows[:, 4:4 + 3 * NUM_LANDMARKS].reshape(-1, NUM_LANDMARKS, 3).copy()
    flags = points[:, :, 2]
    missing = flags == MISSING
    points[:, :, 2] = np.where(missing, MISSING, np.where(flags == 0.0, 1.0, 0.0))
    return points.astype(np.float32)


def _convert_blur(face_rows):
    """(N,) float32 blur; a negative (absent) train attribute becomes MISSING_BLUR."""
    blur = face_rows[:, TRAIN_LINE_LENGTH - 1]
    return np.where(blur < 0, MISSING_BLUR, blur).astype(np.float32)


def _mostly_outside(face_rows, face_heights, face_widths):
    """(N,) bool: along x or y, more of the box lies outside the image than inside.

    ``face_rows`` (N, 20) float64 as in the file (x y w h first); ``face_heights`` /
    ``face_widths`` (N,) the size of each face's image. The part inside is measured against
    both image borders, whatever the reader's clipping keeps of the box.
    """
    starts = face_rows[:, 0:2]                                          # (N, 2) x, y
    sizes = face_rows[:, 2:4]                                           # (N, 2) w, h
    limits = np.stack([face_widths, face_heights], axis=1).astype(np.float64)
    inside = np.clip(np.minimum(starts + sizes, limits) - np.maximum(starts, 0.0), 0.0, None)
    outside = sizes - inside
    return (outside > inside).any(axis=1)


def _size_text(parsed, image, heights, widths):
    """'640x480, w x h' of an image, naming the label file's header line when it gave the
    size (a wrong header is then the likely cause of a drop)."""
    text = '%dx%d, w x h' % (widths[image], heights[image])
    if parsed.header_sizes[image] is not None:
        text += ', as stated by the "# name W H" line %s:%d' % (parsed.label_path,
                                                                parsed.image_lines[image])
    return text


def _drop_messages(parsed, image_paths, heights, widths, reasons, dropped_images,
                   min_box_size, problems):
    """Log lines about the skipped images and dropped boxes / images: the first DROPS_LOGGED
    of each with ``label.txt:line``, then one line of totals. ``reasons`` (N,) int8: 0 kept,
    1 empty, 2 outside, 3 small, 4 its image is skipped; ``dropped_images`` (M,) bool (left
    without boxes); ``problems`` (M,) str or None, why an image is skipped."""
    texts = {1: 'empty after clipping to the image',
             2: 'leaves the image by more than its own size',
             3: 'smaller than %g pixels' % min_box_size}
    label_path, messages = parsed.label_path, []
    skipped = [m for m, problem in enumerate(problems) if problem is not None]
    for m in skipped[:DROPS_LOGGED]:
        messages.append('%s:%d: image skipped: %s' % (label_path, parsed.image_lines[m],
                                                      problems[m]))
    for i in np.flatnonzero((reasons > 0) & (reasons < 4))[:DROPS_LOGGED]:
        image = parsed.face_image[i]
        messages.append('%s:%d: box x=%g y=%g w=%g h=%g of %s (%s) dropped: %s' % (
            label_path, parsed.face_lines[i], *parsed.face_rows[i, :4], image_paths[image],
            _size_text(parsed, image, heights, widths), texts[int(reasons[i])]))
    for m in np.flatnonzero(dropped_images)[:DROPS_LOGGED]:
        messages.append('%s:%d: image %s dropped: no box left' % (
            label_path, parsed.image_lines[m], image_paths[m]))
    counts = np.bincount(reasons, minlength=5)
    if skipped:
        messages.append('%s: skipped %d images that cannot be read (of %d) and their %d boxes'
                        % (label_path, len(skipped), len(image_paths), counts[4]))
    if counts[1:4].any() or dropped_images.any():
        messages.append(
            '%s: dropped %d boxes empty after clipping to the image, %d leaving the image by '
            'more than their own size and %d smaller than %g pixels (of %d); dropped %d images '
            'left without boxes (of %d)' % (label_path, counts[1], counts[2], counts[3],
                                            min_box_size, len(reasons),
                                            int(dropped_images.sum()), len(dropped_images)))
    return messages


def log_drop_messages(messages):
    """Log the drop report of :func:`build_columns` (``columns['drop_messages']``), WARNING."""
    for message in messages:
        logger.warning('%s', message)


def _refuse_unreadable(parsed, problems):
    """ImageReadError naming the first image that cannot be read and its label line."""
    first = next(m for m, problem in enumerate(problems) if problem is not None)
    count = sum(problem is not None for problem in problems)
    more = ' (and %d more)' % (count - 1) if count > 1 else ''
    return ImageReadError('%s:%d: %s%s' % (parsed.label_path, parsed.image_lines[first],
                                           problems[first], more))


def build_columns(parsed, images_dir, min_box_size=0, drop_empty_images=False,
                  drop_outside_boxes=True, skip_unreadable=False):
    """Column form of the roidb from :class:`ParsedLabels`: reads sizes, clips, drops.

    Args:
        parsed: the label file content.
        images_dir: directory the image paths are relative to.
        min_box_size: boxes with x2 - x1 or y2 - y1 below this are dropped.
        drop_empty_images: drop images left without boxes (the train set).
        drop_outside_boxes: drop boxes that leave the image by more than their own size
            (more of the box outside the image than inside, along x or y).
        skip_unreadable: leave out (logged, with ``label.txt:line``) images that are missing,
            unreadable or not an image, and their boxes; otherwise the first one raises.

    Returns a dict (M images, N faces in image order)::

        image          list of M str, full paths
        height         (M,) int64
        width          (M,) int64
        num_boxes      (M,) int64, faces per image (they sum to N)
        boxes          (N, 4) float32, x1 y1 x2 y2
        landmarks      (N, 5, 3) float32
        blur           (N,) float32
        drop_messages  list of str, what was skipped or dropped (logged here, WARNING)
        skipped        list of str, full paths of the images left out as unreadable

    Raises:
        ImageReadError: an image cannot be read (``skip_unreadable`` False), or none of the
            listed images can; the message names ``label.txt:line``.
    """
    image_paths = [os.path.join(images_dir, name) for name in parsed.image_names]
    heights, widths, problems = _read_image_sizes(image_paths, parsed.header_sizes)
    unreadable = np.array([problem is not None for problem in problems], bool)
    if unreadable.any() and (not skip_unreadable or unreadable.all()):
        error = _refuse_unreadable(parsed, problems)
        if skip_unreadable:
            error = ImageReadError('%s: none of the %d images listed can be read, e.g. %s'
                                   % (parsed.label_path, len(image_paths), error))
        raise error

    face_image = parsed.face_image
    boxes = _clip_boxes(parsed.face_rows, heights[face_image], widths[face_image])
    box_w, box_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    reasons = np.zeros(len(boxes), np.int8)
    reasons[(box_w < min_box_size) | (box_h < min_box_size)] = 3
    if drop_outside_boxes:
        reasons[_mostly_outside(parsed.face_rows, heights[face_image], widths[face_image])] = 2
    reasons[(box_w <= 0) | (box_h <= 0)] = 1
    reasons[unreadable[face_image]] = 4
    keep = reasons == 0

    kept_rows = parsed.face_rows[keep]
    num_boxes = np.bincount(face_image[keep], minlength=len(image_paths))
    kept_images = (num_boxes > 0) if drop_empty_images else np.ones(len(image_paths), bool)
    dropped_images = ~kept_images & ~unreadable
    kept_images &= ~unreadable
    messages = _drop_messages(parsed, image_paths, heights, widths, reasons, dropped_images,
                              min_box_size, problems)
    log_drop_messages(messages)
    # faces of dropped images were all dropped already, so face columns need no filtering
    return {'image': [path for path, kept in zip(image_paths, kept_images) if kept],
            'height': heights[kept_images], 'width': widths[kept_images],
            'num_boxes': num_boxes[kept_images], 'boxes': boxes[keep],
            'landmarks': _convert_landmarks(kept_rows), 'blur': _convert_blur(kept_rows),
            'drop_messages': messages,
            'skipped': [path for path, bad in zip(image_paths, unreadable) if bad]}


def roidb_from_columns(columns):
    """List of roidb dicts (see the module docstring) from :func:`build_columns` output.

    Per-image arrays are slices of the column arrays; ``max_num_boxes`` is the
    largest face count over all images.
    """
    num_boxes = columns['num_boxes']
    ends = np.cumsum(num_boxes).tolist()
    starts = [0] + ends[:-1]
    max_num_boxes = int(num_boxes.max()) if len(num_boxes) else 0
    boxes, landmarks, blur = columns['boxes'], columns['landmarks'], columns['blur']
    return [{'image': path, 'height': height, 'width': width,
             'boxes': boxes[start:end], 'landmarks': landmarks[start:end], 'blur': blur[start:end],
             'gt_classes': np.ones(end - start, np.int32), 'flipped': False,
             'max_num_boxes': max_num_boxes}
            for path, height, width, start, end in zip(
                columns['image'], columns['height'].tolist(), columns['width'].tolist(),
                starts, ends)]


def build_roidb(parsed, images_dir, min_box_size=0, drop_empty_images=False,
                drop_outside_boxes=True, skip_unreadable=False):
    """Roidb list from :class:`ParsedLabels` (see :func:`build_columns` for the arguments)."""
    return roidb_from_columns(build_columns(parsed, images_dir, min_box_size, drop_empty_images,
                                            drop_outside_boxes, skip_unreadable))


# ----------------------------------------------------------------------------
# Horizontal flip
# ----------------------------------------------------------------------------

def flip_roidb_entry(entry):
    """Mirror one roidb entry left-right; returns a new dict with ``flipped`` toggled.

    The faces are mirrored by :meth:`FaceAnnotations.flip` (``x' = W - x - 1``, points
    renumbered, missing points left at -1); flipping twice gives the original entry back.
    """
    flipped = dict(entry)
    flipped.update(FaceAnnotations.from_record(entry).flip(entry['width']).record_fields(),
                   flipped=not entry['flipped'])
    return flipped


def append_flipped_images(roidb):
    """Return ``roidb`` followed by the mirrored copy of every entry (input left unchanged)."""
    return list(roidb) + [flip_roidb_entry(entry) for entry in roidb]


# ----------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------

_CACHE_ARRAYS = ('height', 'width', 'num_boxes', 'boxes', 'landmarks', 'blur')


def _image_stats(paths):
    """(M, 2) int64 size and modification time (ns) of each file; -1 -1 when it is absent."""
    stats = np.full((len(paths), 2), -1, dtype=np.int64)
    for i, path in enumerate(paths):
        try:
            info = os.stat(path)
        except OSError:
            continue
        stats[i] = info.st_size, info.st_mtime_ns
    return stats


def _cache_bytes(key, columns, listed_paths):
    """The cache file's content: an ``.npz`` of plain arrays (strings as unicode arrays), so
    that loading it can never run code."""
    arrays = {name: columns[name] for name in _CACHE_ARRAYS}
    arrays.update(key=np.array(key), version=np.array(CACHE_FORMAT_VERSION),
                  image=np.array(columns['image'], dtype=str),
                  drop_messages=np.array(columns['drop_messages'], dtype=str),
                  skipped=np.array(columns['skipped'], dtype=str),
                  listed_paths=np.array(listed_paths, dtype=str),
                  listed_stats=_image_stats(listed_paths))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _read_cache(path):
    """(key, columns, listed paths, their stats) of a cache file; raises on anything that is
    not a cache this version wrote (a pickle is refused, never loaded)."""
    with np.load(path, allow_pickle=False) as content:
        if int(content['version']) != CACHE_FORMAT_VERSION:
            raise ValueError('cache format %d, expected %d' % (int(content['version']),
                                                                CACHE_FORMAT_VERSION))
        columns = {name: content[name] for name in _CACHE_ARRAYS}
        columns['image'] = content['image'].tolist()
        columns['drop_messages'] = content['drop_messages'].tolist()
        columns['skipped'] = content['skipped'].tolist()
        return (str(content['key']), columns, content['listed_paths'].tolist(),
                content['listed_stats'])


class RetinaFaceDataset(object):
    """RetinaFace-format face dataset (WIDER FACE with 5-point landmarks).

    Args:
        image_set: sub-directory of ``dataset_path`` (``train``, ``val``, ``test``).
        root_path: the cache goes to ``<root_path>/cache/``; None disables it.
        dataset_path: directory holding ``<image_set>/label.txt`` and ``<image_set>/images/``.
        cfg: training recipe (``rcnn.config.generate_config``), read for ``TRAIN.MIN_BOX_SIZE``
            only; None (no recipe, e.g. test-time listing) keeps boxes of any size.
        drop_empty_images: drop images without boxes; default True for ``train`` only.
        drop_outside_boxes: drop boxes that leave the image by more than their own size
            (default True; False clips them like the original reader).
        skip_unreadable: leave out, with a WARNING naming ``label.txt:line``, images that are
            missing, unreadable or not images (default True for ``train`` only; otherwise
            such an image raises :class:`ImageReadError` naming ``label.txt:line``).

    Attributes: ``name`` (``retinaface_<image_set>``), ``image_set``,
    ``num_images`` (images listed in the label file, then the roidb length after
    ``gt_roidb()`` / ``append_flipped_images()``), ``classes``, ``num_classes``,
    ``label_file``, ``images_dir``, ``cache_path``, ``skipped_images`` (full paths of the
    images ``gt_roidb()`` left out as unreadable).
    """

    classes = ('__background__', 'face')
    num_classes = 2

    def __init__(self, image_set, root_path, dataset_path, cfg=None, drop_empty_images=None,
                 drop_outside_boxes=True, skip_unreadable=None):
        self.image_set = image_set
        self.name = 'retinaface_%s' % image_set
        self.root_path = root_path
        self.dataset_path = dataset_path
        self.label_file = os.path.join(dataset_path, image_set, 'label.txt')
        self.images_dir = os.path.join(dataset_path, image_set, 'images')
        self.cache_path = None if root_path is None else os.path.join(root_path, 'cache')
        self.min_box_size = 0.0 if cfg is None else float(cfg.TRAIN.MIN_BOX_SIZE)
        self.drop_empty_images = (image_set == 'train') if drop_empty_images is None \
            else bool(drop_empty_images)
        self.drop_outside_boxes = bool(drop_outside_boxes)
        self.skip_unreadable = (image_set == 'train') if skip_unreadable is None \
            else bool(skip_unreadable)
        self.num_images = count_images(read_label_bytes(self.label_file))
        self.skipped_images = []

    def _cache_key(self, label_bytes):
        digest = hashlib.sha256()
        for part in (CACHE_FORMAT_VERSION, self.image_set, os.path.abspath(self.images_dir),
                     self.min_box_size, self.drop_empty_images, self.drop_outside_boxes,
                     self.skip_unreadable):
            digest.update(repr(part).encode('utf-8') + b'\0')
        digest.update(label_bytes)
        return digest.hexdigest()

    @property
    def cache_file(self):
        """Path of the roidb cache (``.npz``), or None when caching is disabled."""
        if self.cache_path is None:
            return None
        label_id = hashlib.sha1(os.path.abspath(self.label_file).encode('utf-8')).hexdigest()[:10]
        return os.path.join(self.cache_path, '%s_gt_roidb_%s.npz' % (self.name, label_id))

    def _load_cache(self, key):
        path = self.cache_file
        if path is None or not os.path.isfile(path):
            return None
        try:
            cached_key, columns, listed_paths, listed_stats = _read_cache(path)
        except Exception as err:  # noqa: BLE001 -- any unreadable cache is just rebuilt
            logger.warning('ignoring unreadable roidb cache %s (%s: %s); rebuilding it',
                           path, type(err).__name__, err)
            return None
        if cached_key != key:
            logger.info('roidb cache %s is stale (label file or options changed); rebuilding',
                        path)
            return None
        changed = np.flatnonzero((_image_stats(listed_paths) != listed_stats).any(axis=1))
        if len(changed):
            logger.info('roidb cache %s is stale (%d image files changed since it was written, '
                        'e.g. %s); rebuilding', path, len(changed), listed_paths[changed[0]])
            return None
        logger.info('%s gt roidb loaded from %s', self.name, path)
        log_drop_messages(columns['drop_messages'])
        return columns

    def _save_cache(self, key, columns, listed_paths):
        path = self.cache_file
        if path is None:
            return
        try:
            os.makedirs(self.cache_path, exist_ok=True)
            atomic_write_bytes(path, _cache_bytes(key, columns, listed_paths))
        except OSError as err:
            logger.warning('cannot write roidb cache %s (%s); continuing without cache', path, err)
            return
        logger.info('wrote %s gt roidb to %s', self.name, path)

    def gt_roidb(self):
        """List of roidb dicts, one per image (see the module docstring), cached on disk."""
        label_bytes = read_label_bytes(self.label_file)
        key = self._cache_key(label_bytes)
        columns = self._load_cache(key)
        if columns is None:
            parsed = read_label_file(self.label_file, data=label_bytes)
            columns = build_columns(parsed, self.images_dir, self.min_box_size,
                                    self.drop_empty_images, self.drop_outside_boxes,
                                    self.skip_unreadable)
            self._save_cache(key, columns, [os.path.join(self.images_dir, name)
                                            for name in parsed.image_names])
        roidb = roidb_from_columns(columns)
        self.num_images = len(roidb)
        self.skipped_images = list(columns['skipped'])
        logger.info('%s: %d images, %d faces', self.name, len(roidb),
                    sum(len(entry['boxes']) for entry in roidb))
        return roidb

    def append_flipped_images(self, roidb):
        """``roidb`` plus a mirrored copy of each entry; ``num_images`` becomes the new length."""
        logger.info('%s: appending %d flipped images', self.name, len(roidb))
        roidb = append_flipped_images(roidb)
        self.num_images = len(roidb)
        return roidb

    def __repr__(self):
        return '%s(image_set=%r, dataset_path=%r, num_images=%d)' % (
            type(self).__name__, self.image_set, self.dataset_path, self.num_images)


retinaface = RetinaFaceDataset   # the original's name for the class (``rcnn.dataset.retinaface``)
