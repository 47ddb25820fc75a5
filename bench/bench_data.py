"""Training data pipeline: crops, anchor labelling and the CropLoader's throughput.

Rows:

* ``get_crop_image1`` per image on the real dlib photos (``../shared/data/dlib_faces/train``,
  4 photos of about 500 x 375 plus their flips), mnet recipe (colour jitter on);
* the anchor-target generator per image for 1, 50, 500 and 1,500 random faces on a 640 x 640
  crop (16,800 anchors; faces log-uniform 8..128 px, 70% with landmarks): the default path
  (dense IoU up to ``rcnn.processing.matcher.DENSE_PAIRS`` pairs per stride, tiles above) and,
  for comparison, the full 16,800 x K IoU matrix the original built for every image; and the
  original entry ``assign_anchor_fpn`` (which builds the generator from the config per call);
* ``SampleMaker`` per image (decode + crop + colour + labels: one worker task);
* CropLoader throughput in images/s, batch 8, with 0 (inline), 1 and 2 worker processes, on the
  dlib photos repeated to get enough batches (worker start-up excluded, reported apart).

The per-image rows run in a spawned process set up like a loader worker (one OpenCV thread,
:func:`rcnn.core.loader_worker.tune_malloc_for_worker`). The loader rows also give the CPU time
the calling (training) thread spends per batch: with workers it only takes ready batches.

Usage: ``python -m bench.bench_data [--quick] [--dataset DIR] [--only-crop]``.
"""
import argparse
import concurrent.futures
import multiprocessing
import time

import cv2
import numpy as np

from bench.common import SHARED, measure, print_rows
from rcnn.config import generate_config
from rcnn.core.loader_worker import tune_malloc_for_worker
from rcnn.io.anchor_targets import AnchorTargetGenerator
from rcnn.io.image import get_crop_image1
from rcnn.io.rpn import assign_anchor_fpn, faces_from_gt_label
from rcnn.io.sample import SampleMaker
from rcnn.processing import matcher

FEAT_640 = [(1, 4, 20, 20), (1, 4, 40, 40), (1, 4, 80, 80)]
FACE_COUNTS = (1, 50, 500, 1500)
LOADER_BATCH = 8


def _train_roidb(root=None):
    """Train records (and their flips) of ``root`` (RetinaFace layout; default: the dlib
    photos of ../shared)."""
    from rcnn.config import generate_config
    from rcnn.dataset.retinaface_dataset import RetinaFaceDataset, append_flipped_images
    from pathlib import Path
    root = SHARED / 'data' / 'dlib_faces' if root is None else Path(root)
    if not (root / 'train' / 'label.txt').exists():
        raise FileNotFoundError('%s not found (see ../shared/README.md)' % (root / 'train'))
    cfg, _ = generate_config('mnet', 'retinaface')
    return append_flipped_images(RetinaFaceDataset('train', None, str(root), cfg).gt_roidb())


def _random_faces(rng, count, size=640):
    xy = rng.uniform(-8, size - 8, size=(count, 2))
    wh = np.exp(rng.uniform(np.log(8), np.log(128), size=(count, 2)))
    gt_boxes = np.hstack([xy, xy + wh, np.ones((count, 1))]).astype(np.float32)
    landmarks = np.empty((count, 5, 3), dtype=np.float32)
    landmarks[:, :, 0] = xy[:, :1] + rng.uniform(0.2, 0.8, (count, 5)) * wh[:, :1]
    landmarks[:, :, 1] = xy[:, 1:] + rng.uniform(0.2, 0.8, (count, 5)) * wh[:, 1:]
    landmarks[:, :, 2] = 1.0
    landmarks[rng.uniform(size=count) >= 0.7] = -1.0
    return {'gt_boxes': gt_boxes, 'gt_landmarks': landmarks}


def _labelling_rows(cfg, quick):
    rows = []
    rng = np.random.default_rng(0)
    generator = AnchorTargetGenerator.from_config(cfg)
    default_pairs = matcher.DENSE_PAIRS
    for count in FACE_COUNTS:
        gt_label = _random_faces(rng, count)
        faces = faces_from_gt_label(gt_label, True)
        repeat = 5 if quick else (20 if count < 500 else 10)
        for label, pairs in (('default', default_pairs), ('full IoU matrix', 10 ** 15)):
            matcher.DENSE_PAIRS = pairs
            try:
                rows.append(measure(
                    'anchor targets %4d faces (%s)' % (count, label),
                    lambda: generator(FEAT_640, faces, [640, 640, 1.0]),
                    repeat=repeat, warmup=1, faces=count))
            finally:
                matcher.DENSE_PAIRS = default_pairs
        rows.append(measure(
            'assign_anchor_fpn %4d faces (generator built per call)' % count,
            lambda: assign_anchor_fpn(FEAT_640, gt_label, [640, 640, 1.0], landmark=True,
                                      cfg=cfg),
            repeat=repeat, warmup=1, faces=count))
    return rows


