"""Scale options: the tile grid against brute-force covering, the inner-edge rule and the auto
policy by hand; the released mnet.25 finds tiny faces of a generated 4K image only with tiles
and a frame-filling face only with the low-res pass."""
import numpy as np
import pytest

from conftest import shared_path
from rcnn.evaluation.widerface import count_recalled
from rcnn.inference.input_check import InvalidInputError
from rcnn.inference.tiling import (AUTO_TILE_SIDE, ScaleOptions, _inner_edge_mask, auto_options,
                                   check_scale_options, low_res_scale, tile_grid, tile_starts)
from tools.sample_data.big_scenes import (TINY_FACE_HEIGHTS, render_large_face_scene,
                                          render_tiny_face_scene, rotate_boxes,
                                          rotated_val_scene)


@pytest.mark.parametrize('length, tile, overlap', [(100, 100, 10), (101, 100, 10),
                                                   (3840, 512, 64), (2160, 512, 64),
                                                   (1000, 300, 150), (50, 512, 64)])
def test_tile_starts_cover_every_small_box_whole(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    ends = starts + min(tile, length)
    assert starts[0] == 0 and ends[-1] == length
    # brute force: every window of ``overlap`` pixels lies whole inside some tile
    for left in range(0, max(1, length - overlap + 1)):
        right = min(length, left + overlap)
        assert ((starts <= left) & (ends >= right)).any(), left
    # no more tiles than needed: dropping any inner tile leaves a window uncovered
    if len(starts) > 2:
        assert (np.diff(starts) > (tile - overlap) / 2).all()


def test_tile_grid_by_hand():
    # 1000 x 600 with tiles of 512 sharing >= 64: two tiles across would share 24 pixels,
    # so x starts 0, 244, 488; down, two share 424: y starts 0, 88
    grid = tile_grid(600, 1000, 512, 64)
    np.testing.assert_array_equal(grid, [[0, 0, 512, 512], [244, 0, 756, 512],
                                         [488, 0, 1000, 512], [0, 88, 512, 600],
                                         [244, 88, 756, 600], [488, 88, 1000, 600]])
    # an image smaller than a tile is one tile of its own size
    np.testing.assert_array_equal(tile_grid(300, 200, 512, 64), [[0, 0, 200, 300]])


def test_inner_edge_rule_by_hand():
    # the tile x 488..1000, y 0..512 of a 1000 x 600 image: its left and bottom edges are cuts
    tile = np.array([488, 0, 1000, 512])
    boxes = np.array([[0.5, 100, 20, 120],       # at the left cut: a cut face
                      [5.0, 100, 25, 120],       # clear of it
                      [400, 495, 420, 510.5],    # at the bottom cut (511 - 2 = 509)
                      [490, 0, 511, 20]],        # at the image's top and right border: kept
                     dtype=np.float32)
    assert _inner_edge_mask(boxes, tile, 600, 1000, 2.0).tolist() == [True, False, True, False]


def test_auto_policy_and_low_res_scale():
    assert auto_options(2160, 3840, [1.0], 512) == ScaleOptions(tiles=True, low_res=True)
    assert auto_options(480, 640, [1.0], 512) == ScaleOptions(tiles=False, low_res=False)
    assert auto_options(1080, AUTO_TILE_SIDE - 1, [1.0], 512).tiles is False
    assert auto_options(1080, 1920, [1.0], 512) == ScaleOptions(tiles=False, low_res=True)
    assert auto_options(720, 1280, [2.0], 512) == ScaleOptions(tiles=True, low_res=True)
    assert low_res_scale(1080, 1920, 384) == pytest.approx(384 / 1080)


def test_check_scale_options():
    assert check_scale_options(None) is None and check_scale_options('off') is None
    assert check_scale_options('auto') == 'auto'
    assert check_scale_options('both') == ScaleOptions(tiles=True, low_res=True)
    assert check_scale_options('low-res') == ScaleOptions(low_res=True)
    assert check_scale_options(ScaleOptions()) is None
    for bad in ('tile', 3):
        with pytest.raises(InvalidInputError, match='tiles must be'):
            check_scale_options(bad)
    with pytest.raises(InvalidInputError, match='twice'):
        ScaleOptions(tiles=True, tile_size=100, tile_overlap=64)
    with pytest.raises(InvalidInputError, match='tile_scale'):
        ScaleOptions(tiles=True, tile_scale=0.0)


# ---------------------------------------------------------------------------- generated scenes

@pytest.mark.parametrize('angle', [0, 90, 180, 270])
def test_turned_boxes_cover_the_turned_pixels(angle):
    # a box painted into a mask: the box of the mask turned by numpy is the turned box
    mask = np.zeros((30, 50), np.uint8)
    box = np.array([[7.0, 3.0, 19.0, 11.0]])
    mask[3:12, 7:20] = 1
    turned = np.rot90(mask, angle // 90)
    ys, xs = np.nonzero(turned)
    np.testing.assert_array_equal(rotate_boxes(box, angle, 30, 50),
                                  [[xs.min(), ys.min(), xs.max(), ys.max()]])


def test_generated_scenes_hold_what_they_promise():
    scene = render_tiny_face_scene(np.random.default_rng(0), width=960, height=540,
                                   medium_faces=1)
    heights = scene.boxes[scene.tiny, 3] - scene.boxes[scene.tiny, 1]
    assert len(heights) > 30 and heights.max() <= TINY_FACE_HEIGHTS[1] + 2
    assert (scene.boxes[:, :2] >= 0).all() and (scene.boxes[:, 2] <= 959).all()
    large = render_large_face_scene(np.random.default_rng(1))
    assert large.boxes[0, 3] - large.boxes[0, 1] >= 0.6 * 1080 - 1
    upright, turned = rotated_val_scene(0, 2, 0), rotated_val_scene(0, 2, 90)
    assert turned.image.shape[:2] == upright.image.shape[1::-1]
    np.testing.assert_array_equal(turned.image, np.rot90(upright.image))


# ---------------------------------------------------------------------------- released model

@pytest.fixture(scope='module')
def mnet25():
    from retinaface import RetinaFace
    return RetinaFace(str(shared_path('models', 'mnet.25') / 'mnet.25'), 0, ctx_id=-1)


def test_tiny_faces_of_a_4k_scene_are_found_only_with_tiles(mnet25):
    scene = render_tiny_face_scene(np.random.default_rng(3), tiny_heights=(13.0, 15.5),
                                   cell=160, medium_faces=4)
    assert scene.image.shape == (2160, 3840, 3)
    tiny, medium = scene.boxes[scene.tiny], scene.boxes[~scene.tiny]
    plain, _ = mnet25.detect(scene.image, threshold=0.5)
    options = ScaleOptions(tiles=True, tile_scale=2.0)
    tiled, points = mnet25.detect(scene.image, threshold=0.5, tiles=options)
    assert count_recalled(plain, tiny) <= 0.02 * len(tiny)
    assert count_recalled(tiled, tiny) >= 0.2 * len(tiny)
    # merged with the whole-image pass: what it found is still found
    assert count_recalled(tiled, medium) >= count_recalled(plain, medium)
    # landmarks of the tile faces are in image coordinates, inside their boxes
    inside = ((points[:, :, 0] >= tiled[:, None, 0] - 2)
              & (points[:, :, 0] <= tiled[:, None, 2] + 2)
              & (points[:, :, 1] >= tiled[:, None, 1] - 2)
              & (points[:, :, 1] <= tiled[:, None, 3] + 2))
    assert inside.mean() > 0.95


def test_a_face_filling_the_frame_is_found_only_with_the_low_res_pass(mnet25):
    for seed in (100, 101):
        scene = render_large_face_scene(np.random.default_rng(seed))
        assert scene.boxes[0, 3] - scene.boxes[0, 1] > 0.6 * 1080
        plain, _ = mnet25.detect(scene.image, threshold=0.5)
        low, _ = mnet25.detect(scene.image, threshold=0.5, tiles='low-res')
        auto, _ = mnet25.detect(scene.image, threshold=0.5, tiles='auto')
        assert count_recalled(plain, scene.boxes) == 0
        assert count_recalled(low, scene.boxes) == 1
        assert count_recalled(auto, scene.boxes) == 1


def test_no_option_is_the_plain_pass(mnet25):
    scene = render_large_face_scene(np.random.default_rng(5), width=640, height=480)
    plain = mnet25.detect(scene.image, threshold=0.3)
    for tiles in ('off', ScaleOptions()):
        same = mnet25.detect(scene.image, threshold=0.3, tiles=tiles)
        for a, b in zip(plain, same):
            np.testing.assert_array_equal(a, b)


def test_options_combine_and_reach_the_cli(mnet25, mnet25_prefix, tmp_path):
    import json
    import cv2
    from test_detect_cli import load_cli
    scene = render_large_face_scene(np.random.default_rng(102))
    turned = np.ascontiguousarray(np.rot90(scene.image))
    truth = np.array([[scene.boxes[0, 1], 1919 - scene.boxes[0, 2], scene.boxes[0, 3],
                       1919 - scene.boxes[0, 0]]])
    faces, _, angles = mnet25.detect(turned, threshold=0.5, rotations=(0, 270), tiles='low-res')
    hit = [k for k in range(len(faces)) if count_recalled(faces[k:k + 1], truth) == 1]
    assert hit and angles[hit[0]] == 270
    path = tmp_path / 'frame.png'
    cv2.imwrite(str(path), scene.image)
    out = tmp_path / 'out'
    base = ['--prefix', mnet25_prefix, '--gpu', '-1', str(path), '--out', str(out), '--json',
            '--no-draw']
    cli = load_cli()
    for flags, expected in (([], 0), (['--tiles', 'low-res'], 1)):
        assert cli.main(base + flags) == 0
        record, = json.loads((out / 'detections.json').read_text())
        boxes = np.array([face['box'] for face in record['faces']]).reshape(-1, 4)
        assert count_recalled(boxes, scene.boxes) == expected
