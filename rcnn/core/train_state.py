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

Saving (:func:`save_checkpoint_files`) first writes every file of the checkpoint to a
temporary name (``.<file name>.<random>.tmp``), then renames them, the record last, with a
commit marker (``<prefix>-%04d.commit``) present during the renames. A full disk or any
other write error therefore leaves the previous checkpoint untouched (even one of the same
number) and removes the temporary files; it raises :class:`CheckpointWriteError` naming the
file (and "no space left on device" when that is the cause). :func:`clean_interrupted_saves`,
run at start-up, removes what a killed save left: temporary files, and the ``.params`` /
``.states`` renamed by a commit that did not reach its record.
"""
import errno
import glob
import json
import logging
import os
import re
import shutil

from rcnn.utils import checkpoint_files as checkpoint_files_
from rcnn.utils.fileio import atomic_write_bytes, file_digest, stage_file

logger = logging.getLogger(__name__)

__all__ = ['STATE_FORMAT', 'CorruptCheckpointError', 'checkpoint_files', 'sha256_file',
           'write_train_record', 'read_train_record', 'list_train_records',
           'latest_checkpoint', 'CheckpointWriteError', 'save_checkpoint_files',
           'clean_interrupted_saves']

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
    return file_digest(path, 'sha256')


class CheckpointWriteError(OSError):
    """A checkpoint file could not be written (disk full, ...); the message names the file."""


DATA_KINDS = ('params', 'states', 'symbol')      # the files a record hashes, in commit order
_FREE_BYTES_FULL = 1 << 20                       # less free space than this counts as full


def _full_record(record, number, paths):
    full = dict(record)
    full['format'] = STATE_FORMAT
    full['checkpoint'] = number
    full['sha256'] = {kind: sha256_file(paths[kind]) for kind in DATA_KINDS}
    missing = [k for k in REQUIRED_KEYS if k not in full]
    if missing:
        raise ValueError('training record lacks %s' % missing)
    return full


def _record_bytes(full):
    return json.dumps(full, indent=1, sort_keys=True).encode()


def write_train_record(prefix, number, record):
    """Hash the params, symbol and states files of ``number`` and write the record last.

    Args:
        record: dict with every key of ``REQUIRED_KEYS`` except ``format`` / ``sha256``.
    Returns:
        the record as written (with ``format`` and ``sha256``).
    """
    files = checkpoint_files(prefix, number)
    full = _full_record(record, number, files)
    atomic_write_bytes(files['record'], _record_bytes(full))
    return full


def commit_marker(prefix, number):
    """Path of the marker present while checkpoint ``number``'s files are being renamed."""
    return checkpoint_files_.commit_marker_path(prefix, number)


def _disk_full(exc, folder):
    """True when ``exc`` (raised while writing into ``folder``) comes from a full disk.

    MXNet's writers raise MXNetError without an errno, so a folder with (almost) no free
    space left counts as full too.
    """
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        return shutil.disk_usage(folder).free < _FREE_BYTES_FULL
    except OSError:
        return False


def _write_error(exc, path):
    folder = os.path.dirname(os.path.abspath(path))
    if _disk_full(exc, folder):
        try:
            free = '%.1f MB free' % (shutil.disk_usage(folder).free / 2 ** 20)
        except OSError:
            free = 'free space unknown'
        reason = 'no space left on device (%s in %s)' % (free, folder)
    else:
        lines = str(exc).strip().splitlines()
        reason = '%s: %s' % (type(exc).__name__, lines[-1] if lines else repr(exc))
    return CheckpointWriteError('cannot write checkpoint file %s: %s; temporary files removed'
                                % (path, reason))


def save_checkpoint_files(prefix, number, writers, record):
    """Write checkpoint ``number``: every file staged first, then renamed, the record last.

    Args:
        writers: kind (``params``, ``states``, ``symbol``) -> callable filling the path it
            is given.
        record: as for :func:`write_train_record`.
    Returns:
        the record as written.
    Raises:
        CheckpointWriteError: a file could not be written (nothing renamed, temporary files
        removed, the previous checkpoint untouched).
    """
    files = checkpoint_files(prefix, number)
    staged, kind = {}, None
    try:
        for kind in DATA_KINDS:
            staged[kind] = stage_file(files[kind], writers[kind])
        full = _full_record(record, number, staged)
        kind = 'record'
        staged[kind] = stage_file(files[kind], lambda tmp: _write_bytes(tmp, _record_bytes(full)))
        kind = 'commit'
        _write_bytes(commit_marker(prefix, number), _record_bytes(
            {'checkpoint': number, 'sha256': full['sha256']}))
    except BaseException as exc:
        for path in list(staged.values()):
            _remove_quietly(path)
        if kind == 'commit':
            _remove_quietly(commit_marker(prefix, number))
        if isinstance(exc, (OSError, RuntimeError)):    # MXNetError is a RuntimeError
            raise _write_error(exc, files.get(kind, commit_marker(prefix, number))) from exc
        raise
    for kind in DATA_KINDS + ('record',):
        os.replace(staged[kind], files[kind])
    os.remove(commit_marker(prefix, number))
    return full


def _write_bytes(path, data):
    with open(path, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _temporary_file_pattern(prefix):
    """Regex of the temporary names this module's and the trainer's writes of ``prefix`` use."""
    names = r'(\d{4,}\.(params|states|train\.json)|symbol\.json|train-summary\.json)'
    return re.compile(r'^\.' + re.escape(os.path.basename(prefix)) + '-' + names +
                      r'\.[A-Za-z0-9_]+\.tmp$')


def clean_interrupted_saves(prefix):
    """Remove what an interrupted save of ``prefix`` left behind; returns the removed paths.

    * temporary files ``.<prefix name>-*.tmp`` of checkpoint files (a kill while writing);
    * for every commit marker ``<prefix>-NNNN.commit`` (a kill while renaming): the
      ``.params`` / ``.states`` of NNNN that its record (if any) does not describe, then
      the marker.

    Call it while holding the prefix's run lock (no other run is writing). Each removal
    is logged (WARNING).
    """
    folder = os.path.dirname(os.path.abspath(prefix))
    removed = []
    pattern = _temporary_file_pattern(prefix)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return removed
    for name in sorted(names):
        if pattern.match(name):
            removed.append(os.path.join(folder, name))
    marker_pattern = re.compile(re.escape(os.path.basename(prefix)) + r'-(\d{4,})\.commit$')
    for name in sorted(names):
        match = marker_pattern.match(name)
        if not match:
            continue
        files = checkpoint_files(prefix, int(match.group(1)))
        recorded = _recorded_hashes(files['record'])
        for kind in ('params', 'states'):
            path = files[kind]
            if os.path.isfile(path) and sha256_file(path) != recorded.get(kind):
                removed.append(path)
        removed.append(os.path.join(folder, name))
    for path in removed:
        _remove_quietly(path)
        logger.warning('removed %s, left by an interrupted checkpoint save', path)
    return removed


def _recorded_hashes(record_path):
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
