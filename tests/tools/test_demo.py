"""tools/demo.py (``make demo``): plan, argument checks, parsing of the steps' outputs, and one
tiny end-to-end run (a few iterations on a generated set of a dozen images, marked slow)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, train_in_process
from tools.sample_data import make_sample_dataset

sys.path.insert(0, str(ROOT / 'tools'))
import demo  # noqa: E402


@pytest.fixture(scope='module')
def tiny_set(tmp_path_factory):
    """A generated set of 6 train / 4 val images (seed 3)."""
    out = tmp_path_factory.mktemp('demo') / 'sample'
    make_sample_dataset(str(out), n_train=6, n_val=4, seed=3, workers=1, progress=False)
    return out


def _val_boxes(label_path):
    """{'event/name.jpg': (N, 4) x y w h} from a val label.txt (written independently of
    demo.pick_pictures)."""
    boxes, name = {}, None
    for line in open(label_path).read().splitlines():
        if line.startswith('# '):
            name = line[2:]
            boxes[name] = []
        elif line.strip():
            boxes[name].append([float(v) for v in line.split()[:4]])
    return {k: np.array(v, np.float64).reshape(-1, 4) for k, v in boxes.items()}


# ------------------------------------------------------------------ arguments and plan
def _plan(*argv, data=None):
    args = demo.parse_args((['--data', str(data)] if data else []) + list(argv))
    return demo.make_plan(args, python='py')


def test_quiet_machine_gets_the_full_schedule(tmp_path):
    plan = _plan(data=tmp_path / 'not-yet')
    # before generation: 400 train images + their mirrors (an upper bound), batch 8
    assert not plan.train_roidb_known
    assert plan.train_roidb == 800 and plan.iters_per_epoch == 100
    # 12 images/s, 20 s start-up, 1 min spent: 10 epochs of 100 batches = 833 s; test mode 1 on
    # 100 images = 10 + 90 s (within a fifth of 1200 - 60 - 60 s); one validation of the final
    # checkpoint (every epoch would cost 13.5 s of a 67 s epoch, over a tenth)
    run = demo.plan_run(plan, 12.0, 20.0, 60.0)
    assert (run.epochs, run.decay_epoch, run.iterations) == (10, 8, 1000)
    assert (run.mode, run.test_images, run.val_every) == (1, 100, 10)
    assert run.slowdown == 1.0 and run.fits
    assert run.estimates['train'] == pytest.approx(20.0 + 10 * 800 / 12.0)
    assert run.estimates['test'] == pytest.approx(100.0)
    assert run.estimates['validation'] == pytest.approx(3.0 + 30 * 0.35)
    plan.run = run
    train = demo.commands(plan)['train']
    assert train[:2] == ['py', str(ROOT / 'train.py')]
    flags = dict(zip(train[2::2], train[3::2]))
    assert flags['--network'] == 'mnet' and flags['--lr_step'] == '8,10'
    assert flags['--max_iters'] == '1000' and flags['--batch_images'] == '8'
    assert flags['--val_every'] == '10' and flags['--val_images'] == '30'
    assert float(flags['--max_minutes']) == pytest.approx(2 * run.estimates['train'] / 60, abs=0.05)
    assert '--pretrained' not in flags          # from scratch


def test_slow_machine_trades_epochs_then_the_test_never_the_crop(tmp_path):
    plan = _plan(data=tmp_path / 'not-yet')
    # 6 images/s (half a quiet machine): 1200 - 60 - 60 = 1080 s left; test mode 1 = 2 x 100 s
    # (<= 216); finish 60 s; start-up 40 s: 780 s for epochs of 800 / 6 = 133 s -> 5 epochs
    half = demo.plan_run(plan, 6.0, 40.0, 60.0)
    assert (half.epochs, half.decay_epoch, half.mode, half.test_images) == (5, 4, 1, 100)
    assert half.fits
    # 3 images/s: mode 1 on all 100 images (4 x 100 s) exceeds a fifth of what is left, on the
    # first 50 (4 x 55 s = 220 s) neither, on 25 (4 x 32.5 s) it fits; the minimum of 5
    # epochs does not fit in 20 minutes: said so
    slow = demo.plan_run(plan, 3.0, 40.0, 60.0)
    assert (slow.epochs, slow.mode, slow.test_images) == (5, 1, 25)
    assert not slow.fits and slow.total > 1200
    plan.run = slow
    assert 'too slow for the budget' in demo.format_run_plan(plan)
    # 1 image/s: nothing fits, the cheapest test: mode 1 on a quarter of the val images
    assert demo.plan_run(plan, 1.0, 40.0, 60.0).test_images == 25
    assert demo.plan_run(plan, 1.0, 40.0, 60.0).mode == 1
    # 4 images/s: 3 x 55 s fits, the first half
    assert demo.plan_run(plan, 4.0, 40.0, 60.0).test_images == 50
    # the crop is never part of the plan: train.py's own 640x640
    assert 'SCALES' not in ' '.join(demo.commands(plan)['train'])


def test_fixed_mode_epochs_and_test_images_are_kept(tmp_path):
    plan = _plan('--mode', '2', '--epochs', '3', '--test-images', '40', data=tmp_path / 'x')
    run = demo.plan_run(plan, 1.0, 40.0, 60.0)
    assert (run.mode, run.epochs, run.test_images, run.decay_epoch) == (2, 3, 40, 2)
    plan.run = run
    assert plan.test_data == os.path.join(plan.out, 'val40')
    test = demo.commands(plan)['test']
    assert test[test.index('--dataset-path') + 1] == plan.test_data


def test_generated_set_gives_the_exact_image_count(tiny_set):
    # independent count: train.py's roidb length (images with a face, plus mirrors)
    with_faces = sum(len(b) > 0 for b in _val_boxes(tiny_set / 'train' / 'label.txt').values())
    plan = demo.make_plan(demo.parse_args(['--data', str(tiny_set), '--train-images', '6',
                                           '--val-images', '4', '--data-seed', '3',
                                           '--batch-images', '2']))
    assert plan.train_roidb_known and plan.train_roidb == 2 * with_faces
    assert plan.iters_per_epoch == with_faces
    assert 'at most' not in demo.format_plan(plan)


def test_face_count_names_a_malformed_line(tmp_path):
    label = tmp_path / 'label.txt'
    label.write_text('# a/0.jpg\n1 2 3 4\n# a/1.jpg\n# a/2.jpg\n5 6 0 4\n# a/3.jpg\n1 2 x 4\n')
    with pytest.raises(ValueError, match='label.txt:7'):
        demo.count_images_with_faces(str(label))
    label.write_text('# a/0.jpg\n1 2 3 4\n# a/1.jpg\n# a/2.jpg\n5 6 0 4\n# a/3.jpg\n1 2 3 4\n')
    assert demo.count_images_with_faces(str(label)) == 2


def test_max_iters_caps_the_iterations_and_reaches_train_py():
    plan = _plan('--max-iters', '7', '--batch-images', '2')
    plan.run = demo.plan_run(plan, 12.0, 20.0, 60.0)
    assert plan.run.iterations == 7
    train = demo.commands(plan)['train']
    assert train[train.index('--max_iters') + 1] == '7'


@pytest.mark.parametrize('argv', [['--epochs', '0'], ['--lr', '0'], ['--mode', '3'],
                                  ['--minutes', '-1'], ['--pictures', '-2'],
                                  ['--test-images', '101']])
def test_bad_arguments_are_refused_by_name(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        demo.parse_args(argv)
    assert exc.value.code == 2
    assert argv[0].lstrip('-').split('-')[0] in capsys.readouterr().err


def test_plan_lists_every_step_with_budget_and_commands(tmp_path):
    text = demo.format_plan(_plan('--minutes', '9', data=tmp_path / 'nothing'))
    for step in ('1. set-up', '2. sample set', '3. measure', '4. train mnet', '5. test on val',
                 '6. evaluate', '7. draw', '8. summary'):
        assert step in text
    assert 'budget 9 min' in text
    assert 'generated now' in text              # the folder does not exist
    assert 'train.py --network mnet' in text and '--max_iters 5 --frequent 1' in text


def test_run_plan_prints_the_measured_speed_and_the_commands(tmp_path):
    plan = _plan(data=tmp_path / 'nothing')
    plan.run = demo.plan_run(plan, 6.0, 40.0, 60.0)
    text = demo.format_run_plan(plan)
    assert 'measured 6.0 training images/s (2.0x' in text
    assert 'train 5 epochs = 500 iterations (x0.1 at epoch 4)' in text
    assert 'test mode 1' in text and 'all 100 val images' in text
    assert 'test_widerface.py --prefix' in text and '--mode 1' in text
    assert '--lr_step 4,5' in text


def test_measure_output_skips_the_warm_up_and_takes_the_median():
    lines = ['Epoch[0] Batch[%d] Iter[%d] Speed: %s samples/sec lr=0.01 data=0.1s step=%ss per '
             'batch  RPNAcc_s8=0.5' % (i, i, speed, step)
             for i, (speed, step) in enumerate([('0.5', '9.0'), ('4.0', '2.0'), ('2.0', '4.0'),
                                                ('8.0', '1.0'), ('3.0', '2.7')], 1)]
    speed, first_step = demo.parse_measure_output('noise\n' + '\n'.join(lines))
    assert speed == 3.5 and first_step == 9.0       # median of 4, 2, 8, 3
    with pytest.raises(demo.StepError, match='2 are needed'):
        demo.parse_measure_output(lines[0])


def test_pictures_fall_back_to_the_best_detections():
    faces = [{'score': s, 'box': [0, 0, 5, 5]} for s in (0.1, 0.3, 0.05, 0.2)]
    drawn, fallback = demo.faces_to_draw(faces)
    assert fallback and [f['score'] for f in drawn] == [0.3, 0.2, 0.1]
    drawn, fallback = demo.faces_to_draw(faces + [{'score': 0.7, 'box': [1, 1, 4, 4]}])
    assert not fallback and [f['score'] for f in drawn] == [0.7]
    assert demo.faces_to_draw([]) == ([], False)


def test_score_labels_stay_inside_the_image():
    image = np.zeros((120, 160, 3), np.uint8)
    face = {'score': 0.93, 'box': [150, 0, 159, 30], 'landmarks': [[152, 10]] * 5}
    canvas = demo.draw_picture(image, [face], fallback=False)
    # a box at the top-right corner: its label is drawn inside the image, next to the box
    assert canvas[:40, 100:].any() and not canvas[60:, :100].any()
    label_pixels = (canvas[:, :, 1] == 200) & (canvas[:, :, 0] == 0)
    assert label_pixels[:, 100:150].sum() > 50            # the filled label left of the edge
    caption = demo.draw_picture(image, [face], fallback=True)
    # the caption says it is a fallback, at the bottom, clear of the labels at the top
    assert (caption[100:, :100] != 0).any() and not (canvas[60:, :100] != 0).any()
    assert not (caption[40:95, :100] != 0).any()


def test_data_ready_checks_the_marker_sizes_and_seed(tiny_set):
    def ready(*argv):
        return demo.make_plan(demo.parse_args(['--data', str(tiny_set)] + list(argv))).data_ready()
    assert ready('--train-images', '6', '--val-images', '4', '--data-seed', '3')
    assert not ready('--train-images', '6', '--val-images', '4', '--data-seed', '0')
    assert not ready('--train-images', '7', '--val-images', '4', '--data-seed', '3')
    assert not ready()                          # defaults: 400 / 100 / seed 0


def test_missing_set_is_generated_then_reused(tmp_path):
    args = demo.parse_args(['--data', str(tmp_path / 'set'), '--train-images', '2',
                            '--val-images', '3', '--data-seed', '4'])
    plan = demo.make_plan(args)
    assert not plan.data_ready()
    assert demo.ensure_sample_set(plan).startswith('generated')
    assert plan.data_ready()
    assert len(_val_boxes(tmp_path / 'set' / 'val' / 'label.txt')) == 3
    assert demo.ensure_sample_set(plan).startswith('reused')
    # a folder that is not a generated set is never overwritten
    other = tmp_path / 'mine'
    other.mkdir()
    (other / 'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError):
        demo.ensure_sample_set(demo.make_plan(demo.parse_args(['--data', str(other)])))
    assert (other / 'notes.txt').read_text() == 'keep me'


def test_remove_old_checkpoints_touches_only_a_demo_prefix(tmp_path, monkeypatch):
    for name in ('mnet-symbol.json', 'mnet-0003.params', 'mnet-train.log', 'mnetx-0001.params',
                 'other.txt'):
        (tmp_path / name).write_text('x')
    # not marked as the demo's: refused, nothing removed
    with pytest.raises(demo.StepError, match='not written by a demo run'):
        demo.remove_old_checkpoints(str(tmp_path / 'mnet'))
    assert len(os.listdir(tmp_path)) == 5
    demo.mark_demo_prefix(str(tmp_path / 'mnet'))
    (tmp_path / 'mnet-val-pred' / '0--Parade').mkdir(parents=True)        # validation output
    (tmp_path / 'mnet-val-pred' / '0--Parade' / 'a.txt').write_text('x')
    assert demo.remove_old_checkpoints(str(tmp_path / 'mnet')) == 5      # with the marker
    assert sorted(os.listdir(tmp_path)) == ['mnetx-0001.params', 'other.txt']
    assert demo.remove_old_checkpoints(str(tmp_path / 'absent' / 'mnet')) == 0
    # a removal that fails half-way keeps the marker: the next run may still clear the prefix
    demo.mark_demo_prefix(str(tmp_path / 'mnet'))
    (tmp_path / 'mnet-0001.params').write_text('x')
    real_remove = os.remove

    def failing_remove(path):
        if path.endswith('.params'):
            raise PermissionError(path)
        real_remove(path)
    monkeypatch.setattr(os, 'remove', failing_remove)
    with pytest.raises(PermissionError):
        demo.remove_old_checkpoints(str(tmp_path / 'mnet'))
    monkeypatch.setattr(os, 'remove', real_remove)
    assert (tmp_path / 'mnet-demo.json').is_file()
    assert demo.remove_old_checkpoints(str(tmp_path / 'mnet')) == 2
    assert demo.remove_old_checkpoints(str(tmp_path / 'fresh')) == 0


# ------------------------------------------------------------------ parsing the steps' output
def test_ap_lines_of_the_real_evaluator_with_perfect_predictions(tiny_set, tmp_path):
    """Predictions = the val labels themselves, score 1: the evaluator must print AP 1."""
    pred = tmp_path / 'pred'
    for name, boxes in _val_boxes(tiny_set / 'val' / 'label.txt').items():
        event, image = name.split('/')
        (pred / event).mkdir(parents=True, exist_ok=True)
        lines = [name, str(len(boxes))] + ['%d %d %d %d 1.0' % tuple(b) for b in boxes]
        (pred / event / (image[:-4] + '.txt')).write_text('\n'.join(lines) + '\n')
    out = subprocess.run([sys.executable, str(ROOT / 'evaluate_widerface.py'), '--pred',
                          str(pred), '--gt', str(tiny_set / 'val' / 'gt'), '--quiet'],
                         capture_output=True, text=True, check=True).stdout
    assert demo.parse_ap_lines(out) == {'easy': 1.0, 'medium': 1.0, 'hard': 1.0}


def test_ap_lines_hand_written_and_missing():
    text = ('Easy   Val AP: 0.9123  (10 faces)\nMedium Val AP: 0.5000  (12 faces)\n'
            'Hard   Val AP: 0.0100  (20 faces)\n')
    assert demo.parse_ap_lines(text) == {'easy': 0.9123, 'medium': 0.5, 'hard': 0.01}
    with pytest.raises(ValueError, match='medium, hard'):
        demo.parse_ap_lines('Easy   Val AP: 0.9  (1 faces)\n')


def test_test_line_parsing():
    text = ('noise\n100 images (90 detected, 10 resumed) in 79.7 s: 1.13 images/s; recall at '
            'IoU 0.5: 0.9485 (460 / 485 faces); predictions in /x/wout\n')
    assert demo.parse_test_line(text) == {'images': 100, 'seconds': 79.7, 'images_per_s': 1.13,
                                          'recall': 0.9485, 'found': 460, 'faces': 485}
    no_boxes = '5 images (5 detected, 0 resumed) in 2.0 s: 2.50 images/s; predictions in /x\n'
    assert demo.parse_test_line(no_boxes)['recall'] is None
    assert demo.parse_test_line('nothing here') is None


def test_loss_summary_averages_the_strides():
    metrics = {'RPNAcc_s32': 0.9, 'RPNAcc_s16': 0.8, 'RPNAcc_s8': 1.0,
               'RPNL1Loss_s32': 0.3, 'RPNL1Loss_s16': None, 'RPNL1Loss_s8': 0.1,
               'RPNLandMarkL1Loss_s32': 2.0, 'RPNLandMarkL1Loss_s16': 1.0,
               'RPNLandMarkL1Loss_s8': 3.0}
    summary = demo.loss_summary(metrics)
    assert summary['acc'] == pytest.approx(0.9)
    assert summary['box'] == pytest.approx(0.2)          # the empty window is left out
    assert summary['landmark'] == pytest.approx(2.0)
    assert demo.loss_summary({}) == {'acc': None, 'box': None, 'landmark': None}


def test_pictures_spread_over_the_face_counts(tmp_path):
    label = tmp_path / 'label.txt'
    counts = {'a/0.jpg': 3, 'a/1.jpg': 0, 'b/2.jpg': 7, 'b/3.jpg': 1, 'c/4.jpg': 12}
    label.write_text(''.join('# %s\n' % n + '1 2 3 4\n' * c for n, c in counts.items()))
    images = tmp_path / 'images'
    picked = demo.pick_pictures(str(label), str(images), 3)
    # with faces, by count: 3.jpg (1), 0.jpg (3), 2.jpg (7), 4.jpg (12); 1.jpg has none;
    # positions 0, 1.5 -> 2, 3
    assert picked == [str(images / 'b' / '3.jpg'), str(images / 'b' / '2.jpg'),
                      str(images / 'c' / '4.jpg')]
    assert len(demo.pick_pictures(str(label), str(images), 10)) == 4
    assert demo.pick_pictures(str(label), str(images), 1) == [str(images / 'b' / '2.jpg')]
    assert demo.pick_pictures(str(label), str(images), 0) == []
    bad = tmp_path / 'bad.txt'
    bad.write_text('1 2 3 4\n# a/0.jpg\n')
    with pytest.raises(ValueError, match='bad.txt:1'):
        demo.pick_pictures(str(bad), str(images), 2)


def test_plan_only_prints_and_runs_nothing(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / 'tools' / 'demo.py'), '--plan-only',
                          '--data', str(tmp_path / 'data'), '--out', str(tmp_path / 'out')],
                         capture_output=True, text=True, check=True, cwd=str(tmp_path)).stdout
    assert 'Plan (budget' in out and '4. train mnet' in out
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_tiny_end_to_end_run(tiny_set, tmp_path):
    """Every step for real: the measuring run, 4 iterations of batch 2, test mode 0 on the
    first val image (its own generated ground truth), evaluate, draw 1 picture. (A model of 4
    iterations scores most anchors above the pictures' floor of 0.05, tens of thousands of
    faces an image, so each image more costs tens of seconds.)"""
    argv = [sys.executable, str(ROOT / 'tools' / 'demo.py'), '--data', str(tiny_set),
            '--train-images', '6', '--val-images', '4', '--data-seed', '3',
            '--prefix', str(tmp_path / 'model' / 'mnet'), '--out', str(tmp_path / 'out'),
            '--batch-images', '2', '--max-iters', '4', '--workers', '1', '--mode', '0',
            '--test-images', '1', '--pictures', '1', '--val-subset', '1']
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert out.index('Plan (budget') < out.index('[2/8]') < out.index('    measured ') \
        < out.index('RetinaFace demo: summary')
    assert 'reused' in out                      # the fixture's set matches the arguments

    result = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert result['train']['iterations'] == 4 and result['train']['batch_size'] == 2
    assert result['train']['stopped_by'] == 'max_iters'
    assert result['plan']['mode'] == 0 and result['plan']['test_images'] == 1
    assert result['plan']['images_per_s'] > 0
    assert 'Iter[%d]' % demo.MEASURE_ITERS in (tmp_path / 'out' / 'logs' / 'measure.log').read_text()
    for key in ('start', 'end'):
        assert 0.0 <= result['losses'][key]['acc'] <= 1.0
    # the checkpoint the test used exists, and the AP lines came from the real evaluator
    assert os.path.isfile(tmp_path / 'model' / 'mnet-0001.params')
    evaluate_log = (tmp_path / 'out' / 'logs' / 'evaluate.log').read_text()
    assert demo.parse_ap_lines(evaluate_log) == result['ap']
    assert all(0.0 <= result['ap'][s] <= 1.0 for s in ('easy', 'medium', 'hard'))
    # one prediction file per tested val image, and the picture
    predictions = [f for _, _, files in os.walk(tmp_path / 'out' / 'wout') for f in files
                   if f.endswith('.txt')]
    assert len(predictions) == 1
    assert result['gt'].endswith(os.path.join('val1', 'val', 'gt'))
    detected = json.loads((tmp_path / 'out' / 'pictures' / 'detections.json').read_text())
    assert len(detected) == 1
    pictures = [f for f in os.listdir(tmp_path / 'out' / 'pictures') if f.endswith('.jpg')]
    assert len(pictures) == 1
    # never an empty picture while the model found anything at all
    found = sum(bool(r['faces']) for r in detected)
    assert result['picture_faces'] >= found
    assert 'AP (val)   Easy %.4f' % result['ap']['easy'] in out
    # validation during training only where the plan afforded it
    assert (result['validation'] is None) == (result['plan']['val_every'] == 0)
    for name in ('training_curves.png', 'pr_curves.png'):
        assert (tmp_path / 'out' / name).stat().st_size > 10000

    # --skip-train reuses that checkpoint (tested on one image: a barely trained detector
    # scores nearly every anchor, and the test step is the cost of this run)
    again = subprocess.run(argv + ['--skip-train', '--pictures', '0', '--test-images', '1'],
                           capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert 'reusing checkpoint' in again.stdout


def test_summary_block_shows_the_numbers():
    result = {
        'plan': {'images_per_s': 6.04, 'slowdown': 1.99, 'epochs': 5, 'mode': 1,
                 'test_images': 50, 'total': 1090.0},
        'val_images': 100, 'picture_fallbacks': 1,
        'train': {'iterations': 952, 'batch_size': 8, 'images': 762, 'epochs': 10.02,
                  'seconds': 672.0, 'images_per_s': 11.33, 'stopped_by': 'max_minutes',
                  'window': 20},
        'losses': {'start': {'acc': 0.85, 'box': 0.41, 'landmark': 1.02},
                   'end': {'acc': 0.99, 'box': 0.12, 'landmark': None}},
        'checkpoint': 'model/demo/mnet-0011.params', 'mode': 1,
        'test': {'images': 100, 'seconds': 91.2, 'recall': 0.9361},
        'ap': {'easy': 0.979, 'medium': 0.8954, 'hard': 0.7596}, 'gt': 'data/sample/val/gt',
        'pictures_dir': 'demo_out/pictures/', 'pictures': 6, 'picture_faces': 31,
        'logs': 'demo_out/logs/', 'seconds': 840.0,
        'validation': {'rows': [{'epoch': 1, 'iteration': 95, 'easy': 0.5, 'medium': 0.25,
                                 'hard': 0.125, 'images': 30, 'seconds': 12.0},
                                {'epoch': 2, 'iteration': 190, 'easy': 0.75, 'medium': 0.5,
                                 'hard': 0.375, 'images': 30, 'seconds': 10.0}],
                       'best': {'epoch': 2, 'metric': 'hard', 'value': 0.375},
                       'best_params': 'model/demo/mnet-best-0000.params'},
        'curves': 'demo_out/training_curves.png', 'pr_curves': 'demo_out/pr_curves.png'}
    text = demo.format_summary(result)
    assert '952 iterations of batch 8 (10.0 epochs of 762 images) in 11.2 min' in text
    assert 'time budget' in text
    assert 'box 0.410 -> 0.120, landmark 1.020 -> n/a' in text
    assert 'anchor accuracy 0.850 -> 0.990' in text
    assert 'Easy 0.9790   Medium 0.8954   Hard 0.7596' in text
    assert 'plan       6.0 training images/s measured (2.0x a quiet 2-core machine): 5 epochs, ' \
        'test mode 1 on 50 val images, ~18 min planned' in text
    assert 'mode 1 (accurate' in text and 'the first 100 of the 100' not in text
    assert '100 val images in 91 s' in text
    assert 'demo_out/pictures/ (6 val images, 31 faces drawn; score >= 0.5, except on 1 ' \
        'image(s) where no face reached it' in text
    assert 'mode 0, first 30 val images; 11 s per validation' in text
    assert 'epoch  1   easy 0.500   medium 0.250   hard 0.125' in text
    assert 'epoch  2   easy 0.750   medium 0.500   hard 0.375' in text
    assert 'best: epoch 2, hard AP 0.375 -> model/demo/mnet-best-0000.params' in text
    assert 'curves     demo_out/training_curves.png (training), demo_out/pr_curves.png' in text
    result['test']['images'] = 50
    assert 'the first 50 of the 100 val images in 91 s' in demo.format_summary(result)


# ------------------------------------------------------------------ train.py additions
_ITER_LINE = r'Iter\[(\d+)\] Speed: .*per batch  (.*)$'


def _logged_windows(log_text):
    """{iteration: {metric: value}} from train.py's Speedometer lines ('n/a' -> None)."""
    import re
    windows = {}
    for line in log_text.splitlines():
        match = re.search(_ITER_LINE, line)
        if match:
            pairs = (item.split('=') for item in match.group(2).split())
            windows[int(match.group(1))] = {k: None if v == 'n/a' else float(v) for k, v in pairs}
    return windows


