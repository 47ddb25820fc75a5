"""Geometry kernels: NMS on 10,000 boxes (Cython vs NumPy) and IoU of 16,800 anchors."""
import numpy as np

from bench.common import measure, print_rows
from rcnn.processing.bbox_transform import bbox_overlaps
from rcnn.processing.nms import cpu_nms_wrapper, py_nms_wrapper


def _random_dets(rng, n):
    xy = rng.uniform(0, 1000, size=(n, 2))
    wh = rng.uniform(8, 120, size=(n, 2))
    scores = rng.uniform(size=(n, 1))
    return np.hstack([xy, xy + wh, scores]).astype(np.float32)


def run(quick=False):
    rng = np.random.default_rng(0)
    dets = _random_dets(rng, 10000)
    repeat = 3 if quick else 10
    rows = [
        measure('nms cython, 10000 boxes, thresh 0.4', lambda: cpu_nms_wrapper(0.4)(dets),
                repeat=repeat),
        measure('nms numpy, 10000 boxes, thresh 0.4', lambda: py_nms_wrapper(0.4)(dets),
                repeat=repeat),
    ]
    anchors = _random_dets(rng, 16800)[:, :4]
    faces = _random_dets(rng, 50)[:, :4]
    rows.append(measure('iou cython, 16800 anchors x 50 faces',
                        lambda: bbox_overlaps(anchors, faces), repeat=repeat))
    return rows


if __name__ == '__main__':
    print_rows(run())
