"""tools/export_onnx.py and tools/quantize.py: every bad input is one line on stderr naming
the file or argument, a non-zero exit and no traceback (the traceback only with --debug)."""
import os
import subprocess
import sys

import mxnet as mx
import pytest

from conftest import ROOT
from tools import export_onnx as export_cli
from tools import quantize as quantize_cli


def _one_line_error(capsys, prog):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith('%s: error: ' % prog), err
    assert 'Traceback' not in err
    return lines[0]


@pytest.fixture
def calib_dir(dlib_faces):
    return str(dlib_faces / 'train' / 'images')


def test_export_missing_checkpoint(tmp_path, capsys):
    prefix = str(tmp_path / 'absent')
    assert export_cli.main(['--prefix', prefix, '--out', str(tmp_path / 'x.onnx')]) != 0
    assert 'absent-symbol.json not found' in _one_line_error(capsys, 'export_onnx.py')
    with pytest.raises(FileNotFoundError):
        export_cli.main(['--prefix', prefix, '--out', str(tmp_path / 'x.onnx'), '--debug'])


def test_export_mismatched_checkpoint_names_the_array(tmp_path, capsys, mnet25_prefix):
    import shutil
    prefix = str(tmp_path / 'cut')
    shutil.copyfile(mnet25_prefix + '-symbol.json', prefix + '-symbol.json')
    saved = mx.nd.load(mnet25_prefix + '-0000.params')
    del saved['arg:face_rpn_cls_score_stride32_bias']
    mx.nd.save(prefix + '-0000.params', saved)
    assert export_cli.main(['--prefix', prefix, '--out', str(tmp_path / 'x.onnx')]) != 0
    line = _one_line_error(capsys, 'export_onnx.py')
    assert 'cut-0000.params' in line and 'arg:face_rpn_cls_score_stride32_bias' in line
    assert not os.path.exists(tmp_path / 'x.onnx')


def test_quantize_missing_checkpoint(tmp_path, capsys, calib_dir):
    assert quantize_cli.main(['--prefix', str(tmp_path / 'absent'), '--calib', calib_dir,
                              '--out', str(tmp_path / 'q')]) != 0
    assert 'absent-symbol.json not found' in _one_line_error(capsys, 'quantize.py')


def test_quantize_empty_calibration_folder(tmp_path, capsys, mnet25_prefix):
    empty = tmp_path / 'empty'
    (empty / 'sub').mkdir(parents=True)
    (empty / 'notes.txt').write_text('no images here')
    assert quantize_cli.main(['--prefix', mnet25_prefix, '--calib', str(empty),
                              '--out', str(tmp_path / 'q')]) != 0
    line = _one_line_error(capsys, 'quantize.py')
    assert 'no calibration image' in line and str(empty) in line


def test_quantize_missing_calibration_source(tmp_path, capsys, mnet25_prefix):
    assert quantize_cli.main(['--prefix', mnet25_prefix, '--calib', str(tmp_path / 'nowhere'),
                              '--out', str(tmp_path / 'q')]) != 0
    assert 'nowhere not found' in _one_line_error(capsys, 'quantize.py')


def test_quantize_unreadable_calibration_images(tmp_path, capsys, mnet25_prefix):
    folder = tmp_path / 'corrupt'
    folder.mkdir()
    (folder / 'a.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    assert quantize_cli.main(['--prefix', mnet25_prefix, '--calib', str(folder),
                              '--out', str(tmp_path / 'q')]) != 0
    line = _one_line_error(capsys, 'quantize.py')
    assert 'no calibration image could be read' in line and 'a.jpg' in line
    assert not os.path.exists(str(tmp_path / 'q-symbol.json'))


