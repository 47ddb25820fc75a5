"""RetinaFace dataset (rcnn/dataset/retinaface_dataset.py): label formats, clipping, errors,
flip, cache, image sizes of a whole set."""
import logging
import os
import pickle
import struct
import zlib

import cv2
import numpy as np
import pytest

import rcnn.dataset
from rcnn.config import generate_config
from rcnn.dataset import retinaface_dataset as reader
from rcnn.dataset.image_header import ImageReadError, read_image_size
from rcnn.dataset.label_file import LabelFormatError
from rcnn.dataset.retinaface_dataset import (RetinaFaceDataset, append_flipped_images,
                                             flip_roidb_entry)

DEFAULT_CFG, _ = generate_config('mnet', 'retinaface')


def retinaface(image_set, root_path, dataset_path, cfg=None, **options):
    """The dataset under test with the default recipe unless ``cfg`` is given."""
    return RetinaFaceDataset(image_set, root_path, dataset_path,
                             DEFAULT_CFG if cfg is None else cfg, **options)


def test_original_class_name_is_an_alias():
    assert rcnn.dataset.retinaface is RetinaFaceDataset is reader.retinaface
    assert rcnn.dataset.RetinaFaceDataset is RetinaFaceDataset


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def write_png(path, height, width):
    """A real PNG of the given size written by OpenCV."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :, 1] = np.arange(width, dtype=np.uint8)[None, :]
    assert cv2.imwrite(str(path), image)


def make_dataset(tmp_path, label_text, images=(), image_set='train'):
    """Create <tmp>/ds/<image_set>/{label.txt, images/...}; images: (name, height, width)."""
    set_dir = tmp_path / 'ds' / image_set
    (set_dir / 'images').mkdir(parents=True, exist_ok=True)
    for name, height, width in images:
        path = set_dir / 'images' / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png(path, height, width)
    (set_dir / 'label.txt').write_text(label_text)
    return str(tmp_path / 'ds'), set_dir / 'label.txt'


def hand_made_png(width, height):
    """A grayscale 8-bit PNG built byte by byte from the PNG specification (not by OpenCV)."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)   # 8-bit gray, no interlace
    raw_rows = b''.join(b'\x00' + bytes((x * 7 + y) % 256 for x in range(width))
                        for y in range(height))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(raw_rows))
            + chunk(b'IEND', b''))


def exif_app1(orientation, byte_order):
    """An APP1 segment holding a one-entry IFD0 with the EXIF orientation tag."""
    e = '<' if byte_order == b'II' else '>'
    tiff = byte_order + struct.pack(e + 'HI', 42, 8)
    tiff += struct.pack(e + 'H', 1)                                   # one IFD entry
    tiff += struct.pack(e + 'HHIHH', 0x0112, 3, 1, orientation, 0)    # SHORT, count 1
    tiff += struct.pack(e + 'I', 0)                                   # no next IFD
    payload = b'Exif\x00\x00' + tiff
    return b'\xff\xe1' + struct.pack('>H', len(payload) + 2) + payload


def jpeg_bytes(height, width, progressive=False):
    image = np.random.RandomState(0).randint(0, 255, (height, width, 3)).astype(np.uint8)
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else []
    ok, encoded = cv2.imencode('.jpg', image, params)
    assert ok
    return encoded.tobytes()


def insert_after_soi(jpeg, segment):
    assert jpeg[:2] == b'\xff\xd8'
    return jpeg[:2] + segment + jpeg[2:]


# ---------------------------------------------------------------------------
# real data: ../shared/data/dlib_faces
# ---------------------------------------------------------------------------

