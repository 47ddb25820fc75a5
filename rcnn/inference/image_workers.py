"""Detection over many images in worker processes, one detector per process.

A WIDER FACE test run detects thousands of independent images. On the CPU, one process leaves
cores idle: MXNet's convolutions gain little from a second OpenMP thread at the pyramid's
sizes, and the per-image pre/post-processing and the executor rebinding for every new image
size run on one core. :class:`ImageWorkerPool` runs ``K`` processes, each with its own
detector and ``T`` CPU threads, and hands them images in order; the results come back in the
order given, so the caller writes the same files, in the same order, as a one-process loop.

Each worker computes exactly what the one-process loop computes for an image (same detector
settings, same threads per forward), so the files are the same: ``tests`` compare them.

Processes are started with ``spawn`` (MXNet is not fork-safe once initialised) and the CPU
thread settings (``OMP_NUM_THREADS``, ``MXNET_ENGINE_TYPE``) are put into each worker's
environment before it imports mxnet. A worker that dies (killed, out of memory) ends the run
with :class:`ImageWorkerError`; what was written stays, so a rerun resumes.
"""
import collections
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

__all__ = ['ImageWorkerError', 'ImageWorkerPool', 'plan_image_workers',
           'MAX_AUTO_WORKERS']

#: most worker processes ``auto`` starts (each holds a detector: ~0.5-1 GB for mnet in mode 1)
MAX_AUTO_WORKERS = 4
#: memory assumed per worker process when ``auto`` checks the available memory
AUTO_BYTES_PER_WORKER = 2 << 30


class ImageWorkerError(RuntimeError):
    """A worker process died; the message names the image it was given and what to do."""


def plan_image_workers(requested, threads, on_gpu, cores, free_memory=None):
    """Worker processes and CPU threads per worker of a test run.

    Args:
        requested: ``'auto'`` or an int >= 1 (``--image-workers``).
        threads: CPU threads per worker asked for (``--threads``), or None.
        on_gpu: whether the detector runs on a GPU (then ``auto`` means 1: one process
            feeds the device).
        cores: usable CPU cores.
        free_memory: bytes free for new processes (None: not checked).
    Returns:
        (workers, threads): ``threads`` is None only when ``threads`` was None and one
        worker runs on a GPU (the backend's own default then applies).

    ``auto`` on the CPU: one worker per core, at most :data:`MAX_AUTO_WORKERS` and at most one
    per :data:`AUTO_BYTES_PER_WORKER` of available memory; with ``threads`` given, as many
    workers as ``cores // threads``. Threads, when not given: ``cores // workers`` (at least 1).
    Measured on 2 cores (README, Performance): 2 workers x 1 thread ran WIDER mode 1 faster
    than 1 worker x 2 threads.
    """
    cores = max(1, int(cores))
    if requested == 'auto':
        if on_gpu:
            workers = 1
        else:
            workers = min(MAX_AUTO_WORKERS, max(1, cores // (threads or 1)))
            if free_memory is not None:
                workers = max(1, min(workers, int(free_memory // AUTO_BYTES_PER_WORKER)))
    else:
        workers = int(requested)
        if workers < 1:
            raise ValueError('image workers must be >= 1, got %d' % workers)
    if threads is None and not (on_gpu and workers == 1):
        threads = max(1, cores // workers)
    return workers, threads


# ---------------------------------------------------------------- in the worker process
_WORKER = {}


def _init_worker(environ, detector_kwargs):
    """Worker start: thread settings into the environment (mxnet is not imported yet)."""
    os.environ.update(environ)
    _WORKER['detector_kwargs'] = detector_kwargs
    _WORKER['detector'] = None


def _detector():
    if _WORKER['detector'] is None:
        from rcnn.inference.detector import RetinaFace
        _WORKER['detector'] = RetinaFace(**_WORKER['detector_kwargs'])
    return _WORKER['detector']


def _describe_detector():
    return repr(_detector())


def _run_task(task, item):
    return task(_detector(), item)


# ---------------------------------------------------------------- in the calling process
class ImageWorkerPool(object):
    """``workers`` processes, each with ``RetinaFace(**detector_kwargs)`` built on first use.

    Args:
        workers: number of processes.
        detector_kwargs: keyword arguments of :class:`rcnn.inference.detector.RetinaFace`
            (picklable).
        environ: variables set in each worker before mxnet is imported, e.g.
            ``{'OMP_NUM_THREADS': '1', 'MXNET_ENGINE_TYPE': 'NaiveEngine'}``.
        window: tasks in flight per worker (results are yielded in order).
    """

    def __init__(self, workers, detector_kwargs, environ=None, window=2):
        self.workers = int(workers)
        self.window = max(1, int(window)) * self.workers
        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context('spawn'),
            initializer=_init_worker, initargs=(dict(environ or {}), dict(detector_kwargs)))

    def describe_detector(self):
        """Build the detector in one worker (errors of the checkpoint surface here, as the
        loader raised them) and return its description."""
        return self._result(self._pool.submit(_describe_detector), 'loading the detector')

    def imap(self, task, items, name=str):
        """``task(detector, item)`` for every item, results in the order of ``items``.

        ``task`` must be picklable (a module-level function). An exception raised by a task
        is raised here, with its own type and message. ``name(item)`` names the items in
        flight in the error raised when a worker dies (which of them killed it is unknown).
        """
        pending = collections.deque()
        items = iter(items)
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.window:
                try:
                    item = next(items)
                except StopIteration:
                    exhausted = True
                    break
                try:
                    future = self._pool.submit(_run_task, task, item)
                except BrokenProcessPool:
                    raise self._died(self._in_flight(pending, name, item)) from None
                pending.append((item, future))
            if not pending:
                return
            try:
                result = pending[0][1].result()
            except BrokenProcessPool:
                raise self._died(self._in_flight(pending, name)) from None
            pending.popleft()
            yield result

    @staticmethod
    def _in_flight(pending, name, *more):
        """The names of the items whose results were outstanding when the pool broke."""
        names = [name(item) for item, _ in pending] + [name(item) for item in more]
        return 'one of %s (in flight)' % ', '.join(names) if len(names) > 1 else names[0]

    def _result(self, future, what):
        try:
            return future.result()
        except BrokenProcessPool:
            raise self._died(what) from None

    def _died(self, what):
        return ImageWorkerError(
            'an image worker process died (killed or out of memory?) while working on %s; '
            'the files written so far are kept: rerun the same command to resume, with fewer '
            '--image-workers if memory is short' % what)

    def close(self):
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False
