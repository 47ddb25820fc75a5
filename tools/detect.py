"""Detect faces in images with a RetinaFace checkpoint; draw them and/or list them in JSON.

    python tools/detect.py --prefix ../shared/models/mnet.25/mnet.25 --epoch 0 --gpu -1 \\
        ../shared/images/ --out out/ --json

(--gpu -1: on the CPU; the default, GPU 0, needs an MXNet build with CUDA.)

Each input is an image file or a folder (searched recursively for .jpg/.jpeg/.png/.bmp/.webp/
.tif/.tiff files). For every image, a copy with the boxes, scores and the 5 landmarks drawn
(left eye red, right eye green, nose blue, left mouth corner yellow, right mouth corner
magenta) is written under --out (a folder input keeps its sub-folders), unless --no-draw.
--json writes <out>/detections.json: a list with, per image, ``image`` (the input path),
``drawn`` (the written copy or null), ``width``, ``height`` and ``faces``, each face
``{"box": [x1, y1, x2, y2], "score": s, "landmarks": [[x, y] x 5]}`` in input pixels, by
descending score.

An image that cannot be used -- missing, truncated or not decodable, or one the detector
refuses (smaller than 2x2 pixels, or a --scales factor that makes it too small or too large)
-- is skipped: a warning names it, it is listed in detections.json with an ``error`` instead
of ``faces``, and the other images are processed and written. Before anything is written,
outputs that would land on an input file (e.g. ``--out`` the input folder, or a crop
``<image>_<k>.png`` of --crops replacing an input image of that name), an --out or
--crops that is an existing file rather than a folder, and meaningless flags (a --thresh
outside [0, 1], a non-positive or NaN scale, ...) are refused with one line. Ctrl-C stops
the run; detections.json then lists the images done (every file is written whole or not at
all: each is written to a temporary name and renamed).

Exit status: 0 when every input was processed; 1 when some images were skipped (named on
stderr and in the summary line), the rest being processed and written; 2 when the run was
refused or stopped by an error (one line on stderr naming the flag or file; --debug shows the
traceback), e.g. an unreadable checkpoint, a video that cannot be decoded, or --gpu 0 on an
MXNet build without GPU support (pass --gpu -1); 130 after Ctrl-C.

--crops DIR writes one aligned 112x112 ArcFace crop per face, ``DIR/<image>_<k>.png`` (k by
descending score; see rcnn/inference/align.py).

Videos and cameras: an input with a video extension (.mp4, .avi, .mov, .mkv, ...) or a camera
index (``0``) is read frame by frame with cv2.VideoCapture (--every N: every N-th frame;
--max-frames: stop after that many frames, or press Ctrl-C for a camera). The processed frames,
drawn as images are, go to ``<out>/<name>.mp4`` -- or to --out itself when it names a video
file (.mp4/.m4v/.mov: MPEG-4 part 2, .avi/.mkv: MJPEG) and there is one video input -- at the
source's frame rate divided by N. --json writes one JSON line per processed frame,
``{"frame": i, "time": seconds, "faces": [...]}``, to ``<out>/<name>.jsonl`` (or next to the
output video). Crops of video frames are ``DIR/<name>_f<frame>_<k>.png``. Frames per second are
reported at the end. A video that cannot be opened or decoded is an error (exit status 2).

Drawn pictures: box lines and score labels grow with the image (a label's text is about 3% of
the shorter side, at least 12 pixels high), and a label that would leave the image at its top
or right edge is placed inside it.
"""
import argparse
import json
import logging
import math
import os
import re
import sys
import time
from pathlib import Path

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
from tqdm import tqdm  # noqa: E402

from rcnn.utils import cli  # noqa: E402
from rcnn.utils.cli import non_negative_int, positive_int  # noqa: E402
from rcnn.utils.cli_errors import (blocking_file, check_output_folder,  # noqa: E402
                                   run_reporting_errors)
from rcnn.io.decode import ImageReadError, imread_checked  # noqa: E402
from rcnn.inference.input_check import InvalidInputError  # noqa: E402
from rcnn.utils.fileio import atomic_write  # noqa: E402
from rcnn.utils import video as video_io  # noqa: E402
from rcnn.utils.model_info import licence_line  # noqa: E402

