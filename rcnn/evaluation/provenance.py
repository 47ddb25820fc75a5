"""Which test protocol produced a prediction folder, read from its ``manifest.json``.

A folder written by ``test_widerface.py`` (or ``tools/protocol_report.py``) records its
settings in ``manifest.json`` (:mod:`rcnn.utils.run_manifest`). The protocol is its
``protocol`` entry (a name of :data:`rcnn.evaluation.protocols.PROTOCOLS`, or a dict with a
``protocol`` name as :meth:`Protocol.settings` gives); a manifest with only the original's
``mode`` (0, 1 or 2) maps it through :data:`rcnn.evaluation.protocols.MODE_PROTOCOLS`. A folder
without a manifest, or whose manifest names neither, has an unknown protocol: the evaluation
still runs and says so.
"""
import logging
from dataclasses import dataclass

from rcnn.evaluation.protocols import MODE_PROTOCOLS, PROTOCOLS
from rcnn.utils.run_manifest import MANIFEST_NAME, ManifestMismatch, read_manifest

__all__ = ['FolderProtocol', 'folder_protocol', 'UNKNOWN']

logger = logging.getLogger(__name__)

UNKNOWN = 'unknown'


@dataclass
class FolderProtocol:
    """The protocol of a prediction folder.

    Attributes:
        name: protocol name, or :data:`UNKNOWN`.
        source: where the name comes from (``'manifest.json protocol'``,
            ``'manifest.json mode 1'``, ``'no manifest.json'``, ...).
        manifest: the manifest's content ({} when there is none).
    """
    name: str
    source: str
    manifest: dict

    @property
    def known(self):
        return self.name != UNKNOWN

    @property
    def description(self):
        """One line for reports: ``'pyramid (pyramid 500-1700 + flips + ...)'``; the bare name
        for an unknown or unrecognised protocol."""
        protocol = PROTOCOLS.get(self.name)
        if protocol is not None:
            return '%s (%s)' % (self.name, protocol.description)
        return self.name


def folder_protocol(pred_dir):
    """:class:`FolderProtocol` of ``pred_dir`` (module docstring). Never raises for a missing
    or unreadable manifest: that is logged and the protocol is unknown."""
    try:
        manifest = read_manifest(pred_dir)
    except (ManifestMismatch, OSError) as err:
        logger.warning('%s: protocol unknown: %s', pred_dir, err)
        return FolderProtocol(UNKNOWN, 'unreadable %s' % MANIFEST_NAME, {})
    if manifest is None:
        return FolderProtocol(UNKNOWN, 'no %s' % MANIFEST_NAME, {})
    recorded = manifest.get('protocol')
    if isinstance(recorded, dict):
        recorded = recorded.get('protocol', recorded.get('name'))
    if isinstance(recorded, str) and recorded:
        if recorded not in PROTOCOLS:
            logger.warning('%s: %s names protocol %r, not one of %s', pred_dir, MANIFEST_NAME,
                           recorded, ', '.join(PROTOCOLS))
        return FolderProtocol(recorded, '%s protocol' % MANIFEST_NAME, manifest)
    mode = manifest.get('mode')
    try:
        name = MODE_PROTOCOLS[int(mode)]
    except (KeyError, TypeError, ValueError):
        return FolderProtocol(UNKNOWN, '%s names no protocol%s' % (
            MANIFEST_NAME, '' if mode is None else ' (mode %r)' % (mode,)), manifest)
    return FolderProtocol(name, '%s mode %d' % (MANIFEST_NAME, int(mode)), manifest)

