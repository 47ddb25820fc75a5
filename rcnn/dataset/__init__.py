"""Datasets: label files -> roidb (one dict per image)."""
from .retinaface import retinaface

__all__ = ['retinaface']
