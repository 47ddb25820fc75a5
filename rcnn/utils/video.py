"""Video input and output through ``cv2.VideoCapture`` / ``cv2.VideoWriter``, with clear errors.

A *source* is a video file or a camera index (a string of digits that is not an existing
file, e.g. ``"0"``). :class:`VideoSource` opens it and yields ``(index, seconds, frame)`` for
every ``every``-th frame; :class:`VideoSink` writes frames to a file whose codec follows its
extension.
"""
import logging
import os
import time

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv')
#: output extension -> FourCC written by OpenCV's own encoders (no external codec needed)
WRITER_FOURCC = {'.mp4': 'mp4v', '.m4v': 'mp4v', '.mov': 'mp4v', '.avi': 'MJPG', '.mkv': 'MJPG'}
#: frame rate of the output when the source does not report one (cameras often do not)
FALLBACK_FPS = 25.0


class VideoError(ValueError):
    """A video or camera that cannot be opened, decoded or written (message names it)."""


def is_video_path(path):
    return os.path.splitext(str(path))[1].lower() in VIDEO_EXTENSIONS


def camera_index(source):
    """``int`` for a camera index (digits, not an existing path), else None."""
    text = str(source)
    if text.isdigit() and not os.path.exists(text):
        return int(text)
    return None


def source_name(source):
    """File stem of a video, ``camera<N>`` of a camera: a base name for outputs."""
    index = camera_index(source)
    if index is not None:
        return 'camera%d' % index
    return os.path.splitext(os.path.basename(str(source)))[0]


class VideoSource(object):
    """Frames of a video file or camera.

    Args:
        source: file path or camera index (see :func:`camera_index`).
        every: yield every ``every``-th frame (frames 0, every, 2 * every, ...).
        max_frames: stop after reading this many frames (None: until the end; a camera never
            ends by itself).
    Raises:
        VideoError when the file is missing or OpenCV cannot open or decode it.
    """

    def __init__(self, source, every=1, max_frames=None):
        import cv2
        self.cv2 = cv2
        self.source = source
        self.every = int(every)
        if self.every < 1:
            raise ValueError('every must be >= 1, got %r' % (every,))
        self.max_frames = None if max_frames is None else int(max_frames)
        self.camera = camera_index(source)
        if self.camera is None and not os.path.isfile(str(source)):
            raise VideoError('video not found: %s' % source)
        self.capture = cv2.VideoCapture(self.camera if self.camera is not None else str(source))
        if not self.capture.isOpened():
            what = 'camera %d' % self.camera if self.camera is not None else 'video %s' % source
            raise VideoError('cannot open %s (unreadable file, unsupported container or codec, '
                             'or no such device)' % what)
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 and fps < 1000 else None
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 and self.camera is None else None
        self.width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))

    @property
    def name(self):
        return 'camera %d' % self.camera if self.camera is not None else str(self.source)

    def expected_frames(self):
        """Frames that :meth:`frames` will yield, when known (for a progress bar)."""
        total = self.frame_count
        if self.max_frames is not None:
            total = self.max_frames if total is None else min(total, self.max_frames)
        return None if total is None else -(-total // self.every)

    def frames(self):
        """Yield ``(frame index, seconds, (H, W, 3) BGR frame)``; seconds from the frame rate of
        a file, from the wall clock for a camera or a file without a rate.

        A file that stops decoding before the frame count its container announces (truncated
        or corrupt) ends there with a warning naming it.

        Raises:
            VideoError when not a single frame can be decoded.
        """
        start = time.monotonic()
        index = 0
        while self.max_frames is None or index < self.max_frames:
            if index % self.every == 0:
                ok, frame = self.capture.read()
            else:
                ok, frame = self.capture.grab(), None
            if not ok:
                break
            if frame is not None:
                if self.fps is not None and self.camera is None:
                    seconds = index / self.fps
                else:
                    seconds = time.monotonic() - start
                yield index, seconds, frame
            index += 1
        if index == 0:
            raise VideoError('no frame could be decoded from %s (empty file or unsupported '
                             'codec)' % self.name)
        self.frames_read = index
        wanted = self.frame_count if self.max_frames is None or self.frame_count is None \
            else min(self.frame_count, self.max_frames)
        if wanted is not None and index < wanted:
            # a truncated or partly corrupt file: OpenCV just stops reading
            logger.warning('%s: decoding stopped after %d of the %d frames its container '
                           'announces (truncated or corrupt file?)', self.name, index, wanted)

    def close(self):
        self.capture.release()


class VideoSink(object):
    """Writes BGR frames of one size to ``path``; the FourCC follows the extension
    (:data:`WRITER_FOURCC`).

    Raises:
        VideoError for an unsupported extension or when OpenCV cannot open the writer.
    """

    def __init__(self, path, fps, width, height):
        import cv2
        ext = os.path.splitext(str(path))[1].lower()
        if ext not in WRITER_FOURCC:
            raise VideoError('cannot write video %s: use one of %s'
                             % (path, ', '.join(sorted(WRITER_FOURCC))))
        folder = os.path.dirname(os.path.abspath(str(path)))
        os.makedirs(folder, exist_ok=True)
        self.path = str(path)
        self.size = (int(width), int(height))
        self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*WRITER_FOURCC[ext]),
                                      float(fps), self.size)
        if not self.writer.isOpened():
            raise VideoError('cannot write video %s with codec %s (OpenCV has no such encoder)'
                             % (path, WRITER_FOURCC[ext]))
        self.frames_written = 0

    def write(self, frame):
        if (frame.shape[1], frame.shape[0]) != self.size:
            raise VideoError('%s: frame of %dx%d, the video is %dx%d'
                             % ((self.path, frame.shape[1], frame.shape[0]) + self.size))
        self.writer.write(frame)
        self.frames_written += 1

    def close(self):
        self.writer.release()
