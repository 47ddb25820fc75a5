"""RetinaFace / WIDER FACE dataset: ``label.txt`` -> roidb (one dict per image).

Layout read (as the original insightface RetinaFace data)::

    <dataset_path>/<image_set>/label.txt
    <dataset_path>/<image_set>/images/<event>/<file>.jpg

The label file format and its errors are those of :mod:`rcnn.dataset.label_file`; image sizes
come from the file headers (:mod:`rcnn.dataset.image_header`) unless the label file states them
(``# path W H``; then only the image's existence is checked).

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

Cache: the parsed roidb is pickled under ``<root_path>/cache/`` (created when
needed; ``root_path=None`` disables caching). The file name holds the dataset
name and a short hash of the label file's path; the pickle holds the roidb in
column form (a few concatenated arrays, see :func:`build_columns`; much faster
to pickle than 12,880 dicts of small arrays) and a key, the SHA-256 of the
cache format version, the image set, the images directory, the reader options
and the label file's bytes, so a changed label file never loads a stale cache.
Changes to the image files themselves are not detected. The cache is written
atomically (temporary file + ``os.replace``); an unwritable
cache directory is logged and the reader continues without it.

The dataset class is :class:`RetinaFaceDataset`; ``retinaface`` is its original name, kept as
an alias (``rcnn.dataset.retinaface`` is that class).
"""
import hashlib
import logging
import os
import pickle
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

CACHE_FORMAT_VERSION = 3         # 3: original clipping, outside boxes dropped, drop report kept
MISSING_BLUR = 0.3                # original: a train face with blur < 0 gets 0.3
SIZE_THREADS = 4
SIZE_CHUNK = 64                   # image headers read per thread-pool task
PROGRESS_MIN_IMAGES = 200         # show a progress bar from this many images on
DROPS_LOGGED = 5                  # dropped boxes / images logged one by one (then totals)


# ----------------------------------------------------------------------------
# Image sizes of a whole label file
# ----------------------------------------------------------------------------

def _read_size_chunk(paths):
    return [read_image_size(path) for path in paths]


def _read_image_sizes(paths, known_sizes):
    """(M,) heights and widths int64 for ``paths``; ``known_sizes[i]`` (h, w) or None.

    Unknown sizes are read from the headers by a few threads, each taking
    chunks of SIZE_CHUNK files (one task per file would cost more than the
    header read itself when the files are in the page cache; threads pay off on
    slow or network disks). Known sizes only need the file to exist.
    """
    heights = np.zeros(len(paths), np.int64)
    widths = np.zeros(len(paths), np.int64)
    to_read = []
    for i, (path, size) in enumerate(zip(paths, known_sizes)):
        if size is None:
            to_read.append(i)
            continue
        if not os.path.isfile(path):
            raise ImageReadError('image not found: %s' % path)
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
    for i, (height, width) in zip(to_read, sizes):
        heights[i], widths[i] = height, width
    return heights, widths


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


def _drop_messages(parsed, image_paths, heights, widths, reasons, dropped_images,
                   min_box_size):
    """Log lines about the dropped boxes / images: the first DROPS_LOGGED of each with
    ``label.txt:line``, then one line of totals. ``reasons`` (N,) int8: 0 kept, 1 empty,
    2 outside, 3 small; ``dropped_images`` (M,) bool."""
    texts = {1: 'empty after clipping to the image',
             2: 'leaves the image by more than its own size',
             3: 'smaller than %g pixels' % min_box_size}
    label_path, messages = parsed.label_path, []
    for i in np.flatnonzero(reasons)[:DROPS_LOGGED]:
        image = parsed.face_image[i]
        messages.append('%s:%d: box x=%g y=%g w=%g h=%g of %s (%dx%d, w x h) dropped: %s' % (
            label_path, parsed.face_lines[i], *parsed.face_rows[i, :4], image_paths[image],
            widths[image], heights[image], texts[int(reasons[i])]))
    for m in np.flatnonzero(dropped_images)[:DROPS_LOGGED]:
        messages.append('%s:%d: image %s dropped: no box left' % (
            label_path, parsed.image_lines[m], image_paths[m]))
    counts = np.bincount(reasons, minlength=4)
    if counts[1:].any() or dropped_images.any():
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