logger = logging.getLogger('detect')

PROG = 'detect.py'
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
#: BGR colours of the 5 landmarks: left eye, right eye, nose, left and right mouth corners
LANDMARK_COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255)]
BOX_COLOUR = (0, 255, 0)
LABEL_TEXT_COLOUR = (0, 0, 0)
LABEL_FONT = cv2.FONT_HERSHEY_SIMPLEX
#: a score label's text height as a fraction of the image's shorter side, and its minimum in
#: pixels (below about 12 pixels the Hershey digits are hard to read)
LABEL_HEIGHT_FRACTION = 0.03
LABEL_MIN_HEIGHT = 12
JSON_NAME = 'detections.json'
#: exit statuses (see the module docstring)
EXIT_SKIPPED, EXIT_ERROR, EXIT_INTERRUPTED = 1, 2, 130


def _probability(text):
    """A finite float in [0, 1] (a face score or an IoU)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError('expected a number in [0, 1], got %r' % (text,))
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError('must be a number in [0, 1], got %s' % text)
    return value


def _scale(text):
    """A finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError('expected a positive number, got %r' % (text,))
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError('must be a positive finite number, got %s' % text)
    return value


def build_parser():
    """The argument parser (every option's help states its default)."""
    parser = cli.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', nargs='+', metavar='input',
                        help='image files, folders of images, video files (%s) and camera '
                             'indices (0, 1, ...)' % '/'.join(video_io.VIDEO_EXTENSIONS))
    parser.add_argument('--prefix', required=True,
                        help='checkpoint prefix: <prefix>-symbol.json, <prefix>-%%04d.params')
    parser.add_argument('--epoch', type=non_negative_int, default=0,
                        help='checkpoint epoch (default %(default)s)')
    parser.add_argument('--out', required=True,
                        help='output folder (created when needed); with one video or camera '
                             'input it may also name the annotated video file (e.g. out.mp4)')
    parser.add_argument('--thresh', type=_probability, default=0.5,
                        help='minimum face score, in [0, 1] (default %(default)s)')
    parser.add_argument('--scales', type=_scale, nargs='+', default=[1.0],
                        help='image scales to run, results merged (default 1.0)')
    parser.add_argument('--flip', action='store_true',
                        help='also run each scale mirrored')
    parser.add_argument('--nms', type=_probability, default=0.4,
                        help='NMS IoU threshold, in [0, 1] (default %(default)s)')
    parser.add_argument('--json', action='store_true',
                        help='write <out>/%s with the faces of every image' % JSON_NAME)
    parser.add_argument('--no-draw', action='store_true',
                        help='do not write annotated images (use with --json; default: draw)')
    parser.add_argument('--crops', metavar='DIR', default=None,
                        help='write one aligned 112x112 ArcFace crop per face to DIR '
                             '(<image>_<k>.png; default: no crops)')
    parser.add_argument('--every', type=positive_int, default=1, metavar='N',
                        help='videos: process every N-th frame (default %(default)s: all)')
    parser.add_argument('--max-frames', type=positive_int, default=None, metavar='N',
                        help='videos and cameras: stop after reading N frames (default: no '
                             'limit)')
    parser.add_argument('--gpu', type=int, default=0,
                        help='GPU id, or -1 for the CPU (default %(default)s, as the '
                             'original\'s tools; an MXNet build without GPU support needs -1)')
    parser.add_argument('--network', default='net3',
                        help='the original detector\'s layout name (net3, net3a, net4, net4a, '
                             'net5, net5a, net6, ssh, vgg, x3, x3a, x5) for a checkpoint '
                             'without a recipe file (default %(default)s)')
    parser.add_argument('--debug', action='store_true',
                        help='on an error, show the full traceback instead of a one-line '
                             'message')
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.no_draw and not args.json and not args.crops:
        parser.error('--no-draw without --json or --crops would produce nothing')
    return args