def test_dlib_train_roidb(dlib_faces, tmp_path):
    imdb = retinaface('train', str(tmp_path), str(dlib_faces))
    roidb = imdb.gt_roidb()
    assert imdb.num_images == 4 and len(roidb) == 4
    assert imdb.name == 'retinaface_train' and imdb.image_set == 'train'
    assert sum(len(e['boxes']) for e in roidb) == 18
    assert [os.path.basename(e['image']) for e in roidb] == [
        '2007_007763.jpg', '2008_002079.jpg', '2008_001009.jpg', '2008_001322.jpg']
    first = roidb[0]
    assert os.path.isfile(first['image'])
    assert (first['height'], first['width']) == (375, 500)
    assert first['boxes'].dtype == np.float32 and first['boxes'].shape == (7, 4)
    assert first['landmarks'].dtype == np.float32 and first['landmarks'].shape == (7, 5, 3)
    # hand-read from train/label.txt: "194 90 37 37 205 105.667 0 217.167 105.667 0 208 114 0 ..."
    np.testing.assert_array_equal(first['boxes'][0], [194, 90, 231, 127])
    np.testing.assert_allclose(first['landmarks'][0, :3],
                               [[205, 105.667, 1], [217.167, 105.667, 1], [208, 114, 1]], atol=1e-4)
    # "381 89 45 44 ..." is the third face; "309 233 45 44 ... 334 270 0 -1" the last
    np.testing.assert_array_equal(first['boxes'][2], [381, 89, 426, 133])
    np.testing.assert_allclose(first['landmarks'][6, 4], [334, 270, 1])
    # 2008_001009.jpg is portrait 360x480; "125 214 90 91" -> x2 215, y2 305
    third = roidb[2]
    assert (third['height'], third['width']) == (480, 360)
    np.testing.assert_array_equal(third['boxes'][1], [125, 214, 215, 305])
    for entry in roidb:
        assert (entry['landmarks'][:, :, 2] == 1.0).all()        # file flag 0.0 = visible
        np.testing.assert_allclose(entry['blur'], 0.3)           # file blur -1 = no attribute
        assert entry['gt_classes'].dtype == np.int32 and (entry['gt_classes'] == 1).all()
        assert entry['flipped'] is False
        assert entry['max_num_boxes'] == 7


def test_dlib_val_roidb(dlib_faces, tmp_path):
    imdb = retinaface('val', str(tmp_path), str(dlib_faces))
    roidb = imdb.gt_roidb()
    assert len(roidb) == 5 and imdb.num_images == 5
    assert sum(len(e['boxes']) for e in roidb) == 25
    assert (roidb[0]['height'], roidb[0]['width']) == (332, 500)
    np.testing.assert_array_equal(roidb[0]['boxes'][0], [274, 181, 326, 234])   # "274 181 52 53"
    last = roidb[-1]
    assert os.path.basename(last['image']) == '2009_004587.jpg'
    assert (last['height'], last['width']) == (500, 400)
    np.testing.assert_array_equal(last['boxes'], [[154, 46, 229, 122], [266, 280, 329, 343]])
    for entry in roidb:
        assert (entry['landmarks'] == -1).all()
        assert entry['landmarks'].shape == (len(entry['boxes']), 5, 3)
        assert entry['max_num_boxes'] == 7


def test_header_size_matches_opencv_on_real_jpegs(dlib_faces, no_decoding):
    paths = sorted(dlib_faces.glob('*/images/*/*.jpg'))
    assert len(paths) == 9
    for path in paths:
        assert read_image_size(str(path)) == cv2.imread(str(path)).shape[:2], path


def test_flip_twice_gives_original(dlib_faces, tmp_path):
    for image_set in ('train', 'val'):
        roidb = retinaface(image_set, None, str(dlib_faces)).gt_roidb()
        for entry in roidb:
            once = flip_roidb_entry(entry)
            assert once['flipped'] is True
            assert not np.allclose(once['boxes'], entry['boxes'])
            twice = flip_roidb_entry(once)
            assert twice['flipped'] is False
            np.testing.assert_array_equal(twice['boxes'], entry['boxes'])
            np.testing.assert_allclose(twice['landmarks'], entry['landmarks'], atol=1e-4)
            np.testing.assert_array_equal(twice['blur'], entry['blur'])
            assert twice['image'] == entry['image'] and twice['width'] == entry['width']
            if image_set == 'val':
                assert (once['landmarks'] == -1).all()     # missing landmarks stay missing


# ---------------------------------------------------------------------------
# flip on a hand example
# ---------------------------------------------------------------------------

