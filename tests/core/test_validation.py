"""Validation during training (rcnn/core/validation.py, train.py --val_set): flags, the
validation split check, best-checkpoint bookkeeping, resume, failures, and end-to-end runs
on a generated sample set (marked slow)."""
import csv
import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_path, train_in_process
from rcnn.core.validation import (ValidationSet, Validator, best_record_path, is_better,
                                  open_validation_set, read_val_rows, select_best,
                                  val_csv_path)
from tools.sample_data import make_sample_dataset


@pytest.fixture(scope='module')
def sample_set(tmp_path_factory):
    """A generated set of 4 train / 3 val images (seed 3), with the official .mat files."""
    out = tmp_path_factory.mktemp('valset') / 'sample'
    make_sample_dataset(str(out), n_train=4, n_val=3, seed=3, workers=1, progress=False)
    return out


def _val_blocks(label_path):
    """[(header line, [box lines])] of a val label.txt, read here independently."""
    blocks = []
    for line in Path(label_path).read_text().splitlines():
        if line.startswith('#'):
            blocks.append((line, []))
        elif line.strip():
            blocks[-1][1].append(line)
    return blocks


# ------------------------------------------------------------------------------ flags
@pytest.mark.parametrize('extra, message', [
    (['--val_set', 'val', '--val_every', '0'], '--val_every must be positive, got 0'),
    (['--val_set', 'val', '--val_images', '-3'], '--val_images must be positive, got -3'),
    (['--val_every', '2'], '--val_every needs --val_set'),
    (['--val_metric', 'easy'], '--val_metric needs --val_set'),
    (['--val_set', 'val', '--val_mode', '3'], 'invalid choice'),
    (['--val_set', 'val', '--val_metric', 'mean'], 'invalid choice'),
])
def test_bad_validation_flags_are_refused_at_start_up(extra, message, capsys):
    import train
    with pytest.raises(SystemExit) as exc:
        train.parse_args(['--network', 'mnet'] + extra)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_val_every_0_stops_train_py_at_once(tmp_path, capsys):
    import train
    with pytest.raises(SystemExit) as exc:       # train.py's main, in this process
        train.main(['--network', 'mnet', '--prefix', str(tmp_path / 'm'), '--val_set', 'val',
                    '--val_every', '0'])
    assert exc.value.code == 2
    assert 'train.py: error: --val_every must be positive, got 0' in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_validation_defaults():
    import train
    args, _ = train.parse_args(['--val_set', 'val'])
    assert (args.val_every, args.val_images, args.val_mode, args.val_metric) == \
        (1, None, 0, 'hard')
    args, _ = train.parse_args([])
    assert args.val_set is None


