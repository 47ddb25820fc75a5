"""Deployment of RetinaFace deploy checkpoints of every layout: ONNX export
(:mod:`rcnn.deploy.onnx_export`, deformable convolutions in :mod:`rcnn.deploy.onnx_deformable`),
the insightface package's detector layout (:mod:`rcnn.deploy.insightface_layout`), MKLDNN INT8
post-training quantization (:mod:`rcnn.deploy.quantize`), the layout read from a checkpoint's
files (:mod:`rcnn.deploy.checkpoint_layout`) and the operators each runtime lacks
(:mod:`rcnn.deploy.runtime_support`).

``onnx`` / ``onnxruntime`` are optional extras (``requirements-deploy.txt``); they are imported
only by the functions that need them.
"""
