"""train.py keeps its promise for bad training images: each is named with its label.txt line at
start-up and left out, and the run trains on the others."""
import os
import shutil
import subprocess
import sys

from conftest import ROOT


def _dataset_with_bad_images(dlib_faces, tmp_path):
    """The dlib train set plus a missing, an empty and a text 'image' (label lines 1..6)."""
    root = tmp_path / 'ds'
    shutil.copytree(dlib_faces / 'train', root / 'train')
    images = root / 'train' / 'images' / '0--dlib'
    (images / 'empty.jpg').write_bytes(b'')
    (images / 'text.jpg').write_text('not an image\n')
    bad = ''.join('# 0--dlib/%s\n10 10 50 50\n' % name
                  for name in ('gone.jpg', 'empty.jpg', 'text.jpg'))
    label = root / 'train' / 'label.txt'
    label.write_text(bad + label.read_text())
    return root, label


def test_train_py_skips_bad_images_naming_them_and_trains_on(dlib_faces, tmp_path):
    dataset, label = _dataset_with_bad_images(dlib_faces, tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('CUDA_VISIBLE_DEVICES', None)
    prefix = tmp_path / 'm'
    done = subprocess.run(
        [sys.executable, str(ROOT / 'train.py'), '--network', 'mnet', '--prefix', str(prefix),
         '--batch_images', '1', '--workers', '1', '--frequent', '1', '--seed', '3',
         '--max_iters', '2', '--no_flip', '--dataset_path', str(dataset),
         '--root_path', str(tmp_path / 'root')],
        cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    for line in (1, 3, 5):
        assert '%s:%d: image skipped: ' % (label, line) in output, output[-3000:]
    assert 'skipped 3 images that cannot be read (of 7)' in output
    assert os.path.isfile(str(prefix) + '-0001.params')