def test_flip_hand_example():
    entry = {'image': 'x.jpg', 'height': 50, 'width': 100, 'flipped': False, 'max_num_boxes': 2,
             'boxes': np.array([[10, 20, 30, 40], [0, 0, 99, 49]], np.float32),
             'landmarks': np.array([[[12, 25, 1], [28, 25, 1], [20, 30, 0], [14, 35, 1], [26, 35, 1]],
                                    [[-1, -1, -1]] * 5], np.float32),
             'blur': np.array([0.1, 0.3], np.float32), 'gt_classes': np.ones(2, np.int32)}
    flipped = flip_roidb_entry(entry)
    np.testing.assert_array_equal(flipped['boxes'], [[69, 20, 89, 40], [0, 0, 99, 49]])
    # x' = 99 - x, then points reordered [1, 0, 2, 4, 3]
    np.testing.assert_array_equal(flipped['landmarks'][0],
                                  [[71, 25, 1], [87, 25, 1], [79, 30, 0], [73, 35, 1], [85, 35, 1]])
    np.testing.assert_array_equal(flipped['landmarks'][1], -np.ones((5, 3)))
    np.testing.assert_array_equal(entry['boxes'][0], [10, 20, 30, 40])     # input untouched

    roidb = append_flipped_images([entry])
    assert len(roidb) == 2 and roidb[0] is entry and roidb[1]['flipped'] is True


def test_append_flipped_images_method(dlib_faces):
    imdb = retinaface('train', None, str(dlib_faces))
    roidb = imdb.gt_roidb()
    both = imdb.append_flipped_images(roidb)
    assert len(both) == 8 and imdb.num_images == 8 and len(roidb) == 4
    assert [e['flipped'] for e in both] == [False] * 4 + [True] * 4
    w = both[4]['width']
    np.testing.assert_array_equal(both[4]['boxes'][:, 0], w - roidb[0]['boxes'][:, 2] - 1)


# ---------------------------------------------------------------------------
# label formats, clipping and drops (crafted files)
# ---------------------------------------------------------------------------

def test_train_line_flags_blur_and_missing_landmarks(tmp_path):
    label = ('# a.png\n'
             '10 10 20 20 12 14 0.0 25 14 1.0 18 20 0.0 13 26 1.0 24 26 0.0 0.45\n'
             '5 5 10 10 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1\n'
             '30 30 5 6\n')
    dataset_path, _ = make_dataset(tmp_path, label, [('a.png', 60, 80)])
    (entry,) = retinaface('train', None, dataset_path).gt_roidb()
    assert (entry['height'], entry['width']) == (60, 80)
    np.testing.assert_array_equal(entry['boxes'], [[10, 10, 30, 30], [5, 5, 15, 15], [30, 30, 35, 36]])
    np.testing.assert_array_equal(entry['landmarks'][0],
                                  [[12, 14, 1], [25, 14, 0], [18, 20, 1], [13, 26, 0], [24, 26, 1]])
    assert (entry['landmarks'][1:] == -1).all()
    np.testing.assert_allclose(entry['blur'], [0.45, 0.3, 0.0])
    assert entry['max_num_boxes'] == 3


