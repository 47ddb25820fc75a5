"""tools/measure_quality_heads.py end to end: the released mnet.25 starts a model with the blur
and visibility heads, trains on a small generated set, and its heads are measured on the val
split against the generator's labels.

A few iterations cannot teach the heads (the measurement needs hundreds, see docs/faces.md), so
this checks the run itself: the released weights fit once the widened output convolutions are
left fresh, the detector of the trained checkpoint returns the blur and visibility columns, the
figures are computed over the matched faces and the bounds decide the exit status.
"""
import json

import pytest

from conftest import shared_path

from tools import measure_quality_heads


@pytest.mark.slow
def test_train_and_measure_a_small_run(tmp_path, mnet25_prefix):
    shared_path('models', 'mnet.25', 'mnet.25-0000.params')
    data, prefix = str(tmp_path / 'sample'), str(tmp_path / 'model' / 'mnet')
    argv = ['--data', data, '--train-images', '8', '--val-images', '10', '--prefix', prefix,
            '--pretrained', mnet25_prefix, '--iters', '2', '--thresh', '0.3',
            '--set', 'SCALES=[(320, 320)]', 'TRAIN.BATCH_IMAGES=4']
    assert measure_quality_heads.main(argv) == 0
    summary = json.loads((tmp_path / 'model' / 'mnet-train-summary.json').read_text())
    assert summary['iterations'] == 2
    figures = json.loads((tmp_path / 'model' / ('mnet-%04d-quality-heads.json'
                                                % summary['checkpoint'])).read_text())
    # the released class scores find the drawn faces; after 2 iterations the fresh box
    # convolution leaves the boxes near their anchors, so a part of them match (16 of the 10 val
    # images' faces); val images 6 and 8 are blurred and a point is occluded, so both figures
    # are defined
    assert figures['faces'] >= 10 and figures['points'] == 5 * figures['faces']
    assert 0 < figures['occluded_points'] < figures['points']
    assert -1.0 <= figures['blur_spearman'] <= 1.0
    assert 0.0 <= figures['visibility_auc'] <= 1.0
    # measuring again without training: the same checkpoint, the same figures; an unreachable
    # bound fails the run
    again = argv[:argv.index('--pretrained')] + ['--thresh', '0.3', '--skip-train',
                                                    '--min-spearman', '1.01']
    assert measure_quality_heads.main(again) == 1
    remeasured = json.loads((tmp_path / 'model' / ('mnet-%04d-quality-heads.json'
                                                   % summary['checkpoint'])).read_text())
    assert remeasured['faces'] == figures['faces']
