"""Reading an image file that must be whole: missing, undecodable and truncated files all raise.

OpenCV decodes a truncated JPEG without error: libjpeg prints "Premature end of JPEG file"
(with no file name) and fills the missing rows with grey, so a half-downloaded photo would be
trained on with its faces still labelled, or tested as if whole. :func:`imread_checked` reads
the bytes first and refuses

* a JPEG without its end-of-image marker (``FF D9``) after the start of its image data (data
  appended after the marker, e.g. a motion photo's video, is fine; an EXIF thumbnail's marker
  does not count, it lies before the main image's data);
* a PNG without its ``IEND`` chunk;

then decodes with ``cv2.imread`` (the decoding, EXIF orientation included, is OpenCV's as
before). Other formats are only checked for being decodable.
"""
import os

import cv2

from rcnn.dataset.retinaface import ImageReadError

__all__ = ['ImageReadError', 'imread_checked', 'truncation_reason']

_JPEG_START = b'\xff\xd8'
_JPEG_END = b'\xff\xd9'
_JPEG_SOS = 0xDA
#: JPEG markers without a length field
_JPEG_STANDALONE = {0x01} | set(range(0xD0, 0xD8))
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_END = b'IEND'


def _jpeg_scan_start(data):
    """Offset of the first start-of-scan marker of the main image, -1 when the file ends
    before it, or None when the segment structure cannot be followed (left to the decoder)."""
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            return None
        while pos < len(data) and data[pos] == 0xFF:    # fill bytes before a marker
            pos += 1
        if pos >= len(data):
            return -1
        marker = data[pos]
        if marker == _JPEG_SOS:
            return pos
        if marker in _JPEG_STANDALONE:
            pos += 1
            continue
        if pos + 2 >= len(data):
            return -1
        pos += 1 + ((data[pos + 1] << 8) | data[pos + 2])
    return -1


def truncation_reason(data):
    """Why the bytes of a JPEG or PNG file are truncated, or None when they look whole (or
    are another format).

    Args:
        data: the file's bytes.
    Returns:
        str or None.
    """
    if data.startswith(_JPEG_START):
        scan = _jpeg_scan_start(data)
        if scan == -1:
            return 'JPEG file ends before its image data (truncated)'
        if scan is not None and data.find(_JPEG_END, scan) < 0:
            return 'JPEG file has no end-of-image marker (truncated)'
        return None
    if data.startswith(_PNG_SIGNATURE) and data.find(_PNG_END, len(_PNG_SIGNATURE)) < 0:
        return 'PNG file has no IEND chunk (truncated)'
    return None


def imread_checked(path, flags=cv2.IMREAD_COLOR):
    """``cv2.imread(path, flags)`` for a whole, decodable image file.

    Returns:
        the decoded image ((H, W, 3) uint8 BGR with the default flags).
    Raises:
        ImageReadError naming ``path``: missing, unreadable, truncated or not decodable.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageReadError('image not found: %s' % path) from None
    except OSError as err:
        raise ImageReadError('cannot read image %s: %s' % (path, err.strerror or err)) from None
    reason = truncation_reason(data)
    if reason:
        raise ImageReadError('%s: %s' % (path, reason))
    image = cv2.imread(os.fspath(path), flags)
    if image is None:
        raise ImageReadError('cannot decode image %s (not an image, or a corrupt or unsupported '
                             'file)' % path)
    return image
