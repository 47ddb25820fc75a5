"""WIDER FACE evaluator on the full official val ground truth (3,226 images, 39,708 faces).

A synthetic submission: ~80% of the faces as jittered boxes with random scores plus 0-8 random
false positives per image, written once as submission files to a temporary folder. Rows:
ground-truth loading, reading the 3,226 prediction files, the AP computation, and the whole
``evaluate()`` call (what ``evaluate_widerface.py`` times).
"""
import shutil
import tempfile

import numpy as np

from bench.common import SHARED, measure, print_rows
from rcnn.evaluation.widerface import (evaluate, evaluate_predictions, load_ground_truth,
                                       read_predictions, write_prediction_file)


def _write_synthetic_submission(gt, pred_dir, rng):
    """Jittered faces + random false positives; returns the number of boxes written."""
    total = 0
    for i, boxes in enumerate(gt.boxes):
        chosen = boxes[rng.random(len(boxes)) < 0.8]
        xy = chosen[:, :2] + rng.normal(0, 0.05, size=(len(chosen), 2)) * chosen[:, 2:4]
        hits = np.hstack([xy, xy + chosen[:, 2:4], rng.random((len(chosen), 1))])
        n_false = rng.integers(0, 9)
        fxy = rng.uniform(0, 1000, size=(n_false, 2))
        false = np.hstack([fxy, fxy + rng.uniform(4, 80, size=(n_false, 2)),
                           rng.random((n_false, 1)) * 0.8])
        dets = np.vstack([hits, false])
        write_prediction_file(gt.prediction_path(pred_dir, i),
                              '%s/%s.jpg' % (gt.events[i], gt.names[i]), dets)
        total += len(dets)
    return total


def run(quick=False):
    gt_dir = SHARED / 'widerface_eval' / 'ground_truth'
    if not gt_dir.exists():
        raise FileNotFoundError('%s not found (../shared is absent)' % gt_dir)
    gt_dir = str(gt_dir)
    repeat = 2 if quick else 5
    gt = load_ground_truth(gt_dir)
    pred_dir = tempfile.mkdtemp(prefix='bench_widerface_')
    try:
        num_boxes = _write_synthetic_submission(gt, pred_dir, np.random.default_rng(0))
        predictions = read_predictions(pred_dir, gt)
        size = dict(images=gt.num_images, faces=gt.num_faces(), predictions=num_boxes)
        rows = [
            measure('widerface: load the 4 official .mat files', lambda: load_ground_truth(gt_dir),
                    repeat=repeat, warmup=1),
            measure('widerface: read %d prediction files' % gt.num_images,
                    lambda: read_predictions(pred_dir, gt), repeat=repeat, warmup=1),
            measure('widerface: AP easy/medium/hard (in memory)',
                    lambda: evaluate_predictions(predictions, gt), repeat=repeat, warmup=1),
            measure('widerface: evaluate() end to end (full val)',
                    lambda: evaluate(pred_dir, gt_dir), repeat=repeat, warmup=1, **size),
        ]
    finally:
        shutil.rmtree(pred_dir, ignore_errors=True)
    return rows


if __name__ == '__main__':
    print_rows(run())
