"""The rule sharing cores between loader workers and MXNet compute (rcnn/core/cpu_share.py)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from rcnn.core import cpu_share
from rcnn.core.cpu_share import apply_thread_env, count_gpus, plan_cpu_share
from rcnn.utils import machine


@pytest.mark.parametrize('cores, gpus, workers, want_workers, want_omp', [
    (2, 0, None, 1, 2),       # CI-sized machine: one worker, compute on both cores
    (1, 0, None, 1, 1),
    (5, 0, None, 1, 5),
    (12, 0, None, 2, 12),     # one worker per 6 cores
    (64, 0, None, 10, 64),
    (2, 0, 0, 0, 2),          # --workers overrides
    (2, 0, 2, 2, 2),
    (16, 1, None, 8, 8),      # GPU: up to 8 workers per GPU, the rest for MXNet's CPU side
    (16, 4, None, 15, 1),     # all cores but one
    (2, 1, None, 1, 1),
    (8, 1, 3, 3, 5),
])
def test_rule_by_hand(cores, gpus, workers, want_workers, want_omp):
    plan = plan_cpu_share(cores, gpus, workers)
    assert (plan.workers, plan.omp_threads, plan.engine_threads) == (want_workers, want_omp, 1)
    assert plan.workers_from_flag == (workers is not None)


def test_user_environment_wins():
    environ = {'OMP_NUM_THREADS': '3'}
    got = apply_thread_env(plan_cpu_share(2, 0), environ)
    assert got == {'OMP_NUM_THREADS': ('3', 'environment'),
                   'MXNET_CPU_WORKER_NTHREADS': ('1', 'plan')}
    assert environ == {'OMP_NUM_THREADS': '3', 'MXNET_CPU_WORKER_NTHREADS': '1'}


def test_gpus_from_the_flag_or_cuda_visible_devices():
    assert count_gpus('', {}) == 0
    assert count_gpus('', {'CUDA_VISIBLE_DEVICES': ''}) == 0
    assert count_gpus('', {'CUDA_VISIBLE_DEVICES': '0,1,2'}) == 3
    assert count_gpus('1,3', {'CUDA_VISIBLE_DEVICES': '0,1,2'}) == 2


def test_describe_names_workers_and_threads():
    environ = {'OMP_NUM_THREADS': '2', 'MXNET_CPU_WORKER_NTHREADS': '1'}
    line = cpu_share.describe(plan_cpu_share(2, 0), environ)
    assert '1 loader worker(s) (rule)' in line and 'OMP_NUM_THREADS=2' in line


_PROBE = '''
import json, os, runpy, sys
sys.argv = ['train.py'] + sys.argv[1:] + ['--lr_step', 'x']   # fails after the thread set-up
try:
    runpy.run_path('train.py', run_name='__main__')
except SystemExit:
    pass
print(json.dumps({'omp': os.environ.get('OMP_NUM_THREADS'), 'mxnet': 'mxnet' in sys.modules,
                  'engine': os.environ.get('MXNET_CPU_WORKER_NTHREADS')}))
'''


@pytest.mark.parametrize('extra, env_omp, want', [
    ([], None, str(machine.usable_cores())),
    (['--gpus', '0'], None, str(max(1, machine.usable_cores() - 1))),
    ([], '1', '1'),
])
def test_train_script_sets_threads_before_importing_mxnet(extra, env_omp, want):
    env = {k: v for k, v in os.environ.items()
           if k not in ('OMP_NUM_THREADS', 'MXNET_CPU_WORKER_NTHREADS', 'CUDA_VISIBLE_DEVICES')}
    if env_omp:
        env['OMP_NUM_THREADS'] = env_omp
    out = subprocess.run([sys.executable, '-c', _PROBE] + extra, cwd=str(ROOT), env=env,
                         capture_output=True, text=True, timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {'omp': want, 'mxnet': True, 'engine': '1'}
