"""train.py safety: one run per prefix, disk-full saves, cleanup of killed saves,
--resume checks, dead loader workers and unreadable data as one-line errors."""
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from conftest import train_env, train_in_process
from rcnn.checkpoint.commit import CheckpointWriteError, save_checkpoint_files
from rcnn.checkpoint.files import checkpoint_files
from rcnn.checkpoint.record import latest_checkpoint, read_train_record

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / 'train.py'


def train_argv(prefix, *extra):
    return ['--network', 'mnet', '--prefix', str(prefix), '--batch_images', '1', '--frequent',
            '1', '--seed', '3', *extra]


def train_cmd(prefix, *extra):
    return [sys.executable, str(TRAIN), *train_argv(prefix, *extra)]


def run_train(cmd, timeout=300):
    return subprocess.run(cmd, cwd=str(ROOT), env=train_env(), capture_output=True, text=True,
                          timeout=timeout)


def data_args(dataset_path, root_path):
    return ['--dataset_path', str(dataset_path), '--root_path', str(root_path)]


MXNET_NATIVE_LOG = re.compile(r'^\[\d\d:\d\d:\d\d\] \S+\.(cc|h):\d+: ')   # MXNet's C++ log lines


def one_line_error(proc):
    """The stderr of a failed run: exactly one line, no traceback anywhere on the console."""
    assert 'Traceback' not in proc.stderr and 'Traceback' not in proc.stdout, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.strip().splitlines()
             if not MXNET_NATIVE_LOG.match(line)]
    assert len(lines) == 1 and lines[0].startswith('train.py: error: '), proc.stderr[-3000:]
    return lines[0]


# ------------------------------------------------------------------------------ prefix lock
HOLD_LOCK = '''
import fcntl, os, sys, time
handle = open(sys.argv[1], 'a+')
fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
handle.seek(0); handle.truncate(); handle.write('pid %d' % os.getpid()); handle.flush()
print('locked', flush=True)
time.sleep(120)
'''


def test_the_prefix_lock_names_the_holder_and_is_freed_when_it_dies(tmp_path):
    from rcnn.utils.run_lock import PrefixInUseError, PrefixLock
    prefix = str(tmp_path / 'runs' / 'm')
    holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK.replace(
        "handle = open(sys.argv[1], 'a+')",
        "sys.path.insert(0, %r)\nfrom rcnn.utils.run_lock import PrefixLock\n"
        "lock = PrefixLock(sys.argv[1])\nhandle = open(sys.argv[1] + '.unused', 'a+')"
        % str(ROOT)), prefix], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(PrefixInUseError, match=r'--prefix %s is in use by another train\.py '
                                                   r'\(pid %d on ' % (re.escape(prefix), holder.pid)):
            PrefixLock(prefix)
        PrefixLock(prefix, rank=1).release()        # other workers of a dist run: own files
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with PrefixLock(prefix) as lock:                 # freed by the holder's death
        assert lock.held and 'pid %d' % os.getpid() in Path(lock.path).read_text()


def test_a_second_train_py_on_a_locked_prefix_stops_naming_prefix_and_pid(tmp_path, capsys):
    prefix = tmp_path / 'm'
    # an independent holder (plain fcntl, as a running train.py holds it)
    holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, str(prefix) + '-train.lock'],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        proc = train_in_process(train_argv(prefix, *data_args(tmp_path / 'absent', tmp_path)),
                                capsys)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert '--prefix %s is in use' % prefix in line and 'pid %d' % holder.pid in line
    assert not Path(str(prefix) + '-train.log').exists()        # the log was not touched


# ------------------------------------------------------------------------------ saving
def _writers(payload):
    def write(data):
        return lambda path: Path(path).write_bytes(data)
    return {'params': write(payload), 'states': write(b'states' + payload),
            'symbol': write(b'{"nodes": []}')}


RECORD = {'network': 'mnet', 'epoch': 1, 'batch_in_epoch': 0, 'iteration': 7, 'lr': 0.01,
          'base_lr': 0.01, 'lr_steps': [55], 'lr_factors': [0.1], 'iters_per_epoch': 7,
          'batch_size': 1, 'num_devices': 1, 'num_workers': 1}


def _leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir()
                  if p.name.endswith(('.tmp', '.commit')))


