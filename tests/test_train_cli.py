"""train.py's argument layer: every flag value that cannot start a run is refused at start-up
with one line naming the flag (exit 2, nothing written), the flags become typed options, and
``--help`` states every default."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / 'train.py'


def refusal(argv, capsys):
    """The one-line error train.py's parser prints for ``argv`` (exit status 2)."""
    import train
    with pytest.raises(SystemExit) as exc:
        train.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith('train.py: error: ')
    return err


@pytest.mark.parametrize('argv, message', [
    (['--lr', '-0.01'], '--lr must be a finite number > 0, got -0.01'),
    (['--lr', 'nan'], '--lr must be a finite number > 0, got nan'),
    (['--lr', 'inf'], '--lr must be a finite number > 0, got inf'),
    (['--lr', '0'], '--lr must be a finite number > 0, got 0'),
    (['--wd', 'nan'], '--wd must be a finite number >= 0, got nan'),
    (['--wd=-1e-4'], '--wd must be a finite number >= 0, got -0.0001'),
    (['--max_minutes', 'nan'], '--max_minutes must be a finite number > 0'),
    (['--begin_epoch', '5', '--end_epoch', '3'],
     '--end_epoch 3 must be after --begin_epoch 5: nothing would be trained'),
    (['--end_epoch', '0'], '--end_epoch must be positive, got 0'),
    (['--begin_epoch', '-1'], '--begin_epoch must be >= 0, got -1'),
    (['--seed', '-3'], '--seed must be >= 0, got -3'),
    (['--batch_images', '0'], '--batch_images must be positive, got 0'),
    (['--lr_step', '5,3'],
     '--lr_step \'5,3\': epochs must be non-negative and strictly increasing'),
    (['--work_load_list', '1,nan'], '--work_load_list \'1,nan\': every load must be a finite'),
    (['--prefix', 'models/'], '--prefix \'models/\' names a folder'),
    (['--pretrained', '/nowhere/backbone'], '--pretrained /nowhere/backbone: neither a file nor a '
                                            'checkpoint prefix'),
    (['--set', 'TRAIN.BATCH_IMAGE=3'], '--set TRAIN.BATCH_IMAGE: unknown config key '
                                       'TRAIN.BATCH_IMAGE; did you mean TRAIN.BATCH_IMAGES'),
    (['--set', 'TRAIN.BATCH_IMAGES=x'], 'TRAIN.BATCH_IMAGES holds int (now 16), got str'),
    (['--set', 'TRAIN.MOMENTUM=2.0'], 'TRAIN.MOMENTUM must lie in [0, 1], got 2.0'),
    (['--set', 'COLOR_MODE'], "--set 'COLOR_MODE': expected KEY=VALUE"),
    (['--batch_images', '2', '--set', 'TRAIN.BATCH_IMAGES=4'],
     '--set TRAIN.BATCH_IMAGES: a flag already sets this key (--batch_images)'),
    (['--val_every', '2'], '--val_every needs --val_set'),
])
def test_bad_flag_values_are_one_line_naming_the_flag(argv, message, capsys):
    assert message in refusal(argv, capsys)


def test_a_prefix_in_a_folder_that_cannot_be_created_is_refused(tmp_path, capsys):
    blocker = tmp_path / 'a-file'
    blocker.write_text('not a folder')
    err = refusal(['--prefix', str(blocker / 'sub' / 'm')], capsys)
    assert 'cannot write in %s' % blocker in err


