"""tools/detect.py on hostile input: it never writes over its input photos, skips an unusable
image by name and processes the rest, refuses meaningless flags and outputs with one line, and
keeps the list of the images done on Ctrl-C."""
import contextlib
import functools
import io
import json
import os
import shutil
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT, shared_path, terminal_sigint
from test_detect_cli import load_cli

SCRIPT = ROOT / 'tools' / 'detect.py'


@functools.lru_cache(maxsize=None)
def _cli():
    return load_cli()


def detect_in_process(argv):
    """tools/detect.py's main in this process, as a CompletedProcess (exit status, stdout,
    stderr): for the checks of its exit status, its printed lines and its files (a process of
    its own spends most of its time importing MXNet). Its log lines need its own process."""
    argv = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = _cli().main(argv)
        except SystemExit as exc:              # argparse's refusals
            status = exc.code
    return subprocess.CompletedProcess(['detect.py', *argv], status, out.getvalue(),
                                       err.getvalue())


def _run_default_gpu(prefix, *args):
    return detect_in_process(['--prefix', prefix, '--epoch', '0', *args])


def _run(prefix, *args):
    return detect_in_process(['--prefix', prefix, '--epoch', '0', '--gpu', '-1', *args])


def _run_process(prefix, *args):
    """tools/detect.py in a process of its own (its warnings come from its logging set-up)."""
    return subprocess.run([sys.executable, str(SCRIPT), '--prefix', prefix, '--epoch', '0',
                           '--gpu', '-1']
                          + [str(a) for a in args], capture_output=True, text=True,
                          cwd=str(ROOT), timeout=300)


def test_output_onto_the_inputs_is_refused(mnet25_prefix, tmp_path):
    photos = tmp_path / 'photos'
    photos.mkdir()
    shutil.copy(str(shared_path('images', 'dogs.jpg')), str(photos))
    original = (photos / 'dogs.jpg').read_bytes()
    link = tmp_path / 'link'
    link.symlink_to(photos)
    for argv in ([photos, '--out', photos], [photos / 'dogs.jpg', '--out', photos],
                 [photos, '--out', link], [photos, '--out', str(photos) + '/./']):
        result = _run(mnet25_prefix, *argv)
        assert result.returncode == 2, result.stderr
        assert 'would overwrite the input image' in result.stderr and 'dogs.jpg' in result.stderr
        assert 'Traceback' not in result.stderr
        assert (photos / 'dogs.jpg').read_bytes() == original
    # a hard link of the input where a drawn copy would go
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'dogs.jpg').hardlink_to(photos / 'dogs.jpg')
    result = _run(mnet25_prefix, photos, '--out', out)
    assert result.returncode == 2 and 'would overwrite the input image' in result.stderr
    assert (photos / 'dogs.jpg').read_bytes() == original
    # --json only (nothing drawn) into the input folder is fine
    result = _run(mnet25_prefix, photos, '--out', photos, '--json', '--no-draw')
    assert result.returncode == 0, result.stderr
    assert (photos / 'dogs.jpg').read_bytes() == original


