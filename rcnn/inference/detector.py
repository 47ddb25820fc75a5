"""RetinaFace face detector: load a deploy checkpoint, detect faces and their 5 landmarks.

Example::

    import cv2
    from retinaface import RetinaFace

    detector = RetinaFace('../shared/models/mnet.25/mnet.25', 0, ctx_id=-1)   # -1: CPU
    faces, landmarks = detector.detect(cv2.imread('photo.jpg'), threshold=0.5)
    # faces (N, 5) float32 x1 y1 x2 y2 score; landmarks (N, 5, 2) float32 (x, y) of the
    # left eye, right eye, nose, left and right mouth corners (image left/right as seen).
    crops = detector.align(cv2.imread('photo.jpg'), landmarks)   # (N, 112, 112, 3) for ArcFace

The algorithm is the original insightface ``RetinaFace.detect``: for each scale (bilinear resize
unless 1.0) and each flip, the BGR image goes through the model's pixel transform
(:mod:`rcnn.processing.pixels`; RGB raw pixel values for the released models); for each stride
the face-probability channels are thresholded, the passing anchors' boxes and landmarks are
decoded by the model's box coder (:mod:`rcnn.processing.box_coder`: deltas times the training
stds, then ``nonlinear_pred`` / ``landmark_pred``) and the boxes clipped to the input; a flipped
pass is mirrored back (x1' = W - x2 - 1, landmarks reordered by
:data:`rcnn.model_layout.FLIP_LANDMARK_ORDER`); coordinates are divided by the scale;
everything is pooled, sorted by score and reduced by NMS (IoU >= ``nms`` suppressed) or by box
voting (``vote=True``, see :func:`rcnn.inference.postprocess.bbox_vote`, including the
original's lone-box quirk).

The pixel transform, the coder's stds and the anchors come from the checkpoint's recipe
(``<prefix>-recipe.json``, written by training; :mod:`rcnn.recipe`); a checkpoint without one
(the released models) gets the original recipe. ``detect`` and ``detect_batch`` run the same
code (:func:`rcnn.inference.pipeline.run_pipeline`, which also schedules the passes of the
WIDER FACE protocols): ``detect`` is a list of one image.

Differences from the original, all deliberate:

* with ``vote=True`` the landmarks of each cluster's top box are returned (the original
  returned none);
* with ``nocrop=True`` the input is zero-padded at the bottom/right to a multiple of 32 as in
  the original, but boxes are clipped to, and flipped passes mirrored about, the real
  (unpadded) image; the original used the padded size, which shifted flipped boxes by the
  padding;
* grayscale ``(H, W)`` / ``(H, W, 1)`` images are replicated to 3 channels and BGRA images
  lose their alpha channel (no compositing), instead of failing;
* the network is bound once per distinct input shape and reused (the original re-shaped its
  module whenever the size changed), and only anchors passing the threshold are decoded.
"""
import logging
import math
import numbers

import numpy as np

from rcnn.inference import create_backend
from rcnn.inference.input_check import InvalidInputError, check_pixel_range, check_threshold
from rcnn.inference.pipeline import (MAX_SCALED_SIDE, MIN_IMAGE_SIDE, PAD_MULTIPLE, Schedule,
                                     run_pipeline)
from rcnn.inference.rotation import check_rotations, detect_rotations
from rcnn.inference.tiling import check_scale_options, scale_candidates
from rcnn.processing.generate_anchor import AnchorCache
from rcnn.model_layout import NETWORK_STRIDES
from rcnn.recipe import load_recipe

__all__ = ['RetinaFace', 'InvalidInputError', 'as_bgr_image', 'check_scales', 'check_threshold',
           'SUPPORTED_NETWORKS', 'MIN_IMAGE_SIDE', 'MAX_SCALED_SIDE',
           'PAD_MULTIPLE']

logger = logging.getLogger(__name__)

#: network layouts this project implements -> feature strides (coarse to fine)
SUPPORTED_NETWORKS = NETWORK_STRIDES
#: the other layouts of the original's ``RetinaFace(network=...)`` (retinaface.py there:
#: net3a, net4, net4a, net5, net5a, net6 since May 2019; x3, x3a, x5 later; ssh, vgg),
#: recognised only to give a clear error
ORIGINAL_ONLY_NETWORKS = ('net3a', 'net4', 'net4a', 'net5', 'net5a', 'net6', 'x3', 'x3a', 'x5',
                          'ssh', 'vgg')


