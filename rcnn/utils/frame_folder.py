"""A folder of image files read as the frames of a video (sorted by name), with the interface of
:class:`rcnn.utils.video.VideoSource`."""
import logging
import os

from rcnn.utils.video import FALLBACK_FPS, VideoError

__all__ = ['FRAME_EXTENSIONS', 'FrameFolder']

logger = logging.getLogger(__name__)

FRAME_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


class FrameFolder(object):
    """Frames ``folder/*.{jpg,png,...}`` in name order.

    Args:
        folder: the folder (not searched recursively).
        every, max_frames: as :class:`rcnn.utils.video.VideoSource`.
        fps: frame rate for the ``seconds`` of each frame (default
            :data:`rcnn.utils.video.FALLBACK_FPS`).
    Raises:
        VideoError when the folder is missing or holds no image.
    """

    def __init__(self, folder, every=1, max_frames=None, fps=None):
        if not os.path.isdir(str(folder)):
            raise VideoError('frame folder not found: %s' % folder)
        self.source = str(folder)
        self.every = int(every)
        if self.every < 1:
            raise ValueError('every must be >= 1, got %r' % (every,))
        self.max_frames = None if max_frames is None else int(max_frames)
        self.paths = [os.path.join(self.source, name) for name in sorted(os.listdir(self.source))
                      if os.path.splitext(name)[1].lower() in FRAME_EXTENSIONS]
        if not self.paths:
            raise VideoError('%s holds no image (%s) to read as frames'
                             % (folder, '/'.join(FRAME_EXTENSIONS)))
        self.fps = float(fps) if fps else FALLBACK_FPS

    @property
    def name(self):
        return self.source

    def expected_frames(self):
        total = len(self.paths)
        if self.max_frames is not None:
            total = min(total, self.max_frames)
        return -(-total // self.every)

    def frames(self):
        """Yield ``(frame index, seconds, (H, W, 3) BGR frame)``; an unreadable file is skipped
        with a warning naming it (its index stays used, so frame numbers match file order)."""
        import cv2
        count = len(self.paths) if self.max_frames is None else min(len(self.paths),
                                                                     self.max_frames)
        for index in range(0, count, self.every):
            frame = cv2.imread(self.paths[index], cv2.IMREAD_COLOR)
            if frame is None:
                logger.warning('%s: not a readable image; frame %d skipped', self.paths[index],
                               index)
                continue
            yield index, index / self.fps, frame

    def close(self):
        pass
