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