def test_clipping_and_empty_boxes_dropped(tmp_path, caplog):
    """The original reader: x1 = x, y1 = y, x2 = min(W, x + w), y2 = min(H, y + h); a box is
    dropped when x1 >= x2 or y1 >= y2."""
    label = ('# a.png\n'
             '-10 -5 20 15\n'      # -> -10 -5 10 10 (the near corner is not clipped)
             '35 20 10 20\n'       # -> 35 20 40 30 (W 40, H 30: clipped to W, H, not W-1, H-1)
             '50 5 10 10\n'        # right of the image: x1 50 >= x2 40, dropped
             '5 5 0 10\n'          # zero width: dropped
             '5 -20 10 10\n'       # above the image: -20 < -10, kept as the original does
             '39.5 29 3 3\n'       # -> 39.5 29 40 30: half a pixel wide, kept
             '# sub/b.png\n'
             '100 100 5 5\n')      # outside: the image has no box left
    images = [('a.png', 30, 40), ('sub/b.png', 30, 40)]
    dataset_path, _ = make_dataset(tmp_path, label, images)
    with caplog.at_level(logging.INFO, logger='rcnn.dataset.retinaface_dataset'):
        roidb = retinaface('train', None, dataset_path, drop_outside_boxes=False).gt_roidb()
    assert len(roidb) == 1
    np.testing.assert_array_equal(roidb[0]['boxes'], [[-10, -5, 10, 10], [35, 20, 40, 30],
                                                      [5, -20, 15, -10], [39.5, 29, 40, 30]])
    assert roidb[0]['landmarks'].shape == (4, 5, 3) and roidb[0]['blur'].shape == (4,)
    assert roidb[0]['max_num_boxes'] == 4
    assert 'dropped 3 boxes empty after clipping' in caplog.text
    assert 'dropped 1 images left without boxes' in caplog.text

    # by default, boxes mostly outside the image (the one above it, the half-pixel one) go too
    default = retinaface('train', None, make_dataset(tmp_path / 'd', label, images)[0]).gt_roidb()
    np.testing.assert_array_equal(default[0]['boxes'], [[-10, -5, 10, 10], [35, 20, 40, 30]])

    # outside the train set, images without boxes are kept (with empty arrays)
    val_path, _ = make_dataset(tmp_path / 'v', label, images, image_set='val')
    val = retinaface('val', None, val_path).gt_roidb()
    assert len(val) == 2 and val[1]['boxes'].shape == (0, 4)
    assert val[1]['landmarks'].shape == (0, 5, 3) and val[1]['gt_classes'].shape == (0,)


def _recipe_with_min_box_size(size):
    """A recipe whose only key the reader reads, TRAIN.MIN_BOX_SIZE, is ``size``."""
    from easydict import EasyDict
    return EasyDict(TRAIN=EasyDict(MIN_BOX_SIZE=size))


def test_min_box_size_from_cfg(tmp_path):
    cfg = _recipe_with_min_box_size(8)
    label = '# a.png\n1 1 10 10\n20 1 5 30\n'
    dataset_path, _ = make_dataset(tmp_path, label, [('a.png', 40, 40)])
    (entry,) = retinaface('train', None, dataset_path, cfg=cfg).gt_roidb()
    np.testing.assert_array_equal(entry['boxes'], [[1, 1, 11, 11]])


def test_test_split_paths_only_and_header_sizes(tmp_path):
    label = '# a.png\n# b.png 640 480\n'
    dataset_path, _ = make_dataset(tmp_path, label, [('a.png', 21, 33), ('b.png', 10, 10)],
                                   image_set='test')
    imdb = retinaface('test', None, dataset_path)
    assert imdb.num_images == 2
    roidb = imdb.gt_roidb()
    assert len(roidb) == 2
    assert (roidb[0]['height'], roidb[0]['width']) == (21, 33)
    # a size stated on the "# path W H" line is used as given (width then height)
    assert (roidb[1]['height'], roidb[1]['width']) == (480, 640)
    for entry in roidb:
        assert entry['boxes'].shape == (0, 4) and entry['boxes'].dtype == np.float32
        assert entry['landmarks'].shape == (0, 5, 3) and entry['max_num_boxes'] == 0


BAD_LABELS = [
    ('# a.png\n1 2 3 4\n1 2 3 4 5\n', 3, 'got 5'),
    ('# a.png\n\n1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21\n', 3, 'got 21'),
    ('# a.png\n1 2 abc 4\n', 2, "'abc' is not a number"),
    ('# a.png\n1 2 3 4\n# b.png\n1 2 -3 4\n', 4, 'negative box size'),
    ('# a.png\n1 2 3 -0.5 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1\n', 2, 'negative box size'),
    ('# a.png\n1 2 3 nan\n', 2, 'non-finite'),
    ('1 2 3 4\n# a.png\n', 1, 'before any'),
    ('# a.png\n1 2 3 4\n# a.png\n', 3, 'already listed at line 1'),
    ('# a.png 640\n', 1, 'expected "# <image path>"'),
    ('# a.png\n1 1 5 5 2 2 0 3 3 0 -1 -1 0 4 4 0 5 5 0 -1\n', 2, 'landmark point 2'),
    ('# a.png\n1 1 5 5 2 2 0 3 3 -1 4 4 0 4 4 0 5 5 0 -1\n', 2, 'landmark point 1'),
]


