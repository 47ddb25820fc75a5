"""Command-line helpers shared by every tool.

* :class:`ArgumentParser`: ``argparse.ArgumentParser`` whose multi-word long flags accept both
  spellings, ``--dataset_path`` and ``--dataset-path`` (train.py spells its flags with ``_`` as
  the original did, the newer tools with ``-``; either works everywhere). ``--help`` lists the
  flag as defined and, on a parser that has such flags, says so once at the end. ``--help``
  also shows every flag's default (:class:`DefaultsHelpFormatter`).
* argparse value checkers: a bad value gets argparse's own error naming the flag.
"""
import argparse
import re

__all__ = ['ArgumentParser', 'DefaultsHelpFormatter', 'flag_spellings', 'add_spelling_aliases',
           'multi_word_flags', 'has_multi_word_flags', 'spelling_note', 'positive_int',
           'non_negative_int', 'positive_float', 'share']

#: the note at the end of --help, with one of the tool's own multi-word flags as the example
SPELLING_NOTE = 'Flags: "_" and "-" are the same (%s or %s).'


def flag_spellings(option):
    """The other spellings of a long flag: ``'--dataset_path'`` -> ``['--dataset-path']``
    (a mixed ``--a_b-c`` -> ``['--a_b_c', '--a-b-c']``); ``[]`` for short or one-word flags."""
    if not option.startswith('--'):
        return []
    body = option[2:]
    spellings = {'--' + body.replace('-', '_'), '--' + body.replace('_', '-')}
    spellings.discard(option)
    return sorted(spellings)


def add_spelling_aliases(parser):
    """Let every long flag of ``parser`` also be given in its other spellings.

    An alias is registered only where the parser has no flag of that name already; it is not
    listed in ``--help``. Idempotent. (argparse keeps option strings in
    ``_option_string_actions``; argument groups share the parser's.)
    """
    table = parser._option_string_actions
    for action in parser._actions:
        for option in list(action.option_strings):
            for alias in flag_spellings(option):
                table.setdefault(alias, action)


def multi_word_flags(parser):
    """The long flags of ``parser`` with ``_`` or ``-`` inside their name, in definition order."""
    return [option for action in parser._actions for option in action.option_strings
            if flag_spellings(option)]


def has_multi_word_flags(parser):
    """True when ``parser`` defines a long flag with ``_`` or ``-`` inside its name."""
    return bool(multi_word_flags(parser))


def spelling_note(parser):
    """The --help note on the two spellings, naming the parser's first multi-word flag (the
    ``_`` spelling first); None when the parser has no such flag."""
    flags = multi_word_flags(parser)
    if not flags:
        return None
    underscore = flags[0].replace('-', '_').replace('__', '--', 1)
    return SPELLING_NOTE % (underscore, '--' + underscore[2:].replace('_', '-'))


#: a help text that already names its default (``default 0``, ``(default: random)``, ...)
_STATES_DEFAULT = re.compile(r'\bdefault', re.IGNORECASE)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to each flag's help unless the help already states a default.

    Left as they are (argparse lists a flag without help text bare): positionals, flags without a value (``store_true`` and the like), flags
    whose default is ``None`` (nothing to show: such a help text says what happens instead),
    and help suppressed with ``argparse.SUPPRESS``. Combine it with another formatter by
    subclassing both (:class:`ArgumentParser` does so for the ``formatter_class`` it is given).
    """

    def _get_help_string(self, action):
        text = action.help or ''
        default = action.default
        if not action.option_strings or action.nargs == 0 or default is None \
                or default is argparse.SUPPRESS or _STATES_DEFAULT.search(text) \
                or (isinstance(default, (list, tuple, str)) and not default):
            return text
        return text + ' (default: %(default)s)'


def _with_defaults(formatter_class):
    """``formatter_class`` extended with :class:`DefaultsHelpFormatter` (once)."""
    if issubclass(formatter_class, DefaultsHelpFormatter):
        return formatter_class
    return type('Defaults' + formatter_class.__name__,
                (DefaultsHelpFormatter, formatter_class), {})


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` that accepts ``--a_b`` and ``--a-b`` for each flag ``--a_b``
    or ``--a-b`` it defines (:func:`add_spelling_aliases`, applied when parsing), notes this at
    the end of ``--help`` when it has such a flag, and shows every default in ``--help``."""

    def __init__(self, *args, **kwargs):
        kwargs['formatter_class'] = _with_defaults(
            kwargs.get('formatter_class', argparse.HelpFormatter))
        super(ArgumentParser, self).__init__(*args, **kwargs)

    def format_help(self):
        # the flags are only known once the tool has added them: decide here, not in __init__
        note = spelling_note(self)
        if note is None:
            return super(ArgumentParser, self).format_help()
        epilog = self.epilog
        self.epilog = note if not epilog else '%s\n\n%s' % (epilog, note)
        try:
            return super(ArgumentParser, self).format_help()
        finally:
            self.epilog = epilog

    def parse_known_args(self, args=None, namespace=None):
        add_spelling_aliases(self)
        return super(ArgumentParser, self).parse_known_args(args, namespace)

    def _get_option_tuples(self, option_string):
        # an abbreviation matching a flag and its alias names one flag, not an ambiguity
        unique, seen = [], set()
        for option_tuple in super(ArgumentParser, self)._get_option_tuples(option_string):
            if id(option_tuple[0]) not in seen:
                seen.add(id(option_tuple[0]))
                unique.append(option_tuple)
        return unique


def positive_int(text):
    """An integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError('must be >= 1, got %d' % value)
    return value


def non_negative_int(text):
    """An integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError('must be >= 0, got %d' % value)
    return value


def positive_float(text):
    """A finite float > 0."""
    value = float(text)
    if not value > 0 or value == float('inf'):
        raise argparse.ArgumentTypeError('must be > 0, got %s' % text)
    return value


def share(text):
    """A float in [0, 1] (a share of something)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError('must be a share in [0, 1], got %s' % text)
    return value
