"""The loop of a CropLoader worker process: tasks in, samples into shared memory, answers out.

Started by :mod:`rcnn.core.loader` with the 'spawn' method; it must import nothing that imports
MXNet (MXNet's engine is not fork-safe and a worker never needs it). Messages are those of
:mod:`rcnn.core.worker_protocol`.
"""
import ctypes
import os
import queue
import signal
import sys
import traceback

import cv2

from rcnn.core import shared_roidb
from rcnn.core.worker_protocol import (STOP, SampleDone, SampleFailed, SampleSkipped,
                                       batch_buffer_views, write_sample)
from rcnn.io.sample import ImageReadError, SampleMaker

__all__ = ['worker_main', 'sample_worker_loop', 'tune_malloc_for_worker']

_WORKER_POLL_S = 1.0
_M_TRIM_THRESHOLD = -1        # glibc mallopt parameters
_M_MMAP_THRESHOLD = -3


def tune_malloc_for_worker():
    """Keep freed memory inside the process heap (glibc only; a no-op elsewhere).

    A labelled sample allocates and frees many arrays of 0.5 to 30 MB; with glibc's defaults they
    are mmap-ed and returned to the system each time, costing about 1,200 page faults (2 ms)
    per label computation alone. Raising the mmap threshold to 32 MB and the trim threshold to
    1 GB makes a worker reuse its memory instead. Returns True when the settings were applied.
    """
    try:
        libc = ctypes.CDLL('libc.so.6')
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) and
                    libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False


def worker_main(roidb_handle, task_queue, result_queue, *args):
    """Loader worker entry point: load the roidb the parent shared
    (:func:`rcnn.core.shared_roidb.share`), run :func:`sample_worker_loop`, then leave at once.

    The loop ends on STOP or when the parent is gone; either way no answer is awaited any more.
    A regular interpreter exit would then spend seconds in native library destructors (measured
    2.5 to 4 s on 2 cores, longer under load), long enough for the parent's join to time out and
    terminate the worker with a warning on every normal shutdown; ``os._exit`` skips them. An
    exception still ends the process the regular way, with its traceback on stderr.
    """
    sample_worker_loop(task_queue, result_queue, shared_roidb.load(roidb_handle), *args)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(0)


def sample_worker_loop(task_queue, result_queue, roidb, feat_shapes, cfg, seed, current_epoch,
                       parent_pid, buffer_names, layout):
    """Body of a loader worker process (started with the 'spawn' method; no MXNet here).

    The batch buffers are shared-memory blocks named ``buffer_names``, each laid out by
    ``layout`` (see :func:`rcnn.core.worker_protocol.batch_buffer_layout`); a sample is written
    straight into its slot. Tasks are :class:`SampleTask`, :data:`STOP` to stop. Every task is
    answered on ``result_queue`` with :class:`SampleDone` (see :meth:`SampleMaker.load`),
    :class:`SampleSkipped` for a task of an epoch older than ``current_epoch.value``, or
    :class:`SampleFailed`. The loop also ends when the parent process is gone.
    """
    from multiprocessing import shared_memory

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C and stops us
    cv2.setNumThreads(1)
    tune_malloc_for_worker()
    maker = SampleMaker.from_config(cfg, feat_shapes)       # built once, used for every task
    blocks = [shared_memory.SharedMemory(name=name) for name in buffer_names]
    views = [batch_buffer_views(block.buf, layout) for block in blocks]
    try:
        while True:
            try:
                task = task_queue.get(timeout=_WORKER_POLL_S)
            except queue.Empty:
                if os.getppid() != parent_pid:
                    return
                continue
            if task is STOP:
                return
            where = (task.epoch, task.batch_no, task.slot, task.buffer_id)
            if task.epoch < current_epoch.value:
                result_queue.put(SampleSkipped(*where))
                continue
            try:
                im_tensor, labels, used_index, failures = maker.load(
                    roidb, task.index, seed, task.epoch, task.position, task.select_stride)
                write_sample(views[task.buffer_id], task.slot, im_tensor, labels)
                message = SampleDone(*where, used_index=used_index, failures=failures)
            except ImageReadError as err:      # gave up after too many unreadable images
                message = SampleFailed(*where, summary=str(err), details=traceback.format_exc())
            except Exception as err:  # noqa: BLE001 -- reported to the parent, which raises it
                message = SampleFailed(*where, summary='CropLoader worker failed on image %s: %s: %s'
                                       % (roidb[task.index].get('image'), type(err).__name__, err),
                                       details=traceback.format_exc())
            result_queue.put(message)
    finally:
        del views
        for block in blocks:
            block.close()
        result_queue.cancel_join_thread()
