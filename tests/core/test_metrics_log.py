"""<prefix>-metrics.csv (rcnn/core/metrics_log.py): rows, empty windows, resume. The rows of a
real run are compared with its log lines in tests/core/test_validation.py."""
import csv

import pytest

from rcnn.core.metrics_log import FIXED_COLUMNS, MetricsLog, metrics_csv_path
from rcnn.core.trainer import Position

NAMES = ['RPNAcc_s32', 'RPNL1Loss_s32']


def _rows(prefix):
    with open(metrics_csv_path(str(prefix))) as handle:
        return list(csv.reader(handle))


def _log(log, iteration, acc, loss, epoch=0):
    log.write_row(Position(epoch, iteration, iteration), 0.01,
                  {'samples_per_s': 2.5, 'data_s': 0.125, 'step_s': 0.75},
                  {'RPNAcc_s32': acc, 'RPNL1Loss_s32': loss})


def test_one_row_per_window_with_every_value(tmp_path):
    log = MetricsLog(str(tmp_path / 'm'), NAMES)
    _log(log, 20, 0.5, 0.25)
    _log(log, 40, 0.75, float('nan'))           # no positive anchor in the window
    rows = _rows(tmp_path / 'm')
    assert rows[0] == list(FIXED_COLUMNS) + NAMES
    assert rows[1] == ['20', '0', '20', '0.01', '2.5', '0.125', '0.75', '0.5', '0.25']
    assert rows[2][-2:] == ['0.75', '']


def test_as_a_hook_it_writes_the_logged_windows_only(tmp_path):
    from types import SimpleNamespace
    from rcnn.core.trainer import LogWindow
    log = MetricsLog(str(tmp_path / 'm'), NAMES)
    trainer = SimpleNamespace(position=Position(0, 3, 3), log_window=None)
    log.after_step(trainer)                          # not a logged step: no row
    trainer.log_window = LogWindow(0.01, {'samples_per_s': 2.0, 'data_s': 0.5, 'step_s': 1.0},
                                   {'RPNAcc_s32': 0.25})
    log.after_step(trainer)
    rows = _rows(tmp_path / 'm')
    assert rows[1:] == [['3', '0', '3', '0.01', '2.0', '0.5', '1.0', '0.25', '']]


def test_a_new_run_starts_afresh_and_a_resume_drops_later_rows(tmp_path):
    prefix = str(tmp_path / 'm')
    log = MetricsLog(prefix, NAMES)
    for it in (20, 40, 60, 80):
        _log(log, it, 0.5, 0.25)
    MetricsLog(prefix, NAMES, resume_iteration=80)
    assert len(_rows(prefix)) == 5
    log = MetricsLog(prefix, NAMES, resume_iteration=50)    # resumed from iteration 50
    assert [r[0] for r in _rows(prefix)[1:]] == ['20', '40']
    _log(log, 60, 0.9, 0.1)
    assert [r[0] for r in _rows(prefix)[1:]] == ['20', '40', '60']
    # other columns (another network's strides): the table restarts
    MetricsLog(prefix, ['RPNAcc_s64'], resume_iteration=60)
    assert _rows(prefix) == [list(FIXED_COLUMNS) + ['RPNAcc_s64']]
    MetricsLog(prefix, NAMES)
    assert len(_rows(prefix)) == 1


@pytest.mark.parametrize('value, cell', [(3, '3'), (0.1, '0.1'), (None, ''),
                                         (float('nan'), ''), (1e-08, '1e-08')])
def test_cells(value, cell):
    from rcnn.core.metrics_log import csv_cell
    assert csv_cell(value) == cell