def test_flags_become_typed_options_and_config_overrides():
    import train
    from rcnn.core.train_options import TrainOptions
    _, options = train.parse_args([
        '--network', 'resnet', '--batch_images', '2', '--loss_scale', 'master',
        '--set', 'COLOR_MODE=0', 'RPN_ANCHOR_CFG.32.SCALES=(16, 8)',
        'TRAIN.RPN_FORCE_POSITIVE=True', '--prefix', 'out/m', '--no_flip', '--max_iters', '7',
        '--cpus', '2', '--work_load_list', '1,3'])
    assert isinstance(options, TrainOptions)
    assert options.config_overrides == (
        ('TRAIN.BATCH_IMAGES', 2), ('TRAIN.LOSS_SCALE', 'master'), ('COLOR_MODE', 0),
        ('RPN_ANCHOR_CFG.32.SCALES', (16, 8)), ('TRAIN.RPN_FORCE_POSITIVE', True))
    assert options.network == 'resnet' and options.prefix == 'out/m'
    assert options.data.flip is False and options.data.dataset_path is None   # not given
    assert options.schedule.max_iters == 7 and options.schedule.lr is None
    assert options.devices.cpus == 2 and options.devices.work_load_list == (1.0, 3.0)
    # a new run fills the preset's defaults for what was not given
    filled = options.with_defaults()
    assert filled.data.dataset_path == 'data/retinaface' and filled.data.image_set == 'train'
    assert filled.schedule.lr == 0.001 and filled.schedule.lr_step == '1,2,3,4,5,55,68,80'
    assert filled.data.flip is False and filled.data.shuffle is True
    with pytest.raises(Exception):            # frozen dataclasses
        options.schedule.lr = 1.0


def test_a_bare_word_stays_a_string_and_literals_keep_their_type():
    import train
    _, options = train.parse_args(['--set', 'TRAIN.LOSS_SCALE=master', 'TRAIN.BBOX_STDS=(0.1, '
                                   '0.1, 0.2, 0.2)', 'PIXEL_SCALE=2'])
    assert options.config_overrides == (('TRAIN.LOSS_SCALE', 'master'),
                                        ('TRAIN.BBOX_STDS', (0.1, 0.1, 0.2, 0.2)),
                                        ('PIXEL_SCALE', 2))


def test_help_states_every_default():
    proc = subprocess.run([sys.executable, str(TRAIN), '--help'], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    import train
    from rcnn.config import generate_config
    cfg, dflt = generate_config('mnet', 'retinaface')
    parser = train.build_parser('mnet', cfg, dflt)
    undocumented = [action.option_strings[0] for action in parser._actions
                    if action.option_strings and action.help != '==SUPPRESS=='
                    and action.option_strings[0] != '-h' and 'default' not in action.help]
    assert undocumented == []
    text = ' '.join(proc.stdout.split())
    for shown in ('default data/retinaface', 'default 55,68,80', 'default 0.0005',
                  'default 0.01', 'default 16 for mnet', 'default model/retinaface'):
        assert shown in text


def test_no_set_up_function_takes_the_argparse_namespace():
    """The set-up side of training has no parameter named ``args`` / ``parser`` and does not
    import argparse: train.py parses and checks, the library takes typed options."""
    files = [ROOT / 'rcnn' / 'core' / name for name in (
        'training_setup.py', 'validation.py', 'train_options.py', 'schedule.py', 'optimizer.py',
        'pretrained.py', 'cpu_share.py')]
    files += [ROOT / 'rcnn' / 'recipe.py', ROOT / 'rcnn' / 'config.py']
    files += list((ROOT / 'rcnn' / 'symbol').glob('*.py'))
    offenders = []
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [a.arg for a in node.args.args + node.args.kwonlyargs]
                if 'args' in names or 'parser' in names:
                    offenders.append('%s:%d %s' % (path.name, node.lineno, node.name))
            if isinstance(node, ast.Import) and any(a.name == 'argparse' for a in node.names):
                if path.name != 'cpu_share.py':     # its pre-parser reads train.py's argv
                    offenders.append('%s:%d import argparse' % (path.name, node.lineno))
    assert offenders == []


def test_a_missing_pretrained_file_stops_before_anything_starts(tmp_path, capsys):
    """Refused by the argument layer: exit 2 in one line, no log, no lock, no loader worker
    (train.py's main in this process)."""
    import train
    with pytest.raises(SystemExit) as exc:
        train.main(['--prefix', str(tmp_path / 'm'), '--pretrained', str(tmp_path / 'absent'),
                    '--workers', '2'])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert err.strip().splitlines()[-1].startswith(
        'train.py: error: --pretrained %s: neither a file nor a checkpoint prefix'
        % (tmp_path / 'absent'))
    assert 'did not stop' not in err + out
    assert os.listdir(tmp_path) == []
