"""bench/bench_options.py: every option of a scene is timed beside plain detect() in one run,
its ratio is the ratio of the medians, running four rotations costs more than one pass, the
quality records leave the detections as they are and the tracker row tracks every face of the
still photo."""
import pytest

from conftest import shared_path

from bench import bench_options


def test_rows_put_each_option_beside_plain_detect():
    shared_path('models', 'mnet.25', 'mnet.25-symbol.json')
    shared_path('images', 'bald_guys.jpg')
    rows = bench_options.run(quick=True, scenes=('photo', 'frame'))
    assert [(r['scene'], r['option']) for r in rows] == [
        (scene, option.label) for scene in ('photo', 'frame')
        for option in bench_options.OPTIONS[scene]]
    for scene in ('photo', 'frame'):
        scene_rows = [r for r in rows if r['scene'] == scene]
        plain = scene_rows[0]
        assert plain['option'] == 'plain' and plain['x_plain'] == 1.0
        for row in scene_rows:
            assert row['x_plain'] == pytest.approx(row['median_ms'] / plain['median_ms'],
                                                   abs=0.01)
    photo_plain, quality, tracked, rotated = [r for r in rows if r['scene'] == 'photo']
    assert quality['option'] == 'quality=True' and quality['faces'] == photo_plain['faces']
    # the photo fed as a still video: from its second frame on every face is a confirmed track
    assert tracked['faces'] == photo_plain['faces'] == tracked['tracked']
    assert 0 < tracked['update_ms'] < tracked['median_ms']
    assert 'update_ms' not in quality
    # four passes instead of one: well above one pass even on a busy machine
    assert rotated['x_plain'] > 1.8
    assert rotated['faces'] >= photo_plain['faces'] >= 10
    # the frame's face is found only with the low-res pass (auto picks it for 1920x1080)
    frame = {r['option']: r['faces'] for r in rows if r['scene'] == 'frame'}
    assert frame["tiles='low-res'"] >= 1 and frame["tiles='auto'"] >= 1


def test_unknown_scene_is_refused(capsys):
    with pytest.raises(SystemExit):
        bench_options.main(['--scenes', 'photo,moon'])
    assert 'moon' in capsys.readouterr().err
