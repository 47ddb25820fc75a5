"""Command-line helpers shared by every tool.

* :class:`ArgumentParser`: ``argparse.ArgumentParser`` whose multi-word long flags accept both
  spellings, ``--dataset_path`` and ``--dataset-path`` (train.py spells its flags with ``_`` as
  the original did, the newer tools with ``-``; either works everywhere). ``--help`` lists the
  flag as defined and says so once at the end.
* argparse value checkers: a bad value gets argparse's own error naming the flag.
"""
import argparse

__all__ = ['ArgumentParser', 'flag_spellings', 'add_spelling_aliases', 'positive_int',
           'non_negative_int', 'positive_float']

SPELLING_NOTE = 'Flags: "_" and "-" are the same (--dataset_path or --dataset-path).'


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


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` that accepts ``--a_b`` and ``--a-b`` for each flag ``--a_b``
    or ``--a-b`` it defines (:func:`add_spelling_aliases`, applied when parsing), and notes
    this at the end of ``--help``."""

    def __init__(self, *args, **kwargs):
        epilog = kwargs.get('epilog')
        kwargs['epilog'] = SPELLING_NOTE if not epilog else '%s\n\n%s' % (epilog, SPELLING_NOTE)
        super(ArgumentParser, self).__init__(*args, **kwargs)

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
