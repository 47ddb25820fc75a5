"""``train.py --resume`` continues the run it was started as: the data, the validation settings
and the config overrides come from the checkpoint's record; a resume on data whose content
changed is refused unless ``--resume_other_data`` (the lr steps then keep their epochs); a
resume that would train nothing is refused naming the flag. The record and
``<prefix>-recipe.json`` store the merged config and its overrides."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import train_in_process
from rcnn.checkpoint import record as train_record

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / 'train.py'


def train_argv(prefix, *extra):
    return ['--prefix', str(prefix), '--workers', '0', '--frequent', '1', *[str(a) for a in extra]]


def run(prefix, *extra, timeout=400):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('CUDA_VISIBLE_DEVICES', None)
    return subprocess.run([sys.executable, str(TRAIN), *train_argv(prefix, *extra)],
                          cwd=str(ROOT), env=env, capture_output=True, text=True,
                          timeout=timeout)


def label_blocks(path):
    """The ``# image`` blocks of a label file, as text."""
    text = Path(path).read_text()
    return ['#' + block for block in text.split('#')[1:]]


@pytest.fixture
def data_copy(dlib_faces, tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(str(dlib_faces), str(data))
    return data


@pytest.mark.slow
def test_resume_remembers_data_validation_and_overrides_and_refuses_changed_data(
        data_copy, tmp_path, mnet25_prefix, capsys):
    prefix = tmp_path / 'run' / 'm'
    # fine-tuning the release: a detector that finds a few faces validates in a second, one
    # from scratch scores every anchor and spends most of the run in NMS and matching
    first = run(prefix, '--network', 'mnet', '--dataset_path', data_copy, '--root_path',
                tmp_path, '--batch_images', '2', '--no_flip', '--max_iters', '2', '--seed', '3',
                '--val_set', 'val', '--val_images', '1', '--set', 'COLOR_MODE=0',
                '--pretrained', mnet25_prefix, '--pretrained_epoch', '0')
    assert first.returncode == 0, first.stderr[-3000:]
    assert 'Subgraph backend' not in first.stdout + first.stderr       # MXNet's bind notice
    record = train_record.read_train_record(str(prefix), 1)
    assert record['config']['COLOR_MODE'] == 0 and record['config']['TRAIN']['BATCH_IMAGES'] == 2
    assert ['COLOR_MODE', 0] in record['config_overrides']
    assert record['validation_options']['val_set'] == 'val' and record['flip'] is False
    recipe = json.loads((prefix.parent / 'm-recipe.json').read_text())
    assert recipe['training_config']['COLOR_MODE'] == 0
    assert ['COLOR_MODE', 0] in recipe['config_overrides']

    # no data, validation or --set flag: all taken from checkpoint 1's record (the resumed runs
    # in this process: their logs and records are all the test reads)
    second = train_in_process(train_argv(prefix, '--resume', '--max_iters', '4'), capsys)
    assert second.returncode == 0, second.stderr[-3000:]
    assert 'resuming checkpoint 1: data %s (image set train), validation val' % data_copy \
        in second.stdout
    rows = (prefix.parent / 'm-val.csv').read_text().splitlines()
    assert [row.split(',')[0] for row in rows[1:]] == ['1', '2']       # validated again
    resumed = train_record.read_train_record(str(prefix), 2)
    assert resumed['config'] == record['config'] and resumed['iteration'] == 4
    assert resumed['data_digest'] == record['data_digest'] and resumed['flip'] is False

    # nothing left to train: one line naming the flag
    done = train_in_process(train_argv(prefix, '--resume', '--end_epoch', '2'), capsys)
    assert done.returncode == 2
    assert 'train.py: error: --end_epoch 2: checkpoint 2 is already at epoch 2' in done.stderr

    # half the images removed from label.txt, same path: the content check refuses ...
    label = data_copy / 'train' / 'label.txt'
    blocks = label_blocks(label)
    label.write_text(''.join(blocks[:len(blocks) // 2]))
    refused = train_in_process(train_argv(prefix, '--resume', '--max_iters', '6'), capsys)
    assert refused.returncode == 2
    assert 'cannot resume checkpoint 2: the training data changed since it was written' \
        in refused.stderr and '--resume_other_data' in refused.stderr
    # ... and --resume_other_data keeps the lr steps at their epochs (55, 68, 80): 2 -> 1
    # iterations per epoch from iteration 4 on
    allowed = train_in_process(train_argv(prefix, '--resume', '--resume_other_data',
                                          '--max_iters', '6'), capsys)
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert 'lr steps recomputed for the other data: iterations [110, 136, 160] -> [57, 70, 82]' \
        in allowed.stdout
    final = train_record.read_train_record(str(prefix), train_record.latest_checkpoint(str(prefix)))
    assert final['lr_steps'] == [57, 70, 82] and final['data_digest'] != record['data_digest']


def test_the_data_digest_follows_content_not_paths(dlib_faces, tmp_path):
    from rcnn.core.train_options import DataOptions
    from rcnn.core.training_setup import training_data_digest
    copies = []
    for name in ('a', 'b'):
        shutil.copytree(str(dlib_faces), str(tmp_path / name))
        copies.append(tmp_path / name)

    def digest(root):
        data = DataOptions(dataset_path=str(root), image_set='train')
        images = sorted(str(p) for p in (root / 'train' / 'images').rglob('*.jpg'))
        return training_data_digest(data, [{'image': path} for path in images])
    assert digest(copies[0]) == digest(copies[1])
    image = sorted((copies[1] / 'train' / 'images').rglob('*.jpg'))[0]
    image.write_bytes(image.read_bytes() + b'\0')                 # same name, other file
    assert digest(copies[0]) != digest(copies[1])
    label = copies[0] / 'train' / 'label.txt'
    before = digest(copies[0])
    label.write_text(label.read_text().replace(' 0 ', ' 0.0 ', 1))
    assert digest(copies[0]) != before
    assert re.fullmatch('[0-9a-f]{64}', before)


RECORD = {'checkpoint': 4, 'base_lr': 0.02, 'end_epoch': 30, 'seed': 11, 'wd': 0.001,
          'dataset_path': '/data/wider', 'image_set': 'train+extra', 'flip': False,
          'shuffle': True, 'keep_outside_boxes': True,
          'validation_options': {'val_set': 'val', 'every': 3, 'images': 50, 'mode': 1,
                                 'metric': 'easy'}}


def test_what_resume_takes_from_the_record_and_what_it_keeps_from_the_flags():
    import train
    from rcnn.core.training_setup import remembered_options
    _, options = train.parse_args(['--resume', '--max_iters', '9'])
    resumed = remembered_options(options, RECORD)
    assert (resumed.data.dataset_path, resumed.data.image_set) == ('/data/wider', 'train+extra')
    assert (resumed.data.flip, resumed.data.shuffle, resumed.data.keep_outside_boxes) == \
        (False, True, True)
    assert (resumed.schedule.lr, resumed.schedule.end_epoch, resumed.schedule.seed,
            resumed.schedule.wd, resumed.schedule.max_iters) == (0.02, 30, 11, 0.001, 9)
    val = resumed.validation
    assert (val.val_set, val.every, val.images, val.mode, val.metric) == \
        ('val', 3, 50, 1, 'easy')
    # given again: the flags win (another split gets its own settings or the defaults)
    _, options = train.parse_args(['--resume', '--lr', '0.5', '--end_epoch', '40',
                                   '--dataset_path', '/other', '--val_set', 'val2'])
    resumed = remembered_options(options, RECORD)
    assert (resumed.schedule.lr, resumed.schedule.end_epoch) == (0.5, 40)
    assert resumed.data.dataset_path == '/other' and resumed.data.image_set == 'train+extra'
    assert (resumed.validation.val_set, resumed.validation.every,
            resumed.validation.mode) == ('val2', 1, 0)
    _, options = train.parse_args(['--resume', '--val_mode', '2'])
    assert remembered_options(options, RECORD).validation.mode == 2


def test_resume_of_an_older_record_falls_back_to_the_defaults():
    import train
    from rcnn.core.training_setup import remembered_options
    _, options = train.parse_args(['--resume'])
    resumed = remembered_options(options, {'checkpoint': 2, 'base_lr': 0.01})
    assert resumed.data.dataset_path == 'data/retinaface' and resumed.data.flip is True
    assert resumed.schedule.end_epoch == 10000 and resumed.schedule.wd == 0.0005
    assert resumed.validation.val_set is None
    _, options = train.parse_args(['--resume', '--val_every', '2'])
    with pytest.raises(ValueError, match="--val_every needs --val_set: checkpoint 2's run did "
                                         "not validate"):
        remembered_options(options, {'checkpoint': 2, 'base_lr': 0.01})
