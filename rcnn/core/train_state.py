"""Training state saved next to each checkpoint, so ``--resume`` continues exactly.

Files of checkpoint ``N`` (``N`` = the 1-based epoch the state belongs to: written at
the end of epoch ``N`` and, with ``--checkpoint_iters``, during it)::

    <prefix>-symbol.json        deploy graph (shared by all N)
    <prefix>-%04d.params        deploy-graph parameters (rcnn.utils.checkpoint)
    <prefix>-%04d.states        optimizer (updater) states, MXNet's own pickle
    <prefix>-%04d.train.json    this module's record, written last

The JSON record holds the position (``epoch`` in progress, ``batch_in_epoch``
batches of it done, global ``iteration`` counted from the run's first epoch), the
schedule (``base_lr``, ``lr_steps``, ``lr_factors``, ``lr`` of the next iteration),
the run's shape (network, batch size, devices, workers, ``iters_per_epoch``, seed)
and the SHA-256 of the params, symbol and states files. Every file is written to a
temporary name and renamed, the record last: a kill leaves either the previous
complete checkpoint or the new one. Loading re-hashes the three files and refuses
(:class:`CorruptCheckpointError`, naming the file) anything truncated or changed.
"""
import glob
import hashlib
import json
import os
import re

from rcnn.utils import checkpoint_files as checkpoint_files_
from rcnn.utils.fileio import atomic_write_bytes

__all__ = ['STATE_FORMAT', 'CorruptCheckpointError', 'checkpoint_files', 'sha256_file',
           'write_train_record', 'read_train_record', 'list_train_records',
           'latest_checkpoint']

STATE_FORMAT = 1
REQUIRED_KEYS = ('format', 'network', 'epoch', 'batch_in_epoch', 'iteration', 'lr', 'base_lr',
                 'lr_steps', 'lr_factors', 'iters_per_epoch', 'batch_size', 'num_devices',
                 'num_workers', 'sha256')


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or does not match its training record."""


def checkpoint_files(prefix, number):
    """Paths of checkpoint ``number``: dict with params, symbol, states, record."""
    return {'params': checkpoint_files_.params_path(prefix, number),
            'symbol': checkpoint_files_.symbol_path(prefix),
            'states': checkpoint_files_.states_path(prefix, number),
            'record': checkpoint_files_.train_record_path(prefix, number)}


def sha256_file(path):
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def write_train_record(prefix, number, record):
    """Hash the params, symbol and states files of ``number`` and write the record last.

    Args:
        record: dict with every key of ``REQUIRED_KEYS`` except ``format`` / ``sha256``.
    Returns:
        the record as written (with ``format`` and ``sha256``).
    """
    files = checkpoint_files(prefix, number)
    full = dict(record)
    full['format'] = STATE_FORMAT
    full['checkpoint'] = number
    full['sha256'] = {kind: sha256_file(files[kind]) for kind in ('params', 'symbol', 'states')}
    missing = [k for k in REQUIRED_KEYS if k not in full]
    if missing:
        raise ValueError('training record lacks %s' % missing)
    atomic_write_bytes(files['record'], json.dumps(full, indent=1, sort_keys=True).encode())
    return full


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
