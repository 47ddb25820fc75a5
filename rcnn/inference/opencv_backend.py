"""OpenCV DNN backend for RetinaFace inference (same ``forward`` interface as the MXNet one).

OpenCV 4.11's ONNX importer cannot load our dynamic-size export: it evaluates ``Shape`` at load
time and rejects symbolic sizes ("dynamic 'zero' shapes are not supported"), and a fixed-size
export only runs at other sizes that happen to agree with its frozen ``Crop`` (``Slice``) ends.
So this backend exports one fixed-size ONNX graph per input ``(height, width)``
(:func:`cached_static_onnx_path`: cached next to the onnxruntime backend's exports, keyed by the
checkpoint's sha1 and the size), loads it with ``cv2.dnn.readNetFromONNX`` and keeps the last
``max_shapes`` networks. A video or a folder of same-size photos costs one export (about a
second for mnet.25); every new size costs another. Batches are run image by image.

``model`` may also be a fixed-size ``.onnx`` file (``tools/export_onnx.py --static HxW``); inputs
of any other size are then refused with a clear error.
"""
import logging
import os
from collections import OrderedDict

import numpy as np

from rcnn.deploy import onnx_export, runtime_support
from rcnn.inference.onnx_backend import default_cache_dir
from rcnn.model_layout import FEATURE_STRIDES
from rcnn.model_layout import deploy_output_names as released_output_names
from rcnn.checkpoint.files import checkpoint_name

logger = logging.getLogger(__name__)

DEFAULT_STRIDES = FEATURE_STRIDES
#: bumped when the export recipe changes, so stale cache files are not reused
EXPORT_RECIPE_VERSION = '1'


def cached_static_onnx_path(prefix, epoch, height, width, cache_dir=None):
    """Export ``prefix``/``epoch`` with a fixed ``1 x 3 x height x width`` input unless already
    cached; returns the ``.onnx`` path."""
    cache_dir = cache_dir or default_cache_dir()
    key = onnx_export.checkpoint_digest(
        prefix, epoch, extra='recipe=%s;static=%dx%d' % (EXPORT_RECIPE_VERSION, height, width))
    path = os.path.join(cache_dir, '%s-%dx%d-%s.onnx'
                        % (checkpoint_name(os.path.basename(prefix), epoch), height, width,
                           key[:16]))
    if os.path.isfile(path):
        return path
    logger.info('exporting %s for OpenCV at %dx%d to %s', checkpoint_name(prefix, epoch), height,
                width, path)
    onnx_export.export_checkpoint(prefix, epoch, path, input_shape=(1, 3, height, width),
                                  dynamic=False, verify=False)
    return path


def _import_cv2():
    import cv2
    if not hasattr(cv2, 'dnn') or not hasattr(cv2.dnn, 'readNetFromONNX'):
        raise ImportError('this OpenCV build has no DNN module (cv2.dnn.readNetFromONNX)')
    return cv2


