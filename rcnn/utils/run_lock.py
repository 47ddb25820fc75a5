"""One training run per checkpoint prefix: an exclusive lock held for the run's lifetime.

``train.py`` takes ``<prefix>-train.lock`` (``<prefix>-train-rank<r>.lock`` for the other
workers of a distributed run) with ``fcntl.flock`` before it writes any log or checkpoint.
The lock belongs to the open file: it is released when the :class:`PrefixLock` is released
or garbage collected, and by the operating system when the process ends in any way (even
``kill -9``), so a stale lock file never blocks a later run. The file holds the owner's pid,
host and start time, for the message the second run prints.

Note: ``flock`` is not enforced across machines on some network file systems (old NFS).
"""
import fcntl
import os
import socket
import time

__all__ = ['PrefixInUseError', 'PrefixLock', 'lock_path']


class PrefixInUseError(RuntimeError):
    """Another process holds the lock of this prefix; the message names it and its pid."""


def lock_path(prefix, rank=0):
    """Path of the lock file of ``prefix`` for worker ``rank``."""
    return '%s-train.lock' % prefix if rank == 0 else '%s-train-rank%d.lock' % (prefix, rank)


class PrefixLock(object):
    """Exclusive, non-blocking lock on a training prefix (see the module docstring).

    Raises:
        PrefixInUseError: another process holds it (the message names the prefix, the
        other process's pid and host, and the lock file).
    """

    def __init__(self, prefix, rank=0):
        self._file = None       # set first: release() (and __del__) must work if open fails
        self.prefix = prefix
        self.path = lock_path(prefix, rank)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._file = open(self.path, 'a+')
        except OSError as exc:
            raise OSError('--prefix %s: cannot create the lock file %s (%s); choose a folder '
                          'this user can write' % (prefix, self.path, exc.strerror or exc)) \
                from None
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.seek(0)
            owner = self._file.read().strip() or 'unknown process'
            self._file.close()
            self._file = None
            raise PrefixInUseError(
                '--prefix %s is in use by another train.py (%s; lock file %s): two runs on one '
                'prefix would overwrite each other\'s checkpoints and logs. Wait for it to end, '
                'stop it, or choose another --prefix' % (prefix, owner, self.path)) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write('pid %d on %s since %s' % (os.getpid(), socket.gethostname(),
                                                    time.strftime('%Y-%m-%d %H:%M:%S')))
        self._file.flush()

    @property
    def held(self):
        return self._file is not None

    def release(self):
        """Unlock (idempotent); the lock file stays, empty of meaning once unlocked."""
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()

    def __del__(self):
        if getattr(self, '_file', None) is not None:
            self.release()
