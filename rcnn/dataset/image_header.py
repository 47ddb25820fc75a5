"""Image size from the file header: JPEG and PNG without decoding, anything else via OpenCV.

:func:`read_image_size` gives ``(height, width)`` as ``cv2.imread`` would load the image:

* PNG: the IHDR chunk (it must be the first chunk);
* JPEG: the first start-of-frame marker; an EXIF orientation of 5..8 (a 90-degree rotation,
  which ``cv2.imread`` applies) swaps the two sides;
* other formats, or headers this parser does not understand: a full ``cv2.imread``.

A missing or unreadable image raises :class:`ImageReadError` naming it. A header-only read does
not detect a file truncated after its header.

No MXNet here: loader worker processes import it (through ``rcnn.io.image``).
"""
import os
import struct

import cv2

__all__ = ['ImageReadError', 'read_image_size']


class ImageReadError(OSError):
    """An image that is missing or whose size cannot be read; the message names it."""


# ----------------------------------------------------------------------------
# PNG / JPEG / EXIF markers
# ----------------------------------------------------------------------------

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# Start-of-frame markers carry the frame size (C4 = DHT, C8 = JPG, CC = DAC are not frames).
_JPEG_SOF_MARKERS = frozenset([0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7,
                               0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF])
_JPEG_STANDALONE_MARKERS = frozenset([0x01] + list(range(0xD0, 0xD8)))   # TEM, RST0-7
_JPEG_APP1 = 0xE1
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = frozenset([5, 6, 7, 8])   # rotated by 90 degrees


def _png_size(head):
    """(height, width) from the first 24 bytes of a PNG file, or None if IHDR is not first."""
    if len(head) < 24 or head[12:16] != b'IHDR':
        return None
    width, height = struct.unpack('>II', head[16:24])
    return (height, width) if width > 0 and height > 0 else None


def _exif_orientation(app1_payload):
    """EXIF orientation (1..8) from an APP1 segment payload, or None if absent."""
    if not app1_payload.startswith(b'Exif\x00\x00'):
        return None
    tiff = app1_payload[6:]
    if len(tiff) < 8:
        return None
    endian = {b'II': '<', b'MM': '>'}.get(tiff[:2])
    if endian is None:
        return None
    magic, ifd_offset = struct.unpack(endian + 'HI', tiff[2:8])
    if magic != 42 or ifd_offset + 2 > len(tiff):
        return None
    (num_entries,) = struct.unpack(endian + 'H', tiff[ifd_offset:ifd_offset + 2])
    for i in range(num_entries):
        start = ifd_offset + 2 + 12 * i
        if start + 12 > len(tiff):
            return None
        tag, = struct.unpack(endian + 'H', tiff[start:start + 2])
        if tag == _EXIF_ORIENTATION_TAG:
            # SHORT value, stored left-justified in the 4-byte value field
            value, = struct.unpack(endian + 'H', tiff[start + 8:start + 10])
            return value if 1 <= value <= 8 else None
    return None


def _jpeg_size(stream):
    """(height, width) from a JPEG stream positioned after SOI, or None if not found.

    Walks the marker segments up to the first start-of-frame marker; an EXIF
    orientation of 5..8 (a 90-degree rotation, which ``cv2.imread`` applies)
    swaps the two sides.
    """
    orientation = None
    while True:
        byte = stream.read(1)
        if byte != b'\xff':
            return None                      # end of file or not at a marker
        marker = 0xFF
        while marker == 0xFF:                # fill bytes
            byte = stream.read(1)
            if not byte:
                return None
            marker = byte[0]
        if marker in _JPEG_STANDALONE_MARKERS:
            continue
        if marker in (0xD8, 0xD9, 0xDA):     # SOI again, EOI, SOS: no frame header before data
            return None
        length_bytes = stream.read(2)
        if len(length_bytes) < 2:
            return None
        (length,) = struct.unpack('>H', length_bytes)
        if length < 2:
            return None
        if marker in _JPEG_SOF_MARKERS:
            frame = stream.read(5)
            if len(frame) < 5:
                return None
            _precision, height, width = struct.unpack('>BHH', frame)
            if height == 0 or width == 0:    # height given later by a DNL marker
                return None
            if orientation in _TRANSPOSING_ORIENTATIONS:
                height, width = width, height
            return height, width
        if marker == _JPEG_APP1 and orientation is None:
            orientation = _exif_orientation(stream.read(length - 2))
            continue
        stream.seek(length - 2, os.SEEK_CUR)


def _decoded_size(path):
    """(height, width) by decoding the whole image with OpenCV (fallback)."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError('cannot read image %s (unknown format or corrupt file)' % path)
    return int(image.shape[0]), int(image.shape[1])


def read_image_size(path):
    """Return ``(height, width)`` of the image at ``path`` as ``cv2.imread`` would load it.

    JPEG and PNG sizes come from the header (no decoding); anything else is
    decoded with OpenCV. Raises :class:`ImageReadError` naming ``path`` when the
    file is missing or unreadable.
    """
    try:
        with open(path, 'rb') as stream:
            head = stream.read(24)
            if head.startswith(_PNG_SIGNATURE):
                size = _png_size(head)
            elif head[:2] == b'\xff\xd8':
                stream.seek(2)
                size = _jpeg_size(stream)
            else:
                size = None
    except FileNotFoundError:
        raise ImageReadError('image not found: %s' % path) from None
    except OSError as err:
        raise ImageReadError('cannot read image %s: %s' % (path, err)) from err
    if size is None:
        size = _decoded_size(path)
    return size
