"""Training images: decoding a roidb record's image, and the original training-crop API.

NumPy / OpenCV only (no MXNet): the loader's worker processes run it.

:func:`read_image` decodes a record's image (BGR uint8), mirrored left-right when the record is
``flipped`` (the reader mirrored its faces already, :func:`rcnn.processing.mirror` both).

:func:`training_crops` (``get_crop_image1`` is its original name) runs the training transform
(:class:`rcnn.io.transforms.TrainTransform`: pre-scale, crop window, colour jitter, tensor) on
a list of records and returns tensors and cropped record copies, as the original function did.
"""
import cv2
import numpy as np

from rcnn.dataset.annotations import FaceAnnotations
from rcnn.dataset.image_header import ImageReadError
from rcnn.io.decode import imread_checked
from rcnn.io.transforms import TrainTransform, color_aug
from rcnn.processing.mirror import mirror_image

__all__ = ['ImageReadError', 'read_image', 'training_crops', 'get_crop_image1', 'color_aug',
           'crop_record']

_default_rng = np.random.default_rng()


def read_image(roi_rec):
    """Decode a record's image, mirrored when ``roi_rec['flipped']``.

    Args:
        roi_rec: roidb record with ``image`` (path) and optionally ``height``, ``width``,
            ``flipped``.
    Returns:
        (H, W, 3) uint8 BGR image.
    Raises:
        ImageReadError: the file is missing, truncated or cannot be decoded (see
            :func:`rcnn.io.decode.imread_checked`), or its decoded size differs from the
            record's ``height`` x ``width`` (the labels would not match the pixels).
    """
    path = roi_rec['image']
    im = imread_checked(path, cv2.IMREAD_COLOR)
    expected = (roi_rec.get('height'), roi_rec.get('width'))
    if None not in expected and tuple(im.shape[:2]) != tuple(int(v) for v in expected):
        raise ImageReadError(
            'image %s decodes to %dx%d (h x w) but its record says %dx%d: the file changed '
            'after the roidb was read, or a "# name W H" line of label.txt states a wrong size'
            % (path, im.shape[0], im.shape[1], expected[0], expected[1]))
    if roi_rec.get('flipped', False):
        im = mirror_image(im)
    return im


def crop_record(roi_rec, transform, rng):
    """One record through ``transform``: ((1, 3, S, S) float32 tensor, cropped record copy).

    The copy holds the kept faces in crop coordinates (``boxes``, ``landmarks`` (k, 5, 3),
    ``blur``, ``gt_classes``) and what the steps chose (``im_info`` = [S, S, im_scale],
    ``crop_window`` = [left, up, left + S, up + S], ``pre_scale``).
    """
    image = read_image(roi_rec)
    tensor, faces, info = transform(image, FaceAnnotations.from_record(roi_rec), rng,
                                    {'image': roi_rec['image']})
    new_rec = dict(roi_rec)
    new_rec.update(faces.record_fields())
    for key in ('im_info', 'crop_window', 'pre_scale'):
        if key in info:
            new_rec[key] = info[key]
    return tensor, new_rec


def training_crops(roidb, cfg, rng=None):
    """Random training crops of a list of records (the original ``get_crop_image1``).

    Args:
        roidb: list of records: ``image`` path, ``height``, ``width``, ``boxes`` (K, 4) float32
            x1 y1 x2 y2, ``landmarks`` (K, 5, 3) float32 (x, y, visibility; -1 when missing),
            ``gt_classes`` (K,) int32, ``flipped`` bool, ``blur`` (K,).
        cfg: config (``SCALES``, ``PRE_SCALES``, ``CROP_TRIES``, ``COLOR_MODE``,
            ``COLOR_JITTERING``, ``PIXEL_*``, ``TRAIN.MIN_BOX_SIZE``).
        rng: numpy Generator for every random draw; defaults to a module-level generator.
    Returns:
        (processed_ims, processed_roidb): one ``(1, 3, SIZE, SIZE)`` float32 tensor and one
        cropped record copy (see :func:`crop_record`) per record.
    Raises:
        ImageReadError: an image is missing or unreadable (message names the file).
    """
    rng = _default_rng if rng is None else rng
    transform = TrainTransform.from_config(cfg)
    processed_ims, processed_roidb = [], []
    for roi_rec in roidb:
        im_tensor, new_rec = crop_record(roi_rec, transform, rng)
        processed_ims.append(im_tensor)
        processed_roidb.append(new_rec)
    return processed_ims, processed_roidb


get_crop_image1 = training_crops     # the original name