def test_quantize_unlistable_calibration_folder(tmp_path, capsys, mnet25_prefix, monkeypatch):
    """A folder that cannot be listed (permissions; simulated, the tests may run as root)."""
    folder = tmp_path / 'locked'
    (folder / 'inner').mkdir(parents=True)
    real_scandir = os.scandir

    def scandir(path='.'):
        if os.fspath(path) == str(folder / 'inner'):
            raise PermissionError(13, 'Permission denied', os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, 'scandir', scandir)
    assert quantize_cli.main(['--prefix', mnet25_prefix, '--calib', str(folder),
                              '--out', str(tmp_path / 'q')]) != 0
    line = _one_line_error(capsys, 'quantize.py')
    assert 'locked/inner is not readable' in line and 'Permission denied' in line


def test_quantize_cli_process_has_no_traceback(tmp_path):
    """The real process: exit status and stderr, as a user sees them."""
    result = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'quantize.py'), '--prefix', str(tmp_path / 'absent'),
         '--calib', str(tmp_path), '--out', str(tmp_path / 'q')],
        capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(tmp_path) in lines[0], result.stderr


def test_one_line_messages_by_hand():
    from rcnn.utils.cli_errors import one_line
    assert one_line(KeyError('parameters missing for 2 graph inputs: a, b')) == \
        'parameters missing for 2 graph inputs: a, b'
    assert one_line(ValueError('')) == 'ValueError'
    mxnet_style = RuntimeError('Traceback (most recent call last):\n  File "x.cc", line 1\n'
                               'MXNetError: Check failed: shape mismatch\n[bt] (0) lib.so')
    assert one_line(mxnet_style) == 'MXNetError: Check failed: shape mismatch'


# ----------------------------------------------------------------------------- export sizes

@pytest.mark.parametrize('argv, flag', [(['--static', '20000x20000'], '--static'),
                                        (['--static', '640x8193'], '--static'),
                                        (['--input-shape', '1,3,9000,640'], '--input-shape'),
                                        (['--tol', 'nan'], '--tol'), (['--tol', '-1'], '--tol'),
                                        (['--threads', '0'], '--threads'),
                                        (['--epoch', '-1'], '--epoch')])