def as_bgr_image(img, name='img'):
    """Validate an image and return it as ``(H, W, 3)`` BGR (a view when already so).

    Accepts ``(H, W, 3)`` BGR, ``(H, W)`` or ``(H, W, 1)`` grayscale (replicated) and
    ``(H, W, 4)`` BGRA (alpha dropped), of any real dtype (uint8 as from ``cv2.imread``).

    Raises:
        InvalidInputError (a ValueError): ``None``, not an array, empty, a side <
            :data:`MIN_IMAGE_SIDE`, another layout, a non-numeric dtype, or a float image
            scaled to 0..1 or holding NaN/inf (see :mod:`rcnn.inference.input_check`).
    """
    if img is None:
        raise InvalidInputError('%s is None (cv2.imread returns None for a missing or '
                                'unreadable file)' % name)
    if not isinstance(img, np.ndarray):
        raise InvalidInputError('%s must be a numpy array (H, W, 3) BGR, got %s'
                                % (name, type(img).__name__))
    if img.size == 0:
        raise InvalidInputError('%s is empty (shape %s)' % (name, img.shape))
    if img.dtype.kind not in 'uif':
        raise InvalidInputError('%s has dtype %s; expected uint8 (or another real type)'
                                % (name, img.dtype))
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim != 3 or img.shape[2] not in (3, 4):
        raise InvalidInputError('%s has shape %s; expected (H, W, 3) BGR, (H, W) grayscale '
                                'or (H, W, 4) BGRA' % (name, img.shape))
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    if min(img.shape[:2]) < MIN_IMAGE_SIDE:
        raise InvalidInputError('%s is %dx%d pixels; at least %dx%d is needed'
                                % (name, img.shape[1], img.shape[0], MIN_IMAGE_SIDE,
                                   MIN_IMAGE_SIDE))
    check_pixel_range(img, name)
    return img


def check_scales(scales):
    """Scales as a list of positive floats (a single number is accepted);
    :class:`InvalidInputError` (a ValueError) otherwise."""
    if isinstance(scales, numbers.Real):
        scales = [scales]
    try:
        scales = [float(s) for s in scales]
    except (TypeError, ValueError):
        raise InvalidInputError('scales must be a list of positive numbers, got %r'
                                % (scales,)) from None
    if not scales:
        raise InvalidInputError('scales is empty; pass e.g. [1.0]')
    bad = [s for s in scales if not (math.isfinite(s) and s > 0)]
    if bad:
        raise InvalidInputError('scales must be positive finite numbers, got %s' % bad)
    return scales