@pytest.mark.parametrize('label,line_no,fragment', BAD_LABELS)
def test_bad_label_lines_name_file_and_line(tmp_path, label, line_no, fragment):
    dataset_path, label_file = make_dataset(tmp_path, label, [('a.png', 20, 20), ('b.png', 20, 20)])
    with pytest.raises(LabelFormatError) as info:
        retinaface('train', None, dataset_path).gt_roidb()
    message = str(info.value)
    assert '%s:%d:' % (label_file, line_no) in message
    assert fragment in message


def test_missing_image_is_named_with_its_label_line(tmp_path):
    # a val (or test) set stops at the first unreadable image, naming label.txt:line
    dataset_path, label_file = make_dataset(
        tmp_path, '# a.png\n1 1 5 5\n# gone/b.jpg\n1 1 5 5\n', [('a.png', 20, 20)],
        image_set='val')
    with pytest.raises(ImageReadError, match=r'label\.txt:3: image not found: .*gone/b\.jpg'):
        retinaface('val', None, dataset_path).gt_roidb()
    # also when the size is given on the "# path W H" line
    dataset_path, _ = make_dataset(tmp_path / 't', '# c.jpg 10 10\n', [], image_set='test')
    with pytest.raises(ImageReadError, match=r'label\.txt:1: image not found: .*c\.jpg'):
        retinaface('test', None, dataset_path).gt_roidb()


def test_unreadable_image_is_named(tmp_path):
    dataset_path, _ = make_dataset(tmp_path, '# broken.jpg\n1 1 5 5\n', image_set='val')
    (tmp_path / 'ds' / 'val' / 'images' / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not a jpeg')
    with pytest.raises(ImageReadError, match=r'label\.txt:1: .*broken\.jpg'):
        retinaface('val', None, dataset_path).gt_roidb()


def _bad_images(images_dir):
    """Bad files of the kinds a real data set holds; returns {name: kind}."""
    (images_dir / 'empty.jpg').write_bytes(b'')
    (images_dir / 'text.jpg').write_text('this is not an image\n')
    kinds = {'gone.jpg': 'missing', 'empty.jpg': 'zero bytes', 'text.jpg': 'text'}
    if os.geteuid() != 0:                                  # root reads any file
        write_png(images_dir / 'locked.png', 20, 20)
        os.chmod(images_dir / 'locked.png', 0)
        kinds['locked.png'] = 'no permission'
    return kinds


def test_training_set_skips_unreadable_images_naming_their_lines(tmp_path, caplog):
    dataset_path, label_file = make_dataset(tmp_path, '', [('a.png', 20, 30), ('z.png', 20, 30)])
    kinds = _bad_images(tmp_path / 'ds' / 'train' / 'images')
    names = ['a.png'] + sorted(kinds) + ['z.png', 'sized.jpg 40 30']
    label_file.write_text(''.join('# %s\n1 1 5 5\n' % name for name in names))
    root = str(tmp_path / 'root')
    with caplog.at_level(logging.WARNING, logger='rcnn.dataset.retinaface_dataset'):
        roidb = retinaface('train', root, dataset_path).gt_roidb()
    assert [os.path.basename(e['image']) for e in roidb] == ['a.png', 'z.png']
    for line, name in enumerate(names):
        if name not in ('a.png', 'z.png'):
            assert '%s:%d: image skipped: ' % (label_file, 2 * line + 1) in caplog.text, name
    assert 'skipped %d images that cannot be read (of %d)' % (len(names) - 2, len(names)) \
        in caplog.text
    caplog.clear()                                          # the report comes back from the cache
    with caplog.at_level(logging.WARNING, logger='rcnn.dataset.retinaface_dataset'):
        imdb = retinaface('train', root, dataset_path)
        again = imdb.gt_roidb()
    assert len(again) == 2 and 'image skipped' in caplog.text
    assert sorted(os.path.basename(p) for p in imdb.skipped_images) == sorted(
        [name.split()[0] for name in names if name not in ('a.png', 'z.png')])


def test_training_set_without_any_readable_image_is_an_error(tmp_path):
    dataset_path, label_file = make_dataset(tmp_path, '# gone.jpg\n1 1 5 5\n# also.jpg\n1 1 5 5\n')
    with pytest.raises(ImageReadError, match=r'none of the 2 images listed can be read'):
        retinaface('train', None, dataset_path).gt_roidb()


def test_a_wrong_header_size_is_named_when_boxes_are_dropped(tmp_path, caplog):
    # the header says 100 x 100 but the image is 300 x 400: a box at x = 150 falls outside
    dataset_path, label_file = make_dataset(tmp_path, '# a.png 100 100\n150 150 40 40\n'
                                            '# b.png\n1 1 5 5\n',
                                            [('a.png', 300, 400), ('b.png', 20, 20)])
    with caplog.at_level(logging.WARNING, logger='rcnn.dataset.retinaface_dataset'):
        retinaface('train', None, dataset_path).gt_roidb()
    assert ('%s:2: box x=150 y=150 w=40 h=40' % label_file) in caplog.text
    assert ('as stated by the "# name W H" line %s:1' % label_file) in caplog.text


def test_missing_label_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'nowhere.train.label\.txt'):
        retinaface('train', None, str(tmp_path / 'nowhere'))


