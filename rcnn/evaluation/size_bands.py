"""AP per face-size band, beside the standard Easy / Medium / Hard settings.

Size of a box
    ``sqrt(w * h)`` of its ``x y w h`` (the side of the square of the same area; negative sizes
    count as 0). It does not depend on the aspect ratio, so a tall and a wide box of the same
    area fall in the same band.

Bands (:data:`SIZE_BANDS`, in pixels of the image as stored)
    ``[0, 16)``, ``[16, 32)``, ``[32, 64)``, ``[64, 128)``, ``[128, inf)``: a face of size exactly
    16 is in ``16-32``.

Counting (the rules of COCO's area ranges, on the WIDER matching)
    The matching is the standard one (:func:`rcnn.evaluation.widerface.match_set`: each
    prediction's best face, IoU >= the match threshold). For a band:

    * the faces counted are those of the band that the *hard* setting counts; every other face
      (outside the band, or an ignore box of the ground truth) is an ignore box;
    * a prediction whose best face is an ignore box counts neither way (as in the standard
      protocol);
    * an unmatched prediction is a false positive of the band of its *own* size only, so a
      small-face false positive does not lower the AP of large faces;
    * a later prediction matching an already recalled face of the band is a false positive.

    The precision / recall curve and the AP are then the standard ones (1,000 thresholds on
    the min-max normalised scores of the whole set, VOC all-point AP). A band without faces
    has no AP (NaN, reported as ``-``).
"""
import collections

import numpy as np

from rcnn.evaluation.widerface import match_set, setting_result

__all__ = ['SIZE_BANDS', 'BAND_SETTING', 'box_sizes', 'band_masks',
           'evaluate_size_bands']

#: band name -> [low, high) in pixels of sqrt(w * h)
SIZE_BANDS = collections.OrderedDict([
    ('<16', (0.0, 16.0)),
    ('16-32', (16.0, 32.0)),
    ('32-64', (32.0, 64.0)),
    ('64-128', (64.0, 128.0)),
    ('>=128', (128.0, np.inf)),
])
#: the setting whose counted faces the bands split (its ignore boxes stay ignored)
BAND_SETTING = 'hard'


def box_sizes(boxes):
    """(N,) float64 ``sqrt(w * h)`` of (N, 4+) ``x y w h`` boxes (0 for a negative side)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros(0)
    return np.sqrt(np.maximum(boxes[:, 2], 0.0) * np.maximum(boxes[:, 3], 0.0))


def band_masks(sizes, bands=SIZE_BANDS):
    """band name -> (N,) bool, the sizes in ``[low, high)`` of that band."""
    sizes = np.asarray(sizes, dtype=np.float64)
    return collections.OrderedDict((name, (sizes >= low) & (sizes < high))
                                   for name, (low, high) in bands.items())


def evaluate_size_bands(predictions, gt, iou_thresh=0.5, matches=None, bands=SIZE_BANDS):
    """AP of each face-size band (module docstring).

    Args:
        predictions: list aligned with ``gt`` images of (N_i, 5) ``x y w h score``.
        gt: :class:`rcnn.evaluation.widerface.WiderGroundTruth`.
        iou_thresh: match threshold.
        matches: the :class:`rcnn.evaluation.widerface.MatchedSet` when already computed.
    Returns:
        band name -> :class:`rcnn.evaluation.widerface.SettingResult`.
    """
    if matches is None:
        matches = match_set(predictions, gt, iou_thresh)
    all_boxes = np.concatenate([np.zeros((0, 4))] + [b[:, :4] for b in gt.boxes])
    face_bands = band_masks(box_sizes(all_boxes), bands)
    prediction_bands = band_masks(box_sizes(matches.boxes), bands)
    counted_faces = gt.keep[BAND_SETTING]
    results = collections.OrderedDict()
    for name in bands:
        keep = counted_faces & face_bands[name]
        on_counted_face = matches.matched & keep[matches.best_faces]
        unmatched_here = ~matches.matched & prediction_bands[name]
        results[name] = setting_result(matches, keep, counted=on_counted_face | unmatched_here)
    return results
