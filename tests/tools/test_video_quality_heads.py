"""tools/measure_quality_heads.py: its rank correlation, ROC AUC and face matching on synthetic
predictions with hand-computed answers."""
import json

import numpy as np
import pytest

from tools.measure_quality_heads import (average_ranks, check_same_image, final_epoch,
                                         head_pairs, match_faces, roc_auc,
                                         spearman_rank_correlation, summarise)


def test_average_ranks_share_ties():
    np.testing.assert_allclose(average_ranks([10, 30, 20, 20]), [1, 4, 2.5, 2.5])


def test_spearman_by_hand():
    # ranks of y: 1 2 3.5 5 3.5, Pearson of (1..5, those) = 0.8208 (SciPy's documented example)
    assert spearman_rank_correlation([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(
        0.8207826816681233)
    x = np.linspace(0, 1, 20)
    assert spearman_rank_correlation(x, np.exp(5 * x)) == pytest.approx(1.0)   # monotone
    assert spearman_rank_correlation(x, -x ** 3) == pytest.approx(-1.0)
    assert np.isnan(spearman_rank_correlation([1, 2, 3], [4, 4, 4]))
    rng = np.random.default_rng(0)
    assert abs(spearman_rank_correlation(rng.random(2000), rng.random(2000))) < 0.06


def test_roc_auc_by_hand():
    # 4 positive-negative pairs: (.35 > .1), (.35 < .4), (.8 > .1), (.8 > .4) -> 3 / 4
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([0.1, 0.2, 0.9], [0, 0, 1]) == 1.0
    assert roc_auc([0.9, 0.2, 0.1], [0, 0, 1]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == pytest.approx(0.5)   # ties: half
    assert np.isnan(roc_auc([0.1, 0.2], [1, 1]))
    rng = np.random.default_rng(1)
    assert abs(roc_auc(rng.random(4000), rng.random(4000) < 0.3) - 0.5) < 0.03


def test_match_faces_greedy_by_score():
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], float)
    detections = np.array([[1, 0, 11, 10], [0, 0, 10, 10], [20, 0, 30, 10], [50, 50, 60, 60]])
    scores = np.array([0.6, 0.9, 0.8, 0.99])
    pairs = match_faces(detections, scores, truth)
    # the 0.9 detection takes truth 0 before the 0.6 one; the far box matches nothing
    assert pairs.tolist() == [[1, 0], [2, 1]]
    assert match_faces(detections, scores, np.zeros((0, 4))).shape == (0, 2)


def test_head_pairs_and_summary_on_synthetic_predictions():
    rng = np.random.default_rng(2)
    all_pairs = []
    for _ in range(30):
        k = 4
        centres = rng.uniform(50, 450, (k, 2))
        truth_boxes = np.concatenate([centres - 20, centres + 20], axis=1)
        truth_blur = rng.uniform(0.2, 0.9, k)
        truth_blur[0] = -1                                  # a face without landmarks
        flags = (rng.random((k, 5)) < 0.3).astype(float)    # 1 = occluded
        truth_landmarks = np.concatenate([rng.uniform(0, 500, (k, 5, 2)), flags[..., None]],
                                         axis=2)
        # predictions: blur with a little noise (ranks mostly kept), visibility that
        # separates the classes
        faces = np.concatenate([truth_boxes + rng.normal(0, 1, (k, 4)),
                                np.full((k, 1), 0.9),
                                (truth_blur + rng.normal(0, 0.02, k))[:, None]], axis=1)
        visibility = np.where(flags == 0, 0.7, 0.3) + rng.normal(0, 0.1, (k, 5))
        landmarks = np.concatenate([truth_landmarks[..., :2], visibility[..., None]], axis=2)
        pairs = head_pairs(faces, landmarks, truth_boxes, truth_landmarks, truth_blur)
        assert len(pairs['blur_pred']) == k - 1             # the unlabelled face is left out
        all_pairs.append(pairs)
    figures = summarise(all_pairs)
    assert figures['faces'] == 90 and figures['points'] == 450
    assert figures['blur_spearman'] > 0.95
    assert figures['visibility_auc'] > 0.95
    # the same predictions shuffled against the truth are at chance
    joined = {k: np.concatenate([p[k] for p in all_pairs]) for k in all_pairs[0]}
    shuffled = dict(joined, vis_pred=rng.permutation(joined['vis_pred']),
                    blur_pred=rng.permutation(joined['blur_pred']))
    chance = summarise([shuffled])
    assert abs(chance['visibility_auc'] - 0.5) < 0.1 and abs(chance['blur_spearman']) < 0.25


def test_head_pairs_refuses_a_model_without_the_heads():
    none = head_pairs(np.zeros((0, 5)), np.zeros((0, 5, 2)), np.zeros((1, 4)),
                      -np.ones((1, 5, 3)), [-1.0])                  # no detection: no pair
    assert all(len(v) == 0 for v in none.values())
    with pytest.raises(ValueError, match='USE_BLUR=True USE_OCCLUSION=True'):
        head_pairs(np.ones((1, 5)), np.zeros((1, 5, 2)), np.zeros((1, 4)),
                   -np.ones((1, 5, 3)), [-1.0])


def test_final_epoch_reads_the_training_summary(tmp_path):
    prefix = str(tmp_path / 'mnet')
    with pytest.raises(FileNotFoundError, match='train first'):
        final_epoch(prefix)
    (tmp_path / 'mnet-train-summary.json').write_text(json.dumps({'checkpoint': 3}))
    assert final_epoch(prefix) == 3
    (tmp_path / 'mnet-train-summary.json').write_text(json.dumps({'checkpoint': None}))
    with pytest.raises(ValueError, match='no final checkpoint'):
        final_epoch(prefix)


def test_val_image_must_be_the_scene_drawn_again():
    import cv2
    from tools.sample_data import image_rng, render_scene
    drawn = render_scene(image_rng(0, 'val', 0)).image
    ok, encoded = cv2.imencode('.jpg', drawn, [cv2.IMWRITE_JPEG_QUALITY, 90])
    check_same_image('a.jpg', cv2.imdecode(encoded, cv2.IMREAD_COLOR), drawn)
    other = np.random.default_rng(0).integers(0, 256, drawn.shape, dtype=np.uint8)
    with pytest.raises(ValueError, match='b.jpg is not the image the generator draws'):
        check_same_image('b.jpg', other, drawn)
    with pytest.raises(ValueError, match='c.jpg'):
        check_same_image('c.jpg', drawn[:-1], drawn)


def test_widened_init_keeps_the_released_values_in_their_new_places(tmp_path):
    import mxnet as mx
    from tools.measure_quality_heads import widened_init
    # 2 anchors: box rows a*4+k -> a*5+k (the 5th of each anchor, the blur, is new); landmark
    # rows a*10 + 2p + c -> a*15 + 3p + c (each point's 3rd value, the visibility, is new)
    box_weight = np.arange(8 * 3, dtype=np.float32).reshape(8, 3, 1, 1)
    landmark_bias = np.arange(1, 21, dtype=np.float32)
    saved = {'arg:face_rpn_bbox_pred_stride8_weight': mx.nd.array(box_weight),
             'arg:face_rpn_landmark_pred_stride8_bias': mx.nd.array(landmark_bias),
             'arg:face_rpn_cls_score_stride8_weight': mx.nd.ones((4, 3, 1, 1)),
             'aux:mobilenet0_batchnorm0_moving_mean': mx.nd.zeros((4,))}
    mx.nd.save(str(tmp_path / 'released-0003.params'), saved)
    init = widened_init(str(tmp_path / 'released'), 3, str(tmp_path / 'out' / 'mnet'))
    assert init == str(tmp_path / 'out' / 'mnet-init')
    widened = {k: v.asnumpy() for k, v in mx.nd.load(init + '-0000.params').items()}
    assert sorted(widened) == sorted(saved)
    box = widened['arg:face_rpn_bbox_pred_stride8_weight']
    assert box.shape == (10, 3, 1, 1)
    np.testing.assert_array_equal(box[[0, 1, 2, 3, 5, 6, 7, 8]], box_weight)
    # new weights are small and random, not zero (a zero row would leave the head dead)
    fresh = box[[4, 9]]
    assert 0 < np.abs(fresh).max() < 0.1
    landmark = widened['arg:face_rpn_landmark_pred_stride8_bias']
    expected = np.zeros(30, np.float32)
    for a in range(2):
        for p in range(5):
            expected[a * 15 + 3 * p:a * 15 + 3 * p + 2] = landmark_bias[a * 10 + 2 * p:
                                                                          a * 10 + 2 * p + 2]
    np.testing.assert_array_equal(landmark, expected)
    # the other arrays are as saved
    np.testing.assert_array_equal(widened['arg:face_rpn_cls_score_stride8_weight'], 1)
    with pytest.raises(FileNotFoundError, match='released-0001.params'):
        widened_init(str(tmp_path / 'released'), 1, str(tmp_path / 'out' / 'mnet'))
    # an output whose rows do not fit the layout is named
    mx.nd.save(str(tmp_path / 'odd-0000.params'),
               {'arg:face_rpn_bbox_pred_stride8_bias': mx.nd.ones((6,))})
    with pytest.raises(ValueError, match='face_rpn_bbox_pred_stride8_bias: 6 output rows'):
        widened_init(str(tmp_path / 'odd'), 0, str(tmp_path / 'out' / 'odd'))


def test_a_sample_set_drawn_otherwise_is_refused(tmp_path):
    from tools.measure_quality_heads import build_parser, ensure_sample_set
    from tools.sample_data import make_sample_dataset
    make_sample_dataset(tmp_path / 'set', n_train=1, n_val=1, seed=0, progress=False)
    args = build_parser().parse_args(['--data', str(tmp_path / 'set'), '--val-images', '1'])
    # the tool draws half of the faces blurred and half occluded; the standard set has neither
    with pytest.raises(ValueError, match=r'face_blur 0.0, occlusion 0.15; pass --face-blur 0.0 '
                                         r'--occlusion 0.15'):
        ensure_sample_set(args)
    standard = build_parser().parse_args(['--data', str(tmp_path / 'set'), '--val-images', '1',
                                          '--face-blur', '0', '--occlusion', '0.15'])
    ensure_sample_set(standard)
