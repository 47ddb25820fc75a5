"""CropLoader: the training data iterator (random crops + anchor labels), with worker processes.

Stream
    An epoch visits ``len(roidb) // batch_size`` batches (a last partial batch is dropped, as in
    the original) in an order that is a permutation drawn from ``(seed, epoch)`` (or the roidb
    order with ``shuffle=False``). Sample ``position`` of epoch ``e`` is cropped and labelled with
    the random stream ``rcnn.io.sample.sample_rng(seed, e, position)``, so the batches depend on the
    seed and on the sequence of ``next()`` / ``reset()`` calls only, never on which worker
    computed what, nor on ``num_workers`` (0 gives the same batches as 4).

    ``reset()`` starts the next epoch when at least one batch of the current one was taken, and
    does nothing otherwise (so a ``reset()`` right after construction does not skip epoch 0).

Workers
    ``num_workers`` processes started with the ``spawn`` method (MXNet's engine is not fork-safe)
    receive the roidb through shared memory (:mod:`rcnn.core.shared_roidb`: never through the
    start-up pipe, where a worker dying at start-up would block the parent) and
    run :func:`rcnn.core.loader_worker.sample_worker_loop`: decode, crop, colour and label one
    image per task, NumPy / OpenCV only, and write the sample straight into a batch buffer in
    shared memory
    (``prefetch + 1`` buffers of about 7 MB per image, in ``/dev/shm``, checked for space at
    start). A collector thread of the calling process gathers the workers' answers and copies each
    finished buffer into NDArrays (MXNet releases the GIL while copying), so ``next()`` only hands
    over a ready batch. Up to ``prefetch`` batches past the one being returned are prepared, the
    next epoch's included (its order is known in advance). With ``num_workers=0`` everything runs
    inline in ``next()``.

    'spawn' re-imports the main script in each worker as ``__mp_main__``: the script must keep its
    work under ``if __name__ == '__main__':`` (importing mxnet there is harmless: the workers
    never use it).

    Call :meth:`close` (or use the loader as a context manager) to stop the workers and free the
    shared memory; it also runs on garbage collection and at exit, and the workers end by
    themselves when the parent dies. Each worker builds its
    :class:`rcnn.io.sample.SampleMaker` (transform and anchor-target generator) once; the
    label names and shapes come from it too (:meth:`SampleMaker.label_shapes`).

Bad input
    Images that cannot be read when the training set is read are left out by the reader, named
    with their ``label.txt`` line (:mod:`rcnn.dataset.retinaface_dataset`). An image that is
    missing or cannot be decoded when its turn comes is logged (WARNING, with its path) and
    replaced by another record drawn from the sample's own random stream (deterministic). A crop that
    keeps no face gives labels 0 / -1 and zero weights: the batch is valid. When
    ``MAX_REPLACEMENTS + 1`` images in a row cannot be read, ``next()`` raises
    :class:`LoaderError` with a one-line message naming them (its ``details`` hold the
    worker's traceback, for a log file).

Dead workers
    A worker that dies (killed by the out-of-memory killer or a signal, a crash, an error at
    start-up) is noticed within ``_POLL_S`` by the collector thread and by ``next()`` itself
    (process exit codes; neither waits on a lock a dead worker could hold): ``next()`` raises
    :class:`LoaderError` naming the worker, its pid and exit code, and :meth:`close` stops the
    other workers at once. Workers are not respawned: the batch stream would depend on when a
    worker died.

Devices
    The loader returns whole batches; splitting them across ``ctx`` by ``work_load_list`` is done
    by the Module (``mx.mod.Module(..., context=ctx, work_load_list=work_load_list)``), exactly
    with the slices of :attr:`slices`, which the loader validates at construction.
"""
import collections
import logging
import multiprocessing
import os
import queue
import signal
import threading
import weakref
from multiprocessing import shared_memory

import mxnet as mx
import numpy as np
from mxnet.executor_manager import _split_input_slice

