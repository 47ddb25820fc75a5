"""Truncated image files: OpenCV decodes a truncated JPEG without error (grey
rows, a libjpeg warning without the file name); every reader of the project refuses it naming
the file -- training replaces the sample, testing and detection skip it with a warning."""
import logging

import cv2
import numpy as np
import pytest

from rcnn.io.decode import ImageReadError, imread_checked, truncation_reason
from rcnn.io.image import read_image
from test_loader import BATCH, _arrays, _cfg, _feat_syms, roidb  # noqa: F401  (fixture)


def _photo(seed=0, shape=(120, 160, 3)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=shape, dtype=np.uint8)


def _encoded(ext, image):
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


def _progressive_jpeg(image):
    ok, data = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    return data.tobytes()


def test_opencv_alone_accepts_a_truncated_jpeg(tmp_path):
    """The premise: without the check the truncated file decodes to a full-size image."""
    path = tmp_path / 'half.jpg'
    path.write_bytes(_encoded('.jpg', _photo())[:-600])
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (120, 160, 3)


@pytest.mark.parametrize('cut', [0.05, 0.3, 0.6, 0.95])
def test_truncated_jpeg_and_png_are_refused_naming_the_file(tmp_path, cut):
    for ext, data in (('.jpg', _encoded('.jpg', _photo())), ('.png', _encoded('.png', _photo())),
                      ('.jpg', _progressive_jpeg(_photo()))):
        path = tmp_path / ('cut%s' % ext)
        path.write_bytes(data[:int(len(data) * cut)])
        with pytest.raises(ImageReadError, match='cut%s.*truncated' % ext.replace('.', r'\.')):
            imread_checked(str(path))


def test_whole_files_decode_as_cv2_imread(tmp_path):
    thumbnail_app1 = b'\xff\xe1' + (2 + 6).to_bytes(2, 'big') + b'\xff\xd8\xff\xd9\x00\x00'
    for name, data in (('a.jpg', _encoded('.jpg', _photo(1))),
                       ('p.jpg', _progressive_jpeg(_photo(2))),
                       ('b.png', _encoded('.png', _photo(3))),
                       ('c.bmp', _encoded('.bmp', _photo(4))),
                       ('trailer.jpg', _encoded('.jpg', _photo(5)) + b'\x00' * 64 + b'ftypmp42'),
                       ('exif.jpg', None)):
        if data is None:      # an APP1 segment holding a thumbnail's own end marker
            whole = _encoded('.jpg', _photo(6))
            data = whole[:2] + thumbnail_app1 + whole[2:]
        path = tmp_path / name
        path.write_bytes(data)
        assert truncation_reason(data) is None, name
        np.testing.assert_array_equal(imread_checked(str(path)), cv2.imread(str(path)))
    # the thumbnail's FF D9 does not hide a truncated main image
    truncated = data[:len(data) // 2]
    assert 'truncated' in truncation_reason(truncated)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(ImageReadError, match='image not found: .*nope.jpg'):
        imread_checked(str(tmp_path / 'nope.jpg'))
    (tmp_path / 'g.jpg').write_bytes(b'no image at all')
    with pytest.raises(ImageReadError, match='cannot decode image .*g.jpg'):
        imread_checked(str(tmp_path / 'g.jpg'))


def test_training_reader_refuses_a_truncated_image(roidb):
    path = roidb[0]['image']
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(ImageReadError, match='img0.jpg.*truncated'):
        read_image(roidb[0])


def test_loader_logs_and_replaces_a_truncated_image(roidb, caplog):
    from rcnn.core.loader import CropLoader
    path = roidb[3]['image']
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) * 2 // 3])
    cfg = _cfg()
    with caplog.at_level(logging.WARNING, logger='rcnn.core.loader'):
        with CropLoader(_feat_syms(cfg), roidb, BATCH, shuffle=False, cfg=cfg, num_workers=0,
                        seed=4) as loader:
            batches = [_arrays(batch) for batch in loader]
    indices = np.concatenate([b[-1] for b in batches])
    assert 3 not in indices.tolist() and len(indices) == len(roidb)
    assert any('img3.jpg' in m and 'truncated' in m and 'replaced' in m
               for m in (r.getMessage() for r in caplog.records))
