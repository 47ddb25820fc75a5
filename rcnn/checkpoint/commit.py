"""Writing a training checkpoint atomically, and cleaning what an interrupted write left.

Files of checkpoint ``N`` (``N`` = the 1-based epoch the state belongs to: written at the end
of epoch ``N`` and, with ``--checkpoint_iters`` or when training stops inside it, during it)::

    <prefix>-symbol.json        deploy graph (shared by all N)
    <prefix>-%04d.params        deploy-graph parameters (rcnn.checkpoint.params)
    <prefix>-%04d.states        optimizer (updater) states, MXNet's own pickle
    <prefix>-%04d.train.json    the training record (rcnn.checkpoint.record), written last

:func:`save_checkpoint_files` first writes every file of the checkpoint to a temporary name
(``.<file name>.<random>.tmp``), then renames them, the record last, with a commit marker
(``<prefix>-%04d.commit``) present during the renames. A full disk, a Ctrl-C or any other
error while writing therefore leaves the previous checkpoint untouched (even one of the same
number) and removes the temporary files; a write error raises :class:`CheckpointWriteError`
naming the file (and "no space left on device" when that is the cause). A kill leaves either
the previous complete checkpoint or the new one: :func:`clean_interrupted_saves`, run at
start-up, removes what a killed save left (temporary files, and the ``.params`` /
``.states`` renamed by a commit that did not reach its record).
"""
import errno
import logging
import os
import re
import shutil

from rcnn.checkpoint.files import checkpoint_files, commit_marker_path
from rcnn.checkpoint.record import DATA_KINDS, full_record, record_bytes, recorded_hashes, \
    sha256_file
from rcnn.utils.fileio import stage_file

logger = logging.getLogger(__name__)

__all__ = ['CheckpointWriteError', 'save_checkpoint_files', 'write_module_checkpoint',
           'clean_interrupted_saves']

_FREE_BYTES_FULL = 1 << 20                       # less free space than this counts as full


class CheckpointWriteError(OSError):
    """A checkpoint file could not be written (disk full, ...); the message names the file."""


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
        record: as for :func:`rcnn.checkpoint.record.write_train_record`.
    Returns:
        the record as written.
    Raises:
        CheckpointWriteError: a file could not be written (nothing renamed, temporary files
        removed, the previous checkpoint untouched).
    """
    files = checkpoint_files(prefix, number)
    marker = commit_marker_path(prefix, number)
    staged, kind = {}, None
    try:
        for kind in DATA_KINDS:
            staged[kind] = stage_file(files[kind], writers[kind])
        full = full_record(record, number, staged)
        kind = 'record'
        staged[kind] = stage_file(files[kind], lambda tmp: _write_bytes(tmp, record_bytes(full)))
        kind = 'commit'
        _write_bytes(marker, record_bytes({'checkpoint': number, 'sha256': full['sha256']}))
    except BaseException as exc:
        for path in list(staged.values()):
            _remove_quietly(path)
        if kind == 'commit':
            _remove_quietly(marker)
        if isinstance(exc, (OSError, RuntimeError)):    # MXNetError is a RuntimeError
            raise _write_error(exc, files.get(kind, marker)) from exc
        raise
    for kind in DATA_KINDS + ('record',):
        os.replace(staged[kind], files[kind])
    os.remove(marker)
    return full


def write_module_checkpoint(prefix, number, mod, deploy_sym, record, optimizer_states=True):
    """Checkpoint ``number`` of a training Module: the deploy graph, the deploy graph's
    parameters taken from ``mod``, the optimizer states and ``record``.

    Args:
        mod: the bound training Module (``get_params``, ``save_optimizer_states``).
        deploy_sym: the deploy graph saved as ``<prefix>-symbol.json``; the ``.params`` file
            holds only the arrays it uses.
        record: the training record's fields (:data:`rcnn.checkpoint.record.REQUIRED_KEYS`
            but ``format`` / ``sha256``); ``optimizer_states`` is added.
        optimizer_states: False when the optimizer state lives on kvstore servers
            (dist_async): the ``.states`` file is then empty and the record says so.
    Returns:
        the record as written.
    """
    import mxnet as mx
    from rcnn.checkpoint.params import params_payload, select_params
    arg_params, aux_params = mod.get_params()
    deploy_args, deploy_aux = select_params(deploy_sym, arg_params, aux_params)
    payload = params_payload(deploy_args, deploy_aux)
    writers = {'params': lambda tmp: mx.nd.save(tmp, payload), 'symbol': deploy_sym.save,
               'states': (mod.save_optimizer_states if optimizer_states
                          else lambda tmp: open(tmp, 'wb').close())}
    return save_checkpoint_files(prefix, number, writers,
                                 dict(record, optimizer_states=bool(optimizer_states)))


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
    """Regex of the temporary names the checkpoint and summary writes of ``prefix`` use."""
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
        recorded = recorded_hashes(files['record'])
        for kind in ('params', 'states'):
            path = files[kind]
            if os.path.isfile(path) and sha256_file(path) != recorded.get(kind):
                removed.append(path)
        removed.append(os.path.join(folder, name))
    for path in removed:
        _remove_quietly(path)
        logger.warning('removed %s, left by an interrupted checkpoint save', path)
    return removed