def _is_image(path):
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def collect_images(inputs):
    """[(image path, output-relative path)] for files and folders (recursive, sorted).

    Raises:
        FileNotFoundError for a missing input; ValueError when two images would be written to
        the same output path.
    """
    pairs = []
    for item in inputs:
        if os.path.isdir(item):
            for folder, subfolders, files in os.walk(item):
                subfolders.sort()
                for name in sorted(files):
                    if _is_image(name):
                        path = os.path.join(folder, name)
                        pairs.append((path, os.path.relpath(path, item)))
        elif os.path.isfile(item):
            pairs.append((item, os.path.basename(item)))
        else:
            raise FileNotFoundError('input not found: %s' % item)
    seen = {}
    for path, relative in pairs:
        if relative in seen:
            raise ValueError('%s and %s would both be written to <out>/%s; pass them in '
                             'separate runs or folders' % (seen[relative], path, relative))
        seen[relative] = path
    return pairs


def split_inputs(inputs):
    """(image inputs, video inputs): video files by extension and camera indices go to the
    second list, in the given order."""
    images, videos = [], []
    for item in inputs:
        is_video = video_io.camera_index(item) is not None or (
            not os.path.isdir(item) and video_io.is_video_path(item))
        (videos if is_video else images).append(item)
    return images, videos


def write_crops(detector, image, landmarks, folder, stem):
    """Aligned crops ``folder/<stem>_<k>.png`` of every face; returns their paths."""
    paths = []
    for k, crop in enumerate(detector.align(image, landmarks)):
        path = os.path.join(folder, '%s_%d.png' % (stem, k))
        _write_image(path, crop)
        paths.append(path)
    return paths


def output_paths(pairs, args):
    """Every file this run would write: the drawn copies and the JSON list."""
    paths = [] if args.no_draw else [os.path.join(args.out, relative) for _, relative in pairs]
    if args.json:
        paths.append(os.path.join(args.out, JSON_NAME))
    return paths


def check_output_folders(args, has_images):
    """Refuse an --out (when it must be a folder) or --crops that is, or lies under, an
    existing file.

    Raises:
        ValueError naming the flag and the file.
    """
    folders = []
    if has_images or not video_io.is_video_path(args.out):
        folders.append(('--out', args.out))
    if args.crops:
        folders.append(('--crops', args.crops))
    for flag, folder in folders:
        check_output_folder(flag, folder)


def check_crops_spare_inputs(pairs, crops):
    """Refuse a --crops folder where a crop ``<image>_<k>.png`` of one input could replace
    another input image (e.g. --crops the input folder holding ``a.jpg`` and ``a_0.png``).

    Raises:
        ValueError naming the input image and the crop name.
    """
    if not crops:
        return
    folder = os.path.realpath(crops)
    stems = {os.path.splitext(relative)[0] for _, relative in pairs}
    for path, _ in pairs:
        real = os.path.realpath(path)
        if not real.startswith(folder + os.sep):
            continue
        match = re.match(r'(.*)_\d+\.png$', os.path.relpath(real, folder))
        if match and match.group(1) in stems:
            raise ValueError('--crops %s: a crop of %s.* would be written as %s, an input image; '
                             'choose a --crops folder outside the inputs'
                             % (crops, match.group(1), path))


def check_no_overwrite(pairs, outputs):
    """Refuse to run when an output path resolves to an input file (symlinks followed, hard
    links recognised by device and inode), is an existing folder or lies under a file.

    Raises:
        ValueError naming the input and the output.
    """
    by_path = {os.path.realpath(path): path for path, _ in pairs}
    by_inode = {}
    for path, _ in pairs:
        info = os.stat(path)
        by_inode[(info.st_dev, info.st_ino)] = path
    for output in outputs:
        if os.path.isdir(output):
            raise ValueError('%s is a folder, where this run would write a file; move it or '
                             'choose another --out' % output)
        blocker = blocking_file(os.path.dirname(output))
        if blocker is not None:
            raise ValueError('%s cannot be written: %s is a file, where this run needs a '
                             'folder; move it or choose another --out' % (output, blocker))
        clash = by_path.get(os.path.realpath(output))
        if clash is None and os.path.exists(output):
            info = os.stat(output)
            clash = by_inode.get((info.st_dev, info.st_ino))
        if clash is not None:
            raise ValueError('writing %s would overwrite the input image %s; choose an --out '
                             'folder outside the inputs' % (output, clash))


