"""AP per face-size band: size measure, band edges and hand-computed APs on a tiny set."""
import math

import numpy as np
import pytest

from rcnn.evaluation.size_bands import SIZE_BANDS, band_masks, box_sizes, evaluate_size_bands
from rcnn.evaluation.widerface import SETTINGS, WiderGroundTruth, evaluate_predictions

SMALL = [10, 10, 10, 10]          # sqrt(w*h) = 10: band <16
BIG = [100, 100, 100, 100]        # 100: band 64-128
IGNORED = [250, 10, 20, 20]       # 20: band 16-32, an ignore box of the hard setting


def test_size_is_the_side_of_the_square_of_the_box_area():
    sizes = box_sizes([[0, 0, 16, 16], [5, 5, 4, 64], [0, 0, -3, 50], [0, 0, 200, 50]])
    np.testing.assert_allclose(sizes, [16.0, 16.0, 0.0, 100.0])
    assert box_sizes(np.zeros((0, 4))).shape == (0,)


def test_band_edges_are_half_open():
    sizes = [0, 15.99, 16, 31.9, 32, 63.9, 64, 127.9, 128, 5000]
    masks = band_masks(sizes)
    assert list(masks) == ['<16', '16-32', '32-64', '64-128', '>=128']
    members = {band: [s for s, m in zip(sizes, mask) if m] for band, mask in masks.items()}
    assert members == {'<16': [0, 15.99], '16-32': [16, 31.9], '32-64': [32, 63.9],
                       '64-128': [64, 127.9], '>=128': [128, 5000]}
    assert list(SIZE_BANDS.values())[0] == (0.0, 16.0)


def _tiny_set():
    """One image: a small and a big face counted everywhere, one face ignored in hard."""
    boxes = np.array([SMALL, BIG, IGNORED], dtype=np.float64)
    keep = {s: np.array([True, True, s != 'hard']) for s in SETTINGS}
    gt = WiderGroundTruth(['0--e'], ['a'], [boxes], keep)
    # raw scores 0.9 .. 0.5 normalise to 1, 0.75, 0.5, 0.25, 0
    predictions = [np.array([
        [300, 300, 100, 100, 0.9],    # unmatched, size 100: a false positive of 64-128 only
        BIG + [0.8],                  # recalls BIG
        SMALL + [0.7],                # recalls SMALL
        IGNORED + [0.6],              # on the hard ignore box: counts nowhere in hard / bands
        [500, 500, 10, 10, 0.5],      # unmatched, size 10: a false positive of <16 only
    ], dtype=np.float64)]
    return gt, predictions


def test_band_ap_counts_false_positives_in_the_band_of_their_own_size():
    gt, predictions = _tiny_set()
    bands = evaluate_size_bands(predictions, gt)
    # 64-128: FP at 1.0 then BIG at 0.75 -> precision 1/2 at recall 1: AP 0.5
    assert bands['64-128'].num_faces == 1 and bands['64-128'].ap == pytest.approx(0.5)
    # <16: SMALL at 0.5 recalled first (precision 1), the small FP comes after: AP 1
    assert bands['<16'].num_faces == 1 and bands['<16'].ap == pytest.approx(1.0)
    # the ignored face of 16-32 is not counted, nor is the prediction on it
    assert bands['16-32'].num_faces == 0 and math.isnan(bands['16-32'].ap)
    assert bands['16-32'].proposals[-1] == 0
    assert math.isnan(bands['32-64'].ap) and math.isnan(bands['>=128'].ap)
    # the hard setting on the same matches: FP 1.0, BIG .75, SMALL .5, (ignored), FP 0:
    # precision 1/2 at recall 1/2, 2/3 at recall 1 -> AP 2/3
    hard = evaluate_predictions(predictions, gt)['hard']
    assert hard.ap == pytest.approx(2.0 / 3.0)
    assert hard.proposals[-1] == 4 and bands['64-128'].proposals[-1] == 2


def test_a_duplicate_on_a_recalled_face_is_a_false_positive_of_its_band():
    gt, predictions = _tiny_set()
    dup = np.vstack([predictions[0], [102, 100, 100, 100, 0.85]])   # 2nd match of BIG
    bands = evaluate_size_bands([dup], gt)
    # 64-128 now: FP (1.0), BIG-dup (0.875) recalls BIG, BIG (0.75) FP: still precision 1/2
    assert bands['64-128'].proposals[-1] == 3
    assert bands['64-128'].ap == pytest.approx(0.5)


def test_the_hard_settings_ignore_boxes_stay_ignored_in_the_bands():
    gt, predictions = _tiny_set()
    # in easy the IGNORED face is counted: but bands split the hard setting's faces only
    assert gt.num_faces('easy') == 3
    bands = evaluate_size_bands(predictions, gt)
    assert sum(b.num_faces for b in bands.values()) == gt.num_faces('hard') == 2