from rcnn.core import shared_roidb
from rcnn.core import worker_protocol as protocol
from rcnn.core.loader_worker import worker_main
from rcnn.io.sample import ImageReadError, SampleMaker, batch_select_stride, epoch_order
from rcnn.model_layout import DATA_NAME, ModelLayout, cls_score_name

logger = logging.getLogger(__name__)

__all__ = ['CropLoader', 'LoaderError', 'feature_symbols']

_POLL_S = 0.2
_JOIN_TIMEOUT_S = 5.0
_SHM_DIR = '/dev/shm'


class LoaderError(RuntimeError):
    """The loader cannot go on: a worker died or failed, or too many unreadable images.

    ``str(error)`` is one line naming the worker or the files; ``details`` holds the worker's
    traceback text when there is one (for a log file, not the console).
    """

    def __init__(self, message, details=None):
        super(LoaderError, self).__init__(message)
        self.details = details


def describe_exit(process):
    """'<name> (pid N) ... exit code C (why)' for a worker process that has ended."""
    code = process.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = 'signal %d' % -code
        why = 'killed by %s' % name
        if -code == signal.SIGKILL:
            why += ', e.g. by the out-of-memory killer'
        elif -code in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT):
            why += ', a crash in native code'
    else:
        why = 'an error, e.g. at start-up; its traceback is on stderr'
    return '%s (pid %s) died with exit code %s (%s)' % (process.name, process.pid, code, why)


def feature_symbols(train_symbol, cfg, prefix='face'):
    """Per-stride class-score outputs of a training graph (the ``feat_sym`` of CropLoader).

    Returns:
        list of the :func:`rcnn.model_layout.cls_score_name` outputs
        (``{prefix}_rpn_cls_score_stride{s}_output``) for every stride of the recipe's layout
        (:meth:`ModelLayout.from_config`), coarse to fine.
    """
    internals = train_symbol.get_internals()
    names = set(internals.list_outputs())
    symbols = []
    for stride in ModelLayout.from_config(cfg).strides:
        name = (cls_score_name(stride) if prefix == 'face'
                else '%s_rpn_cls_score_stride%d_output' % (prefix, stride))
        if name not in names:
            raise ValueError('the training graph has no output %s' % name)
        symbols.append(internals[name])
    return symbols


def _check_shared_memory_space(needed_bytes):
    """Fail early, with advice, when /dev/shm cannot hold the batch buffers."""
    try:
        stat = os.statvfs(_SHM_DIR)
    except OSError:
        return
    available = stat.f_bavail * stat.f_frsize
    if available < needed_bytes:
        raise RuntimeError(
            'CropLoader needs %.0f MB of shared memory for its batch buffers but %s has %.0f MB '
            'free; lower prefetch or batch_size, use num_workers=0, or enlarge %s (docker: '
            '--shm-size)' % (needed_bytes / 2 ** 20, _SHM_DIR, available / 2 ** 20, _SHM_DIR))


class _BatchMaker(object):
    """Batch arrays (name -> numpy view) -> ``mx.io.DataBatch`` of fresh NDArrays (copies)."""

    def __init__(self, label_name, provide_data, provide_label):
        self.label_name = list(label_name)
        self.provide_data = provide_data
        self.provide_label = provide_label

    def __call__(self, views, indices):
        return mx.io.DataBatch(
            data=[mx.nd.array(views[DATA_NAME])],
            label=[mx.nd.array(views[name]) for name in self.label_name],
            pad=0, index=indices.copy(),
            provide_data=self.provide_data, provide_label=self.provide_label)


def _log_replacements(roidb, used_index, failures):
    for _, path, message in failures:
        logger.warning('unreadable training image %s (%s); replaced by record %d (%s)',
                       path, message, used_index, roidb[used_index].get('image'))


