"""train.py keeps its promise for bad training images: each is named with its label.txt line at
start-up and left out, and the run trains on the others."""
import os
import shutil

from conftest import train_in_process


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


def test_train_py_skips_bad_images_naming_them_and_trains_on(dlib_faces, tmp_path, capsys):
    dataset, label = _dataset_with_bad_images(dlib_faces, tmp_path)
    prefix = tmp_path / 'm'
    # train.py's main in this process, the crops made inline (the skips happen at start-up)
    done = train_in_process(
        ['--network', 'mnet', '--prefix', str(prefix), '--batch_images', '1', '--workers', '0',
         '--frequent', '1', '--seed', '3', '--max_iters', '2', '--no_flip',
         '--dataset_path', str(dataset), '--root_path', str(tmp_path / 'root')], capsys)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    for line in (1, 3, 5):
        assert '%s:%d: image skipped: ' % (label, line) in output, output[-3000:]
    assert 'skipped 3 images that cannot be read (of 7)' in output
    assert os.path.isfile(str(prefix) + '-0001.params')
