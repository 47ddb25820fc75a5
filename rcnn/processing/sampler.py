"""Anchor samplers: which labelled anchors of an image count in the classification loss.

Two selections of the original RetinaFace, side by side; both cap the positives at
``max_fg = int(fg_fraction * batch_size)`` and fill the rest of ``batch_size`` with negatives,
the others becoming -1 (ignored). Labels -1 stay -1.

* :class:`RandomSampler` (``TRAIN.RPN_ENABLE_OHEM == OHEM_OFF``): drawn at random with the
  sample's generator, in the loader, per image;
* :class:`OHEMSampler` (``OHEM_IN_GRAPH``, mode 1, the original's ``rpn_fpn_ohem3``): the
  hardest anchors by ``fg score = score[face] - score[background]``: the positives with the
  **lowest** fg score and the negatives with the **highest**; the anchor weight is 1 on the
  kept positives, 0 elsewhere. Ties are broken by anchor index (the lower index is kept
  first). It needs the network's scores, so the training graph runs it
  (:func:`rcnn.symbol.ohem.ohem_symbol` wraps :meth:`OHEMSampler.select`); vectorised over
  the batch ``(B, N)``, O(N) per row (a partial sort finds the k-th key; no full sort).

NumPy only (no MXNet).
"""
import numpy as np

from rcnn.config import OHEM_MODE_HARDEST, OHEM_OFF

__all__ = ['RandomSampler', 'OHEMSampler', 'sampler_counts', 'ohem_select', 'loader_sampler']


def sampler_counts(batch_size, fg_fraction):
    """``(max_fg, batch)``: at most ``max_fg`` positives among ``batch`` sampled anchors; a
    ValueError names the bad setting."""
    batch = int(batch_size)
    max_fg = int(fg_fraction * batch)
    if batch <= 0 or not 0 <= max_fg <= batch:
        raise ValueError('bad anchor sampling sizes: RPN_BATCH_SIZE=%r, RPN_FG_FRACTION=%r'
                         % (batch_size, fg_fraction))
    return max_fg, batch


class RandomSampler(object):
    """Random cap of positives and negatives (module docstring).

    Args:
        batch_size: anchors kept per image (``TRAIN.RPN_BATCH_SIZE``).
        fg_fraction: share of positives at most (``TRAIN.RPN_FG_FRACTION``).
    """

    def __init__(self, batch_size, fg_fraction):
        self.batch_size = int(batch_size)
        self.fg_fraction = float(fg_fraction)
        self.max_fg = int(fg_fraction * batch_size)

    @classmethod
    def from_config(cls, cfg):
        """``TRAIN.RPN_BATCH_SIZE`` and ``TRAIN.RPN_FG_FRACTION``."""
        return cls(cfg.TRAIN.RPN_BATCH_SIZE, cfg.TRAIN.RPN_FG_FRACTION)

    def __call__(self, labels, rng):
        """Subsample (N,) float32 labels in place with the numpy Generator ``rng``."""
        fg_inds = np.flatnonzero(labels == 1)
        if len(fg_inds) > self.max_fg:
            labels[rng.choice(fg_inds, size=len(fg_inds) - self.max_fg, replace=False)] = -1
        num_bg = self.batch_size - int(np.sum(labels == 1))
        bg_inds = np.flatnonzero(labels == 0)
        if len(bg_inds) > num_bg:
            labels[rng.choice(bg_inds, size=len(bg_inds) - num_bg, replace=False)] = -1
        return labels


