"""Every command-line tool accepts both spellings of its multi-word flags (rcnn/utils/cli.py)."""
import importlib.util
from pathlib import Path

import pytest

from rcnn.utils.cli import ArgumentParser, flag_spellings

ROOT = Path(__file__).resolve().parents[1]


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
    ('tools/demo.py', ['--train_minutes', '2', '--plan_only'], 'train_minutes', 2.0),
    ('tools/launch.py', ['-n', '1', '--log_dir', 'L', 'python', 'x.py', '--a_b'], 'log_dir', 'L'),
])
def test_every_tool_accepts_the_other_spelling(script, argv, attribute, value):
    args = load_script(script).parse_args(argv)
    if isinstance(args, tuple):      # train.py returns (args, cfg)
        args = args[0]
    assert getattr(args, attribute) == value
