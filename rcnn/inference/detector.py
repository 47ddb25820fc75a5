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

The pixel transform, the coder's stds, the anchors and the layout of the heads come from the
checkpoint's recipe (``<prefix>-recipe.json``, written by training; :mod:`rcnn.recipe`); a
checkpoint without one (the released models) gets the recipe of its ``network`` name
(:mod:`rcnn.inference.networks`, ``net3`` by default), with the landmark and cascade outputs
the graph has. Every layout of the family decodes: any strides and anchors, dense anchors
(which the original's detector could not read), boxes-only models (landmarks None), blur and
visibility values, cascade stages (:mod:`rcnn.processing.detections`). ``detect`` and
``detect_batch`` run the same code (:func:`rcnn.inference.pipeline.run_pipeline`, which also
schedules the passes of the WIDER FACE protocols): ``detect`` is a list of one image.

Differences from the original, all deliberate:

* with ``vote=True`` the landmarks of each cluster's top box are returned (the original
  returned none);
* a cascade model with more than one stage decodes every stage in turn (the original read the
  outputs after the first three of a stride by position and used one stage);
* with ``nocrop=True`` the input is zero-padded at the bottom/right to a multiple of 32 as in
  the original, but boxes are clipped to, and flipped passes mirrored about, the real
  (unpadded) image; the original used the padded size, which shifted flipped boxes by the
  padding;
* grayscale ``(H, W)`` / ``(H, W, 1)`` images are replicated to 3 channels and BGRA images
  lose their alpha channel (no compositing), instead of failing;
* the network is bound once per distinct input shape and reused (the original re-shaped its
  module whenever the size changed), and only anchors passing the threshold are decoded.