@pytest.mark.parametrize('failing_kind', ['params', 'states', 'symbol'])
def test_a_full_disk_keeps_the_previous_checkpoint_of_the_same_number(tmp_path, failing_kind):
    prefix = str(tmp_path / 'm')
    save_checkpoint_files(prefix, 2, _writers(b'first' * 100), RECORD)
    before = read_train_record(prefix, 2)
    writers = _writers(b'second' * 100)

    def disk_full(path):
        Path(path).write_bytes(b'half')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    writers[failing_kind] = disk_full
    with pytest.raises(CheckpointWriteError) as info:
        save_checkpoint_files(prefix, 2, writers, dict(RECORD, iteration=9))
    message = str(info.value)
    assert checkpoint_files(prefix, 2)[failing_kind] in message
    assert 'no space left on device' in message and '\n' not in message
    assert read_train_record(prefix, 2) == before         # intact, verified
    assert _leftovers(tmp_path) == []


def test_mxnet_write_errors_on_a_full_folder_say_no_space_left(tmp_path, monkeypatch):
    prefix = str(tmp_path / 'm')
    writers = _writers(b'x')

    def mxnet_fails(path):
        raise mx.base.MXNetError('[12:00:00] src/io/local_filesys.cc:...: Check failed: '
                                 'fwrite(ptr, 1, size, fp_) == size: FileStream.Write incomplete')
    writers['params'] = mxnet_fails
    monkeypatch.setattr(shutil, 'disk_usage', lambda path: shutil._ntuple_diskusage(100, 100, 0))
    with pytest.raises(CheckpointWriteError,
                       match=r'm-0002\.params: no space left on device \(0\.0 MB free'):
        save_checkpoint_files(prefix, 2, writers, RECORD)
    assert _leftovers(tmp_path) == []


def test_disk_full_in_train_py_is_one_line_and_keeps_the_last_checkpoint(
        tmp_path, dlib_faces, monkeypatch, capsys):
    """In-process run (the monkeypatched mx.nd.save fails on checkpoint 2 like a full disk)."""
    prefix = tmp_path / 'm'
    real_save = mx.nd.save

    def full_disk_save(fname, data):
        if '-0002.params' in fname:
            with open(fname, 'wb') as f:
                f.write(b'partial')
            monkeypatch.setattr(shutil, 'disk_usage',
                                lambda path: shutil._ntuple_diskusage(100, 100, 0))
            raise mx.base.MXNetError('Check failed: fwrite(ptr, 1, size, fp_) == size')
        return real_save(fname, data)
    monkeypatch.setattr(mx.nd, 'save', full_disk_save)
    proc = train_in_process(['--network', 'mnet', '--prefix', str(prefix), '--batch_images',
                             '1', '--workers', '0', '--no_flip', '--max_iters', '6', '--seed',
                             '3', *data_args(dlib_faces, tmp_path)], capsys)
    err = proc.stderr
    assert proc.returncode == 2, err
    assert 'cannot write checkpoint file %s-0002.params: no space left on device' % prefix in err
    assert 'the last good checkpoint is %s-0001 (iteration 4), untouched' % prefix in err
    assert read_train_record(str(prefix), 1)['iteration'] == 4
    assert not Path(str(prefix) + '-0002.params').exists() and _leftovers(tmp_path) == []


def test_what_a_killed_save_left_is_removed_on_the_next_start(tmp_path, capsys):
    prefix = tmp_path / 'm'
    save_checkpoint_files(str(prefix), 1, _writers(b'good' * 10), RECORD)
    stale = ['.m-0002.params.k3j_x9a1.tmp', '.m-symbol.json.0abcdefg.tmp',
             '.m-0002.train.json.zz99zz99.tmp', '.m-train-summary.json.abcdefgh.tmp']
    kept = ['.other-0002.params.k3j_x9a1.tmp', 'm-0005.params', 'notes.tmp']
    for name in stale + kept:
        (tmp_path / name).write_bytes(b'x')
    # a commit killed between its renames: new .params / .states of 2, no record of 2
    (tmp_path / 'm-0002.params').write_bytes(b'new params')
    (tmp_path / 'm-0002.states').write_bytes(b'new states')
    (tmp_path / 'm-0002.commit').write_text('{}')
    # ... and one killed after renaming the .params of an existing checkpoint 1
    (tmp_path / 'm-0001.commit').write_text('{}')
    proc = train_in_process(train_argv(prefix, *data_args(tmp_path / 'absent', tmp_path)), capsys)
    assert proc.returncode == 2 and 'label file not found' in proc.stderr
    left = sorted(p.name for p in tmp_path.iterdir())
    for name in stale + ['m-0002.params', 'm-0002.states', 'm-0002.commit', 'm-0001.commit']:
        assert name not in left
        assert 'removed %s, left by an interrupted checkpoint save' % (tmp_path / name) \
            in proc.stdout
    for name in kept:
        assert name in left
    assert read_train_record(str(prefix), 1)['iteration'] == 7   # untouched