def label_style(image_shape):
    """(font scale, text thickness, box thickness) for drawing on an image of this shape.

    The text height is :data:`LABEL_HEIGHT_FRACTION` of the shorter side, at least
    :data:`LABEL_MIN_HEIGHT` pixels, so labels stay readable on a 640x480 photo and in
    proportion on a large one.
    """
    height, width = image_shape[:2]
    box_thickness = max(1, int(round(max(height, width) / 500.0)))
    text_height = max(LABEL_MIN_HEIGHT, LABEL_HEIGHT_FRACTION * min(height, width))
    unit_height = cv2.getTextSize('0.123', LABEL_FONT, 1.0, 1)[0][1]
    font_scale = text_height / float(unit_height)
    return font_scale, max(1, int(round(font_scale * 1.5))), box_thickness


def label_rectangle(image_shape, box, text, font_scale, thickness):
    """Where a box's label goes: ``(x, y, width, height)`` of its filled background, above the
    box when there is room, else just inside its top edge, shifted left to stay inside the
    image; the text baseline is ``y + height - pad``, the text starts at ``x + pad``."""
    height, width = image_shape[:2]
    (text_w, text_h), baseline = cv2.getTextSize(text, LABEL_FONT, font_scale, thickness)
    pad = max(2, int(round(0.25 * text_h)))
    rect_w, rect_h = text_w + 2 * pad, text_h + baseline + 2 * pad
    x1, y1 = int(round(box[0])), int(round(box[1]))
    top = y1 - rect_h if y1 - rect_h >= 0 else max(0, y1)
    top = min(top, max(0, height - rect_h))
    left = min(max(0, x1), max(0, width - rect_w))
    return left, top, rect_w, rect_h, pad, baseline


def draw_faces(image, faces, landmarks):
    """A copy of ``image`` (H, W, 3) BGR with boxes, score labels and landmarks drawn.

    Args:
        faces: (N, 5) x1 y1 x2 y2 score; landmarks: (N, 5, 2) x y.
    """
    canvas = image.copy()
    font_scale, text_thickness, thickness = label_style(image.shape)
    for face, points in zip(faces, landmarks):
        x1, y1, x2, y2 = [int(round(v)) for v in face[:4]]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), BOX_COLOUR, thickness)
        for (x, y), colour in zip(points, LANDMARK_COLOURS):
            cv2.circle(canvas, (int(round(x)), int(round(y))), thickness + 1, colour, -1)
    # labels after every box, so no box line crosses a label
    for face in faces:
        text = '%.3f' % face[4]
        left, top, rect_w, rect_h, pad, baseline = label_rectangle(
            image.shape, face, text, font_scale, text_thickness)
        cv2.rectangle(canvas, (left, top), (left + rect_w - 1, top + rect_h - 1), BOX_COLOUR,
                      cv2.FILLED)
        cv2.putText(canvas, text, (left + pad, top + rect_h - pad - baseline), LABEL_FONT,
                    font_scale, LABEL_TEXT_COLOUR, text_thickness, cv2.LINE_AA)
    return canvas


def faces_to_json(faces, landmarks):
    return [{'box': [round(float(v), 2) for v in face[:4]], 'score': round(float(face[4]), 5),
             'landmarks': [[round(float(x), 2), round(float(y), 2)] for x, y in points]}
            for face, points in zip(faces, landmarks)]


def _write_image(path, image):
    def write(tmp):
        if not cv2.imwrite(tmp, image):
            raise OSError('cannot write image %s' % path)
    atomic_write(path, write, suffix=os.path.splitext(path)[1])


def _write_json(path, records):
    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(records, f, indent=1)
            f.write('\n')
    atomic_write(path, write, suffix=os.path.splitext(path)[1])


def video_outputs(args, source, num_videos):
    """(annotated video path or None, JSON-lines path or None) of one video input."""
    if video_io.is_video_path(args.out):
        if num_videos != 1:
            raise ValueError('--out %s names one video file but there are %d video inputs; '
                             'pass a folder' % (args.out, num_videos))
        base = os.path.splitext(args.out)[0]
        drawn = args.out
    else:
        base = os.path.join(args.out, video_io.source_name(source))
        drawn = base + '.mp4'
    drawn, lines = (None if args.no_draw else drawn), (base + '.jsonl' if args.json else None)
    for path in (drawn, lines):
        if path and os.path.isdir(path):
            raise ValueError('%s is a folder, where this run would write a file; move it or '
                             'choose another --out' % path)
    if video_io.camera_index(source) is None:
        for path in (drawn, lines):
            if path and os.path.realpath(path) == os.path.realpath(source):
                raise ValueError('output %s would overwrite the input video %s' % (path, source))
    return drawn, lines


