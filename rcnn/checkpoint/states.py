"""The optimizer ``.states`` file: MXNet's pickle, loaded only when its record vouches for it.

MXNet writes the updater's momentum as a Python pickle (``Updater.get_states``); unpickling
runs whatever the file says. A training record is written last by the run that holds the
prefix lock and lists the SHA-256 of the ``.states`` it committed
(rcnn/checkpoint/commit.py), so :func:`load_optimizer_states` reads the file's bytes once,
compares their SHA-256 with the record's and hands those same bytes to the updater: a file
that the record does not list, or that differs from it (planted, swapped after the record
was checked, truncated), is refused before anything is unpickled.
"""
import hashlib

from rcnn.checkpoint.files import checkpoint_files
from rcnn.checkpoint.record import CorruptCheckpointError

__all__ = ['read_vouched_states', 'load_optimizer_states']


def read_vouched_states(path, record_path, expected_sha256):
    """The bytes of ``path`` when their SHA-256 is ``expected_sha256``.

    Args:
        path: the ``.states`` file.
        record_path: the record listing it (named in errors).
        expected_sha256: hex digest the record lists (None: the record lists none).
    Raises:
        CorruptCheckpointError: one line naming the file, when the record lists no digest,
        the file is missing, or its bytes differ.
    """
    if not expected_sha256:
        raise CorruptCheckpointError(
            'cannot resume: %s lists no SHA-256 of the optimizer state %s; refusing to load '
            'that pickle (resume from a checkpoint this train.py wrote)' % (record_path, path))
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except OSError as exc:
        raise CorruptCheckpointError('cannot resume: optimizer state %s cannot be read (%s)'
                                     % (path, exc.strerror or exc)) from None
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise CorruptCheckpointError(
            'cannot resume: optimizer state %s differs from the SHA-256 in %s (changed after '
            'the checkpoint was saved); refusing to load that pickle, resume from an earlier '
            'checkpoint with --resume N' % (path, record_path))
    return data


def _updater(mod):
    """The updater holding ``mod``'s optimizer state (the kvstore's when it updates)."""
    if getattr(mod, '_update_on_kvstore', False):
        updater = getattr(mod._kvstore, '_updater', None)
        if updater is None:
            raise ValueError('the optimizer state lives on the kvstore servers (dist_async): '
                             'it cannot be restored')
        return updater
    return mod._updater


def load_optimizer_states(mod, prefix, record):
    """Restore the optimizer state of checkpoint ``record['checkpoint']`` into ``mod``.

    Args:
        mod: a bound Module with its optimizer installed.
        prefix: the checkpoint prefix.
        record: the training record (:func:`rcnn.checkpoint.record.read_train_record`).
    Raises:
        CorruptCheckpointError: the record does not vouch for the ``.states`` bytes.
    """
    files = checkpoint_files(prefix, record['checkpoint'])
    hashes = record.get('sha256') if isinstance(record.get('sha256'), dict) else {}
    data = read_vouched_states(files['states'], files['record'], hashes.get('states'))
    _updater(mod).set_states(data)