# ------------------------------------------------------------------------------ --resume
def fake_checkpoint(prefix, dataset_path, image_set='train'):
    save_checkpoint_files(str(prefix), 1, _writers(b'p' * 64), dict(
        RECORD, dataset_path=os.path.abspath(str(dataset_path)), image_set=image_set))


@pytest.mark.parametrize('flag, value', [('--dataset_path', 'other'), ('--image_set', 'val')])
def test_resume_on_other_data_is_refused_unless_allowed(tmp_path, flag, value, capsys):
    data = tmp_path / 'data'
    fake_checkpoint(tmp_path / 'm', data)
    args = {'--dataset_path': str(data), '--image_set': 'train', '--root_path': str(tmp_path)}
    args[flag] = str(tmp_path / value) if flag == '--dataset_path' else value
    argv = [token for pair in args.items() for token in pair]
    refused = train_in_process(train_argv(tmp_path / 'm', '--resume', *argv), capsys)
    assert refused.returncode == 2
    line = one_line_error(refused)
    assert 'cannot resume checkpoint 1 on other data: %s %s (checkpoint: ' % (
        flag, args[flag]) in line and '--resume_other_data' in line
    allowed = train_in_process(train_argv(tmp_path / 'm', '--resume', '--resume_other_data',
                                          *argv), capsys)
    assert 'on other data (--resume_other_data)' in allowed.stdout
    assert 'label file not found' in allowed.stderr       # got past the check to the data


@pytest.mark.slow
def test_resume_with_an_explicit_lr_replaces_the_base_lr(tmp_path, dlib_faces, capsys):
    """Both runs in this process (their logs are all the test reads)."""
    prefix = tmp_path / 'm'
    common = ['--workers', '0', '--no_flip', '--lr_step', '1,2', *data_args(dlib_faces, tmp_path)]
    first = train_in_process(train_argv(prefix, '--max_iters', '2', *common), capsys)
    assert first.returncode == 0, first.stderr[-3000:]
    assert re.search(r'Iter\[2\] .*? lr=0\.01 ', first.stdout)
    resumed = train_in_process(train_argv(prefix, '--max_iters', '5', '--resume', '--lr',
                                          '0.004', *common), capsys)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "--lr 0.004 replaces the resumed schedule's base lr 0.01" in resumed.stdout
    logged = re.findall(r'Iter\[(\d+)\] .*? lr=([0-9.e-]+) ', resumed.stdout)
    # batches 3 and 4 at the new base, then the step at epoch 1 (iteration 4): x0.1
    assert [(int(i), float(lr)) for i, lr in logged] == [(3, 0.004), (4, 0.004), (5, 0.0004)]
    record = read_train_record(str(prefix), latest_checkpoint(str(prefix)))
    assert record['base_lr'] == 0.004


# ------------------------------------------------------------------------------ Ctrl-C
def _final_digest(text):
    match = re.search(r'final parameter digest \(rank 0 of 1\): ([0-9a-f]{64})', text)
    assert match, text[-3000:]
    return match.group(1)


