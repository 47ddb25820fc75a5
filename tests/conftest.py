"""Shared fixtures: the project root and the test folders on sys.path, the real data in
../shared."""
import os
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
        os.environ.clear()
        os.environ.update(saved)