def _keep_smallest(keys, candidate, counts):
    """Per row, mark the ``counts[b]`` candidates with the smallest keys.

    O(N) per row: the ``counts[b]``-th smallest candidate key is found with a partial sort
    (``np.partition``) of at most ``max(counts)`` entries; keys below it are kept, and among
    keys equal to it the lowest indices fill the remaining quota.

    Args:
        keys: (B, N) float array.
        candidate: (B, N) bool, the entries that may be kept.
        counts: (B,) int, how many to keep per row (fewer when a row has fewer candidates).
    Returns:
        (B, N) bool.
    """
    num_rows, num_cols = keys.shape
    keys = np.where(candidate, keys, np.inf)
    counts = np.minimum(np.asarray(counts, dtype=np.int64), candidate.sum(axis=1))
    if num_cols == 0 or counts.max(initial=0) <= 0:
        return np.zeros(keys.shape, dtype=bool)
    depth = int(counts.max())
    smallest = np.sort(np.partition(keys, depth - 1, axis=1)[:, :depth], axis=1)
    threshold = smallest[np.arange(num_rows), np.maximum(counts - 1, 0)][:, None]
    below = candidate & (keys < threshold)
    equal = candidate & (keys == threshold)
    quota = (counts - below.sum(axis=1))[:, None]
    keep = below | (equal & (np.cumsum(equal, axis=1) <= quota))
    keep[counts <= 0] = False
    return keep


class OHEMSampler(object):
    """The hardest positives and negatives of each image (module docstring).

    Args:
        batch_size: anchors kept per image; fg_fraction: share of positives at most.
    """

    def __init__(self, batch_size, fg_fraction):
        self.max_fg, self.batch_size = sampler_counts(batch_size, fg_fraction)
        self.fg_fraction = float(fg_fraction)

    @classmethod
    def from_config(cls, cfg):
        """``TRAIN.RPN_BATCH_SIZE``, ``TRAIN.RPN_FG_FRACTION``; a ValueError for an
        ``TRAIN.OHEM_MODE`` other than OHEM_MODE_HARDEST (the only one implemented)."""
        mode = int(cfg.TRAIN.OHEM_MODE)
        if mode != OHEM_MODE_HARDEST:
            raise ValueError('cfg.TRAIN.OHEM_MODE=%d is not supported: only mode %d (hardest '
                             'positives and negatives) is implemented' % (mode, OHEM_MODE_HARDEST))
        return cls(cfg.TRAIN.RPN_BATCH_SIZE, cfg.TRAIN.RPN_FG_FRACTION)

    def select(self, fg_scores, labels):
        """Select the hardest anchors of each image.

        Args:
            fg_scores: (B, N) float, score[face] - score[background] per anchor.
            labels: (B, N) anchor labels, 1 (or > 0) face, 0 background, -1 ignored.
        Returns:
            sampled_labels: (B, N) float32, the kept labels, -1 elsewhere.
            anchor_weight: (B, N) float32, 1 on the kept positives, 0 elsewhere.
        """
        fg_scores = np.asarray(fg_scores, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.float32)
        if fg_scores.ndim != 2 or fg_scores.shape != labels.shape:
            raise ValueError('fg_scores and labels must both be (B, N), got %s and %s'
                             % (fg_scores.shape, labels.shape))
        num_rows = labels.shape[0]
        positive = labels > 0
        keep_pos = _keep_smallest(fg_scores, positive, np.full(num_rows, self.max_fg))
        num_bg = self.batch_size - keep_pos.sum(axis=1)
        keep_neg = _keep_smallest(-fg_scores, labels == 0, num_bg)
        sampled_labels = np.where(keep_pos, labels, np.where(keep_neg, 0.0, -1.0))
        return sampled_labels.astype(np.float32), keep_pos.astype(np.float32)


def ohem_select(fg_scores, labels, cfg):
    """:meth:`OHEMSampler.select` with the sampler of a recipe (the graph operator's entry)."""
    return OHEMSampler.from_config(cfg).select(fg_scores, labels)


def loader_sampler(cfg):
    """The sampler the loader applies per image: a :class:`RandomSampler` with OHEM off,
    None when the graph's OHEM operator selects."""
    if int(cfg.TRAIN.RPN_ENABLE_OHEM) == OHEM_OFF:
        return RandomSampler.from_config(cfg)
    return None
