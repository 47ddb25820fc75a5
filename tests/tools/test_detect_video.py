"""tools/detect.py on a short video that the test writes from the dlib photos; --crops."""
import json

import cv2
import numpy as np
import pytest

from conftest import shared_path
from test_detect_cli import load_cli
from test_detect_cli_guards import detect_in_process
from test_retinaface import read_val_labels

FRAME_SIZE = (480, 360)          # width, height
FPS = 10.0


@pytest.fixture(scope='module')
def cli():
    return load_cli()


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    """A 7-frame MJPEG .avi: the dlib val photos letterboxed to 480x360, the first two twice.
    Returns its path and the frames as decoded by OpenCV (what detect.py sees)."""
    val = shared_path('data', 'dlib_faces', 'val')
    photos = [cv2.imread(str(val / 'images' / name))
              for name in sorted(read_val_labels(val / 'label.txt'))]
    path = tmp_path_factory.mktemp('video') / 'dlib.avi'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), FPS, FRAME_SIZE)
    assert writer.isOpened()
    for photo in photos + photos[:2]:
        scale = min(FRAME_SIZE[0] / photo.shape[1], FRAME_SIZE[1] / photo.shape[0])
        resized = cv2.resize(photo, None, fx=scale, fy=scale)
        frame = np.zeros((FRAME_SIZE[1], FRAME_SIZE[0], 3), np.uint8)
        frame[:resized.shape[0], :resized.shape[1]] = resized
        writer.write(frame)
    writer.release()
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 7
    return path, frames


def _read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_video_json_lines_drawing_and_crops(mnet25_prefix, clip, tmp_path):
    from retinaface import RetinaFace
    path, frames = clip
    out = tmp_path / 'out'
    crops = tmp_path / 'crops'
    result = detect_in_process(['--prefix', mnet25_prefix, '--gpu', '-1', path, '--out', out,
                                '--json', '--every', '2', '--crops', crops])
    assert result.returncode == 0, result.stderr
    assert 'frames/s' in result.stdout and '4 frame(s) processed' in result.stdout

    lines = _read_lines(out / 'dlib.jsonl')
    assert [line['frame'] for line in lines] == [0, 2, 4, 6]
    np.testing.assert_allclose([line['time'] for line in lines], [0, 0.2, 0.4, 0.6], atol=1e-3)
    detector = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    total = 0
    for line in lines:
        faces, landmarks = detector.detect(frames[line['frame']], threshold=0.5)
        assert len(line['faces']) == len(faces)
        if len(faces):
            np.testing.assert_allclose([f['box'] for f in line['faces']], faces[:, :4], atol=0.01)
            np.testing.assert_allclose([f['score'] for f in line['faces']], faces[:, 4],
                                       atol=1e-5)
            np.testing.assert_allclose([f['landmarks'] for f in line['faces']], landmarks,
                                       atol=0.01)
        total += len(faces)
    assert total >= 8

    drawn = cv2.VideoCapture(str(out / 'dlib.mp4'))
    assert drawn.isOpened()
    assert int(drawn.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert drawn.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS / 2)
    ok, first = drawn.read()
    assert ok and first.shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3)
    assert np.abs(first.astype(int) - frames[0].astype(int)).mean() > 0.5   # something drawn

    written = sorted(p.name for p in crops.iterdir())
    assert len(written) == total
    assert written[0] == 'dlib_f000000_0.png'
    assert cv2.imread(str(crops / written[0])).shape == (112, 112, 3)


