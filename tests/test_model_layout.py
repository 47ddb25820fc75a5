"""ModelLayout: the layout facts each switch of the config implies (read in the original's
sample_config.py generate_config and symbol_common.py get_out)."""
import pickle

import pytest

from rcnn.config import generate_config
from rcnn.model_layout import ModelLayout


def _layout(**overrides):
    cfg, _ = generate_config('mnet', 'retinaface', overrides)
    return ModelLayout.from_config(cfg)


def test_the_released_layout_is_net3():
    layout = _layout()
    assert layout == ModelLayout()
    assert layout.strides == (32, 16, 8)
    assert layout.num_anchors == 2
    assert layout.head_lengths == (2, 4, 10)
    assert layout.deploy_output_names()[:3] == [
        'face_rpn_cls_prob_reshape_stride32', 'face_rpn_bbox_pred_stride32',
        'face_rpn_landmark_pred_stride32']
    assert len(layout.train_output_names()) == 18
    assert layout.train_output_index(1, 'face_rpn_bbox_loss') == 8


@pytest.mark.parametrize('table, strides, anchors', [
    ('RAC_SSH', (32, 16, 8), 2),
    ('RAC_SSH2', (32, 16, 8), 4),        # ratios 1 and 1.5
    ('RAC_SSH3', (32, 16, 8, 4), 4),     # RAC_SSH2 plus stride 4
    ('RAC_RETINA', (64, 32, 16, 8, 4), 3),
])
def test_anchor_tables_give_their_strides_and_anchor_counts(table, strides, anchors):
    layout = _layout(RPN_ANCHOR_CFG=table)
    assert (layout.strides, layout.num_anchors) == (strides, anchors)
    dense = _layout(RPN_ANCHOR_CFG=table, DENSE_ANCHOR=True)
    assert dense.num_anchors == 2 * anchors


def test_retina_scales_grow_by_the_cube_root_of_two_from_stride_4_to_64():
    cfg, _ = generate_config('resnet', 'retinaface', {'RPN_ANCHOR_CFG': 'RAC_RETINA'})
    scales = [s for stride in ('4', '8', '16', '32', '64')
              for s in cfg.RPN_ANCHOR_CFG[stride]['SCALES']]
    assert scales[0] == 1.0
    assert scales[3] == pytest.approx(2.0) and scales[-1] == pytest.approx(2 ** (14 / 3.0))
    assert all(b / a == pytest.approx(2 ** (1 / 3.0)) for a, b in zip(scales, scales[1:]))


def test_blur_occlusion_and_no_landmarks_change_the_head_lengths_and_names():
    assert _layout(USE_BLUR=True).head_lengths == (2, 5, 10)
    assert _layout(USE_OCCLUSION=True).head_lengths == (2, 4, 15)
    assert _layout(USE_OCCLUSION=True).landmark_point_len == 3
    boxes_only = _layout(FACE_LANDMARK=False)
    assert boxes_only.head_lengths == (2, 4)
    assert boxes_only.label_kinds == ('label', 'bbox_target', 'bbox_weight')
    assert boxes_only.deploy_output_kinds == ('face_rpn_cls_prob_reshape', 'face_rpn_bbox_pred')
    assert len(boxes_only.train_output_names()) == 12
    assert boxes_only.train_output_index(2, 'face_rpn_bbox_weight') == 11


def test_a_layout_is_a_value():
    layout = _layout(RPN_ANCHOR_CFG='RAC_RETINA', USE_BLUR=True)
    assert pickle.loads(pickle.dumps(layout)) == layout
    assert len({layout, _layout(RPN_ANCHOR_CFG='RAC_RETINA', USE_BLUR=True)}) == 1
    with pytest.raises(AttributeError):
        layout.strides = (8,)


@pytest.mark.parametrize('kwargs', [dict(strides=(8, 16)), dict(box_len=6),
                                    dict(landmark_len=12), dict(num_anchors=0)])
def test_impossible_layouts_are_refused(kwargs):
    with pytest.raises(ValueError):
        ModelLayout(**kwargs)
