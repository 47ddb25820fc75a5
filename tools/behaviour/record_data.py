"""Record what the data side of training produces, for ``tools/behaviour/check.py``.

    python tools/behaviour/record_data.py --tree . --shared ../shared --work /tmp/w --out d.npz

Recorded (named arrays, compared bit for bit between two source trees):

* ``roidb/<set>/<i>/<key>``: every array of every record of the dlib ``train`` and ``val``
  sets in ``<shared>/data/dlib_faces`` and of a small generated set (``tools.sample_data``,
  written under ``--work``), read twice (``.../built/...`` parsed from ``label.txt``,
  ``.../cached/...`` read back from the roidb cache), plus the records of
  ``append_flipped_images``; image paths are stored relative to the data set folder;
* ``batches/<run>/<epoch>/<batch>/<name>``: SHA-256 digests (with dtype and shape) of the
  ``data`` and every label array of the CropLoader batches over two epochs, mnet config,
  batch 2, seed 7, with 0, 1 and 2 worker processes on the dlib train set (mirrored copies
  included) and with 0 workers on the generated set; ``.../index`` holds the records used;
* ``provide/<run>/<name>``: the loader's data and label shapes.

Only the stable names (``rcnn.dataset.RetinaFaceDataset``, ``rcnn.core.loader.CropLoader``,
``rcnn.core.loader.feature_symbols``, ``rcnn.symbol.get_symbol_train``,
``rcnn.config.generate_config``) are used, so the same script runs on every tree. The cache
files themselves are never compared (their format may differ between trees).
"""
import argparse
import hashlib
import logging
import os
import sys

import numpy as np

SEED = 7
BATCH = 2
EPOCHS = 2
SAMPLE_TRAIN, SAMPLE_VAL = 6, 3

logger = logging.getLogger('record_data')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tree', required=True, help='source tree whose code is recorded')
    parser.add_argument('--shared', required=True, help='the real data folder')
    parser.add_argument('--work', required=True, help='scratch folder')
    parser.add_argument('--out', required=True, help='.npz written')
    return parser.parse_args(argv)


def _use_tree(tree):
    """Import the code of ``tree`` only (the recorder's own folder is not on the path)."""
    tree = os.path.abspath(tree)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or '.') not in (here, tree)]
    sys.path.insert(0, tree)


def _record_arrays(prefix, record, root, out):
    """Every value of one roidb record as an array under ``prefix/<key>``."""
    for key in sorted(record):
        value = record[key]
        if key == 'image':
            value = os.path.relpath(value, root)
        out['%s/%s' % (prefix, key)] = np.asarray(value)


def _roidb_arrays(name, roidb, root, out):
    for i, record in enumerate(roidb):
        _record_arrays('roidb/%s/%d' % (name, i), record, root, out)
    out['roidb/%s/length' % name] = np.asarray(len(roidb))


def _read_sets(dataset_path, cache_root, name, image_sets, cfg, out):
    """Roidbs of ``image_sets`` of one data set: parsed, then read back from the cache."""
    from rcnn.dataset import RetinaFaceDataset
    roidbs = {}
    for image_set in image_sets:
        for how in ('built', 'cached'):
            dataset = RetinaFaceDataset(image_set, cache_root, dataset_path, cfg=cfg)
            roidb = dataset.gt_roidb()
            _roidb_arrays('%s/%s/%s' % (name, image_set, how), roidb, dataset_path, out)
        flipped = dataset.append_flipped_images(roidb)
        _roidb_arrays('%s/%s/flipped' % (name, image_set), flipped, dataset_path, out)
        roidbs[image_set] = flipped
    return roidbs


def _digest(array):
    array = np.ascontiguousarray(array)
    header = ('%s%s' % (array.dtype.str, array.shape)).encode('ascii')
    return np.frombuffer(hashlib.sha256(header + array.tobytes()).digest(), dtype=np.uint8)


def _batches(run, roidb, cfg, num_workers, out):
    """Digests of the CropLoader batches of two epochs."""
    from rcnn.core.loader import CropLoader, feature_symbols
    from rcnn.symbol import get_symbol_train
    feat_sym = feature_symbols(get_symbol_train('mnet', cfg), cfg)
    loader = CropLoader(feat_sym, roidb, BATCH, shuffle=True, cfg=cfg, num_workers=num_workers,
                        seed=SEED)
    try:
        for desc in list(loader.provide_data) + list(loader.provide_label):
            out['provide/%s/%s' % (run, desc.name)] = np.asarray(desc.shape, dtype=np.int64)
        for epoch in range(EPOCHS):
            loader.reset()
            for batch_no, batch in enumerate(loader):
                prefix = 'batches/%s/%d/%d' % (run, epoch, batch_no)
                names = list(loader.data_name) + list(loader.label_name)
                for name, array in zip(names, list(batch.data) + list(batch.label)):
                    out['%s/%s' % (prefix, name)] = _digest(array.asnumpy())
                out['%s/index' % prefix] = np.asarray(batch.index, dtype=np.int64)
    finally:
        loader.close()


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    args = parse_args(argv)
    _use_tree(args.tree)
    from rcnn.config import generate_config
    from tools.sample_data import make_sample_dataset

    cfg, _ = generate_config('mnet', 'retinaface')
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    out = {}
    dlib = os.path.join(os.path.abspath(args.shared), 'data', 'dlib_faces')
    dlib_sets = _read_sets(dlib, os.path.join(work, 'dlib-root'), 'dlib', ('train', 'val'),
                           cfg, out)
    sample = os.path.join(work, 'sample')
    make_sample_dataset(sample, n_train=SAMPLE_TRAIN, n_val=SAMPLE_VAL, seed=0, progress=False)
    sample_sets = _read_sets(sample, os.path.join(work, 'sample-root'), 'sample',
                             ('train', 'val'), cfg, out)
    for num_workers in (0, 1, 2):
        _batches('dlib-%dworkers' % num_workers, dlib_sets['train'], cfg, num_workers, out)
    _batches('sample-0workers', sample_sets['train'], cfg, 0, out)
    np.savez(args.out, **out)
    logger.info('%d arrays written to %s', len(out), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
