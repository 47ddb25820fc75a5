"""Inference: the detector, its pipeline, network backends and the post-processing.

* :mod:`rcnn.inference.detector`: ``RetinaFace``, the front (checkpoint, recipe, input checks);
* :mod:`rcnn.inference.pipeline`: plan -> forward -> decode -> merge, and its ``Schedule``
  (cross-image batches, flip batches, concurrent scales);
* :mod:`rcnn.inference.postprocess`: decoding, flip-back, NMS and box voting;
* the backends (``mxnet_backend``, ``onnx_backend``, ``opencv_backend``);
* :mod:`rcnn.inference.image_workers`: processes detecting many images, one detector each;
* :mod:`rcnn.inference.align`: face crops for recognition.

A backend is an object with ``forward(data) -> list of numpy arrays``: ``data`` is
``(B, 3, H, W)`` float32 (the network input made by :mod:`rcnn.processing.pixels`) and the
outputs are the deploy outputs named by its ``output_names`` (by default, for each stride in
turn, those of :func:`rcnn.model_layout.deploy_output_names`: 9 for the released layout), each
``(B, C, H_s, W_s)``. :func:`create_backend` builds one by name from a checkpoint.
"""
from rcnn.model_layout import FEATURE_STRIDES

__all__ = ['BACKENDS', 'create_backend']


def _mxnet_backend(prefix, epoch, ctx_id, threads, strides, output_names):
    from rcnn.inference.mxnet_backend import MXNetBackend
    return MXNetBackend.from_checkpoint(prefix, epoch, ctx_id=ctx_id, threads=threads,
                                        strides=strides, output_names=output_names)


def _onnxruntime_backend(prefix, epoch, ctx_id, threads, strides, output_names):
    from rcnn.inference.onnx_backend import OnnxRuntimeBackend
    return OnnxRuntimeBackend.from_checkpoint(prefix, epoch, ctx_id=ctx_id, threads=threads,
                                              strides=strides, output_names=output_names)


def _opencv_backend(prefix, epoch, ctx_id, threads, strides, output_names):
    from rcnn.inference.opencv_backend import OpenCVBackend
    return OpenCVBackend.from_checkpoint(prefix, epoch, ctx_id=ctx_id, threads=threads,
                                         strides=strides, output_names=output_names)


#: backend name -> factory(prefix, epoch, ctx_id, threads, strides, output_names)
BACKENDS = {'mxnet': _mxnet_backend, 'onnxruntime': _onnxruntime_backend,
            'opencv': _opencv_backend}


def create_backend(name, prefix, epoch, ctx_id=-1, threads=None, strides=FEATURE_STRIDES,
                   output_names=None):
    """The backend ``name`` (see :data:`BACKENDS`) running checkpoint ``prefix``/``epoch``.

    ``output_names``: the outputs ``forward`` returns, in order (None: the released layout's
    of ``strides``).

    Raises:
        ValueError for an unknown backend name.
    """
    factory = BACKENDS.get(name)
    if factory is None:
        raise ValueError('unknown backend %r; available: %s'
                         % (name, ', '.join(sorted(BACKENDS))))
    return factory(prefix, epoch, ctx_id, threads, tuple(strides),
                   None if output_names is None else list(output_names))
