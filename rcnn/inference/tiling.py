"""Scale options: tiles for tiny faces, a low-resolution pass for faces larger than the anchors.

A RetinaFace model finds faces within the span of its anchors: the released mnet.25 (anchors of
16 to 512 pixels) misses most faces under about 20 pixels and faces much larger than 512
pixels, such as a face filling a 1080p frame. Two passes, added to the image's own passes and
merged with them once, cover both ends:

* **tiles** (:func:`tile_grid`, :func:`tile_candidates`): the image is cut into overlapping
  square tiles of ``tile_size`` pixels and each tile runs enlarged by ``tile_scale`` (a 12-pixel
  face becomes a 24-pixel one), so the enlarged image never has to exist as a whole: memory stays
  that of one tile. Tiles of one image have one shape (the last row and column are moved inward
  instead of being cut), so they batch. Candidates cut by a tile's inner edge are dropped: the
  tiles overlap by ``tile_overlap`` pixels, so a face at most ``tile_overlap - 2 * EDGE_MARGIN``
  pixels across lies whole, and away from the cut, in some tile; larger faces come from the
  whole-image pass.
* **low-res pass** (:func:`low_res_scale`): one more scale, at which the image's short side is
  ``low_res_side`` pixels (default: :data:`LOW_RES_FRACTION` of the model's largest anchor
  side, 384 pixels for the released models), so a face covering most of the frame is smaller
  than the largest anchor (at the full anchor side such faces were found 3 times out of 6 in
  generated 1080p frames, at 0.75 of it 6 of 6).

:class:`ScaleOptions` says which passes run; ``'auto'`` chooses from the image size
(:func:`auto_options`): tiles for images whose long side is at least :data:`AUTO_TILE_SIDE`
pixels, where crowds hold faces of a few pixels; the low-res pass whenever the short side is
larger than the largest anchor side.
"""
import dataclasses
import math

import numpy as np

from rcnn.inference.input_check import InvalidInputError
from rcnn.inference.pipeline import Schedule, collect_candidates
from rcnn.processing.detections import Detections

__all__ = ['ScaleOptions', 'TILE_MODES', 'AUTO_TILE_SIDE', 'EDGE_MARGIN', 'LOW_RES_FRACTION',
           'check_scale_options', 'auto_options', 'largest_anchor_side', 'tile_starts',
           'tile_grid', 'tile_candidates', 'low_res_scale', 'scale_candidates']

#: ``tiles=`` names: off, the size policy, tiles only, low-res pass only, both
TILE_MODES = ('off', 'auto', 'tiles', 'low-res', 'both')
#: ``auto`` tiles images whose long side (at the largest scale asked for) reaches this:
#: larger than full HD, whose frames (1920 wide) would otherwise pay 9 times the passes
AUTO_TILE_SIDE = 2560
#: the default low-res short side as a fraction of the largest anchor side
LOW_RES_FRACTION = 0.75
#: a tile candidate whose box comes this close (image pixels) to an inner tile edge is a face
#: cut by the tile and is dropped
EDGE_MARGIN = 2.0


@dataclasses.dataclass(frozen=True)
class ScaleOptions:
    """Which scale passes run besides the image's own scales.

    Fields:
        tiles: run the tiles.
        tile_size: tile side in image pixels (>= 2 * tile_overlap).
        tile_overlap: pixels shared by neighbouring tiles; faces up to about this size are
            found whole in some tile.
        tile_scale: factor each tile is enlarged by before its pass.
        low_res: run the low-resolution pass.
        low_res_side: short side of the low-res pass in pixels; None:
            :data:`LOW_RES_FRACTION` of the model's largest anchor side.
    """
    tiles: bool = False
    tile_size: int = 512
    tile_overlap: int = 64
    tile_scale: float = 3.0
    low_res: bool = False
    low_res_side: int = None

    def __post_init__(self):
        if int(self.tile_overlap) < 1 or int(self.tile_size) < 2 * int(self.tile_overlap):
            raise InvalidInputError('tile_size (%r) must be at least twice tile_overlap (%r), '
                                    'which must be >= 1' % (self.tile_size, self.tile_overlap))
        if not (math.isfinite(self.tile_scale) and self.tile_scale > 0):
            raise InvalidInputError('tile_scale must be a positive number, got %r'
                                    % (self.tile_scale,))
        if self.low_res_side is not None and int(self.low_res_side) < 16:
            raise InvalidInputError('low_res_side must be at least 16 pixels, got %r'
                                    % (self.low_res_side,))

    @classmethod
    def from_mode(cls, mode):
        """The options of a :data:`TILE_MODES` name other than ``'auto'``."""
        if mode not in TILE_MODES or mode == 'auto':
            raise InvalidInputError('tiles must be None, a ScaleOptions or one of %s, got %r'
                                    % (', '.join(repr(m) for m in TILE_MODES), mode))
        return cls(tiles=mode in ('tiles', 'both'), low_res=mode in ('low-res', 'both'))

    @property
    def active(self):
        return self.tiles or self.low_res


def check_scale_options(tiles):
    """``detect(tiles=...)`` as a :class:`ScaleOptions`, ``'auto'`` or None (nothing to add).

    Raises:
        InvalidInputError (a ValueError) for anything else.
    """
    if tiles is None or tiles == 'off':
        return None
    if isinstance(tiles, ScaleOptions):
        return tiles if tiles.active else None
    if tiles == 'auto':
        return 'auto'
    return ScaleOptions.from_mode(tiles)


