"""The detection pipeline: plan -> forward -> decode -> merge.

Every detection of :class:`rcnn.inference.detector.RetinaFace` (``detect``, ``detect_batch``,
the WIDER FACE test protocols) runs :func:`run_pipeline`:

1. **plan**: for each scale, the network inputs -- one per image and flip -- are grouped into
   forward batches (:func:`plan_scale`);
2. **forward**: each batch (``(B, 3, H, W)`` float32, zero-padded bottom/right to its largest
   input) goes through ``backend.forward`` once;
3. **decode**: each input's outputs are cut to its own feature maps (``ceil(H / s) x
   ceil(W / s)`` at stride ``s``: the top-left cells, padding being at the bottom/right) and
   decoded (:func:`rcnn.processing.detections.decode_detections`); a flipped input is mirrored
   back (:func:`rcnn.inference.postprocess.flip_back`) and the coordinates are divided by the
   scale;
4. **merge**: the candidates of an image are pooled in one fixed order -- scale by scale,
   unflipped before flipped -- and reduced by NMS or box voting
   (:func:`rcnn.inference.postprocess.merge_detections`).

How the passes are scheduled is a :class:`Schedule`; it changes the forwards, never what is
decoded or the pooling order:

* ``max_batch``: images per forward. ``pad=False`` batches only inputs of one shape (results
  equal the one-image passes up to the floating-point rounding of batched kernels; MXNet's and
  onnxruntime's CPU kernels give the same numbers); ``pad=True`` also batches inputs of
  different shapes, zero-padded, so faces within a receptive field of the bottom/right border
  can score slightly differently from a pass of their own;
* ``flip_batch``: an image's unflipped and mirrored inputs (same shape) share a forward;
* ``scale_workers``: with a backend whose ``forward`` may run in several threads at once
  (``backend.concurrent_forward``: true for onnxruntime, whose sessions are thread-safe and
  release the GIL; false for MXNet, whose executors share memory), that many threads process
  the scales, largest first so the long passes start early. Decoding stays under a lock: it
  fills the anchor cache, which is not meant for concurrent use.

The model is any object with the detector's parts as attributes: ``backend``, ``strides``,
``outputs`` (the :class:`rcnn.processing.detections.DeployOutputs` of the backend's outputs;
None: the released layout's three per stride), ``anchor_cache``, ``coder``, ``pixels``,
``score_decay``, ``nocrop``, ``nms_threshold`` and ``vote`` (:class:`RetinaFace` is one).
"""
import collections
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from rcnn.inference.input_check import InvalidInputError
from rcnn.inference.postprocess import flip_back, merge_detections
from rcnn.processing.detections import DeployOutputs, Detections, decode_detections

__all__ = ['Schedule', 'run_pipeline', 'plan_scale', 'plan_batches', 'feature_size',
           'scale_image', 'MIN_IMAGE_SIDE', 'MAX_SCALED_SIDE', 'PAD_MULTIPLE']

#: smallest image side accepted (a 1-pixel-wide image is almost always a decoding accident)
MIN_IMAGE_SIDE = 2
#: a scale may not make a side longer than this (a mistyped scale such as 1766 would otherwise
#: try to allocate tens of GB); WIDER FACE's largest pyramid level is about 2,600 px
MAX_SCALED_SIDE = 8192
#: ``nocrop`` pads each input up to a multiple of this (the original's 32, for every layout)
PAD_MULTIPLE = 32
#: pixel types cv2.resize handles with bilinear interpolation; others are resized as float32
_RESIZABLE_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32,
                                                 np.float64))


class Schedule(collections.namedtuple('Schedule', 'max_batch pad flip_batch scale_workers')):
    """How the passes of :func:`run_pipeline` are run (see the module notes).

    Fields:
        max_batch: images per forward (>= 1); 1 runs every image alone.
        pad: batch inputs of different shapes too (zero-padded).
        flip_batch: an image's two flips share a forward.
        scale_workers: threads processing scales at once (>= 1; used only by a backend with
            ``concurrent_forward``).
    """
    __slots__ = ()

    def __new__(cls, max_batch=1, pad=False, flip_batch=False, scale_workers=1):
        max_batch, scale_workers = int(max_batch), int(scale_workers)
        if max_batch < 1:
            raise ValueError('max_batch must be >= 1, got %d' % max_batch)
        if scale_workers < 1:
            raise ValueError('scale_workers must be >= 1, got %d' % scale_workers)
        return super().__new__(cls, max_batch, bool(pad), bool(flip_batch), scale_workers)


