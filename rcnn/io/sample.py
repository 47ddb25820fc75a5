"""One training sample: a random crop of a roidb record and its anchor labels.

NumPy / OpenCV only (no MXNet): the loader's worker processes run it.

:class:`SampleMaker` holds the training transform (:class:`rcnn.io.transforms.TrainTransform`)
and the anchor-target generator (:class:`rcnn.io.anchor_targets.AnchorTargetGenerator`), built
once per worker; per sample it decodes the record's image, runs the transform on the image and
its :class:`rcnn.dataset.annotations.FaceAnnotations` together and labels the anchors.

Random streams: an epoch's record order is drawn from ``(seed, epoch)`` (:func:`epoch_order`), a
sample's crop, colour and label subsampling from ``(seed, epoch, position, attempt)``
(:func:`sample_rng`), and with ``RANDOM_FEAT_STRIDE`` the one stride a batch trains from
``(seed, epoch, batch)`` (:func:`batch_select_stride`), so the batches never depend on which
process computed them. An image that cannot be read is replaced by another record drawn from
the same stream (:meth:`SampleMaker.load`).
"""
import numpy as np

from rcnn.dataset.annotations import FaceAnnotations
from rcnn.io.anchor_targets import AnchorTargetGenerator
from rcnn.io.image import ImageReadError, read_image
from rcnn.io.transforms import TrainTransform

__all__ = ['SampleMaker', 'sample_rng', 'epoch_order', 'batch_select_stride',
           'MAX_REPLACEMENTS', 'ImageReadError']

MAX_REPLACEMENTS = 10      # unreadable images replaced in a row before giving up
_SEED_TAG_ORDER = 1
_SEED_TAG_SAMPLE = 2
_SEED_TAG_STRIDE = 3


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


def batch_select_stride(seed, epoch, batch_no, strides):
    """The stride whose labels batch ``batch_no`` of ``epoch`` keeps with
    ``RANDOM_FEAT_STRIDE`` (the original draws one per batch, ``random.choice`` of the
    strides, and sets every other stride's labels to -1): uniform over ``strides``, drawn from
    (seed, epoch, batch_no)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [int(seed), _SEED_TAG_STRIDE, int(epoch), int(batch_no)])))
    return int(strides[int(rng.integers(len(strides)))])


class SampleMaker(object):
    """Training samples of roidb records.

    Args:
        transform: :class:`TrainTransform` (image + faces -> tensor + faces).
        targets: :class:`AnchorTargetGenerator`.
        feat_shapes: per stride, the class-score shape (..., H, W) of the crop size.
        max_replacements: unreadable images replaced in a row before :meth:`load` gives up.
    """

    def __init__(self, transform, targets, feat_shapes, max_replacements=MAX_REPLACEMENTS):
        self.transform = transform
        self.targets = targets
        self.feat_shapes = [tuple(int(v) for v in shape) for shape in feat_shapes]
        self.max_replacements = int(max_replacements)

    @classmethod
    def from_config(cls, cfg, feat_shapes):
        return cls(TrainTransform.from_config(cfg), AnchorTargetGenerator.from_config(cfg),
                   feat_shapes)

    # The one place the loader takes its label inputs from (names, shapes, arrays): a model
    # with further label inputs extends these three together.
    @property
    def label_names(self):
        """Label input names, in the loader's (and the training graph's) order."""
        return self.targets.label_names

    def label_shapes(self, feat_shapes, batch=1):
        """``[(name, shape)]`` of the label inputs for class-score maps ``feat_shapes``."""
        return self.targets.label_shapes(feat_shapes, batch)

    def labels(self, faces, info, rng, select_stride=0):
        """Label arrays (name -> (1, ...) float32) of the transformed faces of one sample."""
        return self.targets(self.feat_shapes, faces, info['im_info'], rng,
                            select_stride=select_stride)

    def __call__(self, roi_rec, rng, select_stride=0):
        """Random crop of one record and its labels (``select_stride``: see
        :func:`batch_select_stride`).

        Returns:
            (im_tensor (1, 3, S, S) float32, labels dict (see :mod:`rcnn.io.anchor_targets`),
            the kept faces in crop pixels, the transform's ``info``).
        Raises:
            ImageReadError: the image is missing or unreadable.
        """
        image = read_image(roi_rec)
        tensor, faces, info = self.transform(image, FaceAnnotations.from_record(roi_rec), rng,
                                             {'image': roi_rec['image']})
        return tensor, self.labels(faces, info, rng, select_stride), faces, info

    def load(self, roidb, index, seed, epoch, position, select_stride=0):
        """Crop + labels of ``roidb[index]``, replacing an unreadable image by another record.

        Attempt 0 uses ``index``; attempt i >= 1 draws a replacement index from
        ``sample_rng(seed, epoch, position, i)``, whose stream then also drives the crop.

        Returns:
            (im_tensor (1, 3, S, S), labels dict, used index, failures) where failures is a
            list of (index, path, message) for every image that could not be read.
        Raises:
            ImageReadError: ``max_replacements + 1`` images in a row could not be read.
        """
        failures = []
        for attempt in range(self.max_replacements + 1):
            rng = sample_rng(seed, epoch, position, attempt)
            if attempt > 0:
                index = int(rng.integers(len(roidb)))
            try:
                im_tensor, labels, _, _ = self(roidb[index], rng, select_stride)
                return im_tensor, labels, index, failures
            except ImageReadError as err:
                failures.append((index, roidb[index]['image'], str(err)))
        paths = list(dict.fromkeys(path for _, path, _ in failures))     # unique, in order
        raise ImageReadError('%d images in a row could not be read (%s), giving up: check the '
                             'data set' % (len(failures), ', '.join(paths)))
