"""Time one source tree's hot paths (run by ``bench/bench_layout.py`` on two trees).

    python bench/layout_timing.py --tree DIR --shared DIR --out FILE.json

Uses only names every tree of the project has (``RetinaFace``, ``CropLoader``,
``feature_symbols``, ``get_symbol_train``, ``generate_config``, ``bench.common.measure``), so
the same script times the reference commit and the working tree:

* ``detect_640x480_ms``: ``RetinaFace.detect`` of the released mnet.25 on a 640x480 photo
  (scale 1, threshold 0.5), median of the calls;
* ``crop_label_ms``: one training sample (read, crop, jitter, anchor labels) through a
  CropLoader without worker processes, batch 1, per image;
* ``forward_backward_ms``: forward + backward of the mnet training graph on such a batch.
"""
import argparse
import json
import os
import sys


def _use_tree(tree):
    here = os.path.dirname(os.path.abspath(__file__))
    tree = os.path.abspath(tree)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or '.') not in (here, tree)]
    sys.path.insert(0, tree)
    os.chdir(tree)


def _median_ms(fn, repeat):
    """Median milliseconds of ``fn()`` (the tree's own ``bench.common.measure``)."""
    from bench.common import measure
    return measure('timing', fn, repeat=repeat)['median_ms']


def time_detect(shared, repeat):
    import cv2
    from retinaface import RetinaFace
    image = cv2.resize(cv2.imread(os.path.join(shared, 'images', 'bald_guys.jpg')), (640, 480))
    detector = RetinaFace(os.path.join(shared, 'models', 'mnet.25', 'mnet.25'), 0, ctx_id=-1)
    return _median_ms(lambda: detector.detect(image, threshold=0.5), repeat)


def time_training(shared, repeat):
    import mxnet as mx
    from rcnn.config import generate_config
    from rcnn.core.loader import CropLoader, feature_symbols
    from rcnn.dataset import RetinaFaceDataset
    from rcnn.symbol import get_symbol_train
    cfg, _ = generate_config('mnet', 'retinaface')
    dataset_path = os.path.join(shared, 'data', 'dlib_faces')
    roidb = RetinaFaceDataset('train', None, dataset_path, cfg=cfg).gt_roidb()
    train_sym = get_symbol_train('mnet', cfg)
    loader = CropLoader(feature_symbols(train_sym, cfg), roidb, 1, shuffle=True, cfg=cfg,
                        num_workers=0, seed=3)
    try:
        batches = []

        def next_batch():
            try:
                batches.append(loader.next())
            except StopIteration:
                loader.reset()
                batches.append(loader.next())
        crop_label = _median_ms(next_batch, repeat)
        module = mx.mod.Module(train_sym, data_names=[d.name for d in loader.provide_data],
                               label_names=[d.name for d in loader.provide_label],
                               context=mx.cpu())
        module.bind(loader.provide_data, loader.provide_label, for_training=True)
        module.init_params(mx.init.Xavier(magnitude=2.0), allow_missing=True)
        batch = batches[-1]

        def step():
            module.forward(batch, is_train=True)
            module.backward()
            mx.nd.waitall()
        forward_backward = _median_ms(step, max(3, repeat // 3))
    finally:
        loader.close()
    return crop_label, forward_backward


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tree', required=True)
    parser.add_argument('--shared', required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--repeat', type=int, default=20)
    args = parser.parse_args(argv)
    shared = os.path.abspath(args.shared)
    _use_tree(args.tree)
    detect = time_detect(shared, args.repeat)
    crop_label, forward_backward = time_training(shared, args.repeat)
    with open(args.out, 'w') as f:
        json.dump({'detect_640x480_ms': detect, 'crop_label_ms': crop_label,
                   'forward_backward_ms': forward_backward}, f)


if __name__ == '__main__':
    main()
