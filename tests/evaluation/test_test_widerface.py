"""test_widerface.py and the WIDER test procedure (rcnn/evaluation/wider_test.py): protocol
scales, flags, output files, resume, sharding, landmarks, and end-to-end runs on the real dlib
val split with the released mnet.25, scored by the WIDER evaluator."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, shared_path
import test_widerface as twf
from rcnn.evaluation import wider_test
from rcnn.evaluation.protocols import PROTOCOLS
from rcnn.evaluation.wider_test import run_wider_test


def run(argv):
    """The library run of a test_widerface.py command line."""
    return run_wider_test(twf.parse_args(argv).options)


def test_single_protocol_scale_by_hand():
    single = PROTOCOLS['single']
    # 332 x 500: 1600 / 332 = 4.82 would make the long side 2410 > 2150 -> 2150 / 500
    assert single.scales(332, 500) == [4.3] and single.flip is False and not single.vote
    # 600 x 800: 1600 / 600 -> long side 2133 <= 2150: the short side rule holds
    assert single.scales(600, 800) == [pytest.approx(1600 / 600)]


def test_pyramid_scales_by_hand():
    # 332 x 500: base 800 / 332 -> long side 1205 > 1200 -> base 1200 / 500 = 2.4
    pyramid = PROTOCOLS['pyramid']
    assert pyramid.flip is True and pyramid.vote is True
    np.testing.assert_allclose(pyramid.scales(332, 500), [1.5, 2.4, 3.3, 4.2, 5.1])
    # 1000 x 1000: base 0.8, sizes 500..1700 -> 0.5 .. 1.7
    nms = PROTOCOLS['pyramid-nms']
    np.testing.assert_allclose(nms.scales(1000, 1000), [0.5, 0.8, 1.1, 1.4, 1.7])
    assert nms.flip is True and nms.vote is False


def test_vga_and_original_scales_by_hand():
    vga = PROTOCOLS['vga']
    # 1545 x 1986 landscape: min(640 / 1986, 480 / 1545) = 0.3107 (the short side binds)
    assert vga.scales(1545, 1986) == [pytest.approx(480 / 1545)]
    # 800 x 565 portrait: the canvas turns too: min(640 / 800, 480 / 565) = 0.8
    assert vga.scales(800, 565) == [pytest.approx(0.8)]
    # small images are scaled up: 240 x 320 -> 2.0
    assert vga.scales(240, 320) == [pytest.approx(2.0)]
    assert PROTOCOLS['original'].scales(333, 517) == [1.0]
    assert all(p.threshold == 0.02 and p.nms == 0.4 for p in PROTOCOLS.values())


def test_mode_and_protocol_flags():
    assert twf.parse_args(['--prefix', 'p']).options.protocol == 'pyramid'
    for mode, name in ((0, 'single'), (1, 'pyramid'), (2, 'pyramid-nms')):
        assert twf.parse_args(['--prefix', 'p', '--mode', str(mode)]).options.protocol == name
        args = twf.parse_args(['--prefix', 'p', '--mode', str(mode), '--protocol', name])
        assert args.options.protocol == name
    assert twf.parse_args(['--prefix', 'p', '--protocol', 'vga']).options.protocol == 'vga'
    options = twf.parse_args(['--prefix', 'p', '--protocol', 'original']).options
    assert options.threshold == 0.02
    assert twf.parse_args(['--prefix', 'p', '--thresh', '0.5']).options.threshold == 0.5
    with pytest.raises(SystemExit):
        twf.parse_args(['--prefix', 'p', '--mode', '0', '--protocol', 'pyramid'])
    with pytest.raises(SystemExit):
        twf.parse_args(['--prefix', 'p', '--protocol', 'nope'])


def test_options_refuse_bad_values():
    for bad in ({'part': 2, 'parts': 2}, {'max_images': 0}, {'thresh': 1.5}, {'threads': 0},
                {'scale_workers': 0}, {'protocol': 'nope'}, {'backend': 'tensorrt'},
                {'dataset': 'coco'}):
        with pytest.raises(ValueError):
            wider_test.WiderTestOptions(prefix='p', ctx_id=-1, **bad)


def test_prediction_target(tmp_path):
    images = os.path.join('data', 'val', 'images')
    name, path = wider_test.prediction_target(os.path.join(images, '0--Parade', 'a_1.jpg'), images,
                                       str(tmp_path))
    assert name == '0--Parade/a_1.jpg'
    assert path == os.path.join(str(tmp_path), '0--Parade', 'a_1.txt')


def test_bad_flags_exit():
    for argv in (['--prefix', 'p', '--part', '2', '--parts', '2'],
                 ['--prefix', 'p', '--mode', '3'], ['--prefix', 'p', '--thresh', '1.5'],
                 ['--prefix', 'p', '--dataset', 'coco'], [],
                 ['--prefix', 'p', '--threads', '0'], ['--prefix', 'p', '--scale-workers', '0'],
                 ['--prefix', 'p', '--backend', 'tensorrt'], ['--prefix', 'p', '--flip-batch', 'x'],
                 ['--prefix', 'p', '--backend', 'onnxruntime', '--gpu', '0']):
        with pytest.raises(SystemExit):
            twf.parse_args(argv)


def test_flip_batch_auto_is_on_for_a_gpu_only():
    assert twf.parse_args(['--prefix', 'p', '--gpu', '0']).flip_batch is True
    assert twf.parse_args(['--prefix', 'p', '--gpu', '-1']).flip_batch is False
    assert twf.parse_args(['--prefix', 'p', '--gpu', '-1', '--flip-batch', 'on']).flip_batch


def test_help_explains_flags_and_shows_every_default():
    out = subprocess.run([sys.executable, str(ROOT / 'test_widerface.py'), '--help'],
                         capture_output=True, text=True, cwd=str(ROOT), timeout=120)
    assert out.returncode == 0
    for flag in ('--network', '--dataset', '--image-set', '--root-path', '--dataset-path',
                 '--gpu', '--prefix', '--epoch', '--output', '--nocrop', '--thresh', '--mode',
                 '--protocol', '--landmarks', '--part', '--parts', '--overwrite', '--backend',
                 '--threads', '--flip-batch', '--scale-workers', '--serial'):
        assert flag in out.stdout
    text = ' '.join(out.stdout.split())
    for shown in ('(default: net3)', '(default: val)', '(default: ./data)',
                  '(default: ./data/retinaface)', '(default: 0)', '(default: ./wout)',
                  "default: the protocol's (0.02", '(default: 1, unless --protocol',
                  '(default: mxnet)', '(default: auto)', '(default: 1)'):
        assert shown in text, shown
    assert 'Subgraph backend' not in out.stdout + out.stderr


def test_read_existing(tmp_path):
    path = tmp_path / 'e' / 'img.txt'
    path.parent.mkdir()
    path.write_text('e/img.jpg\n2\n10 20 30 40 0.9\n1 2 3 4 0.5\n')
    np.testing.assert_allclose(wider_test.read_existing(str(path), 'e/img.jpg'),
                               [[10, 20, 40, 60, 0.9], [1, 2, 4, 6, 0.5]])
    path.write_text('e/img.jpg\n3\n10 20 30 40 0.9\n')       # truncated: recompute
    assert wider_test.read_existing(str(path), 'e/img.jpg') is None
    assert wider_test.read_existing(str(tmp_path / 'missing.txt'), 'e/missing.jpg') is None


def dlib_argv(prefix, dataset, tmp_path, out, *extra):
    return ['--prefix', prefix, '--epoch', '0', '--gpu', '-1', '--dataset-path', str(dataset),
            '--root-path', str(tmp_path / 'root'), '--output', str(out), '--quiet'] + list(extra)


def read_submission(path):
    lines = path.read_text().splitlines()
    return lines[0], int(lines[1]), [line.split() for line in lines[2:]]


def test_shard_resume_and_overwrite(mnet25_prefix, dlib_faces, tmp_path):
    out = tmp_path / 'wout'
    names = [line[1:].strip() for line in (dlib_faces / 'val' / 'label.txt').read_text()
             .splitlines() if line.startswith('#')]
    # shard 1 of 3 -> images 1 and 4 of the label file, mode 0, only the sure faces
    argv = dlib_argv(mnet25_prefix, dlib_faces, tmp_path, out, '--mode', '0', '--thresh', '0.5',
                     '--part', '1', '--parts', '3')
    summary = run(argv)
    assert (summary['images'], summary['detected'], summary['resumed']) == (2, 2, 0)
    written = sorted(str(p.relative_to(out)) for p in out.rglob('*.txt'))
    assert written == sorted(os.path.splitext(names[i])[0] + '.txt' for i in (1, 4))
    first = out / (os.path.splitext(names[1])[0] + '.txt')
    header, count, rows = read_submission(first)
    assert header == names[1] and count == len(rows) > 0
    assert all(len(r) == 5 and float(r[4]) >= 0.5 for r in rows)
    assert summary['recall'] == 1.0 and summary['faces'] == summary['found'] > 0
    # a second run resumes both; a corrupt file is recomputed
    second = out / (os.path.splitext(names[4])[0] + '.txt')
    second.write_text('garbage\n')
    before = first.read_text()
    summary = run(argv)
    assert (summary['detected'], summary['resumed']) == (1, 1)
    assert first.read_text() == before
    assert read_submission(second)[0] == names[4]
    assert summary['recall'] == 1.0
    # --overwrite recomputes everything
    summary = run(argv + ['--overwrite'])
    assert (summary['detected'], summary['resumed']) == (2, 0)
    assert not list(out.rglob('*.tmp'))


def test_mode1_schedules_write_the_files_of_the_serial_path(mnet25_prefix, dlib_faces, tmp_path,
                                                            monkeypatch):
    """Mode 1 on one real photo: the serial path, the flip batch, and (onnxruntime) several
    scales at once write byte-identical files for a backend; the backends agree to 1e-3 px."""
    runs = {'serial': ['--serial'], 'flip-batch': ['--flip-batch', 'on']}
    try:
        import onnxruntime  # noqa: F401
        runs['ort-serial'] = ['--backend', 'onnxruntime', '--serial']
        runs['ort-concurrent'] = ['--backend', 'onnxruntime', '--threads', '1',
                                  '--scale-workers', '3', '--flip-batch', 'on']
    except ImportError:
        pass
    monkeypatch.setenv('RETINAFACE_CACHE_DIR', str(tmp_path / 'onnx-cache'))
    texts = {}
    for name, extra in runs.items():
        out = tmp_path / name
        argv = dlib_argv(mnet25_prefix, dlib_faces, tmp_path, out, '--mode', '1', '--part', '0',
                         '--parts', '5', *extra)
        assert run(argv)['detected'] == 1
        (path,) = out.rglob('*.txt')
        texts[name] = path.read_text()
    assert read_submission_text(texts['serial'])[1] > 0
    assert texts['flip-batch'] == texts['serial']
    if 'ort-serial' in texts:
        assert texts['ort-concurrent'] == texts['ort-serial']
        ours = np.array(read_submission_text(texts['ort-serial'])[2], dtype=float)
        serial = np.array(read_submission_text(texts['serial'])[2], dtype=float)
        assert ours.shape == serial.shape
        np.testing.assert_allclose(ours[:, :4], serial[:, :4], atol=1.0)  # %d-rounded pixels


@pytest.mark.slow
def test_naive_and_threaded_engines_write_the_same_files(mnet25_prefix, dlib_faces, tmp_path):
    """test_widerface.py as a script (the engine is chosen before mxnet is imported): the CPU
    default (NaiveEngine) and MXNet's threaded engine write byte-identical mode-1 files."""
    env = {k: v for k, v in os.environ.items() if k != 'MXNET_ENGINE_TYPE'}
    texts = {}
    for engine in ('auto', 'threaded'):
        out = tmp_path / engine
        argv = dlib_argv(mnet25_prefix, dlib_faces, tmp_path, out, '--mode', '1', '--part', '2',
                         '--parts', '5', '--engine', engine)
        done = subprocess.run([sys.executable, str(ROOT / 'test_widerface.py')] + argv,
                              cwd=str(ROOT), env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        want = 'NaiveEngine' if engine == 'auto' else 'ThreadedEnginePerDevice'
        assert 'MXNet engine: %s' % want in done.stderr
        (path,) = out.rglob('*.txt')
        texts[engine] = path.read_text()
    assert read_submission_text(texts['auto'])[1] > 0
    assert texts['auto'] == texts['threaded']


def read_submission_text(text):
    lines = text.splitlines()
    return lines[0], int(lines[1]), [line.split() for line in lines[2:]]


@pytest.mark.slow
@pytest.mark.parametrize('mode', [0, 1])
def test_end_to_end_dlib_val(mnet25_prefix, dlib_faces, tmp_path, mode, capsys):
    """Mode 0 and mode 1 (pyramid, flips, voting) over the 5 dlib val images on the CPU, then
    the evaluator on the official-format .mat ground truth: every face is large and clear."""
    from rcnn.evaluation.widerface import evaluate
    gt_dir = shared_path('data', 'dlib_faces', 'val', 'gt')
    out = tmp_path / ('wout%d' % mode)
    assert twf.main(dlib_argv(mnet25_prefix, dlib_faces, tmp_path, out, '--mode', str(mode))) == 0
    printed = capsys.readouterr().out
    assert '5 images (5 detected, 0 resumed)' in printed and 'images/s' in printed
    assert 'recall at IoU 0.5: 1.0000 (25 / 25 faces)' in printed
    assert len(list(out.rglob('*.txt'))) == 5
    scores = [float(r[4]) for p in out.rglob('*.txt') for r in read_submission(p)[2]]
    assert min(scores) >= 0.02
    aps = evaluate(str(out), str(gt_dir))
    assert aps == {'easy': 1.0, 'medium': 1.0, 'hard': 1.0}


def test_landmark_columns_by_hand(tmp_path):
    path = tmp_path / 'e' / 'img.txt'
    boxes = np.array([[10.7, 20.2, 40.9, 60.5, 0.875]])
    points = np.arange(10, dtype=np.float64).reshape(1, 5, 2) * 1.25 + 100.04
    wider_test.write_predictions(str(path), 'e/img.jpg', boxes, points)
    assert path.read_text() == ('e/img.jpg\n1\n10 20 30 40 0.875 100.0 101.3 102.5 103.8 105.0 '
                                '106.3 107.5 108.8 110.0 111.3\n')
    np.testing.assert_allclose(wider_test.read_existing(str(path), 'e/img.jpg', landmarks=True),
                               [[10, 20, 40, 60, 0.875]])
    # a file without the landmark columns is recomputed in a --landmarks run
    wider_test.write_predictions(str(path), 'e/img.jpg', boxes)
    assert wider_test.read_existing(str(path), 'e/img.jpg', landmarks=True) is None


def test_landmarks_run_adds_the_detector_landmarks(mnet25_prefix, dlib_faces, tmp_path):
    """--landmarks: the same lines as without, plus the 5 points detect() gives, and the
    manifest records it (a folder of the other format is not resumed)."""
    import cv2
    from retinaface import RetinaFace
    texts = {}
    for name, extra in (('plain', []), ('landmarks', ['--landmarks'])):
        out = tmp_path / name
        argv = dlib_argv(mnet25_prefix, dlib_faces, tmp_path, out, '--mode', '0', '--thresh',
                         '0.5', '--part', '0', '--parts', '5', *extra)
        assert run(argv)['detected'] == 1
        (path,) = out.rglob('*.txt')
        texts[name] = read_submission(path)
    header, count, rows = texts['landmarks']
    assert (header, count) == texts['plain'][:2] and count > 0
    assert [row[:5] for row in rows] == texts['plain'][2]
    assert all(len(row) == 15 for row in rows)
    image = cv2.imread(str(dlib_faces / 'val' / 'images' / header))
    detector = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    faces, points = detector.detect(image, 0.5, PROTOCOLS['single'].scales(*image.shape[:2]))
    np.testing.assert_allclose(np.array([row[5:] for row in rows], dtype=float),
                               points.reshape(-1, 10), atol=0.051)
    assert run(argv)['resumed'] == 1
    with pytest.raises(Exception, match='landmarks'):
        run(argv[:-1])


def test_the_library_imports_no_script_and_no_tool():
    """rcnn/ runs the WIDER test as a library function: no module there imports a top-level
    script (test_widerface, retinaface, train, evaluate_widerface) or tools/."""
    import ast
    scripts = {'test_widerface', 'retinaface', 'train', 'evaluate_widerface', 'tools'}
    offenders = []
    for path in sorted((ROOT / 'rcnn').rglob('*.py')):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or '']
            else:
                continue
            offenders += ['%s: %s' % (path.relative_to(ROOT), name) for name in names
                          if name.split('.')[0] in scripts]
    assert offenders == []
