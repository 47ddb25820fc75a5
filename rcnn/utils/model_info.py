"""Known model files: which released model a checkpoint is, and the licence of its weights.

The insightface RetinaFace weights (``mnet.25``, ``R50``) are released for non-commercial
research use only; a tool that loads one says so (:func:`licence_line`). Files are recognised
by content (SHA-256), never by name: a renamed copy is still recognised, a retrained model
with the released name is not. docs/models.md lists the same files with their sources.

A checkpoint is recognised by its ``.params`` file or, for a release whose weights this
project has no copy of (R50), by the ``<prefix>-symbol.json`` beside it.
"""
import hashlib
import os

__all__ = ['KnownModel', 'KNOWN_FILES', 'INSIGHTFACE_LICENCE', 'sha256_of', 'identify',
           'licence_line']

INSIGHTFACE_LICENCE = ('the insightface RetinaFace weights are released for non-commercial '
                       'research use only (github.com/deepinsight/insightface)')


class KnownModel(object):
    """A released model: ``name`` (as its release calls it), ``role`` of the recognised file
    (``'params'`` or ``'symbol'``) and the ``licence`` of its weights."""

    def __init__(self, name, role, licence):
        self.name, self.role, self.licence = name, role, licence

    def __repr__(self):
        return 'KnownModel(%r, %r)' % (self.name, self.role)


#: SHA-256 of a released file -> what it is
KNOWN_FILES = {
    '051313a2e7e62e981aafcf0dd5cb16505eca4295c4d2f6f36749a173eda8413c':
        KnownModel('RetinaFace-MobileNet0.25 (mnet.25)', 'params', INSIGHTFACE_LICENCE),
    '682ec45e8d45f1543f5d1abab5a8fb68ddff980232231bf1eaa90472bea757d3':
        KnownModel('RetinaFace-MobileNet0.25 (mnet.25)', 'symbol', INSIGHTFACE_LICENCE),
    'd156c315646a24b6b7f8e45c361a983369875c1066a14626b2f2d07ceb9bf71b':
        KnownModel('RetinaFace-R50 (R50)', 'symbol', INSIGHTFACE_LICENCE),
}

_CHUNK = 1 << 20
#: (path, size, mtime) -> digest: a detector built repeatedly on one file hashes it once
_DIGESTS = {}


def sha256_of(path):
    """Hex SHA-256 of the file at ``path`` (cached per path, size and modification time)."""
    info = os.stat(path)
    key = (os.path.abspath(path), info.st_size, info.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, 'rb') as handle:
            for block in iter(lambda: handle.read(_CHUNK), b''):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _symbol_beside(params_path):
    """``<prefix>-symbol.json`` of ``<prefix>-NNNN.params``, or None for another name."""
    stem, ext = os.path.splitext(params_path)
    prefix, dash, epoch = stem.rpartition('-')
    if ext != '.params' or not dash or not epoch.isdigit():
        return None
    return prefix + '-symbol.json'


def identify(params_path):
    """The :class:`KnownModel` of a checkpoint's ``.params`` file, or None when unknown.

    The params file's own digest first, then the graph beside it. Unreadable files count as
    unknown (the loader reports them itself).
    """
    for path in (params_path, _symbol_beside(params_path)):
        if not path or not os.path.isfile(path):
            continue
        try:
            known = KNOWN_FILES.get(sha256_of(path))
        except OSError:
            continue
        if known is not None:
            return known
    return None


def licence_line(params_path):
    """One line naming the released model and its licence, or None for a file not known.

    Example: ``'model: RetinaFace-MobileNet0.25 (mnet.25); licence: the insightface RetinaFace
    weights are released for non-commercial research use only (...)'``.
    """
    known = identify(params_path)
    if known is None:
        return None
    return 'model: %s; licence: %s' % (known.name, known.licence)
