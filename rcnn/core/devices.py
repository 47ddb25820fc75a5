"""Where training runs: the devices of this process and its share of the data.

* :func:`resolve_contexts`: the MXNet contexts from ``--gpus`` / ``--cpus`` /
  CUDA_VISIBLE_DEVICES, as the original (GPUs from CUDA_VISIBLE_DEVICES, else the CPU);
* :func:`shard_roidb`: a distributed worker's shard of the roidb.
"""
import os

import mxnet as mx

__all__ = ['DeviceError', 'resolve_contexts', 'shard_roidb']


class DeviceError(RuntimeError):
    """The requested devices cannot be used by this MXNet build."""


def resolve_contexts(gpus='', cpus=0, environ=None):
    """Training contexts, as the original: GPUs from CUDA_VISIBLE_DEVICES, else the CPU.

    Args:
        gpus: ``--gpus`` (``'0,1'``); when set it wins over CUDA_VISIBLE_DEVICES and names
            device ids as MXNet sees them.
        cpus: ``--cpus N`` > 0 forces N CPU contexts (data-parallel on one CPU; testing).
        environ: environment mapping (default ``os.environ``).
    Returns:
        list of mx.Context.
    Raises:
        DeviceError: GPUs requested but this MXNet has no CUDA support / too few GPUs.
    """
    environ = os.environ if environ is None else environ
    if cpus:
        if gpus:
            raise DeviceError('--cpus and --gpus are exclusive')
        return [mx.cpu(i) for i in range(int(cpus))]
    if gpus:
        source = '--gpus %s' % gpus
        ids = [int(tok) for tok in str(gpus).split(',') if tok.strip()]
    else:
        visible = environ.get('CUDA_VISIBLE_DEVICES', '').strip()
        if not visible:
            return [mx.cpu()]
        source = 'CUDA_VISIBLE_DEVICES=%s' % visible
        ids = list(range(len([tok for tok in visible.split(',') if tok.strip()])))
    if not mx.runtime.Features().is_enabled('CUDA'):
        raise DeviceError(
            '%s asks for GPU training but this MXNet build (%s) has no CUDA support. Install '
            'the CUDA build matching your driver (e.g. pip install mxnet-cu112==1.9.1, see the '
            'README), or train on the CPU with CUDA_VISIBLE_DEVICES unset/empty and no --gpus.'
            % (source, mx.__version__))
    available = mx.context.num_gpus()
    if not ids or max(ids) >= available:
        raise DeviceError('%s asks for GPU ids %s but only %d GPU(s) are visible'
                          % (source, ids, available))
    return [mx.gpu(i) for i in ids]


def shard_roidb(roidb, rank, num_workers):
    """Worker ``rank``'s shard: every ``num_workers``-th entry, all shards the same length.

    Equal lengths keep the synchronous workers at the same number of batches per epoch
    (a worker with one batch more would wait forever for the others' gradients).
    """
    if num_workers <= 1:
        return list(roidb)
    per_worker = len(roidb) // num_workers
    if per_worker == 0:
        raise ValueError('%d roidb entries cannot be shared by %d workers'
                         % (len(roidb), num_workers))
    return list(roidb[rank::num_workers][:per_worker])
