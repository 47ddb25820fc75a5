"""Shared fixtures: the project root and the test folders on sys.path, the real data in
../shared, train.py's main run in the test process, and the uninterrupted training run that
resumed runs are compared with."""
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('RETINAFACE_SHARED', ROOT.parent / 'shared'))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# tests/<package>/ mirrors rcnn/<package>/; a test module may use another's helpers by its
# module name (every test file name is unique across the folders)
for _folder in sorted(Path(__file__).resolve().parent.iterdir()):
    if _folder.is_dir() and not _folder.name.startswith(('.', '_')) \
            and str(_folder) not in sys.path:
        sys.path.append(str(_folder))


def shared_path(*parts):
    """Path under ../shared, or skip the calling test with a clear reason when absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip('real data %s not found (../shared is absent; see ../shared/README.md)' % path)
    return path


@pytest.fixture
def mnet25_prefix():
    """Prefix of the released mnet.25 checkpoint (epoch 0)."""
    return str(shared_path('models', 'mnet.25') / 'mnet.25')


@pytest.fixture
def dlib_faces():
    """Root of the real dlib photos in the RetinaFace layout (train/ and val/)."""
    return shared_path('data', 'dlib_faces')


# train.py flags (besides --prefix, --dataset_path, --root_path) of the uninterrupted run that a
# killed or interrupted run, resumed with the same flags, must end equal to: mnet from scratch,
# batch 1 with one loader worker, seed 3, lr x0.1 at epochs 1 and 2 (iteration 8 on the 8
# records of the dlib photos and their mirrors), 10 iterations, a checkpoint every 2 (saving a
# checkpoint leaves the parameters as they are, so a run without --checkpoint_iters ends equal)
RESUME_REFERENCE_FLAGS = ('--network', 'mnet', '--batch_images', '1', '--workers', '1',
                          '--frequent', '1', '--seed', '3', '--lr_step', '1,2',
                          '--max_iters', '10', '--checkpoint_iters', '2')


def train_env():
    """The environment of train.py runs: CPU only, and a fixed thread count (results of runs
    compared bit for bit must use the same one)."""
    env = dict(os.environ)
    env.pop('CUDA_VISIBLE_DEVICES', None)
    env.setdefault('OMP_NUM_THREADS', '2')
    return env


def train_in_process(argv, capsys):
    """``train.main(argv)`` in the test process, as a CompletedProcess (its exit status, stdout,
    stderr): for runs whose assertions need no process boundary (no kill, no Ctrl-C, no
    __main__ set-up): a process of their own spends ~3 s of CPU importing MXNet, longer than a
    refusal at start-up or a few iterations take. The logging handlers and level the run sets
    are undone; MXNet's native log lines (file descriptor 2) are not captured."""
    import logging
    import train
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    capsys.readouterr()
    try:
        status = train.main(list(argv))
    finally:
        for handler in root.handlers[len(handlers):]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(['train.py', *argv], status, out, err)


@pytest.fixture(scope='session')
def resume_reference(tmp_path_factory):
    """The stdout of train.py with RESUME_REFERENCE_FLAGS on the dlib photos, run once for the
    tests that kill or interrupt a run and resume it (it ends with the final parameter
    digest)."""
    dlib_root = shared_path('data', 'dlib_faces')
    folder = tmp_path_factory.mktemp('resume-reference')
    proc = subprocess.run([sys.executable, str(ROOT / 'train.py'), '--prefix', str(folder / 'ref'),
                           *RESUME_REFERENCE_FLAGS, '--dataset_path', str(dlib_root),
                           '--root_path', str(folder)],
                          cwd=str(ROOT), env=train_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture
def no_decoding(monkeypatch):
    """Image sizes must come from the file headers alone: the full-decode fallback fails."""
    from rcnn.dataset import image_header

    def fail(path):
        raise AssertionError('%s was decoded in full instead of read from its header' % path)
    monkeypatch.setattr(image_header, '_decoded_size', fail)


@pytest.fixture(autouse=True)
def _restore_environment():
    """Each test sees the environment the session started with: code under test that sets
    variables for MXNet before its import (the engine, the thread count) must not leak them
    into later tests' subprocesses."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        _restore_environ(saved)


def terminal_sigint():
    """``preexec_fn`` for a child the test interrupts as a terminal's Ctrl-C does: SIGINT back
    to its default, which Python turns into KeyboardInterrupt. A test session started from a
    background job inherits SIGINT ignored, and so would every child without this."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _restore_environ(saved):
    """Put back ``saved`` changing only the variables that differ, after MXNet's engine threads
    went idle: glibc's setenv / unsetenv are not safe while another thread calls getenv, and
    MXNet's operators read variables (oneDNN's among them) from their engine threads, so a
    wholesale ``os.environ.clear()`` under running operators crashes the process."""
    mxnet = sys.modules.get('mxnet')
    if mxnet is not None:
        mxnet.nd.waitall()
    for key in [key for key in os.environ if key not in saved]:
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _restore_logging():
    """Each test starts with the root logger the session had: a training or tool run inside the
    test process installs handlers (its console, its -train.log) that would otherwise write
    into later tests' captured output and files."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
