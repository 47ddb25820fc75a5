"""Aligned face crops for face recognition: the 5-point similarity alignment of ArcFace.

Each face's 5 landmarks (left eye, right eye, nose, left and right mouth corners, as the detector
returns them) are mapped onto a reference template by the least-squares similarity transform
(rotation, uniform scale, translation; Umeyama's method, no reflection), and the image is warped
with ``cv2.warpAffine`` (bilinear, black outside the image).

Templates (pixel coordinates, x y):

* 112x112, the ArcFace / insightface template (:data:`ARCFACE_112`), the input that ArcFace
  recognition models expect;
* 96x112 (width x height), the older SphereFace / CosFace template: the same points 8 pixels to
  the left (:data:`TEMPLATE_96x112`); ArcFace's 112x112 template is that one padded by 8 pixels
  on each side, so the two crops show the face at the same scale.

For other sizes the 112x112 template is scaled by ``size / 112`` (the insightface package's
``estimate_norm`` instead scales multiples of 128 by ``size / 128`` and shifts them 8 * ratio
to the right; pass ``template=`` for that or any other layout).
"""
import numpy as np

__all__ = ['ARCFACE_112', 'TEMPLATE_96x112', 'reference_points', 'similarity_transforms',
           'align_faces']

#: ArcFace 112x112 reference points: left eye, right eye, nose, left / right mouth corner
ARCFACE_112 = np.array([[38.2946, 51.6963],
                        [73.5318, 51.5014],
                        [56.0252, 71.7366],
                        [41.5493, 92.3655],
                        [70.7299, 92.2041]], dtype=np.float64)
#: the 96 (wide) x 112 (high) template of SphereFace / CosFace crops
TEMPLATE_96x112 = ARCFACE_112 - np.array([8.0, 0.0])
NUM_POINTS = 5


def reference_points(size=112):
    """(5, 2) float64 template of a ``size x size`` crop: :data:`ARCFACE_112` * size / 112."""
    size = int(size)
    if size < 1:
        raise ValueError('size must be a positive number of pixels, got %r' % (size,))
    return ARCFACE_112 * (size / 112.0)


def similarity_transforms(landmarks, template):
    """Least-squares similarity transforms mapping each face's points onto ``template``.

    Args:
        landmarks: (N, K, 2) float source points (K >= 2), or (K, 2) for one face.
        template: (K, 2) float destination points.
    Returns:
        (N, 2, 3) float64 matrices ``M`` with ``template ~ M[:, :2] @ p + M[:, 2]``
        (the layout ``cv2.warpAffine`` takes).
    Raises:
        ValueError for mismatched shapes, non-finite points or a face whose points coincide.
    """
    src = np.asarray(landmarks, dtype=np.float64)
    if src.ndim == 2:
        src = src[None]
    dst = np.asarray(template, dtype=np.float64)
    if src.ndim != 3 or src.shape[2] != 2 or dst.shape != src.shape[1:] or dst.shape[0] < 2:
        raise ValueError('landmarks %s and template %s: expected (N, K, 2) and (K, 2), K >= 2'
                         % (src.shape, dst.shape))
    if not np.isfinite(src).all():
        bad = np.where(~np.isfinite(src).all(axis=(1, 2)))[0]
        raise ValueError('landmarks of face(s) %s are not finite' % bad.tolist())
    src_mean = src.mean(axis=1, keepdims=True)                       # (N, 1, 2)
    dst_mean = dst.mean(axis=0)                                      # (2,)
    src_c = src - src_mean
    dst_c = dst - dst_mean
    src_var = (src_c ** 2).sum(axis=(1, 2)) / src.shape[1]           # (N,)
    degenerate = np.where(src_var < 1e-12)[0]
    if degenerate.size:
        raise ValueError('the landmarks of face(s) %s coincide; no similarity transform'
                         % degenerate.tolist())
    cov = np.einsum('kd,nke->nde', dst_c, src_c) / src.shape[1]      # (N, 2, 2) dst x src
    u, s, vt = np.linalg.svd(cov)
    sign = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    sign[sign == 0] = 1.0
    d = np.stack([np.ones_like(sign), sign], axis=1)                 # (N, 2)
    rotation = np.einsum('nij,nj,njk->nik', u, d, vt)
    scale = (s * d).sum(axis=1) / src_var                            # (N,)
    linear = rotation * scale[:, None, None]
    shift = dst_mean - np.einsum('nij,nj->ni', linear, src_mean[:, 0])
    return np.concatenate([linear, shift[:, :, None]], axis=2)


def align_faces(image, landmarks, size=112, template=None):
    """Aligned crops of every face.

    Args:
        image: (H, W, 3) uint8 BGR.
        landmarks: (N, 5, 2) float points as ``RetinaFace.detect`` returns them (or (5, 2)).
        size: crop side in pixels (the template is :func:`reference_points` of it).
        template: optional (5, 2) destination points instead; the crop is then ``size x size``
            unless ``size`` is a (width, height) pair.
    Returns:
        (N, height, width, 3) uint8 BGR crops (``(0, size, size, 3)`` for no face).
    """
    import cv2
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError('image must be an (H, W, 3) BGR array, got %s'
                         % (getattr(image, 'shape', type(image).__name__),))
    if image.dtype != np.uint8:
        raise ValueError('image must be uint8 (as from cv2.imread), got %s' % image.dtype)
    width, height = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if width < 1 or height < 1:
        raise ValueError('size must be positive, got %r' % (size,))
    if template is None:
        if width != height:
            raise ValueError('size %r: pass template= for a non-square crop (e.g. '
                             'TEMPLATE_96x112 with size=(96, 112))' % (size,))
        template = reference_points(width)
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim == 2:
        points = points[None]
    if points.size == 0:
        return np.zeros((0, height, width, 3), dtype=np.uint8)
    if points.shape[1:] != (NUM_POINTS, 2):
        raise ValueError('landmarks must be (N, 5, 2), got %s' % (points.shape,))
    matrices = similarity_transforms(points, template)
    crops = np.empty((len(points), height, width, 3), dtype=np.uint8)
    for crop, matrix in zip(crops, matrices):
        crop[...] = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return crops