def _group_gone(pgid, seconds=20):
    """True once no process of group ``pgid`` is left (the loader workers ended too)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_ctrl_c_saves_the_batches_done_exits_130_and_resume_continues_exactly(
        tmp_path, dlib_faces, resume_reference):
    """SIGINT to the process group (a terminal's Ctrl-C) in epoch 0: one line, exit 130, a
    checkpoint of the batches done, no leftover file or worker; --resume then ends with the
    parameters of an uninterrupted run (the resume falls in the run's first epoch; the
    reference's flags are these plus --checkpoint_iters 2)."""
    common = ['--workers', '1', '--lr_step', '1,2', '--max_iters', '10',
              *data_args(dlib_faces, tmp_path)]
    prefix = tmp_path / 'run'
    log = Path(str(prefix) + '-train.log')
    with open(tmp_path / 'out.txt', 'w') as out, open(tmp_path / 'err.txt', 'w') as err:
        run = subprocess.Popen(train_cmd(prefix, *common), cwd=str(ROOT), env=train_env(),
                               stdout=out, stderr=err, start_new_session=True)
        try:
            deadline = time.time() + 240
            while time.time() < deadline and run.poll() is None and not (
                    log.exists() and 'Iter[3]' in log.read_text()):
                time.sleep(0.05)
            os.killpg(run.pid, signal.SIGINT)
            run.wait(timeout=120)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
    stdout, stderr = (tmp_path / 'out.txt').read_text(), (tmp_path / 'err.txt').read_text()
    assert run.returncode == 130, stdout[-3000:] + stderr[-3000:]
    assert 'Traceback' not in stdout + stderr
    lines = [line for line in stderr.strip().splitlines() if not MXNET_NATIVE_LOG.match(line)]
    assert len(lines) == 1, stderr
    match = re.match(r'train\.py: interrupted \(Ctrl-C\) at epoch 0, batch (\d+) \(iteration '
                     r'(\d+)\) after \d+ batch\(es\) of this run: checkpoint (\S+) holds them; '
                     r'continue with --resume$', lines[0])
    assert match, lines[0]
    stopped = int(match.group(2))
    assert 3 <= stopped < 8 and match.group(3) == '%s-0001' % prefix
    record = read_train_record(str(prefix), 1)                  # complete and verified
    assert (record['epoch'], record['batch_in_epoch'], record['iteration']) == \
        (0, stopped, stopped)
    summary = json.loads(Path(str(prefix) + '-train-summary.json').read_text())
    assert summary['stopped_by'] == 'interrupt' and summary['iterations'] == stopped
    assert _leftovers(tmp_path) == [] and _group_gone(run.pid)

    resumed = run_train(train_cmd(prefix, '--resume', *common))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'optimizer state restored (%d updates so far)' % stopped in resumed.stdout
    assert _final_digest(resumed.stdout) == _final_digest(resume_reference)


# ------------------------------------------------------------------------------ loader
@pytest.mark.slow
def test_a_sigkilled_loader_worker_stops_training_in_one_line_after_a_checkpoint(
        tmp_path, dlib_faces):
    prefix = tmp_path / 'm'
    log = Path(str(prefix) + '-train.log')
    run = subprocess.Popen(train_cmd(prefix, '--workers', '2', '--max_iters', '200',
                                     *data_args(dlib_faces, tmp_path)),
                           cwd=str(ROOT), env=train_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and run.poll() is None and not (
                log.exists() and 'Iter[2]' in log.read_text()):
            time.sleep(0.1)
        children = subprocess.run(['pgrep', '-P', str(run.pid)], capture_output=True,
                                  text=True).stdout.split()
        workers = [int(pid) for pid in children if 'spawn_main' in
                   Path('/proc/%s/cmdline' % pid).read_bytes().decode(errors='replace')]
        assert len(workers) == 2, children
        os.kill(workers[1], signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=120)       # a hang fails here
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    proc = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
    assert proc.returncode == 4, stderr[-3000:]
    line = one_line_error(proc)
    assert re.search(r'CropLoader-worker-\d \(pid %d\) died with exit code -9 \(killed by '
                     r'SIGKILL' % workers[1], line), line
    record = read_train_record(str(prefix), 1)          # the work done is saved
    assert record['iteration'] >= 2
    assert 'Traceback' in log.read_text()                            # the details: log only


def test_unreadable_images_stop_training_with_one_line_naming_them(tmp_path, capsys):
    images = tmp_path / 'data' / 'train' / 'images'
    images.mkdir(parents=True)
    names = ['a.jpg', 'b.jpg']
    for name in names:
        (images / name).write_bytes(b'not a jpeg at all')      # sizes from the label file
    (tmp_path / 'data' / 'train' / 'label.txt').write_text(
        ''.join('# %s 64 48\n10 10 20 20\n' % name for name in names))
    for workers in ('0', '1'):
        # train.py's main in this process (a loader worker, with 1, is a process of its own)
        proc = train_in_process(train_argv(tmp_path / ('m' + workers), '--workers', workers,
                                           '--no_flip', *data_args(tmp_path / 'data', tmp_path)),
                                capsys)
        assert proc.returncode == 4, proc.stderr[-3000:]
        line = one_line_error(proc)
        assert re.search(r'11 images in a row could not be read \(.*%s.*\), giving up'
                         % re.escape(str(images / 'a.jpg')), line), line
        assert line.count(str(images / 'b.jpg')) == 1


# ------------------------------------------------------------------------------ loader units
def _tiny_loader_inputs(tmp_path):
    import cv2
    from rcnn.config import generate_config
    cfg, _ = generate_config('mnet', 'retinaface')
    roidb = []
    for i in range(4):
        path = str(tmp_path / ('%d.png' % i))
        cv2.imwrite(path, np.full((120, 160, 3), 40 * i, np.uint8))
        roidb.append({'image': path, 'height': 120, 'width': 160, 'flipped': False,
                      'boxes': np.array([[20, 20, 80, 90]], np.float32),
                      'landmarks': -np.ones((1, 5, 3), np.float32),
                      'blur': np.zeros(1, np.float32), 'gt_classes': np.ones(1, np.int32),
                      'max_num_boxes': 1})
    data = mx.sym.Variable('data')
    feat_sym = [mx.sym.Convolution(mx.sym.Pooling(data, kernel=(s, s), stride=(s, s),
                                                  pool_type='avg'),
                                   num_filter=2 * cfg.NUM_ANCHORS, kernel=(1, 1))
                for s in cfg.RPN_FEAT_STRIDE]
    return cfg, roidb, feat_sym


def test_a_worker_dying_at_start_up_is_named_with_its_exit_code(tmp_path):
    from rcnn.core.loader import CropLoader, LoaderError

    class FailsToUnpickle(object):
        def __reduce__(self):
            return int, ('this fails in the worker at start-up',)
    cfg, roidb, feat_sym = _tiny_loader_inputs(tmp_path)
    roidb[0] = dict(roidb[0], poison=FailsToUnpickle())
    with CropLoader(feat_sym, roidb, 2, cfg=cfg, num_workers=1, seed=0) as loader:
        started = time.time()
        with pytest.raises(LoaderError, match=r'CropLoader-worker-0 \(pid \d+\) died with exit '
                                              r'code 1 \(an error, e.g. at start-up'):
            next(loader)
        assert time.time() - started < 30


def test_one_of_two_workers_killed_is_an_error_naming_it(tmp_path):
    from rcnn.core.loader import CropLoader, LoaderError
    cfg, roidb, feat_sym = _tiny_loader_inputs(tmp_path)
    with CropLoader(feat_sym, roidb, 2, cfg=cfg, num_workers=2, seed=0) as loader:
        next(loader)
        victim = loader.workers[1]
        os.kill(victim.pid, signal.SIGKILL)
        with pytest.raises(LoaderError, match=r'CropLoader-worker-1 \(pid %d\) died with exit '
                                              r'code -9' % victim.pid):
            for _ in range(20):
                try:
                    next(loader)
                except StopIteration:
                    loader.reset()
        started = time.time()
    assert time.time() - started < 5                  # close() does not wait on the dead


KILL_AT_SPAWN = '''
import os, signal, sys, time
from pathlib import Path
sys.path[:0] = [sys.argv[1], os.path.join(sys.argv[1], 'tests'),
                os.path.join(sys.argv[1], 'tests', 'core')]
import multiprocessing.util as util
import numpy as np
from rcnn.core.loader import CropLoader, LoaderError
from test_training_safety import _tiny_loader_inputs
cfg, roidb, feat_sym = _tiny_loader_inputs(Path(sys.argv[2]))
roidb = [dict(r, ballast=np.zeros(4 << 20, np.uint8)) for r in roidb]   # 16 MB of inputs
real_spawn = util.spawnv_passfds


def spawn_and_kill(path, args, passfds):      # the worker dies before reading its inputs
    pid = real_spawn(path, args, passfds)
    if any('spawn_main' in str(a) for a in args):
        os.kill(pid, signal.SIGKILL)
    return pid


util.spawnv_passfds = spawn_and_kill
try:
    with CropLoader(feat_sym, roidb, 2, cfg=cfg, num_workers=1, seed=0) as loader:
        next(loader)
except LoaderError as err:
    print('LoaderError: %s' % err)
'''


def test_a_worker_killed_while_receiving_its_inputs_does_not_hang_the_parent(tmp_path):
    """Python's spawn writes a worker's arguments into a pipe the parent itself reads from
    until the write ends: with megabytes of roidb in it, a worker killed at start-up used to
    block the parent forever."""
    proc = subprocess.run([sys.executable, '-c', KILL_AT_SPAWN, str(ROOT), str(tmp_path)],
                          capture_output=True, text=True, timeout=90, env=train_env())
    assert re.search(r'LoaderError: CropLoader worker CropLoader-worker-0 \(pid \d+\) died with '
                     r'exit code -9', proc.stdout), proc.stdout + proc.stderr[-2000:]
