"""Named WIDER FACE test protocols: scales for a few image sizes, computed by hand from the
original test_widerface.py's rules (mode 0: short side 1600 / long side <= 2150; mode 1: short
sides 500..1700 relative to short 800 / long <= 1200, with flips and box voting)."""
import json

import pytest

from rcnn.evaluation.protocols import MODE_PROTOCOLS, PROTOCOLS, get_protocol


@pytest.mark.parametrize('name, height, width, expected', [
    ('original', 683, 1024, [1.0]),
    ('vga', 768, 1024, [0.625]),                 # exactly the 640x480 canvas
    ('vga', 375, 500, [1.28]),                   # scaled up
    ('vga', 640, 480, [1.0]),                    # portrait: the canvas turned
    ('vga', 500, 2000, [0.32]),                  # the long side decides
    ('single', 683, 1024, [2150 / 1024]),        # 1024 * 1600 / 683 = 2399 > 2150
    ('single', 300, 400, [1600 / 300]),          # 400 * 1600 / 300 = 2133 <= 2150
    ('pyramid', 683, 1024, [s / 683 for s in (500, 800, 1100, 1400, 1700)]),   # 1199 <= 1200
    ('pyramid', 500, 2000, [0.375, 0.6, 0.825, 1.05, 1.275]),  # base 1200 / 2000 = 0.6
    ('pyramid-nms', 500, 2000, [0.375, 0.6, 0.825, 1.05, 1.275]),
])
def test_scales_by_hand(name, height, width, expected):
    assert get_protocol(name).scales(height, width) == pytest.approx(expected)


def test_flip_merge_and_threshold_of_each_protocol():
    fixed = {name: (p.flip, p.vote, p.nms, p.threshold) for name, p in PROTOCOLS.items()}
    assert fixed == {'vga': (False, False, 0.4, 0.02), 'original': (False, False, 0.4, 0.02),
                     'single': (False, False, 0.4, 0.02), 'pyramid': (True, True, 0.4, 0.02),
                     'pyramid-nms': (True, False, 0.4, 0.02)}
    assert MODE_PROTOCOLS == {0: 'single', 1: 'pyramid', 2: 'pyramid-nms'}


def test_settings_are_json_and_name_the_protocol():
    settings = json.loads(json.dumps(get_protocol('pyramid').settings()))
    assert settings['protocol'] == 'pyramid' and settings['merge'] == 'vote'
    assert settings['scales']['pyramid_sizes'] == [500, 800, 1100, 1400, 1700]
    with pytest.raises(ValueError, match=r"unknown protocol 'hd' \(known: vga, original"):
        get_protocol('hd')
