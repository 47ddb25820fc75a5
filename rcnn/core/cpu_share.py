"""How training shares the machine's cores between the loader workers and MXNet's compute.

The rule (``plan_cpu_share``), from the usable cores ``C`` (the process's CPU affinity) and the
number of GPUs ``G`` training runs on:

* **CPU training** (``G = 0``): the forward/backward pass is the bulk of a step (97 % with the
  mnet recipe), so MXNet's operators get every core: ``OMP_NUM_THREADS = C``. A loader worker
  crops and labels an image in ~25 ms on one core while mnet's forward+backward takes ~150
  core-ms per image, so a worker needs ~1/6 of a core per core of compute: one worker per 6
  cores, at least one (``max(1, C // 6)``). Inline loading (0 workers) would put the whole crop
  on the step's critical path. Left unset, MXNet gives its operators half the cores; on 2 cores
  the previous default (2 workers, MXNet's threads) trained mnet at 7.66 images/s, this rule at
  11.34 (``bench/bench_train.py --compare-defaults``); with the threads fixed, 0, 1 and 2
  workers are within 3 % of each other there (``--compare-workers``).
* **GPU training** (``G >= 1``): the devices compute; the loader must feed them, so the workers
  get the cores but one, up to 8 per GPU (``max(1, min(C - 1, 8 G))``), and MXNet's CPU-side
  operators (copies, the metric, the OHEM op) keep the remaining cores, at least 1
  (``OMP_NUM_THREADS = max(1, C - workers)``).

MXNet's engine keeps its default of one CPU worker thread (``MXNET_CPU_WORKER_NTHREADS = 1``:
operators run one at a time, each with ``OMP_NUM_THREADS`` threads).

``--workers N`` overrides the worker count (the thread count then follows the same rule with
that N). Environment variables already set by the user (``OMP_NUM_THREADS``,
``MXNET_CPU_WORKER_NTHREADS``) are never overridden. MXNet reads them when it is imported, so
:func:`apply_thread_env` only has an effect before ``import mxnet``; ``train.py`` calls
:func:`configure_from_argv` first thing when run as a script.

This module imports nothing but the standard library and rcnn.utils.machine (it runs before
mxnet is imported).
"""
import argparse
import collections
import os
import sys

from rcnn.utils.machine import usable_cores

__all__ = ['CpuPlan', 'count_gpus', 'plan_cpu_share', 'apply_thread_env',
           'configure_from_argv', 'describe']

#: a loader worker per this many cores of CPU compute
CORES_PER_WORKER_CPU = 6
#: at most this many loader workers per GPU
WORKERS_PER_GPU = 8
#: engine worker threads (MXNet's own default)
ENGINE_CPU_THREADS = 1

CpuPlan = collections.namedtuple('CpuPlan', 'cores gpus workers omp_threads engine_threads '
                                            'workers_from_flag')


def count_gpus(gpus_flag='', environ=None):
    """GPUs training will use: the ids of ``--gpus`` or, without it, of CUDA_VISIBLE_DEVICES
    (the rule of ``rcnn.core.trainer.resolve_contexts``); 0 for the CPU."""
    environ = os.environ if environ is None else environ
    ids = gpus_flag if gpus_flag else environ.get('CUDA_VISIBLE_DEVICES', '')
    return len([part for part in str(ids).split(',') if part.strip()])


def plan_cpu_share(cores, gpus, workers=None):
    """The rule of the module docstring.

    Args:
        cores: usable CPU cores (>= 1); gpus: GPUs trained on (0: CPU training);
        workers: loader workers forced by ``--workers`` (None: chosen here).
    Returns:
        :class:`CpuPlan`.
    """
    cores, gpus = max(1, int(cores)), max(0, int(gpus))
    from_flag = workers is not None
    if gpus == 0:
        if workers is None:
            workers = max(1, cores // CORES_PER_WORKER_CPU)
        omp_threads = cores
    else:
        if workers is None:
            workers = max(1, min(cores - 1, WORKERS_PER_GPU * gpus))
        omp_threads = max(1, cores - workers)
    return CpuPlan(cores, gpus, int(workers), omp_threads, ENGINE_CPU_THREADS, from_flag)


def apply_thread_env(plan, environ=None):
    """Set ``OMP_NUM_THREADS`` / ``MXNET_CPU_WORKER_NTHREADS`` from ``plan`` where the user has
    not set them. Returns {name: (value, 'plan' | 'environment')} of what MXNet will read."""
    environ = os.environ if environ is None else environ
    wanted = {'OMP_NUM_THREADS': plan.omp_threads,
              'MXNET_CPU_WORKER_NTHREADS': plan.engine_threads}
    result = {}
    for name, value in wanted.items():
        if environ.get(name):
            result[name] = (environ[name], 'environment')
        else:
            environ[name] = str(value)
            result[name] = (str(value), 'plan')
    return result


def _pre_parser():
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--workers', type=int, default=None)
    pre.add_argument('--gpus', default='')
    return pre


def configure_from_argv(argv, environ=None):
    """Plan from train.py's command line (``--workers``, ``--gpus``) and apply the thread
    settings to the environment. Call before mxnet is imported. Returns the plan."""
    known, _ = _pre_parser().parse_known_args(argv)
    workers = known.workers if known.workers is not None and known.workers >= 0 else None
    plan = plan_cpu_share(usable_cores(), count_gpus(known.gpus, environ), workers)
    apply_thread_env(plan, environ)
    return plan


def describe(plan, environ=None):
    """One log line: the plan, and the thread settings MXNet actually got."""
    environ = os.environ if environ is None else environ
    omp = environ.get('OMP_NUM_THREADS', '(unset)')
    note = '' if 'mxnet' not in sys.modules or omp == str(plan.omp_threads) else (
        ' (the environment\'s OMP_NUM_THREADS=%s is used; the rule would give %d)'
        % (omp, plan.omp_threads))
    return ('cores: %d usable, %d GPU(s): %d loader worker(s)%s, MXNet compute threads '
            'OMP_NUM_THREADS=%s, engine CPU workers MXNET_CPU_WORKER_NTHREADS=%s%s'
            % (plan.cores, plan.gpus, plan.workers,
               ' (--workers)' if plan.workers_from_flag else ' (rule)', omp,
               environ.get('MXNET_CPU_WORKER_NTHREADS', '(unset)'), note))