class RetinaFace(object):
    """Face detector on a RetinaFace deploy checkpoint (ours or a released insightface one).

    Args:
        prefix, epoch: checkpoint ``<prefix>-symbol.json`` + ``<prefix>-%04d.params``.
        ctx_id: < 0 runs on the CPU; >= 0 on GPU ``ctx_id`` (fails clearly on a CPU-only
            MXNet, suggesting ``ctx_id=-1``).
        network: anchor layout; only ``'net3'`` (strides 32/16/8, anchor scales (32, 16) /
            (8, 4) / (2, 1), ratio 1) exists in this project.
        nms: NMS IoU threshold (a box with IoU >= nms with a better one is suppressed); also the
            clustering IoU of box voting.
        nocrop: zero-pad every input up to a multiple of 32 (default: the input as is).
        decay4: factor on the scores of a stride-4 level before thresholding, as the original;
            accepted for compatibility, it has no effect on ``net3`` (no stride 4).
        vote: box voting instead of NMS (WIDER FACE "accurate" mode).
        backend: ``'mxnet'``, ``'onnxruntime'`` or ``'opencv'`` (OpenCV's DNN module on a
            fixed-size export per input size); the last two run on the CPU only (``ctx_id=-1``)
            and need the extras of ``requirements-deploy.txt``; see
            :data:`rcnn.inference.BACKENDS`.
        threads: CPU threads for the backend (MXNet: only before mxnet is first imported).
        recipe: the :class:`rcnn.recipe.Recipe` of the model (pixel transform, box coder,
            anchors); default: ``<prefix>-recipe.json`` when present, else the original recipe
            (the released models').
    """

    def __init__(self, prefix, epoch, ctx_id=0, network='net3', nms=0.4, nocrop=False,
                 decay4=0.5, vote=False, backend='mxnet', threads=None, recipe=None):
        if network not in SUPPORTED_NETWORKS:
            if network in ORIGINAL_ONLY_NETWORKS:
                raise ValueError('network %r of the original code is not supported; this '
                                 'project implements %s (the original\'s other layouts: %s)'
                                 % (network, ', '.join(SUPPORTED_NETWORKS),
                                    ', '.join(ORIGINAL_ONLY_NETWORKS)))
            raise ValueError('unknown network %r; supported: %s (the original also had %s, '
                             'not supported here)' % (network, ', '.join(SUPPORTED_NETWORKS),
                                                      ', '.join(ORIGINAL_ONLY_NETWORKS)))
        if not 0.0 <= float(nms) <= 1.0:
            raise ValueError('nms must be an IoU in [0, 1], got %r' % (nms,))
        self.network = network
        self.strides = SUPPORTED_NETWORKS[network]
        self.nms_threshold = float(nms)
        self.nocrop = bool(nocrop)
        self.decay4 = float(decay4)
        self.vote = bool(vote)
        self.use_landmarks = True
        self.recipe = load_recipe(prefix) if recipe is None else recipe
        self.pixels = self.recipe.pixels
        self.coder = self.recipe.coder
        self.anchor_cache = AnchorCache(self._base_anchors())
        self.score_decay = {4: self.decay4} if 4 in self.strides else {}
        self.backend_name = backend
        self.backend = create_backend(backend, prefix, epoch, ctx_id=ctx_id, threads=threads,
                                      strides=self.strides)

    def _base_anchors(self):
        if tuple(self.recipe.strides) != tuple(self.strides):
            where = self.recipe.source or 'the original recipe'
            raise ValueError('the anchors of %s have strides %s, network %s needs %s'
                             % (where, list(self.recipe.strides), self.network,
                                list(self.strides)))
        return self.recipe.base_anchors()

    # ------------------------------------------------------------------ public API

    def detect(self, img, threshold=0.5, scales=(1.0,), do_flip=False, rotations=(0,),
               tiles=None):
        """Detect faces.

        Args:
            img: (H, W, 3) BGR uint8 as from ``cv2.imread``; also (H, W) grayscale or
                (H, W, 4) BGRA; other real dtypes hold raw 0..255 values (a float image scaled
                to 0..1 is refused: pass ``img * 255``).
            threshold: minimum face probability, in [0, 1].
            scales: image scales to run (results pooled before NMS).
            do_flip: also run every scale mirrored.
            rotations: also run the image turned counterclockwise by these angles (from 0, 90,
                180, 270) and merge, for faces lying on their side or upside down (see
                :mod:`rcnn.inference.rotation`).
            tiles: None (off); ``'tiles'`` (enlarged overlapping tiles for tiny faces),
                ``'low-res'`` (a pass for faces larger than the largest anchor), ``'both'``,
                ``'auto'`` (chosen from the image size) or a
                :class:`rcnn.inference.tiling.ScaleOptions` (see :mod:`rcnn.inference.tiling`).
        Returns:
            faces (N, 5) float32 x1 y1 x2 y2 score, landmarks (N, 5, 2) float32, both in
            descending score order, in the coordinates of ``img``; with ``rotations`` other
            than ``(0,)`` also angles (N,) int64, each face's upright angle (the face is turned
            clockwise by it in ``img``).
        Raises:
            InvalidInputError (a ValueError) for a ``None``, empty, too small or malformed
            image, a 0..1-scaled float image, or bad arguments.
        """
        image = as_bgr_image(img)
        threshold, scales = check_threshold(threshold), check_scales(scales)
        angles = check_rotations(rotations)
        options = check_scale_options(tiles)
        if angles == (0,) and options is None:
            return run_pipeline(self, [image], threshold, scales, do_flip)[0]

        def candidates_of(view):
            return scale_candidates(self, view, threshold, scales, do_flip, options)

        faces, landmarks, upright = detect_rotations(self, image, angles, candidates_of)
        return (faces, landmarks) if angles == (0,) else (faces, landmarks, upright)

    def align(self, img, landmarks, size=112):
        """Aligned face crops for recognition: each face's 5 landmarks mapped onto the ArcFace
        template by a similarity transform (see :mod:`rcnn.inference.align`).

        Args:
            img: the image ``landmarks`` were detected on (BGR, as for :meth:`detect`).
            landmarks: (N, 5, 2) as returned by :meth:`detect`.
            size: crop side; 112 gives the ArcFace input.
        Returns:
            (N, size, size, 3) uint8 BGR crops.
        """
        from rcnn.inference.align import align_faces
        image = as_bgr_image(img)
        if image.dtype != np.uint8:
            image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        return align_faces(image, landmarks, size=size)

    def detect_batch(self, images, threshold=0.5, scales=(1.0,), do_flip=False, max_batch=8,
                     pad=False):
        """``detect()`` on several images, batching the forward passes.

        Returns a list with one ``(faces, landmarks)`` per image, equal to ``detect()`` on that
        image. ``max_batch``: images per forward; ``pad``: also batch images of different sizes
        (zero-padded; see :mod:`rcnn.inference.pipeline` for what that changes).
        """
        return self.detect_images(images, threshold, scales, do_flip,
                                  Schedule(max_batch=max_batch, pad=pad))

    def detect_images(self, images, threshold=0.5, scales=(1.0,), do_flip=False, schedule=None):
        """``detect()`` on a list of images with the passes scheduled by ``schedule``.

        Args:
            images: list of images as :meth:`detect` takes them.
            threshold, scales, do_flip: as :meth:`detect`.
            schedule: a :class:`rcnn.inference.pipeline.Schedule` (cross-image batches, flip
                batches, concurrent scales); None: one forward per image, scale and flip.
        Returns:
            list, per image, of ``(faces (N, 5) float32, landmarks (N, 5, 2) float32)``, the
            faces :meth:`detect` returns for that image whatever the schedule.
        """
        images = [as_bgr_image(img, 'images[%d]' % i) for i, img in enumerate(images)]
        return run_pipeline(self, images, check_threshold(threshold), check_scales(scales),
                            do_flip, Schedule() if schedule is None else schedule)

    def __repr__(self):
        return ('RetinaFace(network=%r, nms=%g, nocrop=%s, vote=%s, backend=%r)'
                % (self.network, self.nms_threshold, self.nocrop, self.vote, self.backend_name))
