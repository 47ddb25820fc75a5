"""A manifest of what produced an output folder, so a resumed run never adopts another run's files.

``test_widerface.py`` resumes an interrupted run by keeping the prediction files already
written. Those files say nothing about the checkpoint, mode or threshold that produced them, so
the folder gets ``manifest.json``: a flat JSON object of the settings that determine the
predictions (model prefix, epoch, sha1 of the params and symbol files, mode, threshold,
scales, backend, ...). :func:`claim_output_dir` is called before anything is written:

* no manifest and no earlier output: the manifest is written, the run starts;
* a manifest equal to this run's: the run resumes;
* a different manifest, or earlier output without a manifest: :class:`ManifestMismatch` naming
  every differing setting (or the files of unknown origin) -- unless ``overwrite``, which
  replaces the manifest (the caller then recomputes, and removes, the files it owns).

Settings that do not change the predictions (``--part``, progress bars) are not recorded, so
the shards of one run share the manifest. The manifest is written atomically.
"""
import json
import os

from rcnn.utils.fileio import atomic_write_text, file_digest

__all__ = ['MANIFEST_NAME', 'ManifestMismatch', 'file_sha1', 'read_manifest',
           'manifest_differences', 'claim_output_dir']

MANIFEST_NAME = 'manifest.json'
_FORMAT_KEY = 'manifest_format'
_FORMAT_VERSION = 1


class ManifestMismatch(RuntimeError):
    """The output folder holds results of another configuration."""


def file_sha1(path):
    """Hex sha1 of a file's bytes."""
    return file_digest(path, 'sha1')


def _normalised(settings):
    """The settings as JSON would give them back (tuples -> lists, ...), plus the format."""
    data = json.loads(json.dumps(settings, sort_keys=True))
    data[_FORMAT_KEY] = _FORMAT_VERSION
    return data


def read_manifest(output_dir):
    """The manifest of ``output_dir`` as a dict, or None when there is none.

    Raises:
        ManifestMismatch: the file exists but is not a JSON object.
    """
    path = os.path.join(output_dir, MANIFEST_NAME)
    try:
        with open(path, 'r', encoding='utf-8') as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as err:
        raise ManifestMismatch('%s is not a readable manifest (%s); pass --overwrite to start '
                               'over' % (path, err)) from None
    if not isinstance(data, dict):
        raise ManifestMismatch('%s is not a manifest (a JSON object expected); pass --overwrite '
                               'to start over' % path)
    return data


def manifest_differences(recorded, current):
    """``['key: recorded -> current', ...]`` for every setting that differs."""
    keys = sorted(set(recorded) | set(current))
    missing = '(not recorded)'
    return ['%s: %s -> %s' % (key, json.dumps(recorded.get(key, missing)),
                              json.dumps(current.get(key, missing)))
            for key in keys if recorded.get(key, missing) != current.get(key, missing)]


def claim_output_dir(output_dir, settings, existing_outputs=(), overwrite=False):
    """Make ``output_dir`` this run's, or refuse (see the module docstring).

    Args:
        output_dir: the folder (created when missing).
        settings: dict of JSON-serialisable values that determine the outputs.
        existing_outputs: paths of output files already present (to refuse a folder without
            a manifest that holds results); only its first few entries are named.
        overwrite: replace another run's manifest instead of refusing.
    Returns:
        'new', 'resume' or 'overwrite'.
    Raises:
        ManifestMismatch: one line naming the folder and what differs.
        OSError: the folder cannot be created or written.
    """
    current = _normalised(settings)
    recorded = None if overwrite else read_manifest(output_dir)
    if recorded is not None:
        differences = manifest_differences(recorded, current)
        if not differences:
            return 'resume'
        raise ManifestMismatch(
            '%s holds predictions of another run (%s differ: %s); pass --overwrite to recompute '
            'them or choose another --output' % (output_dir, len(differences),
                                                 '; '.join(differences)))
    existing = list(existing_outputs)
    if existing and not overwrite:
        raise ManifestMismatch(
            '%s already holds %d prediction file(s) (e.g. %s) but no %s saying what produced '
            'them; pass --overwrite to recompute them or choose another --output'
            % (output_dir, len(existing), existing[0], MANIFEST_NAME))
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_text(os.path.join(output_dir, MANIFEST_NAME),
                      json.dumps(current, indent=1, sort_keys=True) + '\n')
    return 'overwrite' if overwrite else 'new'
