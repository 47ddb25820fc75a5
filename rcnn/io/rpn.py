"""The original module name of the training-label code, kept as an alias.

The code lives by job in:

* :mod:`rcnn.io.anchor_labels`: anchor labels, box / landmark targets and weights
  (:func:`label_anchors`, original name ``assign_anchor_fpn``, :func:`label_names`);
* :mod:`rcnn.io.sample`: one training sample, crop + labels, and its random streams
  (:func:`crop_and_label`, :func:`load_training_sample`, :func:`sample_rng`, :func:`epoch_order`);
* :mod:`rcnn.core.worker_protocol` and :mod:`rcnn.core.loader_worker`: the loader's worker
  processes, their named messages and shared-memory batch buffers.

Names re-exported here are the same objects; change module constants (``DENSE_PAIRS``, ...) in
the module that defines them.
"""
from rcnn.core.loader_worker import sample_worker_loop, tune_malloc_for_worker
from rcnn.core.worker_protocol import batch_buffer_layout, batch_buffer_views, write_sample
from rcnn.io.anchor_labels import (DENSE_PAIRS, TILE_CELLS, assign_anchor_fpn, label_anchors,
                                   label_names)
from rcnn.io.sample import (MAX_REPLACEMENTS, ImageReadError, crop_and_label, epoch_order,
                            gt_label_from_record, load_training_sample, sample_rng)

__all__ = ['assign_anchor_fpn', 'label_anchors', 'label_names', 'gt_label_from_record',
           'crop_and_label', 'load_training_sample', 'sample_rng', 'epoch_order',
           'batch_buffer_layout', 'batch_buffer_views', 'write_sample', 'tune_malloc_for_worker',
           'sample_worker_loop', 'DENSE_PAIRS', 'TILE_CELLS', 'MAX_REPLACEMENTS', 'ImageReadError']
