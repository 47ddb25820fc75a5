"""Image sizes from file headers (rcnn/dataset/image_header.py) against OpenCV's decoder."""
import struct

import cv2
import numpy as np
import pytest

from rcnn.dataset.image_header import ImageReadError, read_image_size
from test_dataset_retinaface import exif_app1, hand_made_png, insert_after_soi, jpeg_bytes


# ---------------------------------------------------------------------------
# image size from headers
# ---------------------------------------------------------------------------

def test_png_header_size_hand_made(tmp_path, no_decoding):
    path = tmp_path / 'hand.png'
    path.write_bytes(hand_made_png(width=13, height=7))
    assert cv2.imread(str(path)).shape[:2] == (7, 13)       # OpenCV agrees the file is valid
    assert read_image_size(str(path)) == (7, 13)


def test_png_and_other_formats_match_opencv(tmp_path):
    for name, (height, width) in [('a.png', (31, 57)), ('b.bmp', (12, 5)), ('c.jpg', (70, 3))]:
        path = str(tmp_path / name)
        image = np.full((height, width, 3), 128, np.uint8)
        assert cv2.imwrite(path, image)
        assert read_image_size(path) == cv2.imread(path).shape[:2] == (height, width)


def test_jpeg_header_variants_match_opencv(tmp_path, no_decoding):
    base = jpeg_bytes(23, 41)
    variants = {
        'baseline.jpg': base,
        'progressive.jpg': jpeg_bytes(23, 41, progressive=True),
        # a 40 kB comment segment before the frame header must be skipped
        'comment.jpg': insert_after_soi(base, b'\xff\xfe' + struct.pack('>H', 40002) + b'c' * 40000),
        # fill bytes (0xFF padding) before a marker are allowed
        'fill.jpg': insert_after_soi(base, b'\xff\xff\xff\xfe\x00\x04ab'),
    }
    for name, data in variants.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert read_image_size(str(path)) == cv2.imread(str(path)).shape[:2] == (23, 41), name


@pytest.mark.parametrize('byte_order', [b'II', b'MM'])
def test_jpeg_exif_orientation_matches_opencv(tmp_path, byte_order, no_decoding):
    base = jpeg_bytes(23, 41)
    for orientation, expected in [(1, (23, 41)), (3, (23, 41)), (6, (41, 23)), (8, (41, 23))]:
        path = tmp_path / ('o%d.jpg' % orientation)
        path.write_bytes(insert_after_soi(base, exif_app1(orientation, byte_order)))
        assert cv2.imread(str(path)).shape[:2] == expected          # OpenCV rotates on load
        assert read_image_size(str(path)) == expected, orientation


def test_read_image_size_errors_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match='missing.png'):
        read_image_size(str(tmp_path / 'missing.png'))
    garbage = tmp_path / 'garbage.png'
    garbage.write_bytes(b'hello, not an image')
    with pytest.raises(ImageReadError, match='garbage.png'):
        read_image_size(str(garbage))
    truncated = tmp_path / 'truncated.jpg'
    truncated.write_bytes(jpeg_bytes(10, 10)[:30])      # ends before the frame header
    with pytest.raises(ImageReadError, match='truncated.jpg'):
        read_image_size(str(truncated))


