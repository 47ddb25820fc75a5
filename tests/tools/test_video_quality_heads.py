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


def test_head_free_init_drops_the_widened_output_convolutions(tmp_path):
    import mxnet as mx
    from tools.measure_quality_heads import head_free_init
    saved = {'arg:face_rpn_bbox_pred_stride8_weight': mx.nd.ones((8, 4, 1, 1)),
             'arg:face_rpn_landmark_pred_stride8_bias': mx.nd.ones((20,)),
             'arg:face_rpn_cls_score_stride8_weight': mx.nd.ones((4, 4, 1, 1)),
             'aux:mobilenet0_batchnorm0_moving_mean': mx.nd.zeros((4,))}
    mx.nd.save(str(tmp_path / 'released-0003.params'), saved)
    init = head_free_init(str(tmp_path / 'released'), 3, str(tmp_path / 'out' / 'mnet'))
    assert init == str(tmp_path / 'out' / 'mnet-init')
    kept = mx.nd.load(init + '-0000.params')
    # the class scores keep their width (2 per anchor) and start from the checkpoint
    assert sorted(kept) == ['arg:face_rpn_cls_score_stride8_weight',
                            'aux:mobilenet0_batchnorm0_moving_mean']
    with pytest.raises(FileNotFoundError, match='released-0001.params'):
        head_free_init(str(tmp_path / 'released'), 1, str(tmp_path / 'out' / 'mnet'))
