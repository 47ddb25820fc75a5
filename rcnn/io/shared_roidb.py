"""Hand the roidb to loader workers through shared memory instead of the start-up pipe.

With the 'spawn' start method, ``Process.start()`` writes the pickled arguments into a pipe
that the parent itself keeps open for reading until the write ends: a worker that dies
while the arguments are larger than the pipe buffer (64 KB; the WIDER roidb is megabytes)
leaves the parent blocked in that write forever. The roidb is therefore pickled once into a
shared-memory block; a worker receives only the block's name and size, and unpickles it.
No MXNet here (the workers never import it).
"""
import pickle
from multiprocessing import shared_memory

__all__ = ['share', 'load', 'worker_main']


def share(obj):
    """Pickle ``obj`` into a new shared-memory block; returns (block, handle).

    The caller owns the block (``close()`` and ``unlink()`` it when the workers are done);
    ``handle`` is the small picklable (name, size) pair a worker passes to :func:`load`.
    """
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    block = shared_memory.SharedMemory(create=True, size=max(1, len(data)))
    block.buf[:len(data)] = data
    return block, (block.name, len(data))


def load(handle):
    """The object a :func:`share` handle refers to (an independent copy)."""
    name, size = handle
    block = shared_memory.SharedMemory(name=name)
    try:
        return pickle.loads(block.buf[:size])
    finally:
        block.close()


def worker_main(roidb_handle, task_queue, result_queue, *args):
    """Loader worker entry point: load the shared roidb, then run the sample loop."""
    from rcnn.io.rpn import sample_worker_loop
    sample_worker_loop(task_queue, result_queue, load(roidb_handle), *args)
