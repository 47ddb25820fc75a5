"""Run by tests/deploy/test_insightface_package.py with .venv-insightface's python (the insightface
package installed, no MXNet): detect faces with the package's own code and write them as JSON.

    python insightface_runner.py MODEL.onnx FACEANALYSIS_DIR WIDTH HEIGHT OUT.json IMAGE...

OUT.json: {"version", "model_class", "detect": {image: {"boxes", "kps"}}, "app": {image: ...}}
where "boxes" are (N, 5) x1 y1 x2 y2 score, from ``model_zoo.get_model(MODEL).detect`` and from
``FaceAnalysis(FACEANALYSIS_DIR, allowed_modules=['detection']).get``.
"""
import json
import sys

import cv2
import insightface
from insightface.app import FaceAnalysis

PROVIDERS = ['CPUExecutionProvider']


def main(argv):
    model_path, app_dir, width, height, out_path = argv[:5]
    images = argv[5:]
    det_size = (int(width), int(height))
    detector = insightface.model_zoo.get_model(model_path, providers=PROVIDERS)
    detector.prepare(-1, input_size=det_size, det_thresh=0.5, nms_thresh=0.4)
    app = FaceAnalysis(name=app_dir, allowed_modules=['detection'], providers=PROVIDERS)
    app.prepare(ctx_id=-1, det_size=det_size, det_thresh=0.5)
    result = {'version': insightface.__version__, 'model_class': type(detector).__name__,
              'app_models': sorted(app.models), 'detect': {}, 'app': {}}
    for path in images:
        image = cv2.imread(path)
        boxes, kps = detector.detect(image, input_size=det_size)
        result['detect'][path] = {'boxes': boxes.tolist(), 'kps': kps.tolist()}
        faces = app.get(image)
        result['app'][path] = {'boxes': [list(map(float, f.bbox)) + [float(f.det_score)]
                                         for f in faces],
                               'kps': [f.kps.tolist() for f in faces]}
    with open(out_path, 'w') as f:
        json.dump(result, f)


if __name__ == '__main__':
    main(sys.argv[1:])
