"""WIDER FACE evaluator: hand-computed APs, a literal reference loop, real data, bad input."""
import logging
import os

import numpy as np
import pytest
import scipy.io

from conftest import shared_path
import evaluate_widerface
from rcnn.dataset.label_file import LabelFormatError
from rcnn.evaluation.widerface import (PredictionFormatError, SETTINGS, count_recalled,
                                       evaluate, evaluate_predictions, load_ground_truth,
                                       load_label_ground_truth, pairwise_iou,
                                       read_prediction_file, read_predictions,
                                       write_prediction_file)

EVENT = '0--Test'


# ----------------------------------------------------------------------------- helpers

def write_mat_gt(gt_dir, images):
    """Official-format .mat files for one event.

    images: list of (name, (G, 4) x y w h, {setting: 1-based kept indices}).
    """
    os.makedirs(gt_dir, exist_ok=True)

    def cells(values):
        arr = np.empty((len(values), 1), dtype=object)
        for i, v in enumerate(values):
            arr[i, 0] = v
        return arr

    event_list = cells([EVENT])
    file_list = cells([cells([name for name, _, _ in images])])
    bbx_list = cells([cells([np.asarray(b, dtype=np.int32).reshape(-1, 4)
                             for _, b, _ in images])])
    scipy.io.savemat(os.path.join(gt_dir, 'wider_face_val.mat'),
                     {'event_list': event_list, 'file_list': file_list, 'face_bbx_list': bbx_list})
    for setting in SETTINGS:
        kept = cells([cells([np.asarray(k[setting], dtype=np.uint16).reshape(-1, 1)
                             for _, _, k in images])])
        scipy.io.savemat(os.path.join(gt_dir, 'wider_%s_val.mat' % setting),
                         {'event_list': event_list, 'file_list': file_list, 'gt_list': kept})
    return gt_dir


def write_raw_pred(pred_dir, name, rows, event=EVENT):
    """Submission file written by hand (x y w h score rows), independent of the writer."""
    folder = os.path.join(pred_dir, event)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name + '.txt'), 'w') as f:
        f.write('%s/%s.jpg\n%d\n' % (event, name, len(rows)))
        for row in rows:
            f.write(' '.join(str(v) for v in row) + '\n')


def all_kept(n):
    return {s: list(range(1, n + 1)) for s in SETTINGS}


FACE_A = [10, 10, 40, 40]
FACE_B = [100, 100, 50, 50]
FACE_C = [300, 50, 30, 30]
NOWHERE = [600, 600, 20, 20]


# ----------------------------------------------------------------------------- IoU

