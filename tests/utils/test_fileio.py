"""Atomic writes leave either the old file or the new one, never a partial file."""
import os
import stat

import pytest

from rcnn.utils.fileio import atomic_write, atomic_write_bytes, atomic_write_text


def test_write_creates_folder_and_file_with_the_usual_mode(tmp_path):
    path = tmp_path / 'sub' / 'a.txt'
    atomic_write_text(str(path), 'hello\n')
    assert path.read_text() == 'hello\n'
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert os.listdir(path.parent) == ['a.txt']


def test_a_failing_writer_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / 'model.params'
    atomic_write_bytes(str(path), b'good')

    def broken(tmp_path_):
        with open(tmp_path_, 'wb') as f:
            f.write(b'half')
        raise KeyboardInterrupt('killed mid-write')

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(path), broken)
    assert path.read_bytes() == b'good'
    assert os.listdir(tmp_path) == ['model.params']


def test_suffix_reaches_writers_that_choose_a_format_by_extension(tmp_path):
    seen = []
    atomic_write(str(tmp_path / 'out.png'), lambda p: (seen.append(p), open(p, 'wb').close()),
                 suffix='.png')
    assert seen[0].endswith('.png') and (tmp_path / 'out.png').exists()
