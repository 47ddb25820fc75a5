"""Datasets: label files -> roidb (one dict per image), and the faces of an image as one object
(:class:`FaceAnnotations`).

``rcnn.dataset.retinaface`` is the dataset class under its original name (an alias of
:class:`RetinaFaceDataset`, whose module is ``rcnn.dataset.retinaface_dataset``).
"""
from .annotations import FaceAnnotations
from .retinaface_dataset import RetinaFaceDataset, retinaface

__all__ = ['RetinaFaceDataset', 'retinaface', 'FaceAnnotations']
