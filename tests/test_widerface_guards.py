"""test_widerface.py never adopts another run's files (manifest, issue 12 item 4), skips
unreadable or truncated val images with a warning, and reports output errors in one line."""
import json
import os
import shutil
import stat

import pytest

import test_widerface as twf
from rcnn.utils.run_manifest import MANIFEST_NAME, ManifestMismatch


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
    summary = twf.run(twf.parse_args(argv))
    assert summary['detected'] == 2
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest['epoch'] == 0 and manifest['mode'] == 0 and manifest['thresh'] == 0.5
    assert manifest['backend'] == 'mxnet' and len(manifest['params_sha1']) == 40
    assert manifest['prefix'] == os.path.abspath(mnet25_prefix)
    # another shard of the same run resumes into the same folder
    assert twf.run(twf.parse_args(argv[:-4] + ['--part', '0', '--parts', '3']))['detected'] == 2
    assert twf.run(twf.parse_args(argv))['resumed'] == 2
    before = {p: p.read_text() for p in out.rglob('*.txt')}
    # another threshold, mode or checkpoint: one clear line, exit 2, nothing touched
    other = _copy_checkpoint(mnet25_prefix, tmp_path / 'ckpt')
    for changed, key in ((['--thresh', '0.6'], 'thresh'), (['--mode', '2'], 'mode'),
                         (['--nocrop'], 'nocrop')):
        assert twf.main(argv + changed) == 2
        err = capsys.readouterr().err.strip()
        assert err.count('\n') == 0 and 'holds predictions of another run' in err
        assert key in err and '--overwrite' in err
    argv_other = list(argv)
    argv_other[1] = other
    with pytest.raises(ManifestMismatch, match='prefix: .*mnet.25.* -> .*other'):
        twf.run(twf.parse_args(argv_other))
    assert {p: p.read_text() for p in out.rglob('*.txt')} == before
    # --overwrite recomputes this shard and records the new settings
    summary = twf.run(twf.parse_args(argv + ['--thresh', '0.9', '--overwrite']))
    assert (summary['detected'], summary['resumed']) == (2, 0)
    assert json.loads((out / MANIFEST_NAME).read_text())['thresh'] == 0.9


def test_overwrite_removes_this_runs_old_files_before_detecting(mnet25_prefix, dlib_faces,
                                                                tmp_path):
    """An interrupted --overwrite run must not leave old files a later resume would adopt."""
    out = tmp_path / 'wout'
    argv = _argv(mnet25_prefix, dlib_faces, tmp_path, out)
    twf.run(twf.parse_args(argv))
    old_files = sorted(out.rglob('*.txt'))
    assert len(old_files) == 2
    args = twf.parse_args(argv + ['--thresh', '0.9', '--overwrite'])
    imdb = twf.DATASETS[args.dataset](args.image_set, args.root_path, args.dataset_path)
    entries = [e for i, e in enumerate(imdb.gt_roidb()) if i % 3 == 1]
    targets = [twf.prediction_target(e['image'], imdb.images_dir, str(out)) for e in entries]
    assert twf.claim_output(args, targets) == 'overwrite'       # then the run is "killed"
    assert not any(p.exists() for p in old_files)


def test_existing_files_without_manifest_are_not_adopted(mnet25_prefix, dlib_faces, tmp_path):
    out = tmp_path / 'wout'
    stale = out / '0--dlib' / '2008_002506.txt'
    stale.parent.mkdir(parents=True)
    stale.write_text('0--dlib/2008_002506.jpg\n1\n1 2 3 4 0.99\n')
    argv = _argv(mnet25_prefix, dlib_faces, tmp_path, out)
    with pytest.raises(ManifestMismatch, match='2008_002506.txt.*no manifest.json'):
        twf.run(twf.parse_args(argv))
    assert twf.run(twf.parse_args(argv + ['--overwrite']))['detected'] == 2
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


def test_missing_val_image_is_one_line(mnet25_prefix, val_copy, tmp_path, capsys):
    (val_copy / 'val' / 'images' / '0--dlib' / '2008_002506.jpg').unlink()
    assert twf.main(_argv(mnet25_prefix, val_copy, tmp_path, tmp_path / 'wout')) == 2
    err = capsys.readouterr().err.strip()
    assert '2008_002506.jpg' in err and err.count('\n') == 0 and 'Traceback' not in err