# ------------------------------------------------------------------------------ the split
def test_split_without_labels_is_refused(sample_set, tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(sample_set / 'val', data / 'test')
    headers = [header for header, _ in _val_blocks(sample_set / 'val' / 'label.txt')]
    (data / 'test' / 'label.txt').write_text('\n'.join(headers) + '\n')
    with pytest.raises(ValueError, match=r'--val_set test: .*label.txt lists no face box '
                                         r'\(3 images\)'):
        open_validation_set(str(data), 'test')
    with pytest.raises(FileNotFoundError, match='label file not found: .*nope.*label.txt'):
        open_validation_set(str(data), 'nope')


def test_split_uses_the_mat_files_or_the_label_file(sample_set, tmp_path):
    val = open_validation_set(str(sample_set), 'val', max_images=2)
    assert val.num_images == 2 and val.max_images == 2
    assert val.gt_source == str(sample_set / 'val' / 'gt')
    blocks = _val_blocks(sample_set / 'val' / 'label.txt')
    first_two = [os.path.splitext(os.path.basename(h[2:]))[0] for h, _ in blocks[:2]]
    assert val.gt.names == first_two
    # K above the split's size: all images, no subset
    assert open_validation_set(str(sample_set), 'val', max_images=50).max_images is None
    # without gt/ the label file is the ground truth: every box line is a face
    data = tmp_path / 'data'
    shutil.copytree(sample_set / 'val', data / 'val', ignore=shutil.ignore_patterns('gt'))
    val = open_validation_set(str(data), 'val')
    assert val.gt_source.endswith('label.txt')
    assert val.gt.num_faces() == sum(len(boxes) for _, boxes in blocks)


def test_an_image_the_mat_files_do_not_list_is_refused(sample_set, tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(sample_set / 'val', data / 'val')
    label = data / 'val' / 'label.txt'
    header, boxes = _val_blocks(label)[0]
    event, name = header[2:].split('/')
    shutil.copy(data / 'val' / 'images' / event / name, data / 'val' / 'images' / event / 'x.jpg')
    label.write_text(label.read_text() + '# %s/x.jpg\n%s\n' % (event, boxes[0]))
    with pytest.raises(ValueError, match='image %s/x.jpg of .* is not in the ground truth'
                                         % re.escape(event)):
        open_validation_set(str(data), 'val')


# ------------------------------------------------------------------------------ best checkpoint
def test_is_better_and_select_best():
    assert is_better(0.1, None) and is_better(0.5, 0.4)
    assert not is_better(0.4, 0.4)                      # a tie keeps the earlier one
    assert not is_better(float('nan'), None) and not is_better(None, 0.1)
    rows = [{'epoch': e, 'hard': h} for e, h in [(1, 0.3), (2, float('nan')), (3, 0.6),
                                                 (4, 0.6), (5, 0.2)]]
    assert select_best(rows, 'hard')['epoch'] == 3
    assert select_best([], 'hard') is None


def _fake_run(prefix, numbers):
    """Checkpoint files of ``numbers`` (params with distinct bytes, iteration 10 * number)."""
    Path('%s-symbol.json' % prefix).write_text('{"graph": "deploy"}')
    for n in numbers:
        Path('%s-%04d.params' % (prefix, n)).write_bytes(b'params of checkpoint %d' % n)
        Path('%s-%04d.train.json' % (prefix, n)).write_text(json.dumps({'iteration': 10 * n}))


def _validator(prefix, metric='hard', resume=None):
    val_set = ValidationSet('unused', 'val', None, None, 3, None, 'unused')
    return Validator(str(prefix), val_set, metric=metric, resume=resume)


# hard / easy AP per epoch; the best by hard: 1, 2, 2 (tie), 2 (NaN), 2, 6, 6
CRAFTED = [(0.2, 0.9), (0.5, 0.3), (0.5, 0.95), (float('nan'), 0.1), (0.4, 0.2), (0.7, 0.5),
           (0.6, 0.99)]
BEST_BY_HARD = [1, 2, 2, 2, 2, 6, 6]
BEST_BY_EASY = [1, 1, 3, 3, 3, 3, 7]


@pytest.mark.parametrize('metric, expected', [('hard', BEST_BY_HARD), ('easy', BEST_BY_EASY)])
def test_best_checkpoint_follows_a_crafted_ap_sequence(tmp_path, metric, expected):
    prefix = tmp_path / 'm'
    _fake_run(prefix, range(1, 8))
    validator = _validator(prefix, metric)
    for number, ((hard, easy), best) in enumerate(zip(CRAFTED, expected), 1):
        validator.record(number, 10 * number, {'easy': easy, 'medium': 0.5, 'hard': hard}, 3,
                         1.5)
        assert Path('%s-best-0000.params' % prefix).read_bytes() == \
            b'params of checkpoint %d' % best
        sidecar = json.loads(Path(best_record_path(str(prefix))).read_text())
        assert (sidecar['epoch'], sidecar['iteration'], sidecar['metric']) == \
            (best, 10 * best, metric)
        assert sidecar['value'] == (CRAFTED[best - 1][0] if metric == 'hard'
                                    else CRAFTED[best - 1][1])
        stored = json.loads(Path('%s-%04d.train.json' % (prefix, number)).read_text())
        assert stored['validation']['best']['epoch'] == best
        assert stored['validation']['is_best'] == (best == number)
        assert stored['iteration'] == 10 * number        # the record's own fields stay
    assert Path('%s-best-symbol.json' % prefix).read_text() == '{"graph": "deploy"}'
    with open(val_csv_path(str(prefix))) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r['epoch']) for r in rows] == list(range(1, 8))
    assert rows[3]['hard'] == '' and float(rows[5]['hard']) == 0.7
    assert float(rows[0]['seconds']) == 1.5 and int(rows[0]['images']) == 3