# ---------------------------------------------------------------------------
# cache
# ---------------------------------------------------------------------------

def test_cache_hit_and_invalidation(tmp_path, monkeypatch):
    label = '# a.png\n1 1 5 5\n'
    dataset_path, label_file = make_dataset(tmp_path, label, [('a.png', 20, 30)])
    root = tmp_path / 'root'
    first = retinaface('train', str(root), dataset_path).gt_roidb()
    imdb = retinaface('train', str(root), dataset_path)
    assert os.path.isfile(imdb.cache_file)
    assert os.path.dirname(imdb.cache_file) == str(root / 'cache')
    assert not [n for n in os.listdir(root / 'cache') if n.startswith('.tmp-')]

    def no_image_reads(path):
        raise AssertionError('image header read although the cache should have been used')
    monkeypatch.setattr(reader, 'read_image_size', no_image_reads)

    cached = imdb.gt_roidb()                               # served from the cache
    assert len(cached) == len(first) == 1
    assert sorted(cached[0]) == sorted(first[0])
    for key, value in first[0].items():
        if isinstance(value, np.ndarray):
            assert cached[0][key].dtype == value.dtype
            np.testing.assert_array_equal(cached[0][key], value)
        else:
            assert cached[0][key] == value, key
    label_file.write_text(label)                           # same content, new mtime: still a hit
    imdb.gt_roidb()

    label_file.write_text('# a.png\n2 3 7 4\n')            # changed content: cache is stale
    with pytest.raises(AssertionError, match='cache should have been used'):
        imdb.gt_roidb()
    monkeypatch.undo()
    fresh = imdb.gt_roidb()
    np.testing.assert_array_equal(fresh[0]['boxes'], [[2, 3, 9, 7]])
    with np.load(imdb.cache_file, allow_pickle=False) as stored:
        np.testing.assert_array_equal(stored['boxes'], [[2, 3, 9, 7]])


def test_cache_keyed_by_options(tmp_path):
    label = '# a.png\n1 1 10 10\n20 1 5 30\n'
    dataset_path, _ = make_dataset(tmp_path, label, [('a.png', 40, 40)])
    root = str(tmp_path / 'root')
    assert len(retinaface('train', root, dataset_path).gt_roidb()[0]['boxes']) == 2
    cfg = _recipe_with_min_box_size(8)
    assert len(retinaface('train', root, dataset_path, cfg=cfg).gt_roidb()[0]['boxes']) == 1


