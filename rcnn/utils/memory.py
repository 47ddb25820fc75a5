"""Giving freed heap memory back to the operating system (glibc ``malloc_trim``).

A detector bound anew for every image size frees and allocates buffers of ever-changing sizes
(MXNet executors, MKLDNN primitives). glibc keeps freed memory in its heaps, one per thread
that allocated it, and raises its mmap threshold after the first large free, so buffers of a
few MB end up in those heaps too: the resident size then grows with every new size although
little is in use. :func:`release_free_memory` asks glibc to return the free pages; it is called
when an executor is dropped (a few ms, only on a new input size). Elsewhere (musl, macOS) it
does nothing.
"""
import ctypes
import ctypes.util

__all__ = ['release_free_memory']

_libc = None


def _load_libc():
    global _libc
    if _libc is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
            libc.malloc_trim.restype = ctypes.c_int
            _libc = libc
        except (OSError, AttributeError):
            _libc = False
    return _libc


def release_free_memory():
    """Return free heap memory to the OS; True when glibc's ``malloc_trim`` ran."""
    libc = _load_libc()
    if not libc:
        return False
    libc.malloc_trim(0)
    return True