def _train_tiny(tiny_set, prefix, capsys, *extra):
    """train.py's main on the tiny set, in this process and with the crops made inline (the
    summary depends on neither; a process and a loader worker of their own would each spend
    longer importing MXNet than these runs train)."""
    return train_in_process(['--network', 'mnet', '--dataset_path', str(tiny_set),
                             '--root_path', str(prefix.parent), '--prefix', str(prefix),
                             '--batch_images', '2', '--workers', '0', '--seed', '5',
                             *extra], capsys)


@pytest.mark.slow
def test_time_budget_stops_with_a_checkpoint_and_a_summary(tiny_set, tmp_path, capsys):
    prefix = tmp_path / 'm'
    # 0.003 min = 0.18 s: over after the first batch or two, long before --max_iters 40
    proc = _train_tiny(tiny_set, prefix, capsys, '--max_minutes', '0.003', '--max_iters', '40',
                       '--frequent', '1')
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / 'm-train-summary.json').read_text())
    assert summary['stopped_by'] == 'max_minutes'
    assert 1 <= summary['iterations'] < 40
    assert summary['iterations_this_run'] == summary['iterations']
    assert summary['seconds'] >= 0.18 and summary['batch_size'] == 2
    # the final checkpoint is the one the summary names, at the same iteration
    record = json.loads((tmp_path / ('m-%04d.train.json' % summary['checkpoint'])).read_text())
    assert record['iteration'] == summary['iterations']
    assert (tmp_path / ('m-%04d.params' % summary['checkpoint'])).is_file()
    # first / last windows: the values of the first and the last logged line
    windows = _logged_windows((tmp_path / 'm-train.log').read_text())
    assert sorted(windows) == list(range(1, summary['iterations'] + 1))
    for key, iteration in (('first_metrics', 1), ('last_metrics', summary['iterations'])):
        assert summary[key].keys() == windows[iteration].keys()
        for name, value in windows[iteration].items():
            assert summary[key][name] == (None if value is None else pytest.approx(value, abs=1e-6))


@pytest.mark.slow
def test_summary_of_a_run_shorter_than_one_log_window(tiny_set, tmp_path, capsys):
    """3 iterations, --frequent 20: nothing logged, the 3 batches are both windows."""
    prefix = tmp_path / 'm'
    proc = _train_tiny(tiny_set, prefix, capsys, '--max_iters', '3')
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / 'm-train-summary.json').read_text())
    assert summary['stopped_by'] == 'max_iters' and summary['iterations'] == 3
    assert summary['first_metrics'] == summary['last_metrics']
    assert 0.0 <= summary['first_metrics']['RPNAcc_s8'] <= 1.0
    assert _logged_windows((tmp_path / 'm-train.log').read_text()) == {}