"""
import json
import logging
import math
import numbers
import os

import numpy as np

from rcnn.checkpoint.files import symbol_path
from rcnn.inference import create_backend
from rcnn.inference.input_check import InvalidInputError, check_pixel_range, check_threshold
from rcnn.inference.networks import NETWORK_NAMES, network_recipe
from rcnn.inference.pipeline import (MAX_SCALED_SIDE, MIN_IMAGE_SIDE, PAD_MULTIPLE, Schedule,
                                     run_pipeline)
from rcnn.inference.postprocess import bbox_vote as vote_boxes
from rcnn.model_layout import ModelLayout, deploy_output_names
from rcnn.processing.bbox_transform import landmark_pred as decode_points
from rcnn.processing.bbox_transform import nonlinear_pred
from rcnn.processing.detections import DeployOutputs, parse_output_name
from rcnn.processing.generate_anchor import AnchorCache
from rcnn.recipe import read_onnx_recipe, read_recipe

__all__ = ['RetinaFace', 'InvalidInputError', 'as_bgr_image', 'check_scales', 'check_threshold',
           'SUPPORTED_NETWORKS', 'MIN_IMAGE_SIDE', 'MAX_SCALED_SIDE',
           'PAD_MULTIPLE', 'graph_output_names', 'graph_head_channels']

logger = logging.getLogger(__name__)

#: the original detector's ``network`` names -> their feature strides (coarse to fine); see
#: :mod:`rcnn.inference.networks` for their anchors and pixels
SUPPORTED_NETWORKS = {name: network_recipe(name).strides for name in NETWORK_NAMES}


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


def _graph_heads(prefix):
    """[(output name, its node)] of ``<prefix>-symbol.json``, in graph order; None when the
    file is absent or unreadable."""
    try:
        with open(symbol_path(prefix), 'r', encoding='utf-8') as handle:
            graph = json.load(handle)
        nodes = graph['nodes']
        return [(nodes[head[0]]['name'], nodes[head[0]]) for head in graph['heads']]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def graph_head_channels(prefix):
    """{output name: channels} of the outputs of ``<prefix>-symbol.json`` that are
    convolutions (the box and landmark heads of a deploy graph: their ``num_filter``);
    empty when unknown."""
    heads = [] if str(prefix).endswith('.onnx') else _graph_heads(prefix) or []
    channels = {}
    for name, node in heads:
        attrs = node.get('attrs', node.get('param', {})) or {}
        if node.get('op') == 'Convolution' and str(attrs.get('num_filter', '')).isdigit():
            channels[name] = int(attrs['num_filter'])
    return channels


def graph_output_names(prefix):
    """The output names of a checkpoint's graph, in graph order: the heads of
    ``<prefix>-symbol.json`` (without MXNet's ``_output``), or the outputs of ``prefix`` when it
    names an ``.onnx`` file; None when the file is absent or unreadable (the backend reports
    that when it loads the model)."""
    if str(prefix).endswith('.onnx'):
        try:
            import onnx
            return [out.name for out in onnx.load(str(prefix), load_external_data=False)
                    .graph.output]
        except Exception:           # the backend loading it gives the real error
            return None
    heads = _graph_heads(prefix)
    return None if heads is None else [name for name, _ in heads]


def _deploy_plan(layout, graph_names, strict, where):
    """The :class:`DeployOutputs` the detector decodes.

    Args:
        layout: the :class:`ModelLayout` of the recipe (strides, heads).
        graph_names: the graph's own output names (None: unknown).
        strict: the layout comes from the checkpoint's recipe: its landmarks, lengths and
            cascade must be the graph's. Otherwise (a network name) landmarks and cascade
            outputs are taken from the graph, as the original detector does.
        where: the checkpoint, for messages.
    Raises:
        ValueError: the graph lacks a stride, the landmarks or the cascade outputs the recipe
            says it has.
    """
    strides = layout.strides
    parsed = [(name, parse_output_name(name)) for name in graph_names or ()]
    parsed = [(name, kind, stride) for name, (kind, stride, _) in
              ((n, p) for n, p in parsed if p is not None)]
    landmarks = layout.landmarks
    if graph_names is not None and not strict:
        # deploy heads ``face_rpn_landmark_pred``, training heads ``face_rpn_landmark_loss``
        landmarks = any(kind.startswith('face_rpn_landmark') for _, kind, _ in parsed)
    boxes_only = DeployOutputs.first_stage(strides, landmarks=False).names
    expected = deploy_output_names(strides) if landmarks else boxes_only
    names = expected
    if graph_names is not None:
        have = sorted({stride for _, _, stride in parsed}, reverse=True)
        if have and set(have) != set(strides):
            fitting = [name for name, its in SUPPORTED_NETWORKS.items() if list(its) == have]
            raise ValueError('%s has the outputs of strides %s; its %s has strides %s%s'
                             % (where, have, 'recipe' if strict else 'network',
                                list(strides), '' if strict or not fitting else
                                ' (network=%s has those strides)' % ' or '.join(fitting)))
        own = [name for stride in strides for name, kind, its in parsed if its == stride
               and (landmarks or not kind.startswith('face_rpn_landmark'))]
        if set(expected) <= set(own):
            names = own                 # the graph's deploy outputs, cascade stages included
        elif strict and landmarks and set(boxes_only) <= set(own):
            raise ValueError('%s has no landmark outputs, but its recipe says the model has '
                             'landmark heads (FACE_LANDMARK)' % where)
    box_len = layout.box_len if strict else None
    point_len = (layout.landmark_point_len or None) if strict else None
    plan = DeployOutputs(names, strides, box_len=box_len, point_len=point_len)
    if strict and plan.cascade < layout.cascade:
        raise ValueError('%s: its recipe says CASCADE=%d, but the graph has %d cascade stage(s) '
                         'of outputs (%s)' % (where, layout.cascade, plan.cascade,
                                              ', '.join(plan.names)))
    return plan


def _describe(recipe):
    return 'strides %s, %d anchors per position, pixels %r' % (
        list(recipe.strides), recipe.layout.num_anchors, recipe.pixels)


class RetinaFace(object):
    """Face detector on a RetinaFace deploy checkpoint (ours or a released insightface one).

    Args:
        prefix, epoch: checkpoint ``<prefix>-symbol.json`` + ``<prefix>-%04d.params``.
        ctx_id: < 0 runs on the CPU; >= 0 on GPU ``ctx_id`` (fails clearly on a CPU-only
            MXNet, suggesting ``ctx_id=-1``).
        network: one of the original detector's layout names (:mod:`rcnn.inference.networks`:
            ``net3`` -- the released models --, ``net3a``, ``net4``, ``net4a``, ``net5``,
            ``net5a``, ``net6``, ``ssh``, ``vgg``, ``x3``, ``x3a``, ``x5``): strides, anchors
            and pixels of a checkpoint without a recipe file. A checkpoint's recipe wins over
            it (a log line says so when they disagree).
        nms: NMS IoU threshold (a box with IoU >= nms with a better one is suppressed); also the
            clustering IoU of box voting.
        nocrop: zero-pad every input up to a multiple of 32 (default: the input as is).
        decay4: factor on the scores of a stride-4 level before thresholding, as the original
            (no effect on a layout without stride 4).
        vote: box voting instead of NMS (WIDER FACE "accurate" mode).
        backend: ``'mxnet'``, ``'onnxruntime'`` or ``'opencv'`` (OpenCV's DNN module on a
            fixed-size export per input size); the last two run on the CPU only (``ctx_id=-1``)
            and need the extras of ``requirements-deploy.txt``; see
            :data:`rcnn.inference.BACKENDS`.
        threads: CPU threads for the backend (MXNet: only before mxnet is first imported).
        recipe: the :class:`rcnn.recipe.Recipe` of the model (pixel transform, box coder,
            anchors, layout); default: ``<prefix>-recipe.json`` (for an ``.onnx`` file: the
            recipe its export keeps in its metadata) when present, else the recipe of
            ``network``.

    Layout: with a recipe, the graph must have the heads its layout says (landmarks, 4 or 5
    box values, 2 or 3 values per point, cascade stages); without one, as the original
    detector, landmarks and cascade outputs are used when the graph has them and the value
    counts are read from the outputs' channels.

    The original detector's members: ``_feat_stride_fpn`` (strides, coarse to fine),
    ``fpn_keys`` (``'stride32'``, ...), ``_anchors_fpn`` ({key: (A, 4) float32 anchors of cell
    (0, 0)}), ``_num_anchors`` ({key: A}), ``anchor_cfg``, ``pixel_means`` / ``pixel_stds``
    ((3,) float32, BGR order) and ``pixel_scale``, ``bbox_stds`` / ``landmark_std``,
    ``use_landmarks``, ``cascade`` (cascade stages decoded, 0: none), ``nms_threshold``,
    ``decay4``, ``vote``, ``nocrop``; :meth:`detect_center`, :meth:`bbox_vote` and the static
    :meth:`bbox_pred` / :meth:`landmark_pred`.
    """

    def __init__(self, prefix, epoch, ctx_id=0, network='net3', nms=0.4, nocrop=False,
                 decay4=0.5, vote=False, backend='mxnet', threads=None, recipe=None):
        if network not in NETWORK_NAMES:
            raise ValueError('unknown network %r; the original detector\'s layouts are %s'
                             % (network, ', '.join(NETWORK_NAMES)))
        if not 0.0 <= float(nms) <= 1.0:
            raise ValueError('nms must be an IoU in [0, 1], got %r' % (nms,))
        self.network = network
        self.ctx_id = int(ctx_id)
        self.nms_threshold = float(nms)
        self.nocrop = bool(nocrop)
        self.decay4 = float(decay4)
        self.vote = bool(vote)
        self.recipe, strict = self._choose_recipe(prefix, network, recipe)
        where = 'checkpoint %s' % prefix
        self.outputs = _deploy_plan(self.recipe.layout, graph_output_names(prefix), strict,
                                    where)
        self.layout = self._layout_of(self.outputs, strict, graph_head_channels(prefix))
        self.strides = self.recipe.strides
        self.pixels = self.recipe.pixels
        self.coder = self.recipe.coder
        self.anchor_cache = AnchorCache(self.recipe.base_anchors())
        self.score_decay = {4: self.decay4} if 4 in self.strides else {}
        self._set_original_members()
        self.backend_name = backend
        self.backend = create_backend(backend, prefix, epoch, ctx_id=ctx_id, threads=threads,
                                      strides=self.strides, output_names=self.outputs.names)

    @staticmethod
    def _choose_recipe(prefix, network, recipe):
        """(the recipe used, whether it is the checkpoint's own): ``recipe``, else the
        checkpoint's file, else the network name's."""
        named = network_recipe(network)
        if recipe is None and str(prefix).endswith('.onnx'):
            recipe = read_onnx_recipe(prefix) if os.path.isfile(prefix) else None
        elif recipe is None:
            recipe = read_recipe(prefix)
        if recipe is None:
            logger.debug('%s has no recipe file: using network %s (%s)', prefix, network,
                         _describe(named))
            return named, False
        if (recipe.anchor_cfg, recipe.dense_anchor, recipe.pixels) != \
                (named.anchor_cfg, named.dense_anchor, named.pixels):
            logger.info('%s: its recipe (%s%s) wins over network=%r (%s)',
                        recipe.source or prefix, _describe(recipe),
                        ', dense anchors' if recipe.dense_anchor else '', network,
                        _describe(named))
        return recipe, True

    def _layout_of(self, plan, strict, channels):
        """The layout decoded: the recipe's, or (a network name) the name's strides and
        anchors with the graph's heads -- landmarks and cascade from its outputs, the value
        counts from its head convolutions when the graph file says them (else the released
        4 and 10; decoding reads them from the outputs' channels anyway)."""
        if strict:
            return self.recipe.layout
        base = self.recipe.layout
        first = plan.per_stride[0]
        box_len = channels.get(plan.names[first.box], 0) // base.num_anchors
        landmark_len = base.landmark_len if plan.landmarks else 0
        if plan.landmarks:
            landmark_len = channels.get(plan.names[first.landmark], 0) // base.num_anchors
        try:
            return ModelLayout(base.strides, base.num_anchors, box_len or base.box_len,
                               landmark_len if landmark_len or not plan.landmarks
                               else base.landmark_len, plan.cascade)
        except ValueError:              # counts that do not fit: decoding names the output
            return ModelLayout(base.strides, base.num_anchors, base.box_len,
                               base.landmark_len if plan.landmarks else 0, plan.cascade)

    def _set_original_members(self):
        """The attributes the original detector exposes, with its names and types."""
        self._feat_stride_fpn = list(self.strides)
        self.fpn_keys = ['stride%d' % s for s in self.strides]
        base = self.anchor_cache.base_anchors
        self._anchors_fpn = {key: base[s] for key, s in zip(self.fpn_keys, self.strides)}
        self._num_anchors = {key: len(a) for key, a in self._anchors_fpn.items()}
        self.anchor_cfg = self.recipe.anchor_cfg
        self.pixel_means = np.array(self.pixels.means, dtype=np.float32)
        self.pixel_stds = np.array(self.pixels.stds, dtype=np.float32)
        self.pixel_scale = float(self.pixels.scale)
        self.bbox_stds = list(self.coder.bbox_stds)
        self.landmark_std = self.coder.landmark_std
        self.use_landmarks = self.outputs.landmarks
        self.cascade = self.outputs.cascade

    # ------------------------------------------------------------------ public API

    def detect(self, img, threshold=0.5, scales=(1.0,), do_flip=False):
        """Detect faces.

        Args:
            img: (H, W, 3) BGR uint8 as from ``cv2.imread``; also (H, W) grayscale or
                (H, W, 4) BGRA; other real dtypes hold raw 0..255 values (a float image scaled
                to 0..1 is refused: pass ``img * 255``).
            threshold: minimum face probability, in [0, 1].
            scales: image scales to run (results pooled before NMS).
            do_flip: also run every scale mirrored.
        Returns:
            ``(faces, landmarks)`` in descending score order, in the coordinates of ``img``,
            as the original detector returns them for the model's heads:

            * faces (N, 5) float32 x1 y1 x2 y2 score; (N, 6) with a blur head
              (``USE_BLUR``): column 5 is the head's raw blur value of the face (not scaled,
              not clipped; the target is the label file's blur value, see docs/models.md);
            * landmarks (N, 5, 2) float32 (x, y) of the left eye, right eye, nose, left and
              right mouth corners; (N, 5, 3) with a visibility head (``USE_OCCLUSION``):
              ``[..., 2]`` is the head's raw visibility value of the point (trained towards
              0 visible, 1 occluded); None for a model without landmarks
              (``FACE_LANDMARK=False``).
        Raises:
            InvalidInputError (a ValueError) for a ``None``, empty, too small or malformed
            image, a 0..1-scaled float image, or bad arguments.
        """
        return run_pipeline(self, [as_bgr_image(img)], check_threshold(threshold),
                            check_scales(scales), do_flip)[0]

    def detect_center(self, img, threshold=0.5, scales=(1.0,), do_flip=False):
        """The one face the original's ``detect_center`` picks: the largest box, less twice
        the squared distance of its centre from the image centre.

        Returns:
            ``(face (5,) or (6,), landmarks (5, P) or None)`` of that face, or
            ``(None, None)`` when no face passes ``threshold``.
        """
        faces, landmarks = self.detect(img, threshold, scales, do_flip)
        if len(faces) == 0:
            return None, None
        index = 0
        if len(faces) > 1:
            height, width = np.asarray(img).shape[:2]
            areas = (faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1])
            off_x = (faces[:, 0] + faces[:, 2]) / 2 - width / 2
            off_y = (faces[:, 1] + faces[:, 3]) / 2 - height / 2
            index = int(np.argmax(areas - 2.0 * (off_x ** 2 + off_y ** 2)))
        return faces[index], None if landmarks is None else landmarks[index]

    def bbox_vote(self, det):
        """The original's ``bbox_vote(det)`` at this detector's ``nms`` IoU (see
        :func:`rcnn.inference.postprocess.bbox_vote` for the rule and its quirk).

        Args:
            det: (N, 5 + E) x1 y1 x2 y2 score [blur], sorted by descending score.
        Returns:
            (M, 5 + E) float32 voted faces; a face's blur value is its cluster's top box's. An
            empty input gives an empty result (the original returned a placeholder box).
        """
        det = np.asarray(det, dtype=np.float64)
        if det.ndim != 2 or det.shape[1] < 5:
            raise ValueError('det must be (N, 5+) x1 y1 x2 y2 score ..., got shape %s'
                             % (det.shape,))
        faces, _ = vote_boxes(det[:, :5], None, self.nms_threshold, extras=det[:, 5:])
        return faces

    @staticmethod
    def bbox_pred(boxes, box_deltas):
        """The original's ``bbox_pred``: deltas applied to reference boxes.

        Args:
            boxes: (N, 4) x1 y1 x2 y2 (anchors, or the boxes a cascade stage refines).
            box_deltas: (N, 4 + E) dx dy dw dh [raw values, e.g. blur].
        Returns:
            (N, 4 + E) float64: the decoded box, then the extra values copied as they are.
        """
        boxes = np.asarray(boxes)
        box_deltas = np.asarray(box_deltas)
        pred = np.zeros(box_deltas.shape, dtype=np.float64)
        if len(boxes) == 0:
            return pred
        pred[:, :4] = nonlinear_pred(boxes.astype(np.float64),
                                     box_deltas[:, :4].astype(np.float64))
        pred[:, 4:] = box_deltas[:, 4:]
        return pred

    @staticmethod
    def landmark_pred(boxes, landmark_deltas):
        """The original's ``landmark_pred``: landmark deltas decoded on reference boxes.

        Args:
            boxes: (N, 4) x1 y1 x2 y2.
            landmark_deltas: (N, 5, P): x, y deltas [, a raw value per point, e.g. visibility].
        Returns:
            (N, 5, P) float64: decoded x, y, the third value copied as it is.
        """
        boxes = np.asarray(boxes)
        deltas = np.asarray(landmark_deltas, dtype=np.float64)
        if deltas.ndim != 3 or deltas.shape[2] < 2:
            raise ValueError('landmark_deltas must be (N, 5, P) with P >= 2, got shape %s'
                             % (deltas.shape,))
        pred = deltas.copy()
        if len(boxes):
            pred[:, :, :2] = decode_points(boxes.astype(np.float64), deltas[:, :, :2])
        return pred

    def align(self, img, landmarks, size=112):
        """Aligned face crops for recognition: each face's 5 landmarks mapped onto the ArcFace
        template by a similarity transform (see :mod:`rcnn.inference.align`).

        Args:
            img: the image ``landmarks`` were detected on (BGR, as for :meth:`detect`).
            landmarks: (N, 5, 2) as returned by :meth:`detect` ((N, 5, 3) with visibility
                values: their x, y are used).
            size: crop side; 112 gives the ArcFace input.
        Returns:
            (N, size, size, 3) uint8 BGR crops.
        Raises:
            ValueError: ``landmarks`` is None (a model without landmarks cannot align).
        """
        from rcnn.inference.align import align_faces
        if landmarks is None:
            raise ValueError('align needs landmarks; this model has no landmark heads '
                             '(detect returned landmarks None)')
        landmarks = np.asarray(landmarks)
        if landmarks.ndim == 3 and landmarks.shape[2] == 3:
            landmarks = landmarks[:, :, :2]
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
            list, per image, of ``(faces, landmarks)`` as :meth:`detect` returns them for that
            image, whatever the schedule.
        """
        images = [as_bgr_image(img, 'images[%d]' % i) for i, img in enumerate(images)]
        return run_pipeline(self, images, check_threshold(threshold), check_scales(scales),
                            do_flip, Schedule() if schedule is None else schedule)

    def __repr__(self):
        return ('RetinaFace(network=%r, %r, nms=%g, nocrop=%s, vote=%s, backend=%r)'
                % (self.network, self.layout, self.nms_threshold, self.nocrop, self.vote,
                   self.backend_name))
