"""Image worker processes (rcnn/inference/image_workers.py, test_widerface.py --image-workers):
the plan by hand, the same files as one process, unreadable images and dead workers."""
import os
import shutil
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest

import test_widerface as twf
from conftest import terminal_sigint
from rcnn.evaluation import wider_test
from rcnn.utils import machine
from rcnn.inference.image_workers import (AUTO_BYTES_PER_WORKER, ImageWorkerError,
                                          ImageWorkerPool, plan_image_workers)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GB = 1 << 30


@pytest.mark.parametrize('requested, threads, on_gpu, cores, memory, expected', [
    ('auto', None, False, 2, None, (2, 1)),          # 2 cores: 2 processes x 1 thread
    ('auto', None, False, 1, None, (1, 1)),
    ('auto', None, False, 8, None, (4, 2)),          # at most 4 processes, 8 // 4 threads
    ('auto', None, False, 6, None, (4, 1)),
    ('auto', 2, False, 4, None, (2, 2)),             # --threads 2: 4 // 2 processes
    ('auto', 4, False, 2, None, (1, 4)),
    ('auto', None, False, 8, 5 * GB, (2, 4)),        # 5 GB free: 2 processes of 2 GB
    ('auto', None, False, 8, GB // 2, (1, 8)),       # less than one: still 1
    ('auto', None, True, 16, None, (1, None)),       # a GPU: one process, backend's threads
    ('auto', 3, True, 16, None, (1, 3)),
    (3, None, False, 2, None, (3, 1)),               # explicit counts are kept
    (2, None, True, 16, None, (2, 8)),
    (1, None, False, 16, 0, (1, 16)),
])
def test_plan_by_hand(requested, threads, on_gpu, cores, memory, expected):
    assert AUTO_BYTES_PER_WORKER == 2 * GB
    assert plan_image_workers(requested, threads, on_gpu, cores, memory) == expected


def test_plan_refuses_zero_workers():
    with pytest.raises(ValueError, match='>= 1'):
        plan_image_workers(0, None, False, 2)


def test_flag_values():
    assert twf.parse_args(['--prefix', 'p']).image_workers == 'auto'
    assert twf.parse_args(['--prefix', 'p', '--image-workers', '3']).image_workers == 3
    for bad in ('0', '-1', 'two'):
        with pytest.raises(SystemExit):
            twf.parse_args(['--prefix', 'p', '--image-workers', bad])


def test_mxnet_threads_from_the_environment(monkeypatch):
    monkeypatch.setattr(wider_test, 'usable_cores', lambda: 8)
    monkeypatch.setattr(wider_test, 'available_memory', lambda: None)
    args = SimpleNamespace(image_workers='auto', threads=None, ctx_id=-1, backend='mxnet')
    assert wider_test.plan_workers(args, {}) == (4, 2)
    assert wider_test.plan_workers(args, {'OMP_NUM_THREADS': '4'}) == (2, 4)
    args.threads = 1                       # the flag wins over the environment
    assert wider_test.plan_workers(args, {'OMP_NUM_THREADS': '4'}) == (4, 1)
    args.threads, args.backend = None, 'onnxruntime'   # OMP_NUM_THREADS is MXNet's
    assert wider_test.plan_workers(args, {'OMP_NUM_THREADS': '4'}) == (4, 2)


def _argv(prefix, dataset, root, out, *extra):
    return ['--prefix', prefix, '--gpu', '-1', '--dataset-path', str(dataset), '--image-set',
            'val', '--root-path', str(root), '--output', str(out), '--quiet'] + list(extra)


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob('*.txt')}


def test_workers_write_the_files_of_one_process(mnet25_prefix, dlib_faces, tmp_path):
    """Mode 1 on 3 real photos: two worker processes write byte for byte the files of the
    in-process loop with the same threads, and count the same recall."""
    summaries = {}
    for workers in (1, 2):
        argv = _argv(mnet25_prefix, dlib_faces, tmp_path / 'root', tmp_path / str(workers),
                     '--mode', '1', '--max-images', '3', '--threads', '1',
                     '--image-workers', str(workers))
        summaries[workers] = wider_test.run_wider_test(twf.parse_args(argv).options)
    one, two = _files(tmp_path / '1'), _files(tmp_path / '2')
    assert len(one) == 3 and one == two
    for key in ('detected', 'found', 'faces', 'recall'):
        assert summaries[1][key] == summaries[2][key]
    assert summaries[2]['detected'] == 3 and summaries[2]['found'] > 0


