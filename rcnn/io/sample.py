"""One training sample: a random crop of a roidb record and its anchor labels.

NumPy / OpenCV only (no MXNet): the loader's worker processes run it.

Training sample (:func:`load_training_sample`): a random crop of a record
(:func:`rcnn.io.image.training_crops`) and its labels, with the random stream fixed by
``(seed, epoch, position in the epoch)``; an image that cannot be read is replaced by another
record drawn from the same stream.

Random streams: an epoch's record order is drawn from ``(seed, epoch)`` (:func:`epoch_order`), a
sample's crop, colour and label subsampling from ``(seed, epoch, position, attempt)``
(:func:`sample_rng`), so the batches never depend on which process computed them.
"""
import numpy as np

from rcnn.io.anchor_labels import label_anchors
from rcnn.io.image import ImageReadError, training_crops
from rcnn.model_layout import NUM_LANDMARKS

__all__ = ['gt_label_from_record', 'crop_and_label', 'sample_rng', 'epoch_order',
           'load_training_sample', 'MAX_REPLACEMENTS', 'ImageReadError']

MAX_REPLACEMENTS = 10      # unreadable images replaced in a row before giving up
_SEED_TAG_ORDER = 1
_SEED_TAG_SAMPLE = 2


def gt_label_from_record(roi_rec, with_landmarks=True):
    """``gt_label`` for :func:`rcnn.io.anchor_labels.label_anchors` from a (cropped) record.

    Faces of class 0 are left out. Returns ``{'gt_boxes': (K, 5) float32 x1 y1 x2 y2 class}``
    plus ``'gt_landmarks'`` (K, 5, 3) float32 (all -1 when the record has no landmarks).
    """
    classes = np.asarray(roi_rec['gt_classes']).reshape(-1)
    keep = classes != 0
    gt_boxes = np.empty((int(keep.sum()), 5), dtype=np.float32)
    gt_boxes[:, :4] = np.asarray(roi_rec['boxes'], dtype=np.float32).reshape(-1, 4)[keep]
    gt_boxes[:, 4] = classes[keep]
    gt_label = {'gt_boxes': gt_boxes}
    if with_landmarks:
        if 'landmarks' in roi_rec:
            gt_label['gt_landmarks'] = np.asarray(
                roi_rec['landmarks'], dtype=np.float32).reshape(-1, NUM_LANDMARKS, 3)[keep]
        else:
            gt_label['gt_landmarks'] = np.full((len(gt_boxes), NUM_LANDMARKS, 3), -1, dtype=np.float32)
    return gt_label


def crop_and_label(roi_rec, feat_shapes, cfg, rng=None):
    """Random crop of one record and its anchor labels.

    Args:
        roi_rec: roidb record (see :func:`rcnn.io.image.training_crops`).
        feat_shapes: per stride, the class-score shape (..., H, W) for the crop size.
        cfg: config (``rcnn.config.generate_config``); rng: numpy Generator (crop, colour,
            then label subsampling).
    Returns:
        (im_tensor (1, 3, S, S) float32, labels dict (see :func:`label_anchors`),
        cropped record).
    """
    rng = np.random.default_rng() if rng is None else rng
    ims, records = training_crops([roi_rec], cfg=cfg, rng=rng)
    with_landmarks = bool(cfg.get('FACE_LANDMARK', True))
    labels = label_anchors(feat_shapes, gt_label_from_record(records[0], with_landmarks),
                               records[0]['im_info'], landmark=with_landmarks, prefix='face',
                               cfg=cfg, rng=rng)
    return ims[0], labels, records[0]


def sample_rng(seed, epoch, position, attempt=0):
    """Generator of one sample: a function of (seed, epoch, position in the epoch, attempt)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [int(seed), _SEED_TAG_SAMPLE, int(epoch), int(position), int(attempt)])))


def epoch_order(seed, epoch, num_records, shuffle):
    """Record order of an epoch: a permutation drawn from (seed, epoch), or 0..n-1."""
    if not shuffle:
        return np.arange(num_records)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [int(seed), _SEED_TAG_ORDER, int(epoch)])))
    return rng.permutation(num_records)


def load_training_sample(roidb, index, feat_shapes, cfg, seed, epoch, position):
    """Crop + labels of ``roidb[index]``, replacing an unreadable image by another record.

    Attempt 0 uses ``index``; attempt i >= 1 draws a replacement index from
    ``sample_rng(seed, epoch, position, i)``, whose stream then also drives the crop.

    Returns:
        (im_tensor (1, 3, S, S), labels dict, used index, failures) where failures is a list of
        (index, path, message) for every image that could not be read.
    Raises:
        ImageReadError: MAX_REPLACEMENTS + 1 images in a row could not be read.
    """
    failures = []
    for attempt in range(MAX_REPLACEMENTS + 1):
        rng = sample_rng(seed, epoch, position, attempt)
        if attempt > 0:
            index = int(rng.integers(len(roidb)))
        try:
            im_tensor, labels, _ = crop_and_label(roidb[index], feat_shapes, cfg, rng)
            return im_tensor, labels, index, failures
        except ImageReadError as err:
            failures.append((index, roidb[index]['image'], str(err)))
    paths = list(dict.fromkeys(path for _, path, _ in failures))     # unique, in order
    raise ImageReadError('%d images in a row could not be read (%s), giving up: check the data '
                         'set' % (len(failures), ', '.join(paths)))