def run_video(args, detector, source, num_videos=1):
    """Detect on the frames of one video or camera; returns a summary record
    ``{'video', 'frames', 'faces', 'drawn', 'json', 'fps'}``."""
    drawn_path, json_path = video_outputs(args, source, num_videos)
    reader = video_io.VideoSource(source, every=args.every, max_frames=args.max_frames)
    name = video_io.source_name(source)
    sink, lines = None, None
    processed = num_faces = 0
    detect_seconds = 0.0
    started = time.monotonic()
    try:
        if json_path:
            os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
            lines = open(json_path, 'w')
        bar = tqdm(reader.frames(), total=reader.expected_frames(), desc=name, unit='frame')
        try:
            for index, seconds, frame in bar:
                tic = time.monotonic()
                faces, landmarks = detector.detect(frame, threshold=args.thresh,
                                                   scales=args.scales, do_flip=args.flip)
                detect_seconds += time.monotonic() - tic
                processed += 1
                num_faces += len(faces)
                if lines is not None:
                    lines.write(json.dumps({'frame': index, 'time': round(seconds, 4),
                                            'faces': faces_to_json(faces, landmarks)}) + '\n')
                    lines.flush()
                if drawn_path:
                    if sink is None:
                        fps = (reader.fps or video_io.FALLBACK_FPS) / args.every
                        sink = video_io.VideoSink(drawn_path, fps, frame.shape[1], frame.shape[0])
                    sink.write(draw_faces(frame, faces, landmarks))
                if args.crops:
                    write_crops(detector, frame, landmarks, args.crops,
                                '%s_f%06d' % (name, index))
        except KeyboardInterrupt:
            logger.warning('%s: interrupted after %d processed frames', name, processed)
        finally:
            bar.close()
    finally:
        reader.close()
        if sink is not None:
            sink.close()
        if lines is not None:
            lines.close()
    elapsed = time.monotonic() - started
    fps = processed / detect_seconds if detect_seconds > 0 else 0.0
    logger.info('%s: %d frames processed, %d faces, %.2f frames/s detection, %.2f frames/s '
                'overall', name, processed, num_faces, fps,
                processed / elapsed if elapsed > 0 else 0.0)
    return {'video': str(source), 'frames': processed, 'faces': num_faces, 'drawn': drawn_path,
            'json': json_path, 'fps': fps}


class RunResult(object):
    """What :func:`run` did: per-image records (see the module docstring), one summary record
    per video (key ``video``), and whether Ctrl-C stopped it."""

    def __init__(self, records, interrupted=False):
        self.records = records
        self.interrupted = interrupted


def run(args):
    """Detect on every input; returns a :class:`RunResult`.

    Raises:
        FileNotFoundError / ValueError (one line naming the file or flag) for inputs and
        outputs refused before anything is written; the detector's errors for the checkpoint.
    """
    from retinaface import RetinaFace
    image_inputs, video_inputs = split_inputs(args.inputs)
    pairs = collect_images(image_inputs)
    if not pairs and not video_inputs:
        raise FileNotFoundError('no image (%s) found in %s' % ('/'.join(IMAGE_EXTENSIONS),
                                                              ', '.join(args.inputs)))
    if video_io.is_video_path(args.out) and pairs:
        raise ValueError('--out %s names a video file; images need an output folder' % args.out)
    check_output_folders(args, bool(pairs))
    for source in video_inputs:
        video_outputs(args, source, len(video_inputs))       # path errors before any work
    check_no_overwrite(pairs, output_paths(pairs, args))
    check_crops_spare_inputs(pairs, args.crops)
    detector = RetinaFace(args.prefix, args.epoch, ctx_id=args.gpu, network=args.network,
                          nms=args.nms)
    print_licence(args.prefix, args.epoch)
    records, interrupted = run_images(args, detector, pairs) if pairs else ([], False)
    if not interrupted:
        for source in video_inputs:
            records.append(run_video(args, detector, source, len(video_inputs)))
    return RunResult(records, interrupted)


