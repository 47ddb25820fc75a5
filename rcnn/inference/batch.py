"""Batch inference: several images per forward pass, with per-image results as ``detect()``.

:func:`run_passes` is the one detection path of :class:`rcnn.inference.detector.RetinaFace`:
``detect()`` runs it on one image, ``detect_batch()`` on a list. For every scale
and flip, the network inputs of the images (exactly what ``detect()`` feeds: resized, RGB,
``nocrop``-padded when set) are stacked into batches of at most ``max_batch`` and run in one
``backend.forward``. Each image's outputs are then cut back to the feature maps its own input
would give (``ceil(H / s) x ceil(W / s)`` at stride ``s``: the top-left cells, because padding
goes to the bottom/right) and decoded, clipped, flipped back and merged exactly as ``detect()``
does, so boxes are mapped back to each image's own coordinates.

Two ways to form batches (``pad``):

* ``pad=False`` (default): only inputs of identical shape share a batch (several images of one
  size, e.g. video frames, or a directory of same-size photos). Results equal single-image
  ``detect()`` up to floating-point rounding of batched kernels.
* ``pad=True``: inputs of different sizes share a batch, zero-padded at the bottom/right to the
  largest height and width. Each image's boxes are still mapped back exactly, but the network
  sees zeros where ``detect()`` sees the convolution's own zero padding only at the first
  layer: activations within a receptive field of the bottom/right border differ, so scores and
  boxes of faces near those borders can differ slightly from ``detect()``.
"""
import numpy as np

from rcnn.model_layout import DEPLOY_OUTPUTS_PER_STRIDE

__all__ = ['detect_batch', 'run_passes', 'plan_batches', 'feature_size']

_PER_STRIDE = DEPLOY_OUTPUTS_PER_STRIDE


def feature_size(size, stride):
    """Feature-map size of an input side at ``stride``: ``ceil(size / stride)`` (every stride-2
    layer of our backbones maps n to ceil(n / 2), and ceil(ceil(n / a) / b) = ceil(n / ab))."""
    return -(-int(size) // int(stride))


def plan_batches(shapes, max_batch=8, pad=False):
    """Group input indices into batches.

    shapes: per image, the (height, width) of its network input.
    Returns a list of index lists, each of at most ``max_batch`` images; with ``pad=False``
    every batch holds one shape only. Order: first appearance of each shape, then image order.
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


def _own_outputs(outputs, strides, input_shape):
    """Outputs cut to the feature maps of an input of ``input_shape`` (height, width)."""
    cut = []
    for level, stride in enumerate(strides):
        rows, cols = feature_size(input_shape[0], stride), feature_size(input_shape[1], stride)
        for out in outputs[_PER_STRIDE * level:_PER_STRIDE * (level + 1)]:
            cut.append(out[:, :, :rows, :cols])
    return cut


def _check_feature_sizes(outputs, strides, batch_shape):
    for level, stride in enumerate(strides):
        expected = (feature_size(batch_shape[0], stride), feature_size(batch_shape[1], stride))
        got = tuple(outputs[_PER_STRIDE * level].shape[2:])
        if got != expected:
            raise RuntimeError('stride %d output is %s for a %s input, expected ceil(size / %d) = '
                               '%s: this graph does not follow the feature-size rule detect_batch '
                               'relies on' % (stride, got, tuple(batch_shape), stride, expected))


def detect_batch(detector, images, threshold=0.5, scales=(1.0,), do_flip=False, max_batch=8,
                 pad=False):
    """``detector.detect_batch(images, ...)`` (kept as a function for its callers).

    Args:
        detector: a :class:`rcnn.inference.detector.RetinaFace` (any backend).
        images: list of images as ``detect()`` accepts them ((H, W, 3) BGR uint8, ...).
        threshold, scales, do_flip: as ``detect()``.
        max_batch: at most this many images per forward.
        pad: also batch images of different sizes (zero-padded; see the module notes).
    Returns:
        list, per image, of ``(faces (N, 5) float32, landmarks (N, 5, 2) float32)`` as
        ``detector.detect(image, threshold, scales, do_flip)`` returns.
    """
    return detector.detect_batch(images, threshold, scales, do_flip, max_batch, pad)


def run_passes(detector, images, threshold, scales, do_flip, max_batch=8, pad=False):
    """Every scale and flip of validated images, batched, decoded and merged per image.

    Args:
        detector: a :class:`rcnn.inference.detector.RetinaFace` (its ``scaled_image``,
            ``prepare_input``, ``backend``, ``strides``, ``decode_pass``, ``merge``).
        images: list of (H, W, 3) BGR arrays (already checked).
        threshold: finite float; scales: list of positive floats; do_flip: bool.
        max_batch, pad: see the module notes.
    Returns:
        list, per image, of ``(faces (N, 5) float32, landmarks (N, 5, 2) float32)``.
    """
    flips = (False, True) if do_flip else (False,)
    candidates = [[] for _ in images]
    for scale in scales:
        scaled = [detector.scaled_image(image, scale) for image in images]
        for flip in flips:
            inputs = [detector.prepare_input(image, flip) for image in scaled]
            for group in plan_batches([x.shape[2:] for x in inputs], max_batch, pad):
                batch = _stack([inputs[i] for i in group])
                outputs = detector.backend.forward(batch)
                _check_feature_sizes(outputs, detector.strides, batch.shape[2:])
                for slot, index in enumerate(group):
                    own = _own_outputs(outputs, detector.strides, inputs[index].shape[2:])
                    candidates[index].append(detector.decode_pass(
                        own, scaled[index].shape, scale, flip, threshold, batch_index=slot))
    return [detector.merge(parts) for parts in candidates]
