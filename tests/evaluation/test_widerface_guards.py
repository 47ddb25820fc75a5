"""test_widerface.py never adopts another run's files (manifest), leaves only this run's files
after --overwrite, skips missing, empty, non-image or truncated val images with a warning
(exit status 1, the other images written), and reports output errors in one line."""
import json
import os
import shutil
import stat

import numpy as np
import pytest

import test_widerface as twf
from rcnn.evaluation import wider_test
from rcnn.utils.run_manifest import MANIFEST_NAME, ManifestMismatch


def run(argv):
    """The library run of a test_widerface.py command line."""
    return wider_test.run_wider_test(twf.parse_args(argv).options)


@pytest.fixture
def val_copy(dlib_faces, tmp_path):
    """A writable copy of the dlib val split (5 photos) in the RetinaFace layout."""
    root = tmp_path / 'dlib'
    shutil.copytree(str(dlib_faces / 'val'), str(root / 'val'))
    return root


def _argv(prefix, dataset, tmp_path, out, *extra):
    # shard 1 of 3: images 1 and 4 of the label file; mode 0 at a high threshold (fast)
    return ['--prefix', str(prefix), '--epoch', '0', '--gpu', '-1', '--dataset-path',
            str(dataset), '--root-path', str(tmp_path / 'root'), '--output', str(out),
            '--quiet', '--mode', '0', '--thresh', '0.5', '--part', '1', '--parts', '3'] + list(extra)


def _copy_checkpoint(prefix, folder):
    folder.mkdir()
    for suffix in ('-symbol.json', '-0000.params'):
        shutil.copy(prefix + suffix, str(folder / ('other' + suffix)))
    return str(folder / 'other')


def test_rerun_with_other_settings_stops_unless_overwrite(mnet25_prefix, dlib_faces, tmp_path,
                                                          capsys):
    out = tmp_path / 'wout'
    argv = _argv(mnet25_prefix, dlib_faces, tmp_path, out)
    summary = run(argv)
    assert summary['detected'] == 2
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest['epoch'] == 0 and manifest['thresh'] == 0.5
    assert manifest['protocol'] == {'protocol': 'single', 'flip': False, 'merge': 'nms',
                                    'nms': 0.4, 'thresh': 0.02,
                                    'scales': {'target_size': 1600, 'max_size': 2150}}
    assert manifest['backend'] == 'mxnet' and len(manifest['params_sha1']) == 40
    assert manifest['prefix'] == os.path.abspath(mnet25_prefix)
    # another shard of the same run resumes into the same folder
    assert run(argv[:-4] + ['--part', '0', '--parts', '3'])['detected'] == 2
    assert run(argv)['resumed'] == 2
    before = {p: p.read_text() for p in out.rglob('*.txt')}
    # another threshold, mode or checkpoint: one clear line, exit 2, nothing touched
    other = _copy_checkpoint(mnet25_prefix, tmp_path / 'ckpt')
    for changed, key in ((['--thresh', '0.6'], 'thresh'), (['--mode', '2'], 'protocol'),
                         (['--nocrop'], 'nocrop')):
        assert twf.main(argv + changed) == 2
        err = capsys.readouterr().err.strip()
        assert err.count('\n') == 0 and 'holds predictions of another run' in err
        assert key in err and '--overwrite' in err
    argv_other = list(argv)
    argv_other[1] = other
    with pytest.raises(ManifestMismatch, match='prefix: .*mnet.25.* -> .*other'):
        run(argv_other)
    assert {p: p.read_text() for p in out.rglob('*.txt')} == before
    # --overwrite recomputes this shard and records the new settings
    summary = run(argv + ['--thresh', '0.9', '--overwrite'])
    assert (summary['detected'], summary['resumed']) == (2, 0)
    assert json.loads((out / MANIFEST_NAME).read_text())['thresh'] == 0.9