def test_resume_keeps_the_best_so_far(tmp_path):
    prefix = tmp_path / 'm'
    _fake_run(prefix, range(1, 8))
    validator = _validator(prefix)
    for number, (hard, easy) in enumerate(CRAFTED, 1):
        validator.record(number, 10 * number, {'easy': easy, 'medium': 0.5, 'hard': hard}, 3, 1)
    best_file = Path('%s-best-0000.params' % prefix)
    # resuming the latest checkpoint: nothing changes
    stamp = best_file.stat().st_mtime_ns
    resumed = _validator(prefix, resume={'checkpoint': 7, 'iteration': 70})
    assert resumed.best['epoch'] == 6 and best_file.stat().st_mtime_ns == stamp
    assert len(read_val_rows(val_csv_path(str(prefix)))) == 7
    # resuming checkpoint 4: the rows after it belong to an abandoned continuation; the best up
    # to it (epoch 2) is copied back
    resumed = _validator(prefix, resume={'checkpoint': 4, 'iteration': 40})
    assert [r['epoch'] for r in read_val_rows(val_csv_path(str(prefix)))] == [1, 2, 3, 4]
    assert resumed.best['epoch'] == 2 and best_file.read_bytes() == b'params of checkpoint 2'
    assert json.loads(Path(best_record_path(str(prefix))).read_text())['epoch'] == 2
    # the next result is compared with that best
    resumed.record(5, 50, {'easy': 0.1, 'medium': 0.1, 'hard': 0.45}, 3, 1)
    assert best_file.read_bytes() == b'params of checkpoint 2'
    resumed.record(6, 60, {'easy': 0.1, 'medium': 0.1, 'hard': 0.55}, 3, 1)
    assert best_file.read_bytes() == b'params of checkpoint 6'


def test_a_failed_validation_is_logged_and_training_goes_on(sample_set, tmp_path, caplog):
    prefix = tmp_path / 'm'
    validator = Validator(str(prefix), open_validation_set(str(sample_set), 'val'))
    state = np.random.get_state()
    with caplog.at_level(logging.ERROR):
        spent = validator.validate_if_due(3, 30, final=False)  # no such files
    assert spent >= 0.0
    assert re.search(r'validation of checkpoint .*m-0003 failed \(training goes on\): '
                     r'FileNotFoundError: .*m-symbol.json', caplog.text)
    assert read_val_rows(val_csv_path(str(prefix))) == []
    assert np.array_equal(np.random.get_state()[1], state[1])
    # not due: every 2nd epoch, not the final checkpoint
    validator.every = 2
    assert validator.validate_if_due(5, 50, final=False) == 0.0


# ------------------------------------------------------------------------------ end to end
def _ap_lines(text):
    return {name.lower(): float(v) for name, v in
            re.findall(r'^(Easy|Medium|Hard)\s+Val AP: ([0-9.]+)', text, re.MULTILINE)}


def _separate_test_and_evaluate(prefix, epoch, dataset, gt, out, capsys, *extra):
    """test_widerface.py + evaluate_widerface.py as a user runs them (their main functions, in
    this process); returns the APs."""
    import evaluate_widerface
    import test_widerface
    capsys.readouterr()
    status = test_widerface.main([str(a) for a in (
        '--prefix', prefix, '--epoch', epoch, '--gpu', '-1', '--dataset-path', dataset,
        '--image-set', 'val', '--mode', '0', '--output', out, '--root-path', out.parent,
        '--quiet', *extra)])
    assert status == 0, capsys.readouterr().err[-3000:]
    capsys.readouterr()
    status = evaluate_widerface.main([str(a) for a in ('--pred', out, '--gt', gt, '--quiet')])
    printed = capsys.readouterr()
    assert status == 0, printed.err[-3000:]
    return _ap_lines(printed.out)


