"""Deployment: ONNX export (:mod:`rcnn.deploy.onnx_export`) and MKLDNN INT8 post-training
quantization (:mod:`rcnn.deploy.quantize`) of RetinaFace deploy checkpoints.

``onnx`` / ``onnxruntime`` are optional extras (``requirements-deploy.txt``); they are imported
only by the functions that need them.
"""
