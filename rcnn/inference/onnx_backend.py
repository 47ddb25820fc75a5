"""onnxruntime backend for RetinaFace inference (same ``forward`` interface as the MXNet one).

``OnnxRuntimeBackend(model)`` runs an exported graph on onnxruntime's CPU provider:

* ``model`` is an ``.onnx`` file, or a checkpoint prefix with ``epoch=E``: the checkpoint is then
  exported once with dynamic batch / height / width (see :mod:`rcnn.deploy.onnx_export`),
  checked against MXNet, and cached under ``cache_dir`` (default ``$RETINAFACE_CACHE_DIR`` or
  ``~/.cache/retinaface/onnx``), keyed by the sha1 of the checkpoint files, so the checkpoint's
  own directory is never written to;
* ``threads`` sets onnxruntime's intra-op thread count (None: its default, one per physical
  core); inter-op parallelism is off (the graph is a chain);
* memory-pattern planning is off: it caches an allocation plan per input shape for the
  session's lifetime, which grows without bound when every image has a new size.

``forward(data)`` takes ``(B, 3, H, W)`` float32 and returns the outputs named ``output_names``
as numpy arrays, in that order (by default the released layout's nine:
``face_rpn_cls_prob_reshape_stride{s}``, ``face_rpn_bbox_pred_stride{s}``,
``face_rpn_landmark_pred_stride{s}`` for ``s`` = 32, 16, 8; any layout's names otherwise).
Outputs are fetched by name, whatever their order in the file.
"""
import logging
import os

import numpy as np

from rcnn.deploy import onnx_export
from rcnn.model_layout import FEATURE_STRIDES
from rcnn.checkpoint.files import checkpoint_name
from rcnn.model_layout import deploy_output_names as released_output_names

logger = logging.getLogger(__name__)

DEFAULT_STRIDES = FEATURE_STRIDES
#: bumped when the export recipe changes, so stale cache files are not reused
EXPORT_RECIPE_VERSION = '1'


def default_cache_dir():
    """``$RETINAFACE_CACHE_DIR``, else ``$XDG_CACHE_HOME/retinaface/onnx`` (``~/.cache`` by default)."""
    if os.environ.get('RETINAFACE_CACHE_DIR'):
        return os.environ['RETINAFACE_CACHE_DIR']
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'retinaface', 'onnx')


def cached_onnx_path(prefix, epoch, cache_dir=None):
    """Export ``prefix``/``epoch`` (dynamic shapes, verified against MXNet) unless already cached;
    returns the ``.onnx`` path."""
    cache_dir = cache_dir or default_cache_dir()
    key = onnx_export.checkpoint_digest(prefix, epoch, extra='recipe=%s' % EXPORT_RECIPE_VERSION)
    path = os.path.join(cache_dir, '%s-%s.onnx' % (checkpoint_name(os.path.basename(prefix), epoch),
                                                   key[:16]))
    if os.path.isfile(path):
        logger.info('using cached ONNX export %s', path)
        return path
    logger.info('exporting %s to %s', checkpoint_name(prefix, epoch), path)
    onnx_export.export_checkpoint(prefix, epoch, path, input_shape=(1, 3, 640, 640), dynamic=True,
                                  verify=True, threads=1)
    return path


class OnnxRuntimeBackend(object):
    """Forward pass of a RetinaFace deploy graph on onnxruntime (CPU).

    Parameters
    ----------
    model : str, a ``.onnx`` file, or a checkpoint prefix when ``epoch`` is given.
    epoch : int or None, checkpoint epoch (export + cache) or None for an ``.onnx`` file.
    threads : int or None, intra-op threads (None: onnxruntime's default).
    cache_dir : where exported checkpoints are cached (see :func:`default_cache_dir`).
    strides : feature strides whose released-layout outputs :meth:`forward` returns, coarse
        to fine (when ``output_names`` is None).
    output_names : the outputs :meth:`forward` returns, in this order (None: the released
        layout's of ``strides``).

    Attributes: ``output_names`` (the order of :meth:`forward`), ``onnx_path``, ``session``,
    ``concurrent_forward`` (True: :meth:`forward` may run in several threads at once; an
    onnxruntime session is thread-safe and releases the GIL while it runs).
    """

    concurrent_forward = True

    def __init__(self, model, epoch=None, threads=None, cache_dir=None, strides=DEFAULT_STRIDES,
                 output_names=None):
        if epoch is None:
            if not os.path.isfile(model):
                raise FileNotFoundError('ONNX model %s not found (pass epoch=E to export a '
                                        'checkpoint prefix)' % model)
            self.onnx_path = str(model)
        else:
            self.onnx_path = cached_onnx_path(model, int(epoch), cache_dir)
        self.threads = threads
        self.session = onnx_export.create_session(self.onnx_path, threads, varying_shapes=True)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError('%s: expected one graph input (data), found %s'
                             % (self.onnx_path, [inp.name for inp in inputs]))
        self.input_name = inputs[0].name
        self.strides = tuple(int(s) for s in strides)
        self.output_names = (released_output_names(self.strides) if output_names is None
                             else [str(n) for n in output_names])
        available = [out.name for out in self.session.get_outputs()]
        missing = [name for name in self.output_names if name not in available]
        if missing:
            raise ValueError('%s: not a RetinaFace deploy graph, outputs %s missing (it has %s)'
                             % (self.onnx_path, missing, available))

    @classmethod
    def from_checkpoint(cls, prefix, epoch, ctx_id=-1, threads=None, strides=DEFAULT_STRIDES,
                        cache_dir=None, output_names=None):
        """The :func:`rcnn.inference.create_backend` factory: CPU only (``ctx_id`` must be < 0).

        ``prefix`` may also name an ``.onnx`` file directly (``epoch`` is then ignored)."""
        if int(ctx_id) >= 0:
            raise ValueError('the onnxruntime backend runs on the CPU only (this build has the '
                             'CPUExecutionProvider); pass ctx_id=-1')
        epoch = None if str(prefix).endswith('.onnx') else epoch
        return cls(prefix, epoch=epoch, threads=threads, cache_dir=cache_dir, strides=strides,
                   output_names=output_names)

    def forward(self, data):
        """data: (B, 3, H, W) float32 (the recipe's pixel transform applied) -> list of the
        outputs, each (B, C, H_s, W_s) float32 numpy, in :attr:`output_names` order."""
        if not isinstance(data, np.ndarray) or data.ndim != 4 or data.shape[1] != 3:
            raise ValueError('data: expected a (B, 3, H, W) numpy array, got %s'
                             % (getattr(data, 'shape', type(data).__name__),))
        if data.dtype != np.float32 or not data.flags['C_CONTIGUOUS']:
            data = np.ascontiguousarray(data, dtype=np.float32)
        return self.session.run(self.output_names, {self.input_name: data})

    def __repr__(self):
        return 'OnnxRuntimeBackend(%r, threads=%r)' % (self.onnx_path, self.threads)