def _train_argv(sample_set, prefix, *extra):
    return [str(a) for a in (
        '--network', 'mnet', '--dataset_path', sample_set, '--root_path', prefix.parent,
        '--prefix', prefix, '--batch_images', '2', '--workers', '1', '--seed', '7', '--frequent',
        '2', '--end_epoch', '2', '--lr', '0.001', '--pretrained',
        shared_path('models', 'mnet.25') / 'mnet.25', '--pretrained_epoch', '0', *extra)]


def _final_digest(text):
    return re.search(r'final parameter digest \(rank 0 of 1\): ([0-9a-f]{64})', text).group(1)


@pytest.mark.slow
def test_validation_during_training_matches_a_separate_evaluation(sample_set, tmp_path, capsys):
    """2 epochs of 4 batches fine-tuning the release (so the APs are far from 0), validated
    after each; the same run without --val_set trains exactly the same parameters (both runs,
    and the separate evaluations, in this process)."""
    prefix = tmp_path / 'val' / 'm'
    proc = train_in_process(_train_argv(sample_set, prefix, '--val_set', 'val', '--val_every',
                                        '1'), capsys)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_val_rows(val_csv_path(str(prefix)))
    assert [(r['epoch'], r['iteration'], r['images']) for r in rows] == [(1, 4, 3), (2, 8, 3)]
    # one log line per evaluation
    lines = re.findall(r'epoch (\d+)  val AP easy ([0-9.]+) medium ([0-9.]+) hard ([0-9.]+)  '
                       r'\((\d+) images, \d+ s\)', proc.stdout)
    assert [(int(e), float(h)) for e, _, _, h, _ in lines] == \
        [(r['epoch'], round(r['hard'], 3)) for r in rows]
    for row in rows:
        separate = _separate_test_and_evaluate(
            prefix, row['epoch'], sample_set, sample_set / 'val' / 'gt',
            tmp_path / ('sep%d' % row['epoch']), capsys)
        assert set(separate) == {'easy', 'medium', 'hard'}
        for setting, ap in separate.items():
            assert abs(row[setting] - ap) <= 5e-5 + 1e-9, (row, separate)
        assert row['hard'] > 0.05                       # a real detector, not AP 0 == 0
        record = json.loads(Path('%s-%04d.train.json' % (prefix, row['epoch'])).read_text())
        assert record['validation']['ap']['hard'] == row['hard']
    best = select_best(rows, 'hard')
    sidecar = json.loads(Path(best_record_path(str(prefix))).read_text())
    assert (sidecar['epoch'], sidecar['value']) == (best['epoch'], best['hard'])
    assert Path('%s-best-0000.params' % prefix).read_bytes() == \
        Path('%s-%04d.params' % (prefix, best['epoch'])).read_bytes()
    summary = json.loads(Path('%s-train-summary.json' % prefix).read_text())
    assert summary['validation_seconds'] > 0

    # metrics table: a row per --frequent (2) iterations with the logged values
    with open('%s-metrics.csv' % prefix) as handle:
        table = list(csv.DictReader(handle))
    assert [int(r['iteration']) for r in table] == [2, 4, 6, 8]
    logged = re.findall(r'Epoch\[(\d+)\] Batch\[(\d+)\] Iter\[(\d+)\] Speed: ([0-9.]+) '
                        r'samples/sec lr=([0-9.e-]+) data=([0-9.]+)s step=([0-9.]+)s per batch  '
                        r'(.*)$', proc.stdout, re.MULTILINE)
    assert len(logged) == 4
    for row, (epoch, batch, it, speed, lr, data, step, values) in zip(table, logged):
        assert (row['epoch'], row['batch'], row['iteration']) == (epoch, batch, it)
        assert float(row['samples_per_s']) == pytest.approx(float(speed), abs=0.006)
        assert float(row['lr']) == pytest.approx(float(lr))
        assert float(row['data_s']) == pytest.approx(float(data), abs=6e-4)
        assert float(row['step_s']) == pytest.approx(float(step), abs=6e-4)
        pairs = dict(item.split('=') for item in values.split())
        assert len(pairs) == 9 and set(pairs) < set(row)
        for name, text in pairs.items():
            if text == 'n/a':
                assert row[name] == ''
            else:
                assert float(row[name]) == pytest.approx(float(text), abs=6e-7)

    # the same run without validation: the same batches, the same parameters
    plain = tmp_path / 'plain' / 'm'
    reference = train_in_process(_train_argv(sample_set, plain), capsys)
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert _final_digest(reference.stdout) == _final_digest(proc.stdout)
    assert re.findall(r'per batch  (.*)$', reference.stdout, re.MULTILINE) == \
        [values for *_, values in logged]
    assert not os.path.exists(val_csv_path(str(plain)))


