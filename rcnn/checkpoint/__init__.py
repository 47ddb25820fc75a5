"""Checkpoints: file names, parameter files, the training record, the atomic commit.

One package owns what a checkpoint ``<prefix>-%04d`` is on disk (see
``docs/training-hooks.md``, "checkpoint files")::

    files.py    the file names (no MXNet: the ONNX / OpenCV backends use it)
    params.py   symbol + ``.params``: load (BatchNorm spellings reconciled), fit, compare, save
    record.py   the training record ``.train.json``: contents, verification, listing
    commit.py   writing a training checkpoint: staged files, renames, the record last;
                cleaning what an interrupted save left
    states.py   the optimizer ``.states`` (MXNet's pickle), loaded only when the record
                vouches for its bytes

The package's ``__init__`` imports nothing, so ``rcnn.checkpoint.files`` stays free of MXNet.
"""