def _split_with_a_broken_image(dlib_faces, root):
    """A val split: two real photos and, between them, a truncated JPEG."""
    src = dlib_faces / 'val'
    blocks, block = [], None
    for line in (src / 'label.txt').read_text().splitlines():
        if line.startswith('#'):
            block = [line]
            blocks.append(block)
        elif block is not None:
            block.append(line)
    chosen = blocks[:2]
    broken_name = 'broken/truncated.jpg'
    lines = chosen[0] + ['# ' + broken_name, '10 10 20 20'] + chosen[1]
    (root / 'val' / 'images' / 'broken').mkdir(parents=True)
    for block in chosen:
        name = block[0][1:].strip()
        (root / 'val' / 'images' / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / 'images' / name, root / 'val' / 'images' / name)
    data = (src / 'images' / chosen[0][0][1:].strip()).read_bytes()
    (root / 'val' / 'images' / broken_name).write_bytes(data[:len(data) // 3])
    (root / 'val' / 'label.txt').write_text('\n'.join(lines) + '\n')
    return broken_name


def test_workers_skip_an_unreadable_image(mnet25_prefix, dlib_faces, tmp_path):
    dataset = tmp_path / 'data'
    broken = _split_with_a_broken_image(dlib_faces, dataset)
    argv = _argv(mnet25_prefix, dataset, tmp_path / 'root', tmp_path / 'out', '--mode', '0',
                 '--threads', '1', '--image-workers', '2')
    summary = wider_test.run_wider_test(twf.parse_args(argv).options)
    assert summary['detected'] == 2
    assert [os.path.basename(p) for p in summary['unreadable']] == [os.path.basename(broken)]
    written = _files(tmp_path / 'out')
    assert len(written) == 2 and not any('truncated' in name for name in written)


def _die_on_second(detector, item):
    """Task for the dead-worker test: the worker process is killed on item 1."""
    if item == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return item * 10


@pytest.mark.parametrize('workers', [1, 2])
def test_dead_worker_is_named(mnet25_prefix, workers):
    """The worker running item 1 is killed: ImageWorkerError naming it (with 2 workers, among
    the items in flight), no result after it. With one worker item 0 has surely finished
    first; with two, item 0 may still be running in the other worker when the pool breaks."""
    kwargs = {'prefix': mnet25_prefix, 'epoch': 0, 'ctx_id': -1, 'threads': 1}
    got = []
    with ImageWorkerPool(workers, kwargs, {'OMP_NUM_THREADS': '1'}, window=1) as pool:
        with pytest.raises(ImageWorkerError, match='died.*item-1.*rerun the same command'):
            for value in pool.imap(_die_on_second, range(4), name=lambda i: 'item-%d' % i):
                got.append(value)
    assert got == [0] if workers == 1 else got in ([], [0])


def test_checkpoint_error_is_one_line_with_workers(dlib_faces, tmp_path):
    """A checkpoint whose params file is not one: the loader's error, from a worker, one line
    on stderr, exit status 2, nothing written."""
    prefix = tmp_path / 'bad'
    src = os.path.join(os.path.dirname(ROOT), 'shared', 'models', 'mnet.25', 'mnet.25')
    if not os.path.isfile(src + '-symbol.json'):
        pytest.skip('the released mnet.25 is not in ../shared')
    shutil.copy(src + '-symbol.json', str(prefix) + '-symbol.json')
    (tmp_path / 'bad-0000.params').write_bytes(b'not a params file')
    out = tmp_path / 'out'
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'test_widerface.py')] +
                          _argv(str(prefix), dlib_faces, tmp_path / 'root', out, '--mode', '0',
                                '--image-workers', '2', '--threads', '1'),
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and 'bad-0000.params' in last
    assert 'Traceback' not in done.stderr
    assert not list(out.rglob('*.txt'))


def test_available_memory_reads_proc_meminfo():
    free = machine.available_memory()
    if not os.path.exists('/proc/meminfo'):
        assert free is None
    else:
        assert free is not None and free > 0


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_and_keeps_the_files(mnet25_prefix, dlib_faces, tmp_path):
    """SIGINT to the process group (as Ctrl-C) while 2 workers run mode 1: exit 130 with one
    line, no worker left behind, no temporary file; a rerun resumes what was written."""
    import time
    out = tmp_path / 'out'
    argv = [sys.executable, os.path.join(ROOT, 'test_widerface.py')] + _argv(
        mnet25_prefix, dlib_faces, tmp_path / 'root', out, '--mode', '1', '--threads', '1',
        '--image-workers', '2')
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=terminal_sigint)
    deadline = time.time() + 120
    while not list(out.rglob('*.txt')) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, 'the run ended before it could be interrupted'
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    ours = [line for line in stderr.splitlines() if line.startswith('interrupted: ')]
    assert len(ours) == 1 and 'rerun the same command' in ours[0]
    assert 'Traceback' not in stderr
    time.sleep(0.5)
    group = subprocess.run(['ps', '-o', 'pid=,stat=,args=', '-g', str(proc.pid)],
                           capture_output=True, text=True).stdout.splitlines()
    running = [line for line in group if line.split()[1][0] != 'Z']   # zombies wait for init
    assert running == [], 'processes left running in the group: %s' % running
    written = list(out.rglob('*.txt'))
    assert written and not list(out.rglob('*.tmp*'))
    summary = wider_test.run_wider_test(
        twf.parse_args(argv[2:] + ['--image-workers', '1']).options)
    assert summary['resumed'] == len(written) and summary['detected'] == 5 - len(written)