class _WorkerPool(object):
    """Worker processes, shared batch buffers and the collector thread behind a CropLoader.

    Holds no reference to the loader (so the loader can be garbage collected while the thread
    runs). All mutable state is guarded by ``self._cond``.
    """

    def __init__(self, roidb, cfg, feat_shapes, seed, order_of_epoch, batch_size, num_batches,
                 layout, buffer_bytes, make_batch, num_workers, prefetch, start_method,
                 first_epoch=0, stride_of_batch=None):
        self.roidb = roidb
        self._stride_of_batch = stride_of_batch
        self.batch_size = batch_size
        self.num_batches = num_batches
        self.prefetch = prefetch
        self._order_of_epoch = order_of_epoch
        self._make_batch = make_batch
        num_buffers = prefetch + 1
        self._roidb_block, roidb_handle = shared_roidb.share(roidb)
        self._blocks = [self._roidb_block]        # freed with the batch buffers
        _check_shared_memory_space(num_buffers * buffer_bytes)
        self._blocks += [shared_memory.SharedMemory(create=True, size=buffer_bytes)
                         for _ in range(num_buffers)]
        buffer_blocks = self._blocks[1:]
        self._views = [protocol.batch_buffer_views(block.buf, layout) for block in buffer_blocks]
        self._indices = [np.full(batch_size, -1, dtype=np.int64) for _ in buffer_blocks]
        self._filled = [0] * num_buffers
        self._outstanding = [0] * num_buffers
        self._owner = [None] * num_buffers        # (epoch, batch_no) being prepared in a buffer
        self._free = collections.deque(range(num_buffers))
        self._ready = {}                          # (epoch, batch_no) -> DataBatch
        self._orders = {}
        self._epoch = first_epoch
        self._cur = 0
        self._submitted = (first_epoch, 0)        # next (epoch, batch_no) to submit
        self._error = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._closed = False

        context = multiprocessing.get_context(start_method)
        self._task_queue = context.Queue()
        self._result_queue = context.Queue()
        # no lock: a worker killed while holding it would block the parent forever
        self._current_epoch = context.Value('q', first_epoch, lock=False)
        self._workers = []
        try:
            for worker_id in range(num_workers):
                process = context.Process(
                    target=worker_main, name='CropLoader-worker-%d' % worker_id,
                    args=(roidb_handle, self._task_queue, self._result_queue, feat_shapes, cfg,
                          seed, self._current_epoch, os.getpid(),
                          [block.name for block in buffer_blocks], layout),
                    daemon=True)
                process.start()
                self._workers.append(process)
        except OSError as err:       # e.g. BrokenPipeError: it died while reading its inputs
            self.shutdown()
            raise LoaderError('CropLoader worker %s could not be started: it died while '
                              'receiving its inputs (%s: %s)' % (
                                  process.name, type(err).__name__, err)) from err
        except BaseException:
            self.shutdown()
            raise
        self._thread = threading.Thread(target=self._collect, name='CropLoader-collector',
                                        daemon=True)
        self._thread.start()
        with self._cond:
            self._submit_ahead()

    # ---------------------------------------------------------------- called by the loader
    def get(self, epoch, batch_no):
        """The DataBatch of (epoch, batch_no), waiting for it; marks it consumed."""
        key = (epoch, batch_no)
        with self._cond:
            while key not in self._ready:
                if self._error is None:
                    self._error = self._dead_worker_error()
                if self._error is not None:
                    raise self._error
                if self._closed:
                    raise RuntimeError('CropLoader is closed')
                self._cond.wait(timeout=_POLL_S)
            batch = self._ready.pop(key)
            self._cur = batch_no + 1
            self._submit_ahead()
        return batch

    def start_epoch(self, epoch):
        """Skip what is left of earlier epochs; ``epoch`` starts at batch 0."""
        with self._cond:
            self._epoch, self._cur = epoch, 0
            self._current_epoch.value = epoch
            for key in [k for k in self._ready if k[0] < epoch]:
                del self._ready[key]
            if self._submitted < (epoch, 0):
                self._submitted = (epoch, 0)
            self._submit_ahead()

    @property
    def workers(self):
        return list(self._workers)

    def shutdown(self):
        """Stop the collector and the workers, free the shared memory (idempotent)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._stop.set()
        thread = getattr(self, '_thread', None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=_JOIN_TIMEOUT_S)
        self._thread = None                       # no pool <-> thread reference cycle left
        self._stop_workers()
        self._views = []
        self._ready = {}
        for block in self._blocks:
            try:
                block.close()
            except BufferError:       # a view is still alive (interpreter exit); unlink anyway
                pass
            try:
                block.unlink()
            except OSError:
                pass

    # ---------------------------------------------------------------- internals
    def _stop_workers(self):
        if not self._workers:
            return
        try:
            self._current_epoch.value = np.iinfo(np.int64).max   # every task is stale
            for _ in self._workers:
                self._task_queue.put(protocol.STOP)
        except (OSError, ValueError):
            pass
        one_died = any(p.exitcode for p in self._workers)
        if not one_died:
            # a dead worker may hold the task queue's lock: then the others never see None
            for process in self._workers:
                process.join(timeout=_JOIN_TIMEOUT_S)
        for process in self._workers:
            if process.is_alive():
                if not one_died:
                    logger.warning('loader worker %d did not stop; terminating it', process.pid)
                process.terminate()
                process.join(timeout=_JOIN_TIMEOUT_S)
        for q in (self._task_queue, self._result_queue):
            q.cancel_join_thread()
            q.close()

    def _order(self, epoch):
        if epoch not in self._orders:
            self._orders = {e: o for e, o in self._orders.items() if e >= self._epoch}
            self._orders[epoch] = self._order_of_epoch(epoch)
        return self._orders[epoch]

    def _submit_ahead(self):
        """Queue every batch up to ``prefetch`` past the current one, buffers permitting."""
        while self._free and not self._closed:
            epoch, batch_no = self._submitted
            if batch_no >= self.num_batches:
                self._submitted = (epoch + 1, 0)
                continue
            if (epoch - self._epoch) * self.num_batches + batch_no > self._cur + self.prefetch:
                return
            buffer_id = self._free.popleft()
            self._owner[buffer_id] = (epoch, batch_no)
            self._indices[buffer_id].fill(-1)
            self._filled[buffer_id] = 0
            self._outstanding[buffer_id] = self.batch_size
            order = self._order(epoch)
            select_stride = (0 if self._stride_of_batch is None
                             else self._stride_of_batch(epoch, batch_no))
            for slot in range(self.batch_size):
                position = batch_no * self.batch_size + slot
                self._task_queue.put(protocol.SampleTask(
                    epoch, batch_no, slot, position, int(order[position]), buffer_id,
                    select_stride))
            self._submitted = (epoch, batch_no + 1)

    def _record(self, message):
        """Account for one worker answer (a :mod:`rcnn.core.worker_protocol` message); returns
        a buffer id whose batch is complete."""
        buffer_id = message.buffer_id
        self._outstanding[buffer_id] -= 1
        owner = self._owner[buffer_id]
        if owner[0] < self._epoch:                 # a skipped batch: free it once quiet
            if self._outstanding[buffer_id] == 0:
                self._owner[buffer_id] = None
                self._free.append(buffer_id)
                self._submit_ahead()
            return None
        if isinstance(message, protocol.SampleFailed):
            self._error = LoaderError(message.summary, message.details)
            self._cond.notify_all()
            return None
        if isinstance(message, protocol.SampleDone):
            _log_replacements(self.roidb, message.used_index, message.failures)
            self._indices[buffer_id][message.slot] = message.used_index
            self._filled[buffer_id] += 1
        return buffer_id if self._filled[buffer_id] == self.batch_size else None

    def _collect(self):
        """Collector thread: worker answers -> buffers -> DataBatches."""
        while not self._stop.is_set():
            try:
                message = self._result_queue.get(timeout=_POLL_S)
            except queue.Empty:
                self._check_workers()
                continue
            except (EOFError, OSError, ValueError):
                return
            with self._cond:
                buffer_id = self._record(message)
                if buffer_id is None:
                    continue
                key = self._owner[buffer_id]
                views, indices = self._views[buffer_id], self._indices[buffer_id]
            try:
                batch = self._make_batch(views, indices)      # copies, GIL released
            except Exception as err:  # noqa: BLE001 -- handed to the consumer
                batch, error = None, err
            else:
                error = None
            with self._cond:
                self._owner[buffer_id] = None
                self._free.append(buffer_id)
                if error is not None:
                    self._error = error
                elif key[0] >= self._epoch:
                    self._ready[key] = batch
                self._submit_ahead()
                self._cond.notify_all()

    def _dead_worker_error(self):
        """LoaderError naming the workers that have exited, or None while all run."""
        dead = [p for p in self._workers if p.exitcode is not None]
        if not dead or self._closed:
            return None
        return LoaderError('CropLoader worker %s; training data cannot be produced without '
                           'it' % '; '.join(describe_exit(p) for p in dead))

    def _check_workers(self):
        error = self._dead_worker_error()
        if error is not None and not self._stop.is_set():
            with self._cond:
                if self._error is None:
                    self._error = error
                self._cond.notify_all()
            self._stop.set()


class CropLoader(mx.io.DataIter):
    """Random 640 x 640 training crops with their anchor labels (see the module docstring).

    Args:
        feat_sym: list of per-stride symbols (class-score outputs, in the order of the recipe's
            strides, coarse to fine) whose shape inference, from ``data``, gives
            (B, 2A, H, W); see :func:`feature_symbols`.
        roidb: list of records (see ``rcnn.dataset.retinaface_dataset``).
        batch_size: images per batch (all devices together).
        shuffle: visit the records in a new random order every epoch.
        ctx: list of devices the Module trains on (default ``[mx.cpu()]``).
        work_load_list: relative share of each device (default equal); validated here, applied by
            the Module.
        cfg: config, from ``rcnn.config.generate_config`` (required).
        num_workers: worker processes; 0 runs everything in the calling thread.
        seed: base seed of the whole stream; None draws one (logged at DEBUG).
        prefetch: batches prepared past the one being returned (workers only).
        start_method: multiprocessing start method of the workers ('spawn' unless you know the
            parent has not started MXNet's engine).
        first_epoch: number of the first epoch served (a resumed run passes its epoch, so its
            batches are those the uninterrupted run would have drawn).

    The label inputs (names, shapes, arrays) are those of the recipe's
    :class:`rcnn.model_layout.ModelLayout`, given by :class:`rcnn.io.sample.SampleMaker`. With
    ``cfg.RANDOM_FEAT_STRIDE`` each batch keeps the labels of one stride only (the others are
    -1), drawn per batch from the seed (:func:`rcnn.io.sample.batch_select_stride`).

    Attributes: ``provide_data``, ``provide_label`` (lists of ``mx.io.DataDesc``),
    ``data_name``, ``label_name``, ``slices`` (per-device batch slices), ``epoch``,
    ``num_batches`` (per epoch), ``seed``, ``layout`` (the recipe's ``ModelLayout``),
    ``feat_shapes`` (per-stride class-score shapes for one image), ``workers`` (the worker
    processes).
    """

    def __init__(self, feat_sym, roidb, batch_size=1, shuffle=True, ctx=None, work_load_list=None,
                 cfg=None, num_workers=2, seed=None, prefetch=2, start_method='spawn',
                 first_epoch=0):
        super(CropLoader, self).__init__(batch_size)
        if cfg is None:
            raise TypeError('CropLoader: cfg is required (build one with '
                            'rcnn.config.generate_config)')
        self.cfg = cfg
        self.roidb = roidb
        self.shuffle = bool(shuffle)
        if batch_size < 1 or len(roidb) < batch_size:
            raise ValueError('CropLoader: batch_size must be in 1..len(roidb)=%d, got %d'
                             % (len(roidb), batch_size))
        self.ctx = [mx.cpu()] if ctx is None else (list(ctx) if isinstance(ctx, (list, tuple))
                                                   else [ctx])
        self.work_load_list = ([1] * len(self.ctx) if work_load_list is None
                               else list(work_load_list))
        if len(self.work_load_list) != len(self.ctx):
            raise ValueError('work_load_list has %d entries but there are %d devices'
                             % (len(self.work_load_list), len(self.ctx)))
        self.slices = _split_input_slice(batch_size, self.work_load_list)
        self.layout = ModelLayout.from_config(cfg)
        self.feat_stride = list(self.layout.strides)
        self.feat_sym = list(feat_sym)
        if len(self.feat_sym) != len(self.feat_stride):
            raise ValueError('feat_sym has %d symbols but the recipe has %d strides (%s)'
                             % (len(self.feat_sym), len(self.feat_stride),
                                ', '.join(map(str, self.feat_stride))))
        self.random_feat_stride = bool(cfg.RANDOM_FEAT_STRIDE)
        self.crop_size = int(cfg.SCALES[0][0])
        self.data_name = [DATA_NAME]
        data_shape = (batch_size, 3, self.crop_size, self.crop_size)
        self.feat_shapes = self._feature_shapes((1, 3, self.crop_size, self.crop_size))
        self._maker = SampleMaker.from_config(cfg, self.feat_shapes)
        self.label_name = self._maker.label_names
        self.with_landmarks = self.layout.landmarks
        _, label_shapes = self.infer_shape([(DATA_NAME, data_shape)])
        self._provide_data = [mx.io.DataDesc(DATA_NAME, data_shape)]
        self._provide_label = [mx.io.DataDesc(name, shape) for name, shape in label_shapes]
        self._layout, buffer_bytes = protocol.batch_buffer_layout(
            [(DATA_NAME, data_shape)] + label_shapes)
        self._make_batch = _BatchMaker(self.label_name, self._provide_data, self._provide_label)
        self.num_batches = len(roidb) // batch_size
        self.seed = (int(np.random.SeedSequence().entropy % (1 << 63)) if seed is None
                     else int(seed))
        logger.debug('CropLoader seed %d', self.seed)
        self.num_workers = int(num_workers)
        self.prefetch = max(1, int(prefetch))
        if first_epoch < 0:
            raise ValueError('first_epoch must be >= 0, got %d' % first_epoch)
        self.epoch = int(first_epoch)         # epochs are numbered from first_epoch
        self.cur = 0                          # batches returned in the current epoch
        self._pool = None
        self._finalizer = None
        if self.num_workers > 0:
            self._pool = _WorkerPool(
                roidb, cfg, self.feat_shapes, self.seed, self._epoch_order_function(),
                batch_size, self.num_batches, self._layout, buffer_bytes, self._make_batch,
                self.num_workers, self.prefetch, start_method, first_epoch=self.epoch,
                stride_of_batch=self._stride_of_batch_function())
            self._finalizer = weakref.finalize(self, self._pool.shutdown)
        else:
            self._inline_views = protocol.batch_buffer_views(
                np.empty(buffer_bytes, dtype=np.uint8).data, self._layout)

    # ------------------------------------------------------------------ DataIter API
    @property
    def provide_data(self):
        return self._provide_data

    @property
    def provide_label(self):
        return self._provide_label

    @property
    def workers(self):
        """The worker processes (empty with ``num_workers=0`` or after :meth:`close`)."""
        return self._pool.workers if self._pool is not None else []

    def infer_shape(self, max_data_shape=None, max_label_shape=None):
        """Label shapes for a data shape, from the feature symbols (as the original).

        Args:
            max_data_shape: list of (name, shape) with ``data`` = (B, 3, H, W).
            max_label_shape: ignored extra (name, shape) pairs, accepted for the original API.
        Returns:
            (max_data_shape, [(label name, (B,) + per-image label shape)]).
        """
        shapes = dict(list(max_data_shape or []) + list(max_label_shape or []))
        if DATA_NAME not in shapes:
            raise ValueError('infer_shape: max_data_shape needs a "data" entry')
        batch, channels, height, width = shapes[DATA_NAME]
        feat_shapes = self._feature_shapes((1, channels, height, width))
        return max_data_shape, self._maker.label_shapes(feat_shapes, batch)

    def reset(self):
        """Start the next epoch (no-op while no batch of the current one has been taken)."""
        if self.cur == 0:
            return
        self.epoch += 1
        self.cur = 0
        if self._pool is not None:
            self._pool.start_epoch(self.epoch)

    def iter_next(self):
        return self.cur < self.num_batches

    def next(self):
        if not self.iter_next():
            raise StopIteration
        if self._pool is not None:
            batch = self._pool.get(self.epoch, self.cur)
        elif self.num_workers > 0:
            raise RuntimeError('CropLoader is closed')
        else:
            batch = self._compute_inline(self.epoch, self.cur)
        self.cur += 1
        return batch

    def getpad(self):
        return 0

    # ------------------------------------------------------------------ lifecycle
    def close(self):
        """Stop the worker processes and free the shared memory (idempotent)."""
        if self._finalizer is not None:
            self._finalizer()
        self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # ------------------------------------------------------------------ internals
    def _feature_shapes(self, data_shape):
        """Class-score shape (1, 2A, H, W) of every stride for one image of ``data_shape``."""
        shapes = []
        for stride, symbol in zip(self.feat_stride, self.feat_sym):
            _, out_shapes, _ = symbol.infer_shape(data=tuple(data_shape))
            if not out_shapes or out_shapes[0] is None or len(out_shapes[0]) != 4:
                raise ValueError('cannot infer the stride-%d feature shape from data %s'
                                 % (stride, data_shape))
            shape = tuple(int(v) for v in out_shapes[0])
            if shape[1] != 2 * self.layout.num_anchors:
                raise ValueError('stride-%d class scores have %d channels; expected 2 x %d '
                                 'anchors per position = %d' % (
                                     stride, shape[1], self.layout.num_anchors,
                                     2 * self.layout.num_anchors))
            shapes.append(shape)
        return shapes

    def _epoch_order_function(self):
        seed, num_records, shuffle = self.seed, len(self.roidb), self.shuffle

        def order_of_epoch(epoch):
            return epoch_order(seed, epoch, num_records, shuffle)
        return order_of_epoch

    def _stride_of_batch_function(self):
        """``(epoch, batch_no) -> select_stride`` with RANDOM_FEAT_STRIDE, None without."""
        if not self.random_feat_stride:
            return None
        seed, strides = self.seed, tuple(self.feat_stride)

        def stride_of_batch(epoch, batch_no):
            return batch_select_stride(seed, epoch, batch_no, strides)
        return stride_of_batch

    def _compute_inline(self, epoch, batch_no):
        order = epoch_order(self.seed, epoch, len(self.roidb), self.shuffle)
        indices = np.full(self.batch_size, -1, dtype=np.int64)
        stride_of_batch = self._stride_of_batch_function()
        select_stride = 0 if stride_of_batch is None else stride_of_batch(epoch, batch_no)
        for slot in range(self.batch_size):
            position = batch_no * self.batch_size + slot
            try:
                im_tensor, labels, used_index, failures = self._maker.load(
                    self.roidb, int(order[position]), self.seed, epoch, position,
                    select_stride)
            except ImageReadError as err:     # gave up: too many unreadable images
                raise LoaderError(str(err)) from err
            _log_replacements(self.roidb, used_index, failures)
            protocol.write_sample(self._inline_views, slot, im_tensor, labels)
            indices[slot] = used_index
        return self._make_batch(self._inline_views, indices)
