"""tools/plot_training.py: smoothing, column groups, the PNG and its errors."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / 'tools'))
import plot_training  # noqa: E402

PLOT = ROOT / 'tools' / 'plot_training.py'
METRICS = ['RPNAcc_s32', 'RPNL1Loss_s32', 'RPNLandMarkL1Loss_s32', 'RPNAcc_s16',
           'RPNL1Loss_s16', 'RPNLandMarkL1Loss_s16', 'RPNAcc_s8', 'RPNL1Loss_s8',
           'RPNLandMarkL1Loss_s8']


def test_moving_average_by_hand():
    values = [1.0, np.nan, 3.0, 5.0, np.nan, np.nan]
    smoothed = plot_training.moving_average(values, 2)
    np.testing.assert_allclose(smoothed[:5], [1.0, 1.0, 3.0, 4.0, 5.0])
    assert np.isnan(smoothed[5])
    np.testing.assert_allclose(plot_training.moving_average([2.0, 4.0, 9.0], 1), [2, 4, 9])
    np.testing.assert_allclose(plot_training.moving_average([2.0, 4.0, 9.0], 10), [2, 3, 5])


def test_metric_groups():
    groups = plot_training.metric_groups(['iteration', 'lr'] + METRICS)
    assert groups['RPNAcc'] == [('RPNAcc_s32', 32), ('RPNAcc_s16', 16), ('RPNAcc_s8', 8)]
    assert sorted(groups) == ['RPNAcc', 'RPNL1Loss', 'RPNLandMarkL1Loss']


def _write_run(prefix, rows=60, with_val=True):
    """A metrics table and a val table written by hand (decaying losses, an lr step)."""
    rng = np.random.default_rng(0)
    lines = [','.join(['iteration', 'epoch', 'batch', 'lr', 'samples_per_s', 'data_s',
                       'step_s'] + METRICS)]
    for k in range(rows):
        it = 20 * (k + 1)
        values = [0.9 + 0.1 * rng.random() if 'Acc' in m
                  else np.exp(-k / 20.0) + 0.05 * rng.random() for m in METRICS]
        cells = ['%.6f' % v for v in values]
        if k % 7 == 3:
            cells[-1] = ''                       # a window without positive anchors
        lines.append(','.join([str(it), str(it // 100), str(it % 100),
                               '0.01' if k < 40 else '0.001', '12.5', '0.01', '0.6'] + cells))
    (prefix.parent / (prefix.name + '-metrics.csv')).write_text('\n'.join(lines) + '\n')
    if with_val:
        (prefix.parent / (prefix.name + '-val.csv')).write_text(
            'epoch,iteration,easy,medium,hard,images,seconds\n'
            '1,100,0.5,0.4,0.2,30,11.0\n2,200,0.8,0.7,0.5,30,10.5\n3,300,0.9,0.8,0.6,30,10.2\n')
        (prefix.parent / (prefix.name + '-best.json')).write_text(
            '{"epoch": 3, "iteration": 300, "metric": "hard", "value": 0.6}\n')


@pytest.mark.parametrize('size, with_val', [('900x600', True), ('1001x523', False)])
def test_png_has_the_requested_size(tmp_path, size, with_val):
    prefix = tmp_path / 'm'
    _write_run(prefix, with_val=with_val)
    out = tmp_path / 'curves.png'
    proc = subprocess.run([sys.executable, str(PLOT), str(prefix), '--out', str(out), '--size',
                           size], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '60 logged windows, %d validation results' % (3 if with_val else 0) in proc.stdout
    image = cv2.imread(str(out))
    width, height = (int(v) for v in size.split('x'))
    assert image.shape == (height, width, 3)
    assert out.stat().st_size > 10000 and image.std() > 10      # something is drawn


def test_default_output_next_to_the_run(tmp_path):
    prefix = tmp_path / 'm'
    _write_run(prefix, rows=5)
    assert plot_training.main([str(prefix), '--smooth', '2']) == 0
    assert cv2.imread(str(tmp_path / 'm-curves.png')).shape == (1000, 1500, 3)


def test_errors_name_the_problem(tmp_path, capsys):
    assert plot_training.main([str(tmp_path / 'none')]) == 2
    assert 'none-metrics.csv not found' in capsys.readouterr().err
    (tmp_path / 'bad-metrics.csv').write_text('iteration,lr\n20,0.01\n40,abc\n')
    assert plot_training.main([str(tmp_path / 'bad')]) == 2
    assert "bad-metrics.csv:3: 'abc' is not a number (column lr)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        plot_training.parse_args([str(tmp_path / 'm'), '--size', '800'])
    assert 'WIDTHxHEIGHT' in capsys.readouterr().err


# ------------------------------------------------------------------ readability
def _figure(tmp_path, rows=30, val_csv=None, best=None, lr=None, smooth=None):
    metrics = {'iteration': np.arange(1, rows + 1) * 20.0,
               'lr': np.full(rows, 0.01) if lr is None else np.asarray(lr, float)}
    for name in METRICS:
        metrics[name] = np.linspace(1.0, 0.2, rows)
    return plot_training.draw_training(metrics, val_csv or [], best, (900, 600), smooth)


def test_one_epoch_reads_as_one_epoch_and_the_best_point_stays_visible(tmp_path):
    rows = [{'epoch': 1, 'iteration': 95, 'easy': 0.62, 'medium': 0.55, 'hard': 0.41,
             'images': 30, 'seconds': 9.0}]
    fig = _figure(tmp_path, val_csv=rows, best={'epoch': 1, 'metric': 'hard', 'value': 0.41})
    val_ax = [ax for ax in fig.axes if ax.get_title() == 'validation AP per epoch'][0]
    assert list(val_ax.get_xticks()) == [1]
    assert val_ax.get_xlim() == (0.5, 1.5)
    ring = [line for line in val_ax.get_lines() if line.get_label().startswith('best')][0]
    assert ring.get_markerfacecolor() == 'none'         # hollow: the AP point shows through
    hard = [line for line in val_ax.get_lines() if line.get_label() == 'hard'][0]
    assert hard.get_zorder() > ring.get_zorder()


def test_many_epochs_get_at_most_about_ten_integer_ticks(tmp_path):
    rows = [{'epoch': e, 'iteration': 95 * e, 'easy': 0.5, 'medium': 0.4, 'hard': 0.3,
             'images': 30, 'seconds': 9.0} for e in range(1, 31)]
    val_ax = [ax for ax in _figure(tmp_path, val_csv=rows).axes
              if ax.get_title() == 'validation AP per epoch'][0]
    ticks = list(val_ax.get_xticks())
    assert ticks[0] == 1 and len(ticks) <= 11 and all(t == int(t) for t in ticks)


def test_constant_lr_axis_starts_at_zero_and_a_step_does_not(tmp_path):
    fig = _figure(tmp_path)
    lr_axes = [ax for ax in fig.axes if ax.get_ylabel() == 'lr']
    assert len(lr_axes) == 3
    for ax in lr_axes:
        low, high = ax.get_ylim()
        assert low == 0.0 and high == pytest.approx(0.015)
    stepped = _figure(tmp_path, lr=[0.01] * 20 + [0.001] * 10)
    low, high = [ax for ax in stepped.axes if ax.get_ylabel() == 'lr'][0].get_ylim()
    assert low > 0.0 and high < 0.015     # autoscaled around 0.001 .. 0.01


def test_title_names_the_smoothing_only_when_there_is_some(tmp_path):
    # 30 windows: the default window is 30 // 25 = 1, no smoothing
    assert _figure(tmp_path, rows=30)._suptitle.get_text() == \
        'training curves (30 logged windows, not smoothed)'
    assert plot_training.default_title(60, 5) == \
        'training curves (60 logged windows, bold: moving average of 5)'
    assert plot_training.default_title(3, 1) == 'training curves (3 logged windows, not smoothed)'
