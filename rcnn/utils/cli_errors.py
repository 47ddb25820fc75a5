"""Command-line failures as one line: ``<tool>: error: <message>`` and a non-zero exit.

:func:`run_reporting_errors` runs a tool's body; any exception (not ``KeyboardInterrupt`` /
``SystemExit``) becomes one line on stderr and exit status :data:`EXIT_FAILURE` (or the
tool's own failure status). The traceback
goes to the log at DEBUG level, and ``debug=True`` (the tools' ``--debug``) lets the exception
propagate with its traceback instead.
"""
import logging
import sys

__all__ = ['EXIT_FAILURE', 'one_line', 'run_reporting_errors']

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
