"""Dataset reader: load a synthetic WIDER-sized label file (12,880 train images).

The data set is generated in a temporary directory: a few real JPEGs of
WIDER-like size (1024 pixels wide) are encoded once and every label entry
points to a hard link of one of them (a copy where hard links are refused), so
writing the data set is quick while each entry is still a distinct file to open.
Faces per image average about 12.4 like WIDER FACE train (~160k faces).

Rows: cold load (parse + image headers + cache write, cache removed first),
warm load (cache hit), the parts of a cold load (label parsing alone, header
sizes alone) and, for comparison, the cost of decoding images in full
(measured on a subset, extrapolated to all images).
"""
import argparse
import os
import shutil
import tempfile
import time

import cv2
import numpy as np

from bench.common import measure, print_rows
from rcnn.config import generate_config
from rcnn.dataset import label_file
from rcnn.dataset import retinaface_dataset as reader
from rcnn.dataset.retinaface_dataset import RetinaFaceDataset


WIDER_TRAIN_IMAGES = 12880
SOURCE_HEIGHTS = (683, 768, 1366, 576, 1536, 819, 1024, 681)
SOURCE_WIDTH = 1024
MEAN_FACES = 12.4
DECODE_SAMPLE = 200


def _source_jpegs(directory, rng):
    """Encode one JPEG per SOURCE_HEIGHTS entry; returns [(path, height, width)]."""
    sources = []
    for i, height in enumerate(SOURCE_HEIGHTS):
        yy, xx = np.mgrid[0:height, 0:SOURCE_WIDTH]
        image = np.stack([(xx * 255 // SOURCE_WIDTH), (yy * 255 // height),
                          ((xx + yy) % 256)], axis=2).astype(np.int16)
        image += rng.integers(-20, 20, size=image.shape, dtype=np.int16)
        path = os.path.join(directory, 'source_%d.jpg' % i)
        assert cv2.imwrite(path, np.clip(image, 0, 255).astype(np.uint8),
                           [cv2.IMWRITE_JPEG_QUALITY, 90])
        sources.append((path, height, SOURCE_WIDTH))
    return sources


def _link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _face_lines(rng, count, height, width):
    """``count`` train-format label lines (x y w h, 5 x (x y flag), blur) for one image."""
    w = rng.uniform(4, 0.3 * width, count)
    h = w * rng.uniform(1.0, 1.4, count)
    x = rng.uniform(-0.05 * width, width - w * 0.5, count)      # some faces cross the border
    y = rng.uniform(-0.05 * height, height - h * 0.5, count)
    lines = []
    for i in range(count):
        if rng.random() < 0.3:                                   # faces too small to annotate
            points = ' '.join(['-1.0 -1.0 -1.0'] * 5)
            blur = -1.0
        else:
            px = x[i] + w[i] * np.array([0.3, 0.7, 0.5, 0.35, 0.65])
            py = y[i] + h[i] * np.array([0.35, 0.35, 0.55, 0.75, 0.75])
            flags = (rng.random(5) < 0.1).astype(float)
            points = ' '.join('%.3f %.3f %.1f' % p for p in zip(px, py, flags))
            blur = rng.choice([0.29, 0.57, 0.86])
        lines.append('%d %d %d %d %s %.2f' % (x[i], y[i], w[i], h[i], points, blur))
    return lines


def make_synthetic_dataset(root, num_images=WIDER_TRAIN_IMAGES, seed=0):
    """Write ``<root>/retinaface/train/{label.txt, images/}``; returns (dataset_path, num_faces)."""
    rng = np.random.default_rng(seed)
    dataset_path = os.path.join(root, 'retinaface')
    images_dir = os.path.join(dataset_path, 'train', 'images')
    sources = _source_jpegs(root, rng)
    faces_per_image = np.maximum(1, rng.poisson(MEAN_FACES, num_images))
    images = []
    for i in range(num_images):
        event = '%d--event' % (i % 61)
        os.makedirs(os.path.join(images_dir, event), exist_ok=True)
        name = '%s/%d_synthetic_%05d.jpg' % (event, i % 61, i)
        source, height, width = sources[i % len(sources)]
        _link_or_copy(source, os.path.join(images_dir, name))
        images.append((name, _face_lines(rng, int(faces_per_image[i]), height, width)))
    label_file.write_label_file(os.path.join(dataset_path, 'train', 'label.txt'), images)
    return dataset_path, int(faces_per_image.sum())


def run(quick=False, num_images=WIDER_TRAIN_IMAGES):
    repeat = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix='bench_reader_') as root:
        t0 = time.perf_counter()
        dataset_path, num_faces = make_synthetic_dataset(root, num_images)
        setup_s = time.perf_counter() - t0
        cache_root = os.path.join(root, 'work')
        cfg, _ = generate_config('mnet', 'retinaface')
        imdb = RetinaFaceDataset('train', cache_root, dataset_path, cfg)
        extra = dict(images=num_images, faces=num_faces)

        def cold_load():
            if os.path.exists(imdb.cache_file):
                os.remove(imdb.cache_file)
            return RetinaFaceDataset('train', cache_root, dataset_path, cfg).gt_roidb()

        def warm_load():
            return RetinaFaceDataset('train', cache_root, dataset_path, cfg).gt_roidb()

        rows = [measure('reader cold (parse + headers + cache write)', cold_load,
                        repeat=repeat, warmup=1, **extra)]
        roidb = cold_load()
        rows.append(measure('reader warm (cache hit)', warm_load, repeat=repeat + 2, warmup=1,
                            **extra))

        with open(imdb.label_file) as stream:
            text = stream.read()
        rows.append(measure('  part: parse label text', lambda: label_file.parse_label_text(text),
                            repeat=repeat, warmup=0, lines=text.count('\n')))
        paths = [entry['image'] for entry in roidb]
        rows.append(measure('  part: image sizes from headers (thread pool)',
                            lambda: reader._read_image_sizes(paths, [None] * len(paths)),
                            repeat=repeat, warmup=0, images=len(paths)))

        sample = paths[:DECODE_SAMPLE]
        decode = measure('  compare: cv2.imread full decode, %d images' % len(sample),
                         lambda: [cv2.imread(p) for p in sample], repeat=1, warmup=0)
        decode['extrapolated_s_for_%d' % len(paths)] = round(
            decode['median_ms'] / len(sample) * len(paths) / 1000.0, 1)
        rows.append(decode)
        rows.append({'name': 'setup (write synthetic data set, not timed above)',
                     'seconds': round(setup_s, 2), 'cache_MB': round(
                         os.path.getsize(imdb.cache_file) / 2 ** 20, 1)})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='time each row once instead of three times')
    parser.add_argument('--num-images', type=int, default=WIDER_TRAIN_IMAGES,
                        help='entries in the synthetic label file (default: %(default)s,'
                             ' the WIDER FACE train set)')
    args = parser.parse_args()
    print_rows(run(quick=args.quick, num_images=args.num_images))


if __name__ == '__main__':
    main()
