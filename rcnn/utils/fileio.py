"""Atomic file writes: a crash or a kill never leaves a truncated file under the final name.

Each writer fills a temporary file in the destination folder, flushes it to disk, gives it
the usual permissions (``mkstemp`` creates 0600) and renames it over the destination.
"""
import hashlib
import os
import tempfile

__all__ = ['atomic_write', 'atomic_write_bytes', 'atomic_write_text', 'stage_file']


def _default_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def stage_file(path, write, suffix='.tmp'):
    """Fill a temporary file next to ``path`` with ``write(tmp_path)``, flushed to disk.

    The temporary name is ``.<basename of path>.<random><suffix>`` in ``path``'s folder
    (created when missing); on any error it is removed and the error re-raised.
    Returns:
        the temporary path, for the caller to ``os.replace`` onto ``path``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix=suffix,
                                        dir=folder)
    os.close(handle)
    try:
        write(tmp_path)
        with open(tmp_path, 'rb') as written:
            os.fsync(written.fileno())
        os.chmod(tmp_path, _default_mode())
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    return tmp_path


def atomic_write(path, write, suffix='.tmp'):
    """Create ``path`` by calling ``write(tmp_path)`` on a temporary file, then renaming it.

    Args:
        path: destination; its folder is created when missing.
        write: callable filling the file it is given (e.g. ``mx.nd.save``, ``cv2.imwrite``).
        suffix: ending of the temporary name (writers that pick a format by extension, like
            ``cv2.imwrite``, need the destination's extension here).
    Returns:
        ``path``.
    """
    tmp_path = stage_file(path, write, suffix)
    try:
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    return path


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically."""
    def _write(tmp_path):
        with open(tmp_path, 'wb') as f:
            f.write(data)
    return atomic_write(path, _write)


def atomic_write_text(path, text):
    """Write ``text`` (str, UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode('utf-8'))


def file_digest(path, algorithm='sha256'):
    """Hex digest (``hashlib`` algorithm name) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()
