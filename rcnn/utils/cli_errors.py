"""Command-line failures as one line: ``<tool>: error: <message>`` and a non-zero exit.

:func:`run_reporting_errors` runs a tool's body; any exception (not ``KeyboardInterrupt`` /
``SystemExit``) becomes one line on stderr and exit status :data:`EXIT_FAILURE` (or the
tool's own failure status). The traceback
goes to the log at DEBUG level, and ``debug=True`` (the tools' ``--debug``) lets the exception
propagate with its traceback instead.

:func:`check_output_folder` / :func:`check_output_file` refuse, before any work, an output flag
whose path cannot be written (a folder where a file goes, a file where a folder goes), naming
the flag and the path rather than the temporary file a failed write would name.
"""
import logging
import os
import sys

__all__ = ['EXIT_FAILURE', 'one_line', 'run_reporting_errors', 'blocking_file',
           'check_output_folder', 'check_output_file', 'check_not_overwriting']

logger = logging.getLogger(__name__)

EXIT_FAILURE = 1
_TRACE_PREFIXES = ('Traceback', 'File ', 'Stack trace', '[bt]')


def one_line(exc):
    """The message of ``exc`` on one line: a ``KeyError``'s text without its quotes, an MXNet
    error's informative line (its message follows a C++ stack trace), the type name when empty."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_TRACE_PREFIXES)]
    return useful[0] if useful else type(exc).__name__


def run_reporting_errors(prog, body, debug=False, status=EXIT_FAILURE):
    """``body()``'s return value, or ``status`` after printing ``prog: error: ...``.

    Args:
        prog: the tool's name, first word of the message.
        body: callable running the tool, returning its exit status.
        debug: re-raise (full traceback) instead of the one-line message.
        status: the exit status of a failure (tools whose status 1 means "some inputs
            skipped" use 2).
    """
    try:
        return body()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # every failure of a tool is reported the same way
        if debug:
            raise
        logger.debug('%s failed', prog, exc_info=True)
        print('%s: error: %s (--debug shows the traceback)' % (prog, one_line(exc)),
              file=sys.stderr)
        return status


def blocking_file(folder):
    """The existing non-folder at ``folder`` or above it that stops it being a folder, or None.
    """
    path = os.path.abspath(folder)
    while True:
        if os.path.exists(path):
            return None if os.path.isdir(path) else path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def check_output_folder(flag, folder):
    """Raise ValueError naming ``flag`` when ``folder`` is, or lies under, an existing file."""
    blocker = blocking_file(folder)
    if blocker is not None:
        where = 'is an existing file' if os.path.abspath(folder) == blocker else \
            'lies under the existing file %s' % blocker
        raise ValueError('%s %s %s, not a folder; pass a folder (created when needed)'
                         % (flag, folder, where))


def check_output_file(flag, path, example='out'):
    """Raise ValueError naming ``flag`` when the file ``path`` cannot be written as such: it
    is an existing folder, or its folder is (or lies under) an existing file.

    Args:
        example: a file name to suggest inside the folder.
    """
    if os.path.isdir(path):
        raise ValueError('%s %s is a folder; pass the file to write, e.g. %s'
                         % (flag, path, os.path.join(path, example)))
    blocker = blocking_file(os.path.dirname(os.path.abspath(path)))
    if blocker is not None:
        raise ValueError('%s %s: its folder lies under the existing file %s; pass a path in a '
                         'folder' % (flag, path, blocker))


def same_file(a, b):
    """Whether paths ``a`` and ``b`` are one file (symlinks followed; an existing pair also by
    device and inode, which catches hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_not_overwriting(flag, outputs, inputs):
    """Raise ValueError naming ``flag`` when one of the ``outputs`` is one of the ``inputs``
    (e.g. an export or quantization written over the checkpoint it reads)."""
    for output in outputs:
        for source in inputs:
            if os.path.exists(source) and same_file(output, source):
                raise ValueError('%s: writing %s would overwrite the input %s; choose another '
                                 '%s' % (flag, output, source, flag))