def print_licence(prefix, epoch):
    """The licence line of a released model (rcnn/utils/model_info.py), on stdout."""
    from rcnn.checkpoint.files import params_path
    line = licence_line(params_path(prefix, epoch))
    if line:
        print(line)


def detect_one(args, detector, path, relative):
    """Detect on one image file and write its drawing and crops; returns its record.

    Raises:
        ImageReadError or InvalidInputError (messages name the image) for an image to skip.
    """
    image = imread_checked(path)
    try:
        faces, landmarks = detector.detect(image, threshold=args.thresh, scales=args.scales,
                                           do_flip=args.flip)
    except InvalidInputError as err:
        raise InvalidInputError('%s: %s' % (path, err)) from None
    drawn = None
    if not args.no_draw:
        drawn = os.path.join(args.out, relative)
        _write_image(drawn, draw_faces(image, faces, landmarks))
    if args.crops:
        write_crops(detector, image, landmarks, args.crops, os.path.splitext(relative)[0])
    return {'image': path, 'drawn': drawn, 'width': int(image.shape[1]),
            'height': int(image.shape[0]), 'faces': faces_to_json(faces, landmarks)}


def run_images(args, detector, pairs):
    """Detect on every (image path, output-relative path), skipping the unusable ones with a
    warning; returns ``(records, interrupted)``. With --json the records of the images done
    are written also when Ctrl-C or an error stops the run."""
    records, interrupted = [], False
    try:
        for path, relative in tqdm(pairs, desc='detect', unit='img', disable=len(pairs) < 5):
            try:
                records.append(detect_one(args, detector, path, relative))
                logger.info('%s: %d face(s)', path, len(records[-1]['faces']))
            except (ImageReadError, InvalidInputError) as err:
                logger.warning('%s; skipped', err)
                records.append({'image': path, 'error': str(err)})
    except KeyboardInterrupt:
        interrupted = True
        logger.warning('interrupted: %d of %d images processed', len(records), len(pairs))
    except Exception:
        # a fatal error (e.g. a full disk): the images done stay listed when the list can be
        # written; the error itself is what the caller reports
        if args.json:
            try:
                _write_json(os.path.join(args.out, JSON_NAME), records)
            except OSError:
                logger.debug('%s not written', JSON_NAME, exc_info=True)
        raise
    if args.json:
        _write_json(os.path.join(args.out, JSON_NAME), records)
    return records, interrupted


def report(args, result):
    """Print the summary lines; returns the exit status."""
    videos = [r for r in result.records if 'video' in r]
    records = [r for r in result.records if 'video' not in r]
    failed = [r['image'] for r in records if 'error' in r]
    num_faces = sum(len(r.get('faces', ())) for r in records)
    if records or not videos:
        print('%d image(s), %d face(s) at threshold %g; output in %s%s' % (
            len(records) - len(failed), num_faces, args.thresh, args.out,
            '; %d skipped: %s' % (len(failed), ', '.join(failed)) if failed else ''))
    for summary in videos:
        print('%s: %d frame(s) processed, %d face(s), %.2f frames/s (detection); %s' % (
            summary['video'], summary['frames'], summary['faces'], summary['fps'],
            ', '.join(p for p in (summary['drawn'], summary['json']) if p) or 'no output'))
    if result.interrupted:
        print('%s: interrupted by Ctrl-C; the images above were processed%s' % (
            PROG, ' and listed in %s' % os.path.join(args.out, JSON_NAME) if args.json else ''),
            file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_SKIPPED if failed else 0


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format='%(levelname)s %(name)s: %(message)s')
    try:
        return run_reporting_errors(PROG, lambda: report(args, run(args)), debug=args.debug,
                                    status=EXIT_ERROR)
    except KeyboardInterrupt:        # before the images started (e.g. loading the model)
        print('%s: interrupted by Ctrl-C before any image was processed' % PROG,
              file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == '__main__':
    sys.exit(main())