@pytest.mark.slow
def test_a_subset_of_val_images_scores_against_those_images_only(sample_set, tmp_path, capsys):
    """--val_images 2 on a split without .mat files: the validator's APs equal
    test_widerface.py --max-images 2 + evaluate_widerface.py against a label file listing only
    those 2 images (written here)."""
    data = tmp_path / 'data'
    shutil.copytree(sample_set / 'val', data / 'val', ignore=shutil.ignore_patterns('gt'))
    prefix = tmp_path / 'm'
    release = shared_path('models', 'mnet.25')
    os.symlink(release / 'mnet.25-symbol.json', '%s-symbol.json' % prefix)
    os.symlink(release / 'mnet.25-0000.params', '%s-0000.params' % prefix)
    validator = Validator(str(prefix), open_validation_set(str(data), 'val', str(tmp_path), 2))
    row = validator.validate(0, 0)
    assert row['images'] == 2
    blocks = _val_blocks(data / 'val' / 'label.txt')[:2]
    subset_label = tmp_path / 'first2.txt'
    subset_label.write_text(''.join(h + '\n' + ''.join(b + '\n' for b in boxes)
                                    for h, boxes in blocks))
    separate = _separate_test_and_evaluate(prefix, 0, data, subset_label, tmp_path / 'sep',
                                           capsys, '--max-images', '2')
    for setting, ap in separate.items():
        assert abs(row[setting] - ap) <= 5e-5 + 1e-9, (row, separate)
    assert row['hard'] > 0.05


def test_a_val_split_without_labels_stops_train_py_before_training(sample_set, tmp_path,
                                                                   capsys):
    data = tmp_path / 'data'
    shutil.copytree(sample_set, data)
    headers = [header for header, _ in _val_blocks(data / 'val' / 'label.txt')]
    (data / 'val' / 'label.txt').write_text('\n'.join(headers) + '\n')
    shutil.rmtree(data / 'val' / 'gt')
    prefix = tmp_path / 'run' / 'm'
    # refused during start-up: train.py's main in this process
    proc = train_in_process([str(a) for a in (
        '--network', 'mnet', '--dataset_path', data, '--root_path', tmp_path, '--prefix', prefix,
        '--batch_images', '2', '--workers', '1', '--val_set', 'val')], capsys)
    assert proc.returncode == 2
    assert re.search(r'train.py: error: --val_set val: .*label.txt lists no face box',
                     proc.stderr)
    assert 'Epoch[' not in proc.stdout and not list(prefix.parent.glob('m-*.params'))


def test_only_rank_0_reads_the_split_and_validates(sample_set):
    from rcnn.core.train_options import DataOptions, ValidationOptions
    from rcnn.core.training_setup import open_val_set
    data = DataOptions(dataset_path=str(sample_set), root_path=None)
    validation = ValidationOptions(val_set='val', images=2)
    assert open_val_set(validation, data, rank=1) is None
    assert open_val_set(validation, data, rank=0).num_images == 2
    assert open_val_set(ValidationOptions(), data, rank=0) is None