class _CreatesAFile(object):
    """Unpickling this runs ``open(path, 'w')``: the marker file shows code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_a_planted_pickle_cache_is_never_loaded(tmp_path, caplog):
    dataset_path, label_file = make_dataset(tmp_path, '# a.png\n1 1 5 5\n', [('a.png', 20, 30)])
    imdb = retinaface('train', str(tmp_path / 'root'), dataset_path)
    marker = tmp_path / 'code_ran'
    os.makedirs(imdb.cache_path)
    payload = pickle.dumps({'key': imdb._cache_key(label_file.read_bytes()),
                            'columns': _CreatesAFile(str(marker))})
    old_name = imdb.cache_file[:-len('.npz')] + '.pkl'       # the pickle format's file name
    for path in (imdb.cache_file, old_name):
        with open(path, 'wb') as stream:
            stream.write(payload)
    with caplog.at_level(logging.WARNING, logger='rcnn.dataset.retinaface_dataset'):
        roidb = imdb.gt_roidb()
    assert not marker.exists()
    assert 'ignoring unreadable roidb cache %s' % imdb.cache_file in caplog.text
    np.testing.assert_array_equal(roidb[0]['boxes'], [[1, 1, 6, 6]])
    assert not marker.exists()


def test_cache_notices_a_replaced_image(tmp_path, caplog):
    dataset_path, _ = make_dataset(tmp_path, '# a.png\n1 1 5 5\n', [('a.png', 20, 30)])
    root = str(tmp_path / 'root')
    assert retinaface('train', root, dataset_path).gt_roidb()[0]['height'] == 20
    image = tmp_path / 'ds' / 'train' / 'images' / 'a.png'
    write_png(image, 40, 60)                                # a new file, another size
    os.utime(image, ns=(os.stat(image).st_atime_ns, os.stat(image).st_mtime_ns + 10 ** 9))
    with caplog.at_level(logging.INFO, logger='rcnn.dataset.retinaface_dataset'):
        roidb = retinaface('train', root, dataset_path).gt_roidb()
    assert (roidb[0]['height'], roidb[0]['width']) == (40, 60)
    assert 'image files changed since it was written' in caplog.text and 'a.png' in caplog.text


def test_corrupt_cache_is_rebuilt(tmp_path, caplog):
    dataset_path, _ = make_dataset(tmp_path, '# a.png\n1 1 5 5\n', [('a.png', 20, 30)])
    imdb = retinaface('train', str(tmp_path / 'root'), dataset_path)
    imdb.gt_roidb()
    with open(imdb.cache_file, 'wb') as stream:
        stream.write(b'not a pickle')
    with caplog.at_level(logging.WARNING, logger='rcnn.dataset.retinaface_dataset'):
        roidb = imdb.gt_roidb()
    assert 'ignoring unreadable roidb cache' in caplog.text
    np.testing.assert_array_equal(roidb[0]['boxes'], [[1, 1, 6, 6]])


def test_unwritable_cache_dir_continues(tmp_path, caplog):
    dataset_path, _ = make_dataset(tmp_path, '# a.png\n1 1 5 5\n', [('a.png', 20, 30)])
    root_is_a_file = tmp_path / 'root_file'
    root_is_a_file.write_text('x')
    with caplog.at_level(logging.WARNING, logger='rcnn.dataset.retinaface_dataset'):
        roidb = retinaface('train', str(root_is_a_file), dataset_path).gt_roidb()
    assert len(roidb) == 1
    assert 'continuing without cache' in caplog.text


def test_many_images_use_the_thread_pool(tmp_path, no_decoding):
    """Enough images to go through the thread pool: order must be preserved."""
    sizes = [(10 + i, 300 - i) for i in range(150)]   # 3 chunks of 64
    label = ''.join('# im%03d.png\n1 1 3 3\n' % i for i in range(len(sizes)))
    images = [('im%03d.png' % i, h, w) for i, (h, w) in enumerate(sizes)]
    dataset_path, _ = make_dataset(tmp_path, label, images)
    roidb = retinaface('train', None, dataset_path).gt_roidb()
    assert [(e['height'], e['width']) for e in roidb] == sizes
