"""argparse value checkers shared by the command-line tools: a bad value gets argparse's own
error naming the flag."""
import argparse

__all__ = ['positive_int', 'non_negative_int', 'positive_float']


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