def build_columns(parsed, images_dir, min_box_size=0, drop_empty_images=False,
                  drop_outside_boxes=True):
    """Column form of the roidb from :class:`ParsedLabels`: reads sizes, clips, drops.

    Args:
        parsed: the label file content.
        images_dir: directory the image paths are relative to.
        min_box_size: boxes with x2 - x1 or y2 - y1 below this are dropped.
        drop_empty_images: drop images left without boxes (the train set).
        drop_outside_boxes: drop boxes that leave the image by more than their own size
            (more of the box outside the image than inside, along x or y).

    Returns a dict (M images, N faces in image order)::

        image          list of M str, full paths
        height         (M,) int64
        width          (M,) int64
        num_boxes      (M,) int64, faces per image (they sum to N)
        boxes          (N, 4) float32, x1 y1 x2 y2
        landmarks      (N, 5, 3) float32
        blur           (N,) float32
        drop_messages  list of str, what was dropped (logged here, WARNING)
    """
    image_paths = [os.path.join(images_dir, name) for name in parsed.image_names]
    heights, widths = _read_image_sizes(image_paths, parsed.header_sizes)

    face_image = parsed.face_image
    boxes = _clip_boxes(parsed.face_rows, heights[face_image], widths[face_image])
    box_w, box_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    reasons = np.zeros(len(boxes), np.int8)
    reasons[(box_w < min_box_size) | (box_h < min_box_size)] = 3
    if drop_outside_boxes:
        reasons[_mostly_outside(parsed.face_rows, heights[face_image], widths[face_image])] = 2
    reasons[(box_w <= 0) | (box_h <= 0)] = 1
    keep = reasons == 0

    kept_rows = parsed.face_rows[keep]
    num_boxes = np.bincount(face_image[keep], minlength=len(image_paths))
    kept_images = num_boxes > 0 if drop_empty_images else np.ones(len(image_paths), bool)
    messages = _drop_messages(parsed, image_paths, heights, widths, reasons, ~kept_images,
                              min_box_size)
    log_drop_messages(messages)
    # faces of dropped images were all dropped already, so face columns need no filtering
    return {'image': [path for path, kept in zip(image_paths, kept_images) if kept],
            'height': heights[kept_images], 'width': widths[kept_images],
            'num_boxes': num_boxes[kept_images], 'boxes': boxes[keep],
            'landmarks': _convert_landmarks(kept_rows), 'blur': _convert_blur(kept_rows),
            'drop_messages': messages}


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
                drop_outside_boxes=True):
    """Roidb list from :class:`ParsedLabels` (see :func:`build_columns` for the arguments)."""
    return roidb_from_columns(build_columns(parsed, images_dir, min_box_size, drop_empty_images,
                                            drop_outside_boxes))


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

def _atomic_pickle(obj, path):
    """Pickle ``obj`` to ``path`` via a temporary file in the same directory + os.replace."""
    atomic_write_bytes(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


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

    Attributes: ``name`` (``retinaface_<image_set>``), ``image_set``,
    ``num_images`` (images listed in the label file, then the roidb length after
    ``gt_roidb()`` / ``append_flipped_images()``), ``classes``, ``num_classes``,
    ``label_file``, ``images_dir``, ``cache_path``.
    """

    classes = ('__background__', 'face')
    num_classes = 2

    def __init__(self, image_set, root_path, dataset_path, cfg=None, drop_empty_images=None,
                 drop_outside_boxes=True):
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
        self.num_images = count_images(read_label_bytes(self.label_file))

    def _cache_key(self, label_bytes):
        digest = hashlib.sha256()
        for part in (CACHE_FORMAT_VERSION, self.image_set, os.path.abspath(self.images_dir),
                     self.min_box_size, self.drop_empty_images, self.drop_outside_boxes):
            digest.update(repr(part).encode('utf-8') + b'\0')
        digest.update(label_bytes)
        return digest.hexdigest()

    @property
    def cache_file(self):
        """Path of the roidb cache pickle, or None when caching is disabled."""
        if self.cache_path is None:
            return None
        label_id = hashlib.sha1(os.path.abspath(self.label_file).encode('utf-8')).hexdigest()[:10]
        return os.path.join(self.cache_path, '%s_gt_roidb_%s.pkl' % (self.name, label_id))

    def _load_cache(self, key):
        path = self.cache_file
        if path is None or not os.path.isfile(path):
            return None
        try:
            with open(path, 'rb') as stream:
                content = pickle.load(stream)
        except Exception as err:  # noqa: BLE001 -- any unreadable cache is just rebuilt
            logger.warning('ignoring unreadable roidb cache %s: %s', path, err)
            return None
        if not isinstance(content, dict) or content.get('key') != key:
            logger.info('roidb cache %s is stale (label file or options changed); rebuilding', path)
            return None
        logger.info('%s gt roidb loaded from %s', self.name, path)
        log_drop_messages(content['columns'].get('drop_messages', []))
        return content['columns']

    def _save_cache(self, key, columns):
        path = self.cache_file
        if path is None:
            return
        try:
            os.makedirs(self.cache_path, exist_ok=True)
            _atomic_pickle({'key': key, 'version': CACHE_FORMAT_VERSION, 'columns': columns}, path)
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
                                    self.drop_empty_images, self.drop_outside_boxes)
            self._save_cache(key, columns)
        roidb = roidb_from_columns(columns)
        self.num_images = len(roidb)
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