def test_overwrite_removes_this_runs_old_files_before_detecting(mnet25_prefix, dlib_faces,
                                                                tmp_path):
    """An interrupted --overwrite run must not leave old files a later resume would adopt."""
    out = tmp_path / 'wout'
    argv = _argv(mnet25_prefix, dlib_faces, tmp_path, out)
    run(argv)
    old_files = sorted(out.rglob('*.txt'))
    assert len(old_files) == 2
    options = twf.parse_args(argv + ['--thresh', '0.9', '--overwrite']).options
    imdb = wider_test.DATASETS[options.dataset](options.image_set, options.root_path,
                                                options.dataset_path)
    entries = [e for i, e in enumerate(imdb.gt_roidb()) if i % 3 == 1]
    targets = [wider_test.prediction_target(e['image'], imdb.images_dir, str(out))
               for e in entries]
    assert wider_test.claim_output(options, targets) == 'overwrite'   # then the run is "killed"
    assert not any(p.exists() for p in old_files)


def test_existing_files_without_manifest_are_not_adopted(mnet25_prefix, dlib_faces, tmp_path):
    out = tmp_path / 'wout'
    stale = out / '0--dlib' / '2008_002506.txt'
    stale.parent.mkdir(parents=True)
    stale.write_text('0--dlib/2008_002506.jpg\n1\n1 2 3 4 0.99\n')
    argv = _argv(mnet25_prefix, dlib_faces, tmp_path, out)
    with pytest.raises(ManifestMismatch, match='2008_002506.txt.*no manifest.json'):
        run(argv)
    assert run(argv + ['--overwrite'])['detected'] == 2
    assert '1 2 3 4 0.99' not in stale.read_text()


