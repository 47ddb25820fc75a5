"""A few CPU training iterations of the mnet preset with CASCADE=1 through train.py, on the
real dlib photos in ../shared (160-pixel crops, 2 images per batch): the run ends, the cascade
heads got gradients (their zero-initialised biases moved: weight decay alone keeps a zero
bias at zero), their metrics are logged, the checkpoint's deploy graph has the cascade outputs
after each stride's, and a run stopped and resumed ends with the parameters of the run that was
not stopped.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import pytest

from rcnn.checkpoint.params import load_checkpoint
from rcnn.config import generate_config
from rcnn.model_layout import ModelLayout

ROOT = Path(__file__).resolve().parents[2]


def _train(prefix, dlib_faces, root_path, *extra):
    """train.py with CASCADE=1 on 160-pixel crops; returns the finished process."""
    cmd = [sys.executable, str(ROOT / 'train.py'), '--network', 'mnet', '--prefix', str(prefix),
           '--batch_images', '2', '--workers', '1', '--frequent', '1', '--seed', '3',
           '--dataset_path', str(dlib_faces), '--root_path', str(root_path), *extra,
           '--set', 'CASCADE=1', 'SCALES=[(160, 160)]']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('CUDA_VISIBLE_DEVICES', None)
    proc = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _digest(proc):
    match = re.search(r'final parameter digest \(rank 0 of 1\): ([0-9a-f]{64})',
                      proc.stdout + proc.stderr)
    assert match, (proc.stdout + proc.stderr)[-3000:]
    return match.group(1)


@pytest.mark.slow
def test_three_cascade_iterations_train_the_stage_heads(tmp_path, dlib_faces):
    prefix = tmp_path / 'cascade'
    proc = _train(prefix, dlib_faces, tmp_path, '--max_iters', '3')
    # the stages' metrics are logged beside the first stage's (the original's names)
    log = proc.stdout + proc.stderr
    assert re.search(r'Iter\[3\].* RPNAccCAS0_s8=[0-9.]+ RPNL1LossCAS0_s8=', log), log[-2000:]
    sym, arg_params, _ = load_checkpoint(str(prefix), 1)
    cfg, _ = generate_config('mnet', 'retinaface', {'CASCADE': 1})
    assert [n[:-len('_output')] for n in sym.list_outputs()] == \
        ModelLayout.from_config(cfg).deploy_output_names()
    for stride in (32, 16, 8):
        bias = arg_params['face_rpn_cls_score_stride%d_cas0_bias' % stride]
        assert float(mx.nd.abs(bias).sum().asscalar()) > 0, stride
    box_biases = [float(mx.nd.abs(arg_params['face_rpn_bbox_pred_stride%d_cas0_bias' % s])
                        .sum().asscalar()) for s in (32, 16, 8)]
    assert any(b > 0 for b in box_biases)          # refined anchors matched some face


@pytest.mark.slow
def test_a_resumed_cascade_run_ends_where_the_uninterrupted_one_does(tmp_path, dlib_faces):
    whole = _train(tmp_path / 'whole', dlib_faces, tmp_path, '--max_iters', '4')
    _train(tmp_path / 'part', dlib_faces, tmp_path, '--max_iters', '2')
    resumed = _train(tmp_path / 'part', dlib_faces, tmp_path, '--max_iters', '4', '--resume')
    assert _digest(resumed) == _digest(whole)
