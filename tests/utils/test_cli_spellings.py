"""Every command-line tool accepts both spellings of its multi-word flags (rcnn/utils/cli.py)."""
import importlib.util
from pathlib import Path

import pytest

from rcnn.utils.cli import ArgumentParser, flag_spellings

ROOT = Path(__file__).resolve().parents[2]


def load_script(relative):
    """The script as a module (its ``__main__`` block not run)."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location('cli_' + path.stem, str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flag_spellings():
    assert flag_spellings('--dataset_path') == ['--dataset-path']
    assert flag_spellings('--dataset-path') == ['--dataset_path']
    assert flag_spellings('--a_b-c') == ['--a-b-c', '--a_b_c']
    assert flag_spellings('--prefix') == [] and flag_spellings('-n') == []


def test_parser_accepts_both_spellings_and_abbreviations():
    parser = ArgumentParser()
    parser.add_argument('--dataset_path')
    parser.add_argument('--max-images', type=int)
    group = parser.add_argument_group('g')
    group.add_argument('--val_every', type=int)
    args = parser.parse_args(['--dataset-path', 'a', '--max_images', '3', '--val-every=2'])
    assert (args.dataset_path, args.max_images, args.val_every) == ('a', 3, 2)
    # an abbreviation matching a flag and its alias is not ambiguous
    args = parser.parse_args(['--datas', 'b', '--max_im', '4'])
    assert (args.dataset_path, args.max_images) == ('b', 4)
    assert 'dataset-path' not in parser.format_help().split('options:')[1].split('Flags:')[0]
    assert '--dataset_path or --dataset-path' in parser.format_help()


def test_a_flag_and_its_other_spelling_both_defined_stay_apart():
    parser = ArgumentParser()
    parser.add_argument('--a_b')
    parser.add_argument('--a-b', dest='other')
    args = parser.parse_args(['--a_b', '1', '--a-b', '2'])
    assert (args.a_b, args.other) == ('1', '2')


@pytest.mark.parametrize('script, argv, attribute, value', [
    ('train.py', ['--dataset-path', 'd', '--max-iters', '3'], 'dataset_path', 'd'),
    ('train.py', ['--pretrained-epoch', '7'], 'pretrained_epoch', 7),
    ('test_widerface.py', ['--prefix', 'p', '--dataset_path', 'd'], 'dataset_path', 'd'),
    ('test_widerface.py', ['--prefix', 'p', '--image_set', 'train'], 'image_set', 'train'),
    ('evaluate_widerface.py', ['--pred', 'p', '--gt', 'g', '--label_split', 'size'],
     'label_split', 'size'),
    ('tools/detect.py', ['x.jpg', '--prefix', 'p', '--out', 'o', '--max_frames', '9'],
     'max_frames', 9),
    ('tools/export_onnx.py', ['--prefix', 'p', '--out', 'o.onnx', '--no_verify'],
     'no_verify', True),
    ('tools/quantize.py', ['--prefix', 'p', '--out', 'q', '--max_images', '5'], 'max_images', 5),
    ('tools/make_sample_data.py', ['--jpeg_quality', '80'], 'jpeg_quality', 80),
    ('tools/demo.py', ['--test_images', '20', '--plan_only'], 'test_images', 20),
    ('tools/launch.py', ['-n', '1', '--log_dir', 'L', 'python', 'x.py', '--a_b'], 'log_dir', 'L'),
])
def test_every_tool_accepts_the_other_spelling(script, argv, attribute, value):
    args = load_script(script).parse_args(argv)
    if isinstance(args, tuple):      # train.py returns (args, cfg)
        args = args[0]
    assert getattr(args, attribute) == value


# ------------------------------------------------------------------ --help: defaults, the note
def test_help_shows_each_default_once():
    parser = ArgumentParser()
    parser.add_argument('--thresh', type=float, default=0.5, help='minimum face score')
    parser.add_argument('--mode', type=int, default=1, help='test mode (default 1: accurate)')
    parser.add_argument('--gpu', type=int, default=0, help='GPU id')
    parser.add_argument('--flip', action='store_true', help='also run mirrored')
    parser.add_argument('--crops', default=None, help='crop folder')
    parser.add_argument('--names', nargs='+', default=[], help='legend names')
    text = ' '.join(parser.format_help().split())       # argparse wraps lines
    assert 'minimum face score (default: 0.5)' in text
    assert text.count('default') == 3          # thresh, mode's own, gpu
    assert 'test mode (default 1: accurate)' in text and '--gpu GPU GPU id (default: 0)' in text
    assert 'also run mirrored' in text and 'crop folder' in text and 'legend names' in text


def test_spelling_note_only_where_a_flag_has_two_spellings():
    plain = ArgumentParser()
    plain.add_argument('--prefix')
    plain.add_argument('--out')
    assert 'Flags:' not in plain.format_help()
    import argparse
    mixed = ArgumentParser(epilog='Example: run it.',
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    mixed.add_argument('--prefix')
    mixed.add_argument('--max-images', type=int)
    text = mixed.format_help()
    assert text.rstrip().endswith('Flags: "_" and "-" are the same (--max_images or --max-images).')
    assert 'Example: run it.\n\nFlags' in text and mixed.epilog == 'Example: run it.'


TOOLS = ['train.py', 'test_widerface.py', 'evaluate_widerface.py', 'tools/detect.py',
         'tools/export_onnx.py', 'tools/quantize.py', 'tools/make_sample_data.py', 'tools/demo.py',
         'tools/plot_training.py', 'tools/launch.py']


@pytest.mark.parametrize('script', TOOLS)
def test_every_tool_help_shows_every_default(script, monkeypatch, capsys):
    """Each flag with a value to show (not None, not empty, not a switch) says its default."""
    import argparse
    seen = []
    original = ArgumentParser.format_help

    def recording(self):
        seen.append(self)
        return original(self)
    monkeypatch.setattr(ArgumentParser, 'format_help', recording)
    with pytest.raises(SystemExit):
        load_script(script).parse_args(['--help'])
    capsys.readouterr()
    parser = seen[-1]
    formatter = parser._get_formatter()
    missing = []
    for action in parser._actions:
        default = action.default
        if not action.option_strings or action.nargs == 0 or default is None \
                or default is argparse.SUPPRESS or default in ([], (), ''):
            continue
        if 'default' not in formatter._get_help_string(action).lower():
            missing.append(action.option_strings[0])
    assert missing == []
    note = 'Flags: "_" and "-" are the same'
    assert (note in original(parser)) == any(
        flag_spellings(o) for a in parser._actions for o in a.option_strings)