def test_export_refuses_sizes_and_values_it_cannot_honour(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_cli.parse_args(['--prefix', 'p', '--out', 'x.onnx'] + argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert 'argument %s' % flag in err
    if 'static' in flag or 'shape' in flag:
        assert 'at most 8192' in err


def test_export_size_limit_is_the_detectors():
    from rcnn.deploy.onnx_export import MAX_INPUT_SIDE
    from rcnn.inference.detector import MAX_SCALED_SIDE
    assert MAX_INPUT_SIDE == MAX_SCALED_SIDE
    assert export_cli.parse_args(['--prefix', 'p', '--out', 'x.onnx', '--static',
                                  '8192x8192']).input_shape == (1, 3, 8192, 8192)


def test_export_memory_plan_lies_between_the_largest_activation_and_their_sum(mnet25_prefix):
    """Bounds read from the graph itself: one forward holds at least its largest activation
    and at most all of them (no buffer reused)."""
    import numpy as np
    from rcnn.deploy.onnx_export import forward_memory_bytes
    sym = mx.sym.load(mnet25_prefix + '-symbol.json')
    shape = (1, 3, 1280, 1280)
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=shape)
    sizes = [4 * int(np.prod(s)) for name, s in zip(internals.list_outputs(), out_shapes)
             if name.endswith('_output')]
    planned = forward_memory_bytes(sym, shape)
    assert max(sizes) <= planned <= sum(sizes)
    assert forward_memory_bytes(sym, (2,) + shape[1:]) == pytest.approx(2 * planned)


def test_export_whose_check_would_not_fit_in_memory_is_refused(mnet25_prefix, tmp_path,
                                                               capsys, monkeypatch):
    from rcnn.utils import machine
    monkeypatch.setattr(machine, 'available_memory', lambda: 2 ** 20)
    out = tmp_path / 'x.onnx'
    for extra in ([], ['--layout', 'insightface']):
        assert export_cli.main(['--prefix', mnet25_prefix, '--out', str(out), '--static',
                                '640x640'] + extra) == 1
        line = _one_line_error(capsys, 'export_onnx.py')
        assert '--static 640x640' in line and 'GB of memory are available' in line
        assert '--no-verify' in line
        assert not out.exists() and not list(tmp_path.iterdir())


def test_export_out_that_is_a_folder_names_the_flag(mnet25_prefix, tmp_path, capsys):
    folder = tmp_path / 'models'
    folder.mkdir()
    assert export_cli.main(['--prefix', mnet25_prefix, '--out', str(folder)]) == 1
    line = _one_line_error(capsys, 'export_onnx.py')
    assert line.startswith('export_onnx.py: error: --out %s is a folder' % folder)
    assert '.tmp' not in line and list(folder.iterdir()) == []
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    assert export_cli.main(['--prefix', mnet25_prefix, '--out', str(blocker / 'x.onnx')]) == 1
    assert 'lies under the existing file %s' % blocker in _one_line_error(capsys,
                                                                          'export_onnx.py')


# ----------------------------------------------------------------------------- quantize inputs

def _calibration_copy(dlib_faces, folder, truncated=None):
    """The dlib train photos copied into ``folder``, plus a half-length copy of one named
    ``truncated`` (sorted first) when given."""
    import shutil
    folder.mkdir()
    photos = sorted((dlib_faces / 'train' / 'images' / '0--dlib').glob('*.jpg'))
    for photo in photos:
        shutil.copy(str(photo), str(folder))
    if truncated:
        data = photos[0].read_bytes()
        (folder / truncated).write_bytes(data[:len(data) // 2])
    return folder


def _params(prefix):
    return {k: v.asnumpy() for k, v in mx.nd.load(prefix + '-0000.params').items()}


@pytest.mark.skipif(not mx.runtime.Features().is_enabled('MKLDNN'),
                    reason='this MXNet build has no MKLDNN (INT8 kernels)')
def test_quantize_skips_a_truncated_calibration_image_by_name(tmp_path, caplog, dlib_faces,
                                                              mnet25_prefix):
    """The INT8 model calibrated with a truncated JPEG among the images is the model calibrated
    on the whole images alone; the warning names the file; --max-images counts readable images."""
    import numpy as np
    clean = _calibration_copy(dlib_faces, tmp_path / 'clean')
    dirty = _calibration_copy(dlib_faces, tmp_path / 'dirty', truncated='0_cut.jpg')
    common = ['--prefix', mnet25_prefix, '--calib-mode', 'naive', '--input-size', '320x240']
    assert quantize_cli.main(common + ['--calib', str(clean), '--out',
                                       str(tmp_path / 'clean-int8')]) == 0
    caplog.clear()
    caplog.set_level('INFO')
    assert quantize_cli.main(common + ['--calib', str(dirty), '--out', str(tmp_path / 'dirty-int8'),
                                       '--max-images', '4']) == 0
    err = caplog.text
    assert 'calibration image skipped' in err and '0_cut.jpg' in err and 'truncated' in err
    assert 'calibrating on 4 images at 320x240' in err
    want, got = _params(str(tmp_path / 'clean-int8')), _params(str(tmp_path / 'dirty-int8'))
    assert sorted(want) == sorted(got)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize('argv, flag', [(['--max-images', '0'], '--max-images'),
                                        (['--max-images', '-3'], '--max-images'),
                                        (['--input-size', '9000x480'], '--input-size'),
                                        (['--epoch', '-1'], '--epoch')])
def test_quantize_refuses_meaningless_flags(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        quantize_cli.parse_args(['--prefix', 'p', '--out', 'q', '--calib', 'c'] + argv)
    assert exit_info.value.code == 2
    assert 'argument %s' % flag in capsys.readouterr().err


def test_quantize_out_naming_a_folder_is_refused(tmp_path, capsys, mnet25_prefix, calib_dir):
    folder = tmp_path / 'models'
    folder.mkdir()
    for out in (str(folder) + '/', str(folder)):
        assert quantize_cli.main(['--prefix', mnet25_prefix, '--calib', calib_dir,
                                  '--out', out]) != 0
        line = _one_line_error(capsys, 'quantize.py')
        assert '--out %s names a folder' % out in line and 'mnet25-int8' in line
    assert list(folder.iterdir()) == []


def test_quantize_calibration_batch_beyond_memory_is_refused(tmp_path, capsys, mnet25_prefix,
                                                             calib_dir, monkeypatch):
    from rcnn.deploy import quantize
    from rcnn.utils import machine
    with pytest.raises(MemoryError, match='1000 calibration images at 8192x8192 take 750.0 GB'):
        quantize.check_calibration_memory(1000, (8192, 8192), available=2 ** 30)
    quantize.check_calibration_memory(4, (640, 480), available=2 ** 30)
    monkeypatch.setattr(machine, 'available_memory', lambda: 2 ** 20)
    assert quantize_cli.main(['--prefix', mnet25_prefix, '--calib', calib_dir,
                              '--out', str(tmp_path / 'q')]) != 0
    line = _one_line_error(capsys, 'quantize.py')
    assert 'calibration images at 640x480' in line and '--max-images' in line
    assert not list(tmp_path.iterdir())


def test_export_check_that_crashes_is_one_line(mnet25_prefix, tmp_path):
    """The check runs in its own process: MXNet's MKLDNN depthwise convolution dies with SIGFPE
    at a 4096x2048 input (MXNet 1.9.1); the tool survives it and says so in one line. (A build
    without that failure checks the export and succeeds.)"""
    out = tmp_path / 'big.onnx'
    result = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'export_onnx.py'), '--prefix', mnet25_prefix,
         '--out', str(out), '--static', '4096x2048'],
        capture_output=True, text=True, timeout=600, cwd=str(ROOT),
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode in (0, 1), result.stderr
    assert out.is_file()
    if result.returncode == 1:
        lines = [line for line in result.stderr.splitlines()
                 if line.startswith('export_onnx.py: error:')]
        assert len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr
        assert '--static 4096x2048' in lines[0] and 'died with signal SIGFPE' in lines[0]
        assert 'MXNET_MKLDNN_ENABLED=0' in lines[0] and 'unchecked' in lines[0]


def test_export_check_failure_crosses_the_process_boundary(mnet25_prefix, tmp_path, capsys):
    """--tol 0: the isolated check's mismatch comes back as the usual FAILED line."""
    out = tmp_path / 'x.onnx'
    assert export_cli.main(['--prefix', mnet25_prefix, '--out', str(out), '--tol', '0']) == 1
    err = capsys.readouterr().err
    assert err.startswith('FAILED: ') and 'differs from MXNet' in err and 'tol 0' in err


def test_outputs_onto_the_source_checkpoint_are_refused(mnet25_prefix, tmp_path, capsys):
    """Writing the INT8 model or the ONNX file over the checkpoint being read would destroy
    it: refused before anything is read, the checkpoint unchanged."""
    import shutil
    prefix = str(tmp_path / 'model')
    for suffix in ('-symbol.json', '-0000.params'):
        shutil.copyfile(mnet25_prefix + suffix, prefix + suffix)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert quantize_cli.main(['--prefix', prefix, '--out', prefix, '--calib-mode', 'none']) != 0
    line = _one_line_error(capsys, 'quantize.py')
    assert line.startswith('quantize.py: error: --out: writing') and 'would overwrite' in line
    assert export_cli.main(['--prefix', prefix, '--out', prefix + '-0000.params']) != 0
    assert 'model-0000.params would overwrite' in _one_line_error(capsys, 'export_onnx.py')
    link = tmp_path / 'alias.params'
    link.symlink_to(prefix + '-0000.params')
    assert export_cli.main(['--prefix', prefix, '--out', str(link), '--no-verify']) != 0
    assert 'would overwrite the input' in _one_line_error(capsys, 'export_onnx.py')
    link.unlink()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
