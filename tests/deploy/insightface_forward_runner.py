"""Run by tests/deploy/test_export_layouts.py with .venv-insightface's python (the insightface
package installed, no MXNet): every anchor of one image decoded by the package's own detector.

    python insightface_forward_runner.py MODEL.onnx IMAGE OUT.json

OUT.json: {"model_class", "fmc", "strides", "num_anchors", "use_kps", "scores", "boxes",
"kps"}: what the package read of the model's layout, and ``SCRFD.forward(image, threshold)``
at a threshold below every score (so every anchor), strides in the package's order.
"""
import json
import sys

import cv2
import insightface
import numpy as np


def main(argv):
    model_path, image_path, out_path = argv[:3]
    image = cv2.imread(image_path)
    detector = insightface.model_zoo.get_model(model_path, providers=['CPUExecutionProvider'])
    detector.prepare(-1, input_size=(image.shape[1], image.shape[0]))
    scores, boxes, kps = detector.forward(image, -1.0)
    result = {'model_class': type(detector).__name__, 'fmc': detector.fmc,
              'strides': list(detector._feat_stride_fpn), 'num_anchors': detector._num_anchors,
              'use_kps': detector.use_kps,
              'scores': np.concatenate(scores).reshape(-1).tolist(),
              'boxes': np.concatenate(boxes).tolist(),
              'kps': np.concatenate(kps).tolist() if kps else None}
    with open(out_path, 'w') as handle:
        json.dump(result, handle)


if __name__ == '__main__':
    main(sys.argv[1:])
