"""Multi-scale, flipped detection of one image (WIDER FACE modes 1 and 2) with fewer forwards.

``RetinaFace.detect(img, threshold, scales, do_flip=True)`` runs one forward pass per scale and
flip, one after the other. :func:`detect_pyramid` computes the same result with two changes to
how the passes are scheduled, none to what they compute:

* ``flip_batch``: the unflipped and the mirrored input of a scale have the same shape, so they
  go through the network together as one batch of 2 (``(2, 3, H, W)``); the two halves of the
  outputs are decoded exactly as the two separate passes were (``batch_index`` 0 and 1);
* ``scale_workers``: with a backend whose ``forward`` may run in several threads at once
  (``backend.concurrent_forward``, true for onnxruntime, whose sessions are thread-safe and
  release the GIL; false for MXNet, whose executors share memory), the scales are processed by
  that many threads, largest scale first so the long passes start early.

The candidates of every pass are pooled in the serial order (scale by scale, unflipped before
flipped) whatever the schedule, and merged by the detector's own NMS / box voting, so the
result is the one of ``detect()`` as long as the backend returns the same numbers for an image
alone and inside a batch (MXNet's and onnxruntime's CPU kernels do: the tests compare the two
paths on real photos).
"""
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rcnn.inference.input_check import check_threshold

__all__ = ['detect_pyramid', 'supports_concurrent_forward']


def supports_concurrent_forward(backend):
    """Whether ``backend.forward`` may be called from several threads at once."""
    return bool(getattr(backend, 'concurrent_forward', False))


def _passes_of_scale(detector, image, scale, flips, flip_batch, threshold, decode_lock):
    """Candidates (list of Detections, in ``flips`` order) of one scale.

    Only the forward passes run outside ``decode_lock``: decoding touches the detector's
    caches, which are not meant for concurrent use (and is cheap next to a forward).
    """
    scaled = detector.scaled_image(image, scale)
    inputs = [detector.prepare_input(scaled, flip) for flip in flips]
    if flip_batch and len(inputs) > 1:
        batches = [(np.concatenate(inputs), list(enumerate(flips)))]
    else:
        batches = [(data, [(0, flip)]) for data, flip in zip(inputs, flips)]
    candidates = []
    for data, slots in batches:
        outputs = detector.backend.forward(data)
        with decode_lock:
            candidates.extend(detector.decode_pass(outputs, scaled.shape, scale, flip, threshold,
                                                   batch_index=slot) for slot, flip in slots)
    return candidates


def detect_pyramid(detector, img, threshold=0.5, scales=(1.0,), do_flip=False, flip_batch=True,
                   scale_workers=1, executor=None):
    """``detector.detect(img, threshold, scales, do_flip)`` with batched flips and, where the
    backend allows, scales processed concurrently.

    Args:
        detector: a :class:`rcnn.inference.detector.RetinaFace`.
        img, threshold, scales, do_flip: as ``detect()``.
        flip_batch: run each scale's two flips as one batch of 2.
        scale_workers: threads processing scales at once (used only when
            :func:`supports_concurrent_forward`; 1: one scale after the other).
        executor: a ``concurrent.futures`` executor to reuse across calls (else one is made
            per call when ``scale_workers > 1``).
    Returns:
        faces (N, 5) float32 x1 y1 x2 y2 score, landmarks (N, 5, 2) float32, as ``detect()``.
    """
    from rcnn.inference.detector import as_bgr_image, check_scales
    image = as_bgr_image(img)
    threshold = check_threshold(threshold)
    scale_workers = int(scale_workers)
    if scale_workers < 1:
        raise ValueError('scale_workers must be >= 1, got %d' % scale_workers)
    scales = check_scales(scales)
    flips = (False, True) if do_flip else (False,)

    concurrent = scale_workers > 1 and len(scales) > 1 and supports_concurrent_forward(
        detector.backend)
    decode_lock = threading.Lock() if concurrent else contextlib.nullcontext()

    def run_scale(scale):
        return _passes_of_scale(detector, image, scale, flips, flip_batch, threshold,
                                decode_lock)

    if not concurrent:
        per_scale = [run_scale(scale) for scale in scales]
    else:
        largest_first = sorted(range(len(scales)), key=lambda i: -scales[i])
        own = executor is None
        pool = ThreadPoolExecutor(min(scale_workers, len(scales))) if own else executor
        try:
            futures = {i: pool.submit(run_scale, scales[i]) for i in largest_first}
            per_scale = [futures[i].result() for i in range(len(scales))]
        finally:
            if own:
                pool.shutdown(wait=True)
    return detector.merge([dets for passes in per_scale for dets in passes])
