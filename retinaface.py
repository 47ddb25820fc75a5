"""RetinaFace face detector (``from retinaface import RetinaFace``), as in the original project.

The detector lives in :mod:`rcnn.inference.detector`; this module re-exports its public names
so the original import keeps working. Example::

    import cv2
    from retinaface import RetinaFace

    detector = RetinaFace('../shared/models/mnet.25/mnet.25', 0, ctx_id=-1)   # -1: CPU
    faces, landmarks = detector.detect(cv2.imread('photo.jpg'), threshold=0.5)
"""
from rcnn.inference.detector import (MAX_SCALED_SIDE, MIN_IMAGE_SIDE, PAD_MULTIPLE,
                                     SUPPORTED_NETWORKS, InvalidInputError, RetinaFace,
                                     as_bgr_image, check_scales, check_threshold)

__all__ = ['RetinaFace', 'InvalidInputError', 'as_bgr_image', 'check_scales', 'check_threshold',
           'SUPPORTED_NETWORKS', 'MIN_IMAGE_SIDE',
           'MAX_SCALED_SIDE', 'PAD_MULTIPLE']