def test_pairwise_iou_plus_one_convention():
    # 10x10 box against a shifted 10x10 box: intersection 5x10 of union 150 (+1 pixel sizes)
    iou = pairwise_iou([[0, 0, 9, 9]], [[5, 0, 14, 9], [0, 0, 19, 9], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou, [[50 / 150, 100 / 200, 0.0]])


def test_count_recalled_threshold_is_inclusive():
    gt = np.array([[0, 0, 19, 9], [100, 100, 120, 120]], dtype=np.float64)
    assert count_recalled(np.array([[0, 0, 9, 9, 0.9]]), gt, 0.5) == 1     # IoU exactly 0.5
    assert count_recalled(np.array([[0, 0, 9, 9, 0.9]]), gt, 0.51) == 0
    assert count_recalled(np.zeros((0, 5)), gt) == 0
    assert count_recalled(gt, gt) == 2


# ----------------------------------------------------------------------------- hand cases

def test_perfect_prediction_ap_is_one(tmp_path):
    gt_dir = write_mat_gt(str(tmp_path / 'gt'), [
        ('img1', [FACE_A, FACE_B], all_kept(2)),
        ('img2', [FACE_C], all_kept(1))])
    pred_dir = str(tmp_path / 'pred')
    write_raw_pred(pred_dir, 'img1', [FACE_A + [0.9], FACE_B + [0.3]])
    write_raw_pred(pred_dir, 'img2', [FACE_C + [0.6]])
    assert evaluate(pred_dir, gt_dir) == {'easy': 1.0, 'medium': 1.0, 'hard': 1.0}


def test_duplicate_detection_is_a_false_positive(tmp_path):
    gt_dir = write_mat_gt(str(tmp_path / 'gt'), [('img1', [FACE_A, FACE_B], all_kept(2))])
    pred_dir = str(tmp_path / 'pred')
    # raw scores 10, 6, 2 normalise to 1.0, 0.5, 0.0
    write_raw_pred(pred_dir, 'img1', [FACE_A + [10], [11, 10, 40, 40, 6], FACE_B + [2]])
    # thresh > 0.5: 1 proposal, A recalled (P 1, R 1/2); 0.5 >= thresh > 0: 2 proposals (P 1/2);
    # thresh 0: 3 proposals, A and B recalled (P 2/3, R 1). VOC: 1/2 * 1 + 1/2 * 2/3.
    expected = 0.5 * 1.0 + 0.5 * (2.0 / 3.0)
    ap = evaluate(pred_dir, gt_dir)
    for setting in SETTINGS:
        assert ap[setting] == pytest.approx(expected, abs=1e-12)


def test_prediction_on_ignore_box_counts_neither(tmp_path):
    # easy keeps only B (A is an ignore box), medium keeps only A, hard keeps both.
    keep = {'easy': [2], 'medium': [1], 'hard': [1, 2]}
    gt_dir = write_mat_gt(str(tmp_path / 'gt'), [('img1', [FACE_A, FACE_B], keep)])
    pred_dir = str(tmp_path / 'pred')
    write_raw_pred(pred_dir, 'img1', [FACE_A + [1.0], NOWHERE + [0.75], FACE_B + [0.0]])
    ap = evaluate(pred_dir, gt_dir)
    # easy: the A hit is not counted; the false positive (0.75) gives P 0 at R 0; at thresh 0
    # 2 counted proposals, B recalled: P 1/2, R 1 -> AP 1/2 (1/3 if the A hit were a FP).
    assert ap['easy'] == pytest.approx(0.5, abs=1e-12)
    # medium: A recalled first (P 1, R 1) -> 1.0; the B hit is on an ignore box.
    assert ap['medium'] == pytest.approx(1.0, abs=1e-12)
    # hard: A at 1.0 (P 1, R 1/2), FP, then B (P 2/3, R 1).
    assert ap['hard'] == pytest.approx(0.5 + 0.5 * 2.0 / 3.0, abs=1e-12)


def test_iou_of_exactly_the_threshold_matches(tmp_path):
    # face x y w h = 0 0 19 9 spans 20 x 10 pixels, the prediction 0 0 9 9 spans 10 x 10:
    # IoU = 100 / 200 = 0.5 exactly
    gt_dir = write_mat_gt(str(tmp_path / 'gt'), [('img1', [[0, 0, 19, 9]], all_kept(1))])
    pred_dir = str(tmp_path / 'pred')
    write_raw_pred(pred_dir, 'img1', [[0, 0, 9, 9, 0.7]])
    assert evaluate(pred_dir, gt_dir, iou_thresh=0.5)['hard'] == 1.0
    assert evaluate(pred_dir, gt_dir, iou_thresh=0.501)['hard'] == 0.0


def test_image_without_predictions_caps_recall(tmp_path, caplog):
    gt_dir = write_mat_gt(str(tmp_path / 'gt'), [
        ('img1', [FACE_A], all_kept(1)),
        ('img2', [FACE_B, FACE_C], all_kept(2))])
    pred_dir = str(tmp_path / 'pred')
    write_raw_pred(pred_dir, 'img1', [FACE_A + [0.8], NOWHERE + [0.1]])
    with caplog.at_level(logging.WARNING):
        ap = evaluate(pred_dir, gt_dir)
    # 3 faces; A recalled at 1.0 (P 1, R 1/3), then the FP (P 1/2). AP = 1/3 * 1.
    for setting in SETTINGS:
        assert ap[setting] == pytest.approx(1.0 / 3.0, abs=1e-12)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and 'img2.txt' in warnings[0].getMessage()
    with pytest.raises(FileNotFoundError, match='img2.txt'):
        evaluate(pred_dir, gt_dir, strict=True)


def test_missing_file_warning_is_truncated(tmp_path, caplog):
    images = [('img%02d' % i, [FACE_A], all_kept(1)) for i in range(25)]
    gt_dir = write_mat_gt(str(tmp_path / 'gt'), images)
    pred_dir = str(tmp_path / 'pred')
    write_raw_pred(pred_dir, 'img00', [FACE_A + [0.5]])
    with caplog.at_level(logging.WARNING):
        read_predictions(pred_dir, load_ground_truth(gt_dir))
    message = caplog.records[-1].getMessage()
    assert '24 of 25 images' in message and 'and 14 more' in message


def test_no_prediction_file_at_all_is_an_error(tmp_path):
    gt_dir = write_mat_gt(str(tmp_path / 'gt'), [('img1', [FACE_A], all_kept(1))])
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(FileNotFoundError, match='no prediction file found'):
        evaluate(str(tmp_path / 'empty'), gt_dir)


def test_label_txt_ground_truth_size_split(tmp_path):
    label = tmp_path / 'label.txt'
    # heights 60 (easy+), 40 (medium+), 20 (hard only); a landmark-style long line is accepted
    label.write_text('# %s/img1.jpg\n10 10 60 60\n100 100 40 40 1 2 0 3 4 0 5 6 0 7 8 0 9 9 0 0.9\n'
                     '300 50 20 20\n' % EVENT)
    pred_dir = str(tmp_path / 'pred')
    write_raw_pred(pred_dir, 'img1', [[300, 50, 20, 20, 1.0], NOWHERE + [0.5],
                                      [10, 10, 60, 60, 0.0]])
    ap = evaluate(pred_dir, str(label))
    # easy: only the 60 px face counts; the 20 px hit is ignored -> FP then hit: P 1/2, R 1.
    assert ap['easy'] == pytest.approx(0.5, abs=1e-12)
    # medium: 60 and 40 px count; FP, then the 60 px hit: P 1/2 at R 1/2.
    assert ap['medium'] == pytest.approx(0.25, abs=1e-12)
    # hard: all three; 20 px hit (P 1, R 1/3), FP, 60 px hit (P 2/3, R 2/3).
    assert ap['hard'] == pytest.approx(1.0 / 3.0 + 1.0 / 3.0 * 2.0 / 3.0, abs=1e-12)
    every = evaluate(pred_dir, str(label), label_split='all')
    for setting in SETTINGS:
        assert every[setting] == pytest.approx(ap['hard'], abs=1e-12)
    gt = load_label_ground_truth(str(label))
    assert gt.events == [EVENT] and gt.names == ['img1']
    assert [gt.num_faces(s) for s in SETTINGS] == [1, 2, 3]


# ----------------------------------------------------------------------------- writer / reader

def test_writer_format_and_round_trip(tmp_path):
    path = tmp_path / 'out' / EVENT / 'img1.txt'
    boxes = np.array([[10.7, 20.2, 50.9, 80.1, 0.98765], [0, 0, 5, 5, 1e-5]])
    write_prediction_file(str(path), '%s/img1.jpg' % EVENT, boxes)
    assert path.read_text() == '%s/img1.jpg\n2\n10 20 40 59 0.98765\n0 0 5 5 1e-05\n' % EVENT
    assert os.listdir(path.parent) == ['img1.txt']          # no temporary file left behind
    np.testing.assert_allclose(read_prediction_file(str(path), expected_name='img1'),
                               [[10, 20, 40, 59, 0.98765], [0, 0, 5, 5, 1e-5]])
    write_prediction_file(str(path), 'img1.jpg', np.zeros((0, 5)))
    assert path.read_text() == 'img1.jpg\n0\n'
    assert read_prediction_file(str(path), expected_name='img1').shape == (0, 5)
    with pytest.raises(ValueError, match='shape'):
        write_prediction_file(str(path), 'img1.jpg', np.zeros((3, 4)))
    with pytest.raises(ValueError, match='NaN'):
        write_prediction_file(str(path), 'img1.jpg', [[0, 0, 1, 1, np.nan]])


@pytest.mark.parametrize('body, match', [
    ('img1.jpg\n2\n1 2 3 4 0.5\n1 2 3 0.5\n', r'img1\.txt:4: expected "x y w h score"'),
    ('img1.jpg\n1\n1 2 three 4 0.5\n', r'img1\.txt:3: not a number'),
    ('img1.jpg\n1\n1 2 3 4 nan\n', r'img1\.txt:3: NaN'),
    ('img1.jpg\n3\n1 2 3 4 0.5\n1 2 3 4 0.4\n', r'img1\.txt:2: announces 3 boxes but .* 2'),
    ('img1.jpg\ntwo\n', r'img1\.txt:2: box count must be an integer'),
    ('img1.jpg\n', r'img1\.txt:2: missing box count'),
    ('', r'img1\.txt:1: missing image name'),
    ('other.jpg\n0\n', r'img1\.txt:1: names image .other\.jpg.'),
])
def test_malformed_prediction_file(tmp_path, body, match):
    path = tmp_path / 'img1.txt'
    path.write_text(body)
    with pytest.raises(PredictionFormatError, match=match):
        read_prediction_file(str(path), expected_name='img1')


def test_malformed_file_stops_evaluation(tmp_path):
    gt_dir = write_mat_gt(str(tmp_path / 'gt'), [('img1', [FACE_A], all_kept(1))])
    folder = tmp_path / 'pred' / EVENT
    folder.mkdir(parents=True)
    (folder / 'img1.txt').write_text('img1.jpg\n1\n1 2 3 4\n')
    with pytest.raises(PredictionFormatError, match=r'img1\.txt:3'):
        evaluate(str(tmp_path / 'pred'), gt_dir)


def test_malformed_ground_truth(tmp_path):
    label = tmp_path / 'label.txt'
    label.write_text('# a/b.jpg\n1 2 3 4\n1 2 x 4\n')
    with pytest.raises(ValueError, match=r'label\.txt:3'):
        load_label_ground_truth(str(label))
    label.write_text('1 2 3 4\n')
    with pytest.raises(LabelFormatError, match=r'label\.txt:1: face line before'):
        load_label_ground_truth(str(label))
    label.write_text('# a/b.jpg\n1 2 3\n')
    with pytest.raises(LabelFormatError, match=r'label\.txt:2: expected "x y w h'):
        load_label_ground_truth(str(label))
    label.write_text('\n')
    with pytest.raises(LabelFormatError, match=r'label\.txt: no "# image" line'):
        load_label_ground_truth(str(label))
    (tmp_path / 'no_gt').mkdir()
    with pytest.raises(FileNotFoundError, match='no wider_face_val.mat'):
        load_ground_truth(str(tmp_path / 'no_gt'))
    gt_dir = write_mat_gt(str(tmp_path / 'gt'), [('img1', [FACE_A], {'easy': [2], 'medium': [1],
                                                                      'hard': [1]})])
    with pytest.raises(ValueError, match=r'wider_easy_val\.mat: .*img1 keeps face index 2'):
        load_ground_truth(gt_dir)


def test_cli_prints_ap_and_writes_curves(tmp_path, capsys):
    gt_dir = write_mat_gt(str(tmp_path / 'gt'), [('img1', [FACE_A, FACE_B], all_kept(2))])
    pred_dir = str(tmp_path / 'pred')
    write_raw_pred(pred_dir, 'img1', [FACE_A + [10], [11, 10, 40, 40, 6], FACE_B + [2]])
    curves = tmp_path / 'curves'
    rc = evaluate_widerface.main(['--pred', pred_dir, '--gt', gt_dir, '--curves', str(curves),
                                  '--quiet'])
    out = capsys.readouterr().out
    assert rc == 0
    assert 'Easy   Val AP: 0.8333' in out and 'Hard   Val AP: 0.8333' in out
    assert 'evaluated in' in out
    rows = (curves / 'pr_hard.csv').read_text().splitlines()
    assert rows[0] == 'threshold,precision,recall,proposals,recalled' and len(rows) == 1001
    assert rows[-1] == '0.000,0.666667,1.000000,3,2'
    assert evaluate_widerface.main(['--pred', str(tmp_path / 'nope'), '--gt', gt_dir]) == 2
    import cv2
    assert cv2.imread(str(curves / 'pr_curves.png')).shape[2] == 3    # always drawn


def test_compare_draws_every_method_on_one_figure_per_setting(tmp_path, capsys):
    import cv2
    gt_dir = write_mat_gt(str(tmp_path / 'gt'), [('img1', [FACE_A, FACE_B], all_kept(2))])
    perfect, noisy = str(tmp_path / 'perfect'), str(tmp_path / 'noisy')
    write_raw_pred(perfect, 'img1', [FACE_A + [10], FACE_B + [2]])
    write_raw_pred(noisy, 'img1', [FACE_A + [10], [11, 10, 40, 40, 6], FACE_B + [2]])
    curves = tmp_path / 'curves'
    rc = evaluate_widerface.main(['--gt', gt_dir, '--compare', perfect, noisy, '--names',
                                  'ours', 'theirs', '--curves', str(curves), '--quiet'])
    out = capsys.readouterr().out
    assert rc == 0
    ours, theirs = out.split('theirs: results')
    assert 'ours: results' in ours and 'Hard   Val AP: 1.0000' in ours
    assert 'Hard   Val AP: 0.8333' in theirs
    for setting in SETTINGS:
        assert cv2.imread(str(curves / ('pr_compare_%s.png' % setting))).shape == (600, 700, 3)
    for name in ('ours', 'theirs'):
        assert (curves / name / 'pr_curves.png').is_file()
        assert len((curves / name / 'pr_hard.csv').read_text().splitlines()) == 1001
    # several --pred work the same way; the folder names are the default names
    rc = evaluate_widerface.main(['--gt', gt_dir, '--pred', perfect, '--pred', noisy, '--quiet'])
    out = capsys.readouterr().out
    assert rc == 0 and 'perfect: results' in out and 'noisy: results' in out


@pytest.mark.parametrize('argv, message', [
    (['--names', 'a'], '--names gives 1 names for 2 prediction folders'),
    (['--names', 'a', 'a'], '--names must differ'),
])
def test_compare_argument_errors(tmp_path, argv, message, capsys):
    with pytest.raises(SystemExit):
        evaluate_widerface.parse_args(['--gt', 'g', '--compare', 'x', 'y'] + argv)
    assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_widerface.parse_args(['--gt', 'g'])
    assert 'give the predictions' in capsys.readouterr().err
    assert evaluate_widerface.method_names(['a/wout', 'b/wout/', 'c']) == ['wout', 'wout-2', 'c']


# ----------------------------------------------------------------------------- literal reference

def reference_aps(predictions, gt, iou_thresh=0.5):
    """The protocol as a literal greedy loop (per prediction, per threshold, per image)."""
    all_scores = np.concatenate([p[:, 4] for p in predictions if len(p)])
    low, high = all_scores.min(), all_scores.max()
    thresholds = [1 - (t + 1) / 1000.0 for t in range(1000)]
    aps = {}
    for setting in SETTINGS:
        pr = np.zeros((1000, 2))
        num_faces = 0
        for i, pred in enumerate(predictions):
            gt_boxes = gt.boxes[i]
            keep = gt.image_keep(setting, i)
            num_faces += int(keep.sum())
            if len(pred) == 0 or len(gt_boxes) == 0:
                continue
            order = np.argsort(-pred[:, 4], kind='stable')
            boxes = pred[order]
            scores = (boxes[:, 4] - low) / (high - low)
            status = np.zeros(len(gt_boxes))          # 0 unseen, 1 recalled, -1 ignore hit
            counted = np.ones(len(boxes), dtype=bool)
            recalled_so_far = np.zeros(len(boxes))
            for h, (x, y, w, hh, _) in enumerate(boxes):
                ious = []
                for gx, gy, gw, gh in gt_boxes:
                    iw = min(x + w, gx + gw) - max(x, gx) + 1
                    ih = min(y + hh, gy + gh) - max(y, gy) + 1
                    if iw > 0 and ih > 0:
                        union = (w + 1) * (hh + 1) + (gw + 1) * (gh + 1) - iw * ih
                        ious.append(iw * ih / union)
                    else:
                        ious.append(0.0)
                j = int(np.argmax(ious))
                if ious[j] >= iou_thresh:
                    if not keep[j]:
                        status[j] = -1
                        counted[h] = False
                    elif status[j] == 0:
                        status[j] = 1
                recalled_so_far[h] = np.sum(status == 1)
            for t, thresh in enumerate(thresholds):
                above = np.flatnonzero(scores >= thresh)
                if len(above):
                    last = above[-1]
                    pr[t, 0] += counted[:last + 1].sum()
                    pr[t, 1] += recalled_so_far[last]
        with np.errstate(invalid='ignore', divide='ignore'):
            precision = pr[:, 1] / pr[:, 0]
        recall = pr[:, 1] / num_faces
        mrec = np.concatenate([[0.0], recall, [1.0]])
        mpre = np.concatenate([[0.0], precision, [0.0]])
        for k in range(len(mpre) - 1, 0, -1):
            mpre[k - 1] = np.maximum(mpre[k - 1], mpre[k])
        ap = 0.0
        for k in range(len(mrec) - 1):
            if mrec[k + 1] != mrec[k]:
                ap += (mrec[k + 1] - mrec[k]) * mpre[k + 1]
        aps[setting] = ap
    return aps


def synthetic_predictions(gt, rng, fraction=0.8, max_false=8):
    """Jittered copies of ~fraction of the faces + a few random boxes, random scores."""
    predictions = []
    for boxes in gt.boxes:
        chosen = boxes[rng.random(len(boxes)) < fraction]
        jitter = rng.normal(0, 0.05, size=(len(chosen), 2)) * chosen[:, 2:4]
        hits = np.hstack([np.round(chosen[:, :2] + jitter), chosen[:, 2:4],
                          rng.random((len(chosen), 1))])
        n_false = rng.integers(0, max_false + 1)
        xy = rng.uniform(0, 1000, size=(n_false, 2))
        false = np.hstack([np.round(xy), np.round(rng.uniform(4, 80, size=(n_false, 2))),
                           rng.random((n_false, 1)) * 0.8])
        predictions.append(np.vstack([hits, false]))
    return predictions


# ----------------------------------------------------------------------------- real ground truth

@pytest.fixture(scope='module')
def wider_val_gt():
    return load_ground_truth(str(shared_path('widerface_eval', 'ground_truth')))


def test_official_ground_truth_loads(wider_val_gt):
    gt = wider_val_gt
    assert gt.num_images == 3226 and gt.num_faces() == 39708
    assert [gt.num_faces(s) for s in SETTINGS] == [7211, 13319, 31958]
    assert len(set(gt.events)) == 61
    assert gt.events[0] == '0--Parade' and gt.names[0] == '0_Parade_marchingband_1_465'


def test_matches_literal_reference_on_official_subset(wider_val_gt):
    rng = np.random.default_rng(7)
    # 40 images of two events, with ties and duplicates in the scores
    events = np.asarray(wider_val_gt.events)
    chosen = np.concatenate([np.flatnonzero(events == '0--Parade')[:20],
                             np.flatnonzero(events == '12--Group')[:20]])
    subset = wider_val_gt.select(chosen)
    predictions = synthetic_predictions(subset, rng)
    predictions[0][:, 4] = np.round(predictions[0][:, 4], 1)          # score ties
    predictions[1] = np.vstack([predictions[1], predictions[1][:3]])    # exact duplicates
    results = evaluate_predictions(predictions, subset)
    expected = reference_aps(predictions, subset)
    for setting in SETTINGS:
        assert results[setting].ap == pytest.approx(expected[setting], abs=1e-12)
        assert 0.05 < results[setting].ap < 1.0


def test_full_synthetic_prediction_set(wider_val_gt, tmp_path):
    gt = wider_val_gt
    rng = np.random.default_rng(0)
    predictions = synthetic_predictions(gt, rng)
    pred_dir = str(tmp_path / 'pred')
    for i, pred in enumerate(predictions):
        xyxy = np.hstack([pred[:, :2], pred[:, :2] + pred[:, 2:4], pred[:, 4:]])
        write_prediction_file(gt.prediction_path(pred_dir, i),
                              '%s/%s.jpg' % (gt.events[i], gt.names[i]), xyxy)
    ap = evaluate(pred_dir, str(shared_path('widerface_eval', 'ground_truth')))
    results = evaluate_predictions(read_predictions(pred_dir, gt), gt)
    for setting in SETTINGS:
        assert ap[setting] == results[setting].ap
        final_recall = results[setting].recall[-1]
        # ~80% of the faces are predicted (jitter drops a few tiny ones); random scores keep
        # precision well below 1, so AP sits under the final recall but far from 0
        assert 0.5 < final_recall < 0.85
        assert 0.2 < ap[setting] < final_recall


def test_full_perfect_prediction_set(wider_val_gt):
    gt = wider_val_gt
    rng = np.random.default_rng(1)
    predictions = [np.hstack([b, rng.random((len(b), 1))]) for b in gt.boxes]
    results = evaluate_predictions(predictions, gt)
    for setting in SETTINGS:
        # the official val has one duplicated box (its second copy can never be matched) and
        # one box of negative width (overlaps nothing with the +1 convention): at most 2 misses,
        # and their two predictions are false positives
        assert results[setting].ap > 0.9995
        assert results[setting].recall[-1] >= 1.0 - 2.0 / gt.num_faces(setting)
        assert results[setting].precision[-1] >= 1.0 - 2.0 / gt.num_faces(setting)


def _perfect_dlib_predictions(gt, pred_dir):
    rng = np.random.default_rng(3)
    for i, boxes in enumerate(gt.boxes):
        xyxy = np.hstack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:4],
                          rng.uniform(0.5, 1.0, (len(boxes), 1))])
        write_prediction_file(gt.prediction_path(pred_dir, i),
                              '%s/%s.jpg' % (gt.events[i], gt.names[i]), xyxy)


def test_dlib_val_perfect_predictions(dlib_faces, tmp_path):
    gt_dir = str(dlib_faces / 'val' / 'gt')
    gt = load_ground_truth(gt_dir)
    assert gt.num_images == 5 and [gt.num_faces(s) for s in SETTINGS] == [25, 25, 25]
    pred_dir = str(tmp_path / 'pred')
    _perfect_dlib_predictions(gt, pred_dir)
    assert evaluate(pred_dir, gt_dir, strict=True) == {'easy': 1.0, 'medium': 1.0, 'hard': 1.0}
    label = str(dlib_faces / 'val' / 'label.txt')
    for split in ('size', 'all'):
        assert evaluate(pred_dir, label, strict=True, label_split=split) == {
            'easy': 1.0, 'medium': 1.0, 'hard': 1.0}
    label_gt = load_label_ground_truth(label)
    assert label_gt.names == gt.names
    for a, b in zip(label_gt.boxes, gt.boxes):
        np.testing.assert_array_equal(a, b)