def _crop_rows(cfg, roidb, quick, data_name='dlib photos'):
    rng = np.random.default_rng(0)
    repeat = 16 if quick else 80
    state = {'i': 0}
    maker = SampleMaker.from_config(cfg, FEAT_640)

    def one_crop():
        record = roidb[state['i'] % len(roidb)]
        state['i'] += 1
        get_crop_image1([record], cfg=cfg, rng=rng)

    def one_sample():
        record = roidb[state['i'] % len(roidb)]
        state['i'] += 1
        maker(record, rng)

    rows = [measure('get_crop_image1 per image (%s)' % data_name, one_crop, repeat=repeat,
                    warmup=2),
            measure('SampleMaker per image (crop + colour + labels, %s)' % data_name,
                    one_sample, repeat=repeat, warmup=2)]
    for row in rows:
        row['images_per_s'] = round(1000.0 / row['median_ms'], 1)
    return rows


def _feature_symbols(cfg):
    import mxnet as mx
    try:
        from rcnn.core.loader import feature_symbols
        from rcnn.symbol import get_symbol_train
        return feature_symbols(get_symbol_train('mnet', cfg), cfg)
    except ImportError:
        data = mx.sym.Variable('data')
        return [mx.sym.Convolution(mx.sym.Pooling(data, kernel=(s, s), stride=(s, s),
                                                  pool_type='avg'),
                                   num_filter=2 * cfg.NUM_ANCHORS, kernel=(1, 1))
                for s in cfg.RPN_FEAT_STRIDE]


def _loader_rows(cfg, roidb, quick):
    from rcnn.core.loader import CropLoader
    batches = 4 if quick else 20
    records = roidb * int(np.ceil((batches + 2) * LOADER_BATCH / len(roidb)))
    feat_sym = _feature_symbols(cfg)
    rows = []
    for workers in (0, 1, 2):
        t0 = time.perf_counter()
        loader = CropLoader(feat_sym, records, LOADER_BATCH, cfg=cfg, num_workers=workers, seed=0,
                            prefetch=2)
        try:
            next(loader)                              # warm-up: workers started and fed
            startup = time.perf_counter() - t0
            t1, cpu1 = time.perf_counter(), time.thread_time()
            for _ in range(batches):
                next(loader)
            elapsed, cpu = time.perf_counter() - t1, time.thread_time() - cpu1
        finally:
            loader.close()
        rows.append({'name': 'CropLoader batch %d, %d worker(s)' % (LOADER_BATCH, workers),
                     'images_per_s': round(batches * LOADER_BATCH / elapsed, 1),
                     'ms_per_batch': round(1000 * elapsed / batches, 1),
                     'caller_cpu_ms_per_batch': round(1000 * cpu / batches, 1),
                     'startup_plus_first_batch_s': round(startup, 2), 'batches': batches})
    return rows


def _per_image_rows(quick, dataset=None, only_crop=False):
    """Labelling and crop rows, run in a process set up like a loader worker."""
    cv2.setNumThreads(1)
    tune_malloc_for_worker()
    cfg, _ = generate_config('mnet', 'retinaface')
    crops = _crop_rows(cfg, _train_roidb(dataset), quick,
                       'dlib photos' if dataset is None else str(dataset))
    return crops if only_crop else _labelling_rows(cfg, quick) + crops


def run(quick=False, dataset=None, only_crop=False):
    context = multiprocessing.get_context('spawn')
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        rows = executor.submit(_per_image_rows, quick, dataset, only_crop).result()
    if only_crop:
        return rows
    cfg, _ = generate_config('mnet', 'retinaface')
    rows += _loader_rows(cfg, _train_roidb(), quick)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='fewer repetitions and batches')
    parser.add_argument('--dataset', default=None,
                        help='RetinaFace-layout folder whose train split the crop rows use '
                             '(default: the dlib photos of ../shared), e.g. data/sample')
    parser.add_argument('--only-crop', action='store_true',
                        help='only the per-image crop rows (no labelling, no loader rows)')
    args = parser.parse_args(argv)
    print_rows(run(quick=args.quick, dataset=args.dataset, only_crop=args.only_crop))


if __name__ == '__main__':
    main()