# ---------------------------------------------------------------------------- plan

def feature_size(size, stride):
    """Feature-map size of an input side at ``stride``: ``ceil(size / stride)`` (every stride-2
    layer of our backbones maps n to ceil(n / 2), and ceil(ceil(n / a) / b) = ceil(n / ab))."""
    return -(-int(size) // int(stride))


def plan_batches(shapes, max_batch=8, pad=False):
    """Group input indices into batches.

    Args:
        shapes: per input, its (height, width).
    Returns:
        list of index lists, each of at most ``max_batch`` inputs; with ``pad=False`` every
        batch holds one shape only. Order: first appearance of each shape, then input order.
    """
    max_batch = int(max_batch)
    if max_batch < 1:
        raise ValueError('max_batch must be >= 1, got %d' % max_batch)
    if pad:
        groups = [list(range(len(shapes)))]
    else:
        by_shape = {}
        for index, shape in enumerate(shapes):
            by_shape.setdefault(tuple(shape), []).append(index)
        groups = list(by_shape.values())
    return [group[start:start + max_batch] for group in groups
            for start in range(0, len(group), max_batch)]


def plan_scale(input_shapes, flips, schedule):
    """Forward batches of one scale.

    Args:
        input_shapes: per image, the (height, width) of its network input at this scale.
        flips: ``(False,)`` or ``(False, True)``.
        schedule: :class:`Schedule`.
    Returns:
        list of batches, each a list of ``(image index, flip)`` in batch-slot order. Without
        ``flip_batch`` each flip is planned on its own, unflipped first; with it, an image's
        flips sit side by side and ``max_batch`` counts images.
    """
    if schedule.flip_batch and len(flips) > 1:
        unit_lists = [[[(index, flip) for flip in flips] for index in range(len(input_shapes))]]
    else:
        unit_lists = [[[(index, flip)] for index in range(len(input_shapes))] for flip in flips]
    batches = []
    for units in unit_lists:
        shapes = [input_shapes[unit[0][0]] for unit in units]
        for group in plan_batches(shapes, schedule.max_batch, schedule.pad):
            batches.append([slot for unit in group for slot in units[unit]])
    return batches


# ---------------------------------------------------------------------------- forward

def scale_image(image, scale):
    """``image`` resized by ``scale`` (bilinear; the image itself for 1.0).

    Raises:
        InvalidInputError: the scaled image would be larger than :data:`MAX_SCALED_SIDE` or
            smaller than :data:`MIN_IMAGE_SIDE` per side.
    """
    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    if scale > 1.0 and max(height, width) * scale > MAX_SCALED_SIDE + 0.5:
        raise InvalidInputError('scale %g turns the %dx%d image into more than %d pixels '
                                'per side' % (scale, width, height, MAX_SCALED_SIDE))
    if min(round(height * scale), round(width * scale)) < MIN_IMAGE_SIDE:
        raise InvalidInputError('scale %g turns the %dx%d image into less than %d pixels '
                                'per side' % (scale, width, height, MIN_IMAGE_SIDE))
    if image.dtype not in _RESIZABLE_DTYPES:      # e.g. int64, float16: not in cv2.resize
        image = image.astype(np.float32)
    return cv2.resize(image, None, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)


def _stack(inputs):
    """(1, 3, h_i, w_i) inputs -> (B, 3, max h, max w) float32, zero-padded bottom/right."""
    if len(inputs) == 1:
        return inputs[0]
    height = max(x.shape[2] for x in inputs)
    width = max(x.shape[3] for x in inputs)
    batch = np.zeros((len(inputs), 3, height, width), dtype=np.float32)
    for slot, x in enumerate(inputs):
        batch[slot, :, :x.shape[2], :x.shape[3]] = x[0]
    return batch


def _output_plan(model):
    plan = getattr(model, 'outputs', None)
    return DeployOutputs.first_stage(model.strides) if plan is None else plan


def _check_feature_sizes(outputs, plan, batch_shape):
    for entry in plan.per_stride:
        stride = entry.stride
        expected = (feature_size(batch_shape[0], stride), feature_size(batch_shape[1], stride))
        for index in entry.indices:
            got = tuple(outputs[index].shape[2:])
            if got != expected:
                raise RuntimeError('output %s is %s for a %s input, expected ceil(size / %d) = '
                                   '%s: this graph does not follow the feature-size rule '
                                   'batching relies on' % (plan.names[index], got,
                                                           tuple(batch_shape), stride, expected))


def _own_outputs(outputs, plan, input_shape):
    """Outputs cut to the feature maps of an input of ``input_shape`` (height, width)."""
    cut = list(outputs)
    for entry in plan.per_stride:
        rows = feature_size(input_shape[0], entry.stride)
        cols = feature_size(input_shape[1], entry.stride)
        for index in entry.indices:
            cut[index] = outputs[index][:, :, :rows, :cols]
    return cut


# ---------------------------------------------------------------------------- decode

def _decode(model, outputs, image_shape, scale, flip, threshold, slot):
    """Candidates of one input in original-image coordinates (:class:`Detections`).

    ``image_shape``: (height, width) of the scaled, unpadded image: the boxes are clipped to
    it and a flipped input is mirrored about its width.
    """
    height, width = image_shape[:2]
    dets = decode_detections(outputs, model.strides, model.anchor_cache, threshold,
                             (height, width), batch_index=slot,
                             score_decay=model.score_decay, coder=model.coder,
                             plan=_output_plan(model))
    if flip:
        flip_back(dets, width)
    if scale != 1.0:
        dets.boxes /= np.float32(scale)
        if dets.landmarks is not None:      # x and y only: a visibility value is no length
            dets.landmarks[:, :, :2] /= np.float32(scale)
    return dets


def _run_scale(model, images, scale, flips, threshold, schedule, decode_lock):
    """``{(image index, flip): Detections}`` of every input at one scale."""
    scaled = [scale_image(image, scale) for image in images]
    pad_multiple = PAD_MULTIPLE if model.nocrop else None
    plan = _output_plan(model)
    inputs = {}
    found = {}
    for batch in plan_scale([_input_shape(image, pad_multiple) for image in scaled], flips,
                            schedule):
        for slot in batch:
            if slot not in inputs:
                index, flip = slot
                inputs[slot] = model.pixels.network_input(scaled[index], flip, pad_multiple)
        data = _stack([inputs[slot] for slot in batch])
        outputs = model.backend.forward(data)
        with decode_lock:
            _check_feature_sizes(outputs, plan, data.shape[2:])
            for position, (index, flip) in enumerate(batch):
                own = _own_outputs(outputs, plan, inputs[(index, flip)].shape[2:])
                found[(index, flip)] = _decode(model, own, scaled[index].shape, scale, flip,
                                               threshold, position)
        for slot in batch:
            del inputs[slot]
    return found


def _input_shape(scaled, pad_multiple):
    """(height, width) of the network input of a scaled image."""
    height, width = scaled.shape[:2]
    if pad_multiple:
        height, width = (-(-height // pad_multiple) * pad_multiple,
                         -(-width // pad_multiple) * pad_multiple)
    return height, width


# ---------------------------------------------------------------------------- merge

def run_pipeline(model, images, threshold, scales, do_flip, schedule=Schedule()):
    """Faces of every image at every scale (and flip), merged per image.

    Args:
        model: the detector's parts (see the module notes).
        images: list of (H, W, 3) BGR arrays, already validated.
        threshold: face probability in [0, 1]; scales: list of positive floats.
        do_flip: also run every scale mirrored.
        schedule: :class:`Schedule`.
    Returns:
        list, per image, of ``(faces (N, 5 + E) float32 x1 y1 x2 y2 score [blur], landmarks
        (N, 5, P) float32 or None)`` in descending score order, in the coordinates of that
        image (see :meth:`rcnn.inference.detector.RetinaFace.detect`).
    """
    flips = (False, True) if do_flip else (False,)
    concurrent = (schedule.scale_workers > 1 and len(scales) > 1
                  and bool(getattr(model.backend, 'concurrent_forward', False)))
    decode_lock = threading.Lock() if concurrent else contextlib.nullcontext()

    def run_scale(scale):
        return _run_scale(model, images, scale, flips, threshold, schedule, decode_lock)

    if concurrent:
        largest_first = sorted(range(len(scales)), key=lambda i: -scales[i])
        with ThreadPoolExecutor(min(schedule.scale_workers, len(scales))) as pool:
            futures = {i: pool.submit(run_scale, scales[i]) for i in largest_first}
            per_scale = [futures[i].result() for i in range(len(scales))]
    else:
        per_scale = [run_scale(scale) for scale in scales]
    return [merge_detections(Detections.concatenate(found[(index, flip)]
                                                    for found in per_scale for flip in flips),
                             model.nms_threshold, model.vote)
            for index in range(len(images))]