def auto_options(height, width, scales, anchor_side):
    """The ``'auto'`` policy for an image of ``height x width`` run at ``scales``.

    Returns:
        :class:`ScaleOptions` (default tile and low-res settings): tiles when the long side at
        the largest scale reaches :data:`AUTO_TILE_SIDE`; the low-res pass when the short side
        at the largest scale is larger than ``anchor_side``, the model's largest anchor (a
        face filling the frame would not fit it).
    """
    largest = max(scales)
    return ScaleOptions(tiles=max(height, width) * largest >= AUTO_TILE_SIDE,
                        low_res=min(height, width) * largest > anchor_side)


def largest_anchor_side(anchor_cache):
    """Side in pixels of the largest base anchor of the model (512 for the released models)."""
    return float(max(float(np.max(a[:, 2] - a[:, 0] + 1)) for a in
                     anchor_cache.base_anchors.values()))


# ---------------------------------------------------------------------------- tiles

def tile_starts(length, tile, overlap):
    """Start offsets of tiles of side ``tile`` along a side of ``length`` pixels.

    Returns:
        (n,) int64, first 0, last ``length - tile`` (one 0 when ``length <= tile``), evenly
        spread so that neighbours share at least ``overlap`` pixels.
    """
    length, tile, overlap = int(length), int(tile), int(overlap)
    if length <= tile:
        return np.zeros(1, dtype=np.int64)
    count = -(-(length - overlap) // (tile - overlap))
    return np.round(np.linspace(0, length - tile, count)).astype(np.int64)


def tile_grid(height, width, tile, overlap):
    """Tiles covering a ``height x width`` image.

    Returns:
        (T, 4) int64 x1 y1 x2 y2 (exclusive ends), row by row; every tile is
        ``min(tile, width) x min(tile, height)``.
    """
    xs = tile_starts(width, tile, overlap)
    ys = tile_starts(height, tile, overlap)
    x1, y1 = np.meshgrid(xs, ys)
    x1, y1 = x1.ravel(), y1.ravel()
    return np.stack([x1, y1, x1 + min(tile, width), y1 + min(tile, height)], axis=1)


def _inner_edge_mask(boxes, tile, height, width, margin):
    """(N,) bool: boxes (tile coordinates) within ``margin`` of an edge of ``tile`` that is not
    the image border."""
    x1, y1, x2, y2 = (int(v) for v in tile)
    near = np.zeros(len(boxes), dtype=bool)
    if x1 > 0:
        near |= boxes[:, 0] < margin
    if y1 > 0:
        near |= boxes[:, 1] < margin
    if x2 < width:
        near |= boxes[:, 2] > (x2 - x1 - 1) - margin
    if y2 < height:
        near |= boxes[:, 3] > (y2 - y1 - 1) - margin
    return near


def tile_candidates(model, image, threshold, do_flip, options, schedule=Schedule()):
    """Candidates of the tiles of ``image`` in its coordinates (tile by tile, row by row).

    Args:
        model: the detector's parts; image: (H, W, 3) BGR, validated.
        threshold, do_flip: as ``detect``; options: :class:`ScaleOptions`.
        schedule: how the tile passes are batched (tiles share one shape).
    Returns:
        :class:`Detections`, candidates cut by an inner tile edge removed.
    """
    height, width = image.shape[:2]
    grid = tile_grid(height, width, options.tile_size, options.tile_overlap)
    crops = [image[y1:y2, x1:x2] for x1, y1, x2, y2 in grid]
    found = collect_candidates(model, crops, threshold, [float(options.tile_scale)], do_flip,
                               schedule)
    kept = []
    for tile, dets in zip(grid, found):
        keep = ~_inner_edge_mask(dets.boxes, tile, height, width, EDGE_MARGIN)
        offset = tile[:2].astype(np.float32)
        inside = dets.select(keep)
        kept.append(inside.mapped(inside.boxes + np.tile(offset, 2),
                                  lambda points, offset=offset: points + offset))
    return Detections.concatenate(kept)


# ---------------------------------------------------------------------------- low-res pass

def low_res_scale(height, width, low_res_side):
    """Scale at which the short side of a ``height x width`` image is ``low_res_side``."""
    return float(low_res_side) / float(min(height, width))


# ---------------------------------------------------------------------------- all passes

def scale_candidates(model, image, threshold, scales, do_flip, options, schedule=Schedule()):
    """Candidates of ``image`` at ``scales`` plus the passes ``options`` asks for.

    Args:
        model: the detector's parts; image: (H, W, 3) BGR, validated.
        threshold, scales, do_flip: as ``detect``.
        options: :class:`ScaleOptions`, ``'auto'`` (chosen by :func:`auto_options`) or None.
        schedule: :class:`rcnn.inference.pipeline.Schedule` of the passes.
    Returns:
        :class:`Detections` in image coordinates, pooled in order: the image's scales, the
        low-res pass, the tiles.
    """
    height, width = image.shape[:2]
    anchor_side = largest_anchor_side(model.anchor_cache)
    if options == 'auto':
        options = auto_options(height, width, scales, anchor_side)
    scales = list(scales)
    if options is not None and options.low_res:
        low_side = (LOW_RES_FRACTION * anchor_side if options.low_res_side is None
                    else float(options.low_res_side))
        low = low_res_scale(height, width, low_side)
        if low < min(scales):           # a larger scale would only repeat a pass
            scales.append(low)
    parts = collect_candidates(model, [image], threshold, scales, do_flip, schedule)
    if options is not None and options.tiles:
        parts.append(tile_candidates(model, image, threshold, do_flip, options, schedule))
    return Detections.concatenate(parts)
