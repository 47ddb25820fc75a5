"""rcnn/utils/run_lock.py: a prefix lock that cannot be created is one clear error, and the
half-built lock object leaves nothing to complain about when it is collected."""
import subprocess
import sys
from pathlib import Path

import pytest

from rcnn.utils.run_lock import PrefixLock

ROOT = Path(__file__).resolve().parents[2]


def test_a_lock_that_cannot_be_created_names_the_prefix_and_leaves_no_noise(tmp_path):
    blocker = tmp_path / 'a-file'
    blocker.write_text('x')
    prefix = str(blocker / 'm')
    with pytest.raises(OSError, match=r'--prefix %s: cannot create the lock file' % prefix):
        PrefixLock(prefix)
    # in a fresh interpreter: no "Exception ignored in PrefixLock.__del__" when it is collected
    code = ('import gc\nfrom rcnn.utils.run_lock import PrefixLock\n'
            'try:\n    PrefixLock(%r)\nexcept OSError as exc:\n    print(exc)\n'
            'gc.collect()\n' % prefix)
    proc = subprocess.run([sys.executable, '-c', code], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and 'cannot create the lock file' in proc.stdout
    assert proc.stderr == ''


def test_release_of_a_lock_is_idempotent(tmp_path):
    lock = PrefixLock(str(tmp_path / 'm'))
    assert lock.held
    lock.release()
    lock.release()
    assert not lock.held
