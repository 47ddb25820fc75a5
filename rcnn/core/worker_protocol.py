"""The protocol between the CropLoader (:mod:`rcnn.core.loader`) and its worker processes.

Messages travel on two ``multiprocessing`` queues as named tuples (picklable, field names instead
of positions):

* parent -> worker, task queue: :class:`SampleTask` (compute one sample into a batch buffer
  slot), or :data:`STOP` to end the worker;
* worker -> parent, result queue: exactly one answer per task, :class:`SampleDone`,
  :class:`SampleSkipped` (the task's epoch was abandoned, see ``current_epoch`` in
  :func:`rcnn.core.loader_worker.sample_worker_loop`) or :class:`SampleFailed`.

Samples themselves do not travel on the queues: each worker writes the image tensor and labels
straight into a batch buffer in shared memory, laid out by :func:`batch_buffer_layout` (float32
arrays back to back, ``data`` first, then every label array, batch axis first).

No MXNet here: worker processes import this module.
"""
from typing import NamedTuple

import numpy as np

from rcnn.model_layout import DATA_NAME

__all__ = ['SampleTask', 'SampleDone', 'SampleSkipped', 'SampleFailed', 'STOP',
           'batch_buffer_layout', 'batch_buffer_views', 'write_sample']

STOP = None          # task queue: the worker returns


class SampleTask(NamedTuple):
    """Compute sample ``position`` of ``epoch`` from record ``index`` into ``slot`` of buffer
    ``buffer_id``; it belongs to batch ``batch_no`` of the epoch, whose labels keep only stride
    ``select_stride`` when it is > 0 (``RANDOM_FEAT_STRIDE``)."""
    epoch: int
    batch_no: int
    slot: int
    position: int
    index: int
    buffer_id: int
    select_stride: int = 0


class SampleDone(NamedTuple):
    """The sample of a task is in its slot; it was made from record ``used_index`` (``index``
    or a replacement); ``failures``: list of (index, path, message) of unreadable images."""
    epoch: int
    batch_no: int
    slot: int
    buffer_id: int
    used_index: int
    failures: list


class SampleSkipped(NamedTuple):
    """The task's epoch is older than the current one: nothing was written."""
    epoch: int
    batch_no: int
    slot: int
    buffer_id: int


class SampleFailed(NamedTuple):
    """The sample could not be made: ``summary`` (one line naming the image or, after too many
    unreadable images, all of them) and ``details`` (the worker's traceback text, for a log)."""
    epoch: int
    batch_no: int
    slot: int
    buffer_id: int
    summary: str
    details: str


def batch_buffer_layout(array_shapes):
    """Byte layout of one batch buffer holding float32 arrays back to back.

    Args:
        array_shapes: list of (name, shape), e.g. ``data`` then every label, batch axis first.
    Returns:
        (layout, total bytes); layout is a list of (name, shape, byte offset), offsets 64-byte
        aligned.
    """
    layout, offset = [], 0
    for name, shape in array_shapes:
        layout.append((name, tuple(int(v) for v in shape), offset))
        offset += int(np.prod(shape)) * 4
        offset = (offset + 63) // 64 * 64
    return layout, offset


def batch_buffer_views(buffer, layout):
    """dict name -> float32 ndarray view of ``buffer`` (a writable buffer) per ``layout``."""
    return {name: np.ndarray(shape, dtype=np.float32, buffer=buffer, offset=offset)
            for name, shape, offset in layout}


def write_sample(views, slot, im_tensor, labels):
    """Copy one sample (``(1, 3, S, S)`` tensor, labels with batch axis 1) into batch ``slot``."""
    for name, array in views.items():
        array[slot] = im_tensor[0] if name == DATA_NAME else labels[name][0]
