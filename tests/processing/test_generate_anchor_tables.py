"""Base anchors of every anchor table of the original and of ``DENSE_ANCHOR``, against values
worked out by hand from the original's formulas (reference square ``[0, 0, 15, 15]``, centre
7.5; per ratio r: ``w = round(sqrt(256 / r))``, ``h = round(w * r)``; per scale s the box
``w*s x h*s`` around the centre; ratios outer, scales inner; dense: the whole set again, every
coordinate + stride / 2, appended after)."""
import numpy as np
import pytest

from rcnn.config import generate_config
from rcnn.model_layout import ModelLayout
from rcnn.processing.generate_anchor import generate_anchors, generate_anchors_fpn


def _cfg(**overrides):
    cfg, _ = generate_config('mnet', 'retinaface', overrides=overrides)
    return cfg


def _square(side):
    """The anchor of side ``side`` centred on 7.5."""
    half = 0.5 * (side - 1)
    return [7.5 - half, 7.5 - half, 7.5 + half, 7.5 + half]


def test_rac_ssh_is_the_released_models_anchors():
    anchors = generate_anchors_fpn(cfg=_cfg())
    assert [len(a) for a in anchors] == [2, 2, 2]
    np.testing.assert_array_equal(anchors[0], [[-248, -248, 263, 263], [-120, -120, 135, 135]])
    np.testing.assert_array_equal(anchors[1], [[-56, -56, 71, 71], [-24, -24, 39, 39]])
    np.testing.assert_array_equal(anchors[2], [[-8, -8, 23, 23], [0, 0, 15, 15]])


def test_rac_ssh2_adds_ratio_one_and_a_half():
    # ratio 1.5: w = round(sqrt(256 / 1.5)) = round(13.06) = 13, h = round(19.5) = 20
    # (NumPy rounds half to even); scale 32: 416 x 640 around 7.5 -> [-200, -312, 215, 327]
    cfg = _cfg(RPN_ANCHOR_CFG='RAC_SSH2')
    stride32, _, stride8 = generate_anchors_fpn(cfg=cfg)
    np.testing.assert_array_equal(stride32, [[-248, -248, 263, 263], [-120, -120, 135, 135],
                                             [-200, -312, 215, 327], [-96, -152, 111, 167]])
    # scale 2: 26 x 40 -> [-5, -12, 20, 27]; scale 1: 13 x 20 -> [1.5, -2, 13.5, 17]
    np.testing.assert_array_equal(stride8, [[-8, -8, 23, 23], [0, 0, 15, 15],
                                            [-5, -12, 20, 27], [1.5, -2, 13.5, 17]])
    assert ModelLayout.from_config(cfg).num_anchors == cfg.NUM_ANCHORS == 4


def test_rac_ssh3_adds_stride_four():
    cfg = _cfg(RPN_ANCHOR_CFG='RAC_SSH3')
    anchors = generate_anchors_fpn(cfg=cfg)
    assert ModelLayout.from_config(cfg).strides == (32, 16, 8, 4) == tuple(cfg.RPN_FEAT_STRIDE)
    np.testing.assert_array_equal(anchors[3], anchors[2])      # stride 4 has stride 8's scales


def test_rac_retina_has_three_scales_growing_by_the_cube_root_of_two():
    cfg = _cfg(RPN_ANCHOR_CFG='RAC_RETINA')
    anchors = generate_anchors_fpn(cfg=cfg)
    assert ModelLayout.from_config(cfg).strides == (64, 32, 16, 8, 4)
    step = 2 ** (1 / 3)
    sides = {stride: [16 * step ** (3 * k + i) for i in range(3)]
             for k, stride in enumerate((4, 8, 16, 32, 64))}
    for stride, base in zip((64, 32, 16, 8, 4), anchors):
        np.testing.assert_allclose(base, [_square(side) for side in sides[stride]], rtol=1e-6,
                                   atol=1e-4, err_msg='stride %d' % stride)
    np.testing.assert_allclose(anchors[-1][1], [-2.0793686, -2.0793686, 17.0793686, 17.0793686],
                               atol=1e-5)


def test_dense_anchor_appends_every_anchor_shifted_by_half_a_stride():
    cfg = _cfg(DENSE_ANCHOR=True)
    anchors = generate_anchors_fpn(dense_anchor=True, cfg=cfg)
    np.testing.assert_array_equal(anchors[2], [[-8, -8, 23, 23], [0, 0, 15, 15],
                                               [-4, -4, 27, 27], [4, 4, 19, 19]])
    np.testing.assert_array_equal(anchors[0][2:], anchors[0][:2] + 16)
    assert ModelLayout.from_config(cfg).num_anchors == cfg.NUM_ANCHORS == 4


def test_dense_anchor_needs_an_even_stride():
    with pytest.raises(ValueError, match='even stride'):
        generate_anchors(16, (1.0,), np.array([1.0]), stride=5, dense_anchor=True)
