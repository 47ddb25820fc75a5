"""The training record ``<prefix>-%04d.train.json``: what ``--resume`` continues from.

The record holds the position (``epoch`` in progress, ``batch_in_epoch`` batches of it done,
global ``iteration`` counted from the run's first epoch), the schedule (``base_lr``,
``lr_steps``, ``lr_factors``, ``lr`` of the next iteration), the run's shape (network, batch
size, devices, workers, ``iters_per_epoch``, seed) and the SHA-256 of the params, symbol and
states files. It is written last, by the run that holds the prefix lock
(rcnn/utils/run_lock.py), so it vouches for the bytes of the other three files: reading it
(:func:`read_train_record`) re-hashes them and refuses (:class:`CorruptCheckpointError`,
naming the file) anything truncated or changed since.
"""
import glob
import json
import os
import re

from rcnn.checkpoint.files import checkpoint_files
from rcnn.utils.fileio import atomic_write_bytes, file_digest

__all__ = ['STATE_FORMAT', 'REQUIRED_KEYS', 'DATA_KINDS', 'CorruptCheckpointError',
           'sha256_file', 'full_record', 'record_bytes', 'write_train_record',
           'read_train_record', 'recorded_hashes', 'list_train_records', 'latest_checkpoint']

STATE_FORMAT = 1
REQUIRED_KEYS = ('format', 'network', 'epoch', 'batch_in_epoch', 'iteration', 'lr', 'base_lr',
                 'lr_steps', 'lr_factors', 'iters_per_epoch', 'batch_size', 'num_devices',
                 'num_workers', 'sha256')
#: the files a record hashes, in commit order
DATA_KINDS = ('params', 'states', 'symbol')


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or does not match its training record."""


def sha256_file(path):
    """Hex SHA-256 of a file's bytes."""
    return file_digest(path, 'sha256')


def full_record(record, number, paths):
    """``record`` completed with ``format``, ``checkpoint`` and the SHA-256 of the files
    ``paths[kind]`` for every kind of :data:`DATA_KINDS`.

    Raises:
        ValueError: ``record`` lacks a key of :data:`REQUIRED_KEYS`.
    """
    full = dict(record)
    full['format'] = STATE_FORMAT
    full['checkpoint'] = number
    full['sha256'] = {kind: sha256_file(paths[kind]) for kind in DATA_KINDS}
    missing = [k for k in REQUIRED_KEYS if k not in full]
    if missing:
        raise ValueError('training record lacks %s' % missing)
    return full


def record_bytes(full):
    """The bytes of a record file (sorted, indented JSON)."""
    return json.dumps(full, indent=1, sort_keys=True).encode()


def write_train_record(prefix, number, record):
    """Hash the params, symbol and states files of ``number`` and write the record last.

    Args:
        record: dict with every key of ``REQUIRED_KEYS`` except ``format`` / ``sha256``.
    Returns:
        the record as written (with ``format`` and ``sha256``).
    """
    files = checkpoint_files(prefix, number)
    full = full_record(record, number, files)
    atomic_write_bytes(files['record'], record_bytes(full))
    return full


def recorded_hashes(record_path):
    """kind -> SHA-256 listed by a training record, {} when it is missing or unreadable."""
    try:
        with open(record_path, 'rb') as f:
            record = json.loads(f.read().decode('utf-8'))
        return dict(record.get('sha256', {}))
    except (OSError, ValueError, AttributeError):
        return {}


def read_train_record(prefix, number):
    """Read and verify checkpoint ``number``'s record.

    Returns:
        the record dict.
    Raises:
        CorruptCheckpointError: missing file, unreadable record, or a hash mismatch,
        with the offending path in the message.
    """
    files = checkpoint_files(prefix, number)
    path = files['record']
    if not os.path.isfile(path):
        raise CorruptCheckpointError(
            'cannot resume: training record %s not found (was checkpoint %d written by '
            'this train.py?)' % (path, number))
    try:
        with open(path, 'rb') as f:
            record = json.loads(f.read().decode('utf-8'))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptCheckpointError('cannot resume: training record %s is corrupted (%s)'
                                     % (path, exc)) from None
    if not isinstance(record, dict) or any(k not in record for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(record, dict) or k not in record]
        raise CorruptCheckpointError('cannot resume: training record %s is corrupted '
                                     '(missing keys %s)' % (path, missing))
    if record['format'] != STATE_FORMAT:
        raise CorruptCheckpointError('cannot resume: training record %s has format %r, this '
                                     'train.py reads format %d' % (path, record['format'],
                                                                   STATE_FORMAT))
    if not isinstance(record['sha256'], dict):
        raise CorruptCheckpointError('cannot resume: training record %s is corrupted (sha256 '
                                     'is not a table of file digests)' % path)
    for kind in ('params', 'symbol', 'states'):
        file_path = files[kind]
        if not os.path.isfile(file_path):
            raise CorruptCheckpointError('cannot resume: %s (listed by %s) not found'
                                         % (file_path, path))
        if sha256_file(file_path) != record['sha256'].get(kind):
            raise CorruptCheckpointError(
                'cannot resume: %s is corrupted or was changed after it was saved (its SHA-256 '
                'differs from the one in %s); resume from an earlier checkpoint with '
                '--resume N' % (file_path, path))
    return record


def list_train_records(prefix):
    """Checkpoint numbers that have a training record, ascending."""
    pattern = re.compile(re.escape(os.path.basename(prefix)) + r'-(\d{4,})\.train\.json$')
    numbers = []
    for path in glob.glob(glob.escape(prefix) + '-*.train.json'):
        match = pattern.search(os.path.basename(path))
        if match:
            numbers.append(int(match.group(1)))
    return sorted(numbers)


def latest_checkpoint(prefix):
    """Number of the checkpoint with the highest record number, or None when there is none."""
    numbers = list_train_records(prefix)
    return numbers[-1] if numbers else None