class OpenCVBackend(object):
    """Forward pass of a RetinaFace deploy graph with OpenCV's DNN module (CPU).

    Parameters
    ----------
    model : str, a checkpoint prefix (with ``epoch``) or a fixed-size ``.onnx`` file.
    epoch : int or None, checkpoint epoch; None for an ``.onnx`` file.
    threads : int or None, ``cv2.setNumThreads`` (None: OpenCV's default).
    cache_dir : where per-size exports are cached (see
        :func:`rcnn.inference.onnx_backend.default_cache_dir`).
    strides : feature strides whose released-layout outputs :meth:`forward` returns, coarse
        to fine (when ``output_names`` is None).
    output_names : the outputs :meth:`forward` returns, in this order (None: the released
        layout's of ``strides``).
    max_shapes : networks kept loaded (least recently used dropped first).
    """

    def __init__(self, model, epoch=None, threads=None, cache_dir=None, strides=DEFAULT_STRIDES,
                 max_shapes=4, output_names=None):
        self.cv2 = _import_cv2()
        if threads is not None:
            if int(threads) < 1:
                raise ValueError('threads=%r: expected a positive thread count or None'
                                 % (threads,))
            self.cv2.setNumThreads(int(threads))
        self.strides = tuple(int(s) for s in strides)
        self.output_names = (released_output_names(self.strides) if output_names is None
                             else [str(n) for n in output_names])
        self.cache_dir = cache_dir
        self.max_shapes = int(max_shapes)
        self._nets = OrderedDict()
        self.fixed_size = None
        if epoch is None:
            if not os.path.isfile(model):
                raise FileNotFoundError('ONNX model %s not found (pass epoch=E to export a '
                                        'checkpoint prefix)' % model)
            self.prefix, self.epoch = None, None
            self.fixed_size = self._model_input_size(model)
            self._nets[self.fixed_size] = self._load(model)
        else:
            self.prefix, self.epoch = str(model), int(epoch)
            onnx_export.checkpoint_digest(self.prefix, self.epoch)   # fails early if missing

    @classmethod
    def from_checkpoint(cls, prefix, epoch, ctx_id=-1, threads=None, strides=DEFAULT_STRIDES,
                        cache_dir=None, output_names=None):
        """The :func:`rcnn.inference.create_backend` factory: CPU only (``ctx_id`` < 0);
        ``prefix`` may name an ``.onnx`` file (``epoch`` is then ignored)."""
        if int(ctx_id) >= 0:
            raise ValueError('the opencv backend runs on the CPU only; pass ctx_id=-1')
        epoch = None if str(prefix).endswith('.onnx') else epoch
        return cls(prefix, epoch=epoch, threads=threads, cache_dir=cache_dir, strides=strides,
                   output_names=output_names)

    @staticmethod
    def _model_input_size(path):
        import onnx
        dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
        if len(dims) != 4 or not all(d.dim_value > 0 for d in dims[2:]):
            raise ValueError('%s has a dynamic input size, which OpenCV %s cannot load; export '
                             'it with tools/export_onnx.py --static HxW'
                             % (path, _import_cv2().__version__))
        return int(dims[2].dim_value), int(dims[3].dim_value)

    def _load(self, path):
        runtime_support.check_runtime(path, 'opencv')
        try:
            net = self.cv2.dnn.readNetFromONNX(str(path))
        except self.cv2.error as exc:
            raise ValueError('OpenCV %s cannot load %s: %s'
                             % (self.cv2.__version__, path, str(exc).strip().splitlines()[-1]))
        net.setPreferableBackend(self.cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(self.cv2.dnn.DNN_TARGET_CPU)
        return net

    def net(self, height, width):
        """The network for inputs of ``height x width`` (exported and loaded on first use)."""
        key = (int(height), int(width))
        net = self._nets.get(key)
        if net is not None:
            self._nets.move_to_end(key)
            return net
        if self.fixed_size is not None:
            raise ValueError('this ONNX model takes %dx%d inputs only, got %dx%d (export one per '
                             'size with --static HxW, or pass a checkpoint prefix)'
                             % (self.fixed_size + key))
        path = cached_static_onnx_path(self.prefix, self.epoch, key[0], key[1], self.cache_dir)
        net = self._nets[key] = self._load(path)
        while len(self._nets) > self.max_shapes:
            self._nets.popitem(last=False)
        return net

    def forward(self, data):
        """data: (B, 3, H, W) float32 (the recipe's pixel transform applied) -> list of the
        outputs, each
        (B, C, H_s, W_s) float32 numpy, in :attr:`output_names` order."""
        if not isinstance(data, np.ndarray) or data.ndim != 4 or data.shape[1] != 3:
            raise ValueError('data: expected a (B, 3, H, W) numpy array, got %s'
                             % (getattr(data, 'shape', type(data).__name__),))
        net = self.net(data.shape[2], data.shape[3])
        per_image = []
        for item in np.ascontiguousarray(data, dtype=np.float32):
            net.setInput(item[None])
            per_image.append(net.forward(self.output_names))
        return [np.concatenate([outs[k] for outs in per_image]) for k in range(len(self.output_names))]

    def __repr__(self):
        return 'OpenCVBackend(%s, loaded_sizes=%s)' % (
            self.prefix or 'fixed %dx%d' % self.fixed_size, list(self._nets))