def test_truncated_image_is_reported_by_name(mnet25_prefix, tmp_path):
    photos = tmp_path / 'photos'
    photos.mkdir()
    data = shared_path('images', 'Tom_Cruise_avp_2014_4.jpg').read_bytes()
    (photos / 'cut.jpg').write_bytes(data[:len(data) // 2])
    result = _run_process(mnet25_prefix, photos, '--out', tmp_path / 'out', '--json')
    assert result.returncode == 1
    assert 'cut.jpg' in result.stderr and 'truncated' in result.stderr
    assert not (tmp_path / 'out' / 'cut.jpg').exists()


def _one_error_line(stderr, *fragments):
    """The single ``detect.py: error:`` line of ``stderr``, holding every fragment."""
    assert 'Traceback' not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith('detect.py: error:')]
    assert len(errors) == 1, stderr
    for fragment in fragments:
        assert fragment in errors[0], stderr
    return errors[0]


def test_an_unusable_image_is_skipped_by_name_and_the_rest_processed(mnet25_prefix, tmp_path):
    """A 1x1 image (the detector refuses it) between two photos: named, skipped, the photo
    after it processed, detections.json written, exit status 1."""
    photos = tmp_path / 'photos'
    photos.mkdir()
    shutil.copy(str(shared_path('images', 'dogs.jpg')), str(photos / 'a_dogs.jpg'))
    assert cv2.imwrite(str(photos / 'b_dot.png'), np.full((1, 1, 3), 200, np.uint8))
    shutil.copy(str(shared_path('images', 'Tom_Cruise_avp_2014_4.jpg')), str(photos / 'c_tom.jpg'))
    out = tmp_path / 'out'
    result = _run_process(mnet25_prefix, photos, '--out', out, '--json')
    assert result.returncode == 1, result.stderr
    assert 'Traceback' not in result.stderr
    warning, = [line for line in result.stderr.splitlines() if 'b_dot.png' in line]
    assert 'WARNING' in warning and '1x1 pixels' in warning and 'skipped' in warning
    assert 'b_dot.png' in result.stdout and '1 skipped' in result.stdout
    records = {os.path.basename(r['image']): r for r in
               json.loads((out / 'detections.json').read_text())}
    assert set(records) == {'a_dogs.jpg', 'b_dot.png', 'c_tom.jpg'}
    assert '1x1' in records['b_dot.png']['error'] and 'faces' not in records['b_dot.png']
    assert len(records['c_tom.jpg']['faces']) == 1
    assert (out / 'c_tom.jpg').is_file() and not (out / 'b_dot.png').exists()


def test_output_folders_that_are_files_are_one_line(mnet25_prefix, tmp_path):
    photo = shared_path('images', 'dogs.jpg')
    existing = tmp_path / 'taken'
    existing.write_text('a regular file')
    cases = [(['--out', existing], ['--out', str(existing), 'existing file']),
             (['--out', existing / 'sub'], ['--out', 'lies under the existing file']),
             (['--out', tmp_path / 'o', '--crops', existing], ['--crops', str(existing)])]
    for argv, fragments in cases:
        result = _run(mnet25_prefix, photo, *argv)
        assert result.returncode == 2, result.stderr
        _one_error_line(result.stderr, *fragments)
    assert existing.read_text() == 'a regular file'
    # a folder where detections.json would go: refused before any image is drawn
    out = tmp_path / 'out'
    (out / 'detections.json').mkdir(parents=True)
    result = _run(mnet25_prefix, photo, '--out', out, '--json')
    assert result.returncode == 2
    _one_error_line(result.stderr, 'detections.json is a folder')
    assert not (out / 'dogs.jpg').exists()
    # a file where a sub-folder of the drawings must go: refused before the first image
    photos = tmp_path / 'photos'
    (photos / 'people').mkdir(parents=True)
    shutil.copy(str(photo), str(photos / 'a.jpg'))
    shutil.copy(str(photo), str(photos / 'people' / 'b.jpg'))
    drawn = tmp_path / 'drawn'
    drawn.mkdir()
    (drawn / 'people').write_text('in the way')
    result = _run(mnet25_prefix, photos, '--out', drawn)
    assert result.returncode == 2
    _one_error_line(result.stderr, 'people/b.jpg cannot be written', 'is a file')
    assert not (drawn / 'a.jpg').exists()


@pytest.mark.parametrize('flag, value', [('--thresh', 'nan'), ('--thresh', '1.5'),
                                         ('--thresh', '-0.1'), ('--nms', 'nan'),
                                         ('--nms', '2'), ('--scales', 'nan'),
                                         ('--scales', 'inf'), ('--scales', '-1'),
                                         ('--epoch', '-1'), ('--every', '0')])
def test_meaningless_flags_are_refused_naming_the_flag(flag, value, capsys):
    cli = load_cli()
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(['x.jpg', '--prefix', 'p', '--out', 'o', flag, value])
    assert exit_info.value.code == 2
    assert 'argument %s' % flag in capsys.readouterr().err


def test_help_shows_every_default():
    """Every flag taking a value states its default in its help (the flags read from argparse
    itself; switches are off unless given)."""
    parser = load_cli().build_parser()
    assert parser.get_default('gpu') == 0          # the original's tools default to GPU 0
    text = parser.format_help()
    for action in parser._actions:
        if not action.option_strings or action.required or action.nargs == 0:
            continue
        assert 'default' in action.help, action.option_strings
        if action.default not in (None, False):
            shown = ' '.join(map(str, action.default)) if isinstance(action.default, list) \
                else str(action.default)
            assert '%(default)s' in action.help or shown in action.help, action.option_strings
    assert '(default 0, as the' in ' '.join(text.split())


def test_gpu_on_a_cpu_only_build_is_one_line(mnet25_prefix, tmp_path):
    import mxnet as mx
    if mx.context.num_gpus() > 0:
        pytest.skip('this MXNet sees a GPU: --gpu 0 runs there')
    result = _run_default_gpu(mnet25_prefix, shared_path('images', 'dogs.jpg'),
                              '--out', tmp_path / 'o')
    assert result.returncode == 2
    _one_error_line(result.stderr, '--gpu -1')
    assert not (tmp_path / 'o' / 'dogs.jpg').exists()


def test_16_bit_png_gives_the_faces_of_the_8_bit_photo(mnet25_prefix, tmp_path):
    """The reader converts a 16-bit PNG to 8 bits (cv2.IMREAD_COLOR), so the file gives the
    faces of the photo it was made from."""
    photo = cv2.imread(str(shared_path('images', 'bald_guys.jpg')))
    photos = tmp_path / 'photos'
    photos.mkdir()
    assert cv2.imwrite(str(photos / 'deep.png'), photo.astype(np.uint16) * 257)
    assert cv2.imwrite(str(photos / 'flat.png'), photo)
    out = tmp_path / 'out'
    result = _run(mnet25_prefix, photos, '--out', out, '--json', '--no-draw')
    assert result.returncode == 0, result.stderr
    records = {os.path.basename(r['image']): r for r in
               json.loads((out / 'detections.json').read_text())}
    assert len(records['flat.png']['faces']) >= 20
    assert records['deep.png']['faces'] == records['flat.png']['faces']


def test_ctrl_c_keeps_the_list_of_the_images_done(mnet25_prefix, tmp_path):
    photos = tmp_path / 'photos'
    photos.mkdir()
    for k in range(40):
        shutil.copy(str(shared_path('images', 'Tom_Cruise_avp_2014_4.jpg')),
                    str(photos / ('tom%02d.jpg' % k)))
    out = tmp_path / 'out'
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), '--prefix', mnet25_prefix, '--gpu', '-1', str(photos),
         '--out', str(out), '--json'], stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
        start_new_session=True, preexec_fn=terminal_sigint)
    stderr, done = [], 0
    try:
        for line in process.stderr:
            stderr.append(line)
            done += 'face(s)' in line
            if done == 2:                  # two images listed: interrupt the third
                os.killpg(process.pid, signal.SIGINT)
                break
        stderr += process.stderr.readlines()
        status = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    stderr = ''.join(stderr)
    assert status == 130, stderr
    assert 'Traceback' not in stderr and 'interrupted' in stderr
    records = json.loads((out / 'detections.json').read_text())
    assert 2 <= len(records) < 40
    assert all(len(r['faces']) == 1 for r in records)
    assert not list(out.glob('.*tmp*'))


def test_crops_that_would_replace_an_input_image_are_refused(mnet25_prefix, tmp_path):
    photos = tmp_path / 'photos'
    photos.mkdir()
    shutil.copy(str(shared_path('images', 'Tom_Cruise_avp_2014_4.jpg')), str(photos / 'tom.jpg'))
    shutil.copy(str(shared_path('images', 'dogs.jpg')), str(photos / 'tom_0.png'))
    original = (photos / 'tom_0.png').read_bytes()
    result = _run(mnet25_prefix, photos, '--out', tmp_path / 'out', '--crops', photos)
    assert result.returncode == 2
    _one_error_line(result.stderr, '--crops', 'tom_0.png', 'an input image')
    assert (photos / 'tom_0.png').read_bytes() == original
    # crops into the input folder are fine when no name can clash
    (photos / 'tom_0.png').rename(photos / 'dogs.png')
    result = _run(mnet25_prefix, photos, '--out', tmp_path / 'out', '--crops', photos,
                  '--no-draw')
    assert result.returncode == 0, result.stderr
    assert (photos / 'tom_0.png').is_file()
