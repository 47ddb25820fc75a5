"""argparse value checkers of the command-line tools."""
import argparse

import pytest

from rcnn.utils.cli import non_negative_int, positive_float, positive_int, share


def test_accepted_values():
    assert positive_int('3') == 3 and non_negative_int('0') == 0
    assert positive_float('0.5') == 0.5
    assert share('0') == 0.0 and share('1') == 1.0 and share('0.15') == 0.15


@pytest.mark.parametrize('check, text', [(positive_int, '0'), (non_negative_int, '-1'),
                                         (positive_float, '0'), (positive_float, 'inf'),
                                         (positive_float, 'nan'), (share, '-0.1'),
                                         (share, '1.5'), (share, 'nan')])
def test_rejected_values_name_the_rule(check, text):
    with pytest.raises(argparse.ArgumentTypeError, match='must be'):
        check(text)