def test_output_errors_are_one_line(mnet25_prefix, dlib_faces, tmp_path, capsys):
    a_file = tmp_path / 'file.txt'
    a_file.write_text('x')
    for out, message in ((a_file, 'exists and is not a folder'),
                         (a_file / 'sub', 'cannot create --output')):
        assert twf.main(_argv(mnet25_prefix, dlib_faces, tmp_path, out)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith('error: ') and message in err and err.count('\n') == 0
        assert 'Traceback' not in err


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only folders')
def test_read_only_output_is_one_line(mnet25_prefix, dlib_faces, tmp_path, capsys):
    out = tmp_path / 'ro'
    out.mkdir()
    out.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert twf.main(_argv(mnet25_prefix, dlib_faces, tmp_path, out)) == 2
    finally:
        out.chmod(stat.S_IRWXU)
    err = capsys.readouterr().err.strip()
    assert 'not writable' in err and err.count('\n') == 0


def test_truncated_val_image_is_skipped_with_a_warning(mnet25_prefix, val_copy, tmp_path,
                                                       capsys, caplog):
    image = val_copy / 'val' / 'images' / '0--dlib' / '2008_002506.jpg'     # image 1
    data = image.read_bytes()
    image.write_bytes(data[:len(data) // 2])
    out = tmp_path / 'wout'
    with caplog.at_level('WARNING', logger='test_widerface'):
        assert twf.main(_argv(mnet25_prefix, val_copy, tmp_path, out)) == 1
    assert any('2008_002506.jpg' in r.getMessage() and 'truncated' in r.getMessage()
               for r in caplog.records)
    assert '1 image(s) skipped as unreadable' in capsys.readouterr().out
    written = [p.name for p in out.rglob('*.txt')]
    assert len(written) == 1 and '2008_002506.txt' not in written      # the shard's other image


def _break_image(path, how):
    if how == 'deleted':
        path.unlink()
    elif how == 'empty':
        path.write_bytes(b'')
    elif how == 'not an image':
        path.write_text('this is a text file named .jpg\n')
    elif how == 'unreadable':
        path.chmod(0)


@pytest.mark.parametrize('how', ['deleted', 'empty', 'not an image', 'unreadable'])
def test_bad_val_image_is_skipped_and_the_others_written(mnet25_prefix, val_copy, tmp_path,
                                                         capsys, caplog, how):
    """Every way an image cannot be read, at listing or at decoding: a warning naming it,
    the shard's other image written, exit status 1."""
    if how == 'unreadable' and os.geteuid() == 0:
        pytest.skip('root reads files without read permission')
    image = val_copy / 'val' / 'images' / '0--dlib' / '2008_002506.jpg'     # image 1
    _break_image(image, how)
    out = tmp_path / 'wout'
    with caplog.at_level('WARNING', logger='test_widerface'):
        assert twf.main(_argv(mnet25_prefix, val_copy, tmp_path, out)) == 1
    assert any('skipped' in r.getMessage() and '2008_002506.jpg' in r.getMessage()
               for r in caplog.records)
    printed = capsys.readouterr()
    assert '1 image(s) skipped as unreadable' in printed.out and 'Traceback' not in printed.err
    written = sorted(p.name for p in out.rglob('*.txt'))
    assert written == ['2009_004587.txt']                 # image 4, the shard's other image


def test_listing_with_a_bad_image_keeps_the_dataset_entries(dlib_faces, val_copy, tmp_path):
    """The image-by-image listing gives the readable images the entries the dataset gives them
    and the unreadable one its label boxes."""
    want = wider_test.list_split(wider_test.DATASETS['retinaface']('val', None, str(dlib_faces)))
    (val_copy / 'val' / 'images' / '0--dlib' / '2008_002506.jpg').write_bytes(b'')
    got = wider_test.list_split(wider_test.DATASETS['retinaface']('val', None, str(val_copy)))
    assert [os.path.basename(e['image']) for e in got] == \
        [os.path.basename(e['image']) for e in want]
    for mine, theirs in zip(got, want):
        assert mine['boxes'].shape == theirs['boxes'].shape
        if '2008_002506' in mine['image']:
            assert 'height' not in mine              # its size is unknown
            # label.txt line 9, its first face: x y w h 329 78 109 109 -> x1 y1 x2 y2
            assert mine['boxes'][0].tolist() == [329.0, 78.0, 438.0, 187.0]
        else:
            np.testing.assert_array_equal(mine['boxes'], theirs['boxes'])
            assert (mine['height'], mine['width']) == (theirs['height'], theirs['width'])


def test_overwrite_into_another_checkpoints_folder_leaves_only_this_runs_files(
        mnet25_prefix, dlib_faces, tmp_path):
    """Another checkpoint wrote all 5 images; this run (2 images) with --overwrite: the folder
    then holds this run's 2 files and its manifest, nothing of the other run."""
    out = tmp_path / 'wout'
    other = _copy_checkpoint(mnet25_prefix, tmp_path / 'ckpt')
    base = ['--epoch', '0', '--gpu', '-1', '--dataset-path', str(dlib_faces), '--root-path',
            str(tmp_path / 'root'), '--output', str(out), '--quiet', '--mode', '0',
            '--thresh', '0.9']
    assert run(['--prefix', other] + base)['detected'] == 5
    summary = run(['--prefix', mnet25_prefix, '--max-images', '2', '--overwrite'] + base)
    assert summary['detected'] == 2
    names = sorted(str(p.relative_to(out)) for p in out.rglob('*.txt'))
    assert names == ['0--dlib/2008_002470.txt', '0--dlib/2008_002506.txt']
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest['prefix'] == os.path.abspath(mnet25_prefix)


def test_overwrite_by_a_shard_keeps_the_other_shards_of_its_run(mnet25_prefix, dlib_faces,
                                                                tmp_path):
    """Shards of one run share the folder: --overwrite on one recomputes its own images only."""
    out = tmp_path / 'wout'
    argv = _argv(mnet25_prefix, dlib_faces, tmp_path, out)            # part 1 of 3
    run(argv[:-4] + ['--part', '0', '--parts', '3'])
    part0 = {p: p.read_text() for p in out.rglob('*.txt')}
    assert len(part0) == 2
    assert run(argv + ['--overwrite'])['detected'] == 2
    assert len(list(out.rglob('*.txt'))) == 4
    assert {p: p.read_text() for p in part0} == part0


def test_gpu_on_a_cpu_only_build_is_one_line(mnet25_prefix, dlib_faces, tmp_path, capsys):
    """--gpu 0 (the original's default) on an MXNet build without CUDA: what to pass instead."""
    mx = pytest.importorskip('mxnet')
    if mx.runtime.Features().is_enabled('CUDA'):
        pytest.skip('this MXNet build has GPU support')
    argv = _argv(mnet25_prefix, dlib_faces, tmp_path, tmp_path / 'wout')
    argv[argv.index('--gpu') + 1] = '0'
    assert twf.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and 'no GPU support' in err and '--gpu -1' in err
    assert not list((tmp_path / 'wout').rglob('*.txt'))