def test_video_out_file_and_executor_reuse(cli, mnet25_prefix, clip, tmp_path):
    from retinaface import RetinaFace
    path, frames = clip
    target = tmp_path / 'annotated.avi'
    args = cli.parse_args(['--prefix', mnet25_prefix, str(path), '--out', str(target), '--json',
                           '--max-frames', '3'])
    detector = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    summary = cli.run_video(args, detector, str(path))
    assert summary['frames'] == 3 and summary['drawn'] == str(target)
    assert len(_read_lines(tmp_path / 'annotated.jsonl')) == 3
    assert int(cv2.VideoCapture(str(target)).get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    # constant frame size: one executor bound for the whole video
    assert detector.backend.num_binds == 1


def test_video_errors(cli, mnet25_prefix, clip, tmp_path):
    path, _ = clip
    broken = tmp_path / 'broken.mp4'
    broken.write_bytes(b'this is no video' * 64)
    out = str(tmp_path / 'o')
    base = ['--prefix', mnet25_prefix, '--gpu', '-1', '--out']
    assert cli.main(base + [out, str(tmp_path / 'missing.mp4')]) == 2
    assert cli.main(base + [out, str(broken)]) == 2
    # one output video for two inputs, a video file for images, an unwritable container
    assert cli.main(base + [str(tmp_path / 'x.mp4'), str(path), str(path)]) == 2
    image = str(shared_path('images', 'dogs.jpg'))
    assert cli.main(base + [str(tmp_path / 'x.mp4'), image]) == 2
    assert cli.main(base + [str(tmp_path / 'x.webm'), str(path)]) == 2
    size = path.stat().st_size
    assert cli.main(base + [str(path), str(path)]) == 2           # would overwrite its input
    assert path.stat().st_size == size
    with pytest.raises(SystemExit):
        cli.parse_args(base + [out, str(path), '--every', '0'])
    from rcnn.utils import video as video_io
    with pytest.raises(video_io.VideoError, match='cannot open video .*broken.mp4'):
        video_io.VideoSource(str(broken))
    with pytest.raises(video_io.VideoError, match='cannot open camera 9'):
        video_io.VideoSource('9')
    # a file that opens but yields no frame
    empty = tmp_path / 'empty.avi'
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*'MJPG'), FPS, FRAME_SIZE)
    writer.release()
    if cv2.VideoCapture(str(empty)).isOpened():
        with pytest.raises(video_io.VideoError, match='no frame could be decoded'):
            list(video_io.VideoSource(str(empty)).frames())


def test_split_inputs_and_camera_indices(cli, tmp_path):
    from rcnn.utils import video as video_io
    (tmp_path / '3').write_bytes(b'')                # an existing file named like an index
    images, videos = cli.split_inputs(['a.jpg', 'b.MP4', '0', str(tmp_path / '3'),
                                       str(tmp_path)])
    assert videos == ['b.MP4', '0'] and images == ['a.jpg', str(tmp_path / '3'), str(tmp_path)]
    assert video_io.camera_index('0') == 0 and video_io.camera_index('x0') is None
    assert video_io.source_name('1') == 'camera1'
    assert video_io.source_name('/a/clip.mkv') == 'clip'


def test_image_crops(mnet25_prefix, tmp_path):
    photo = shared_path('images', 'Tom_Cruise_avp_2014_4.jpg')
    crops = tmp_path / 'crops'
    result = detect_in_process(['--prefix', mnet25_prefix, '--gpu', '-1', photo, '--out',
                                tmp_path / 'out', '--crops', crops, '--no-draw'])
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in crops.iterdir()) == ['Tom_Cruise_avp_2014_4_0.png']
    crop = cv2.imread(str(crops / 'Tom_Cruise_avp_2014_4_0.png'))
    assert crop.shape == (112, 112, 3) and crop.mean() > 40


def test_truncated_video_is_named_with_the_frames_read(clip, tmp_path, caplog):
    """A video cut short decodes up to the cut, with a warning naming it and the counts (the
    container still announces every frame)."""
    from rcnn.utils import video as video_io
    path, frames = clip
    data = path.read_bytes()
    cut = tmp_path / 'cut.avi'
    cut.write_bytes(data[:len(data) // 2])
    source = video_io.VideoSource(str(cut))
    assert source.frame_count == len(frames)
    caplog.set_level('WARNING')
    read = list(source.frames())
    assert 0 < len(read) < len(frames)
    warning, = [r.getMessage() for r in caplog.records if 'cut.avi' in r.getMessage()]
    assert 'after %d of the %d frames' % (len(read), len(frames)) in warning
    caplog.clear()
    assert len(list(video_io.VideoSource(str(path)).frames())) == len(frames)
    assert len(list(video_io.VideoSource(str(path), max_frames=3).frames())) == 3
    assert not caplog.records                      # whole files, and --max-frames: no warning
