"""FaceTracker: identities survive crossings (ground truth of generated sequences), landmark
smoothing against a known straight path, best shots, track birth and death."""
import numpy as np
import pytest

from rcnn.inference.align import align_faces
from rcnn.inference.tracking import FaceTracker, box_iou_distance, write_best_shots
from tools.measure_tracking import mot_accumulator, mot_summary, track_sequence, \
    truth_detections
from tools.sample_data.video import make_sequence

# the unit face of test_quality, 20 px per unit: frontal, 40 x 40 px between eyes and mouth
UNIT_FACE = np.array([[-1, 0], [1, 0], [0, 1], [-0.8, 2], [0.8, 2]], np.float64)


def _face_at(cx, cy, scale=20.0, score=0.99):
    points = UNIT_FACE * scale + (cx, cy - scale)
    box = [cx - 1.6 * scale, cy - 2.2 * scale, cx + 1.6 * scale, cy + 2.0 * scale, score]
    return np.array([box], np.float32), points[None].astype(np.float32)


def test_box_iou_distance_by_hand():
    a = np.array([[0, 0, 10, 10, 99, 99]], float)          # extra columns are ignored
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    np.testing.assert_allclose(box_iou_distance(a, b), [[1 - 50 / 150.0, 1.0, 0.0]])


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_identities_survive_a_crossing(seed):
    sequence = make_sequence('crossing', seed=seed)
    # the two crossing faces are hidden from each other's truth in some middle frames
    ids_per_frame = [set(t.identities.tolist()) for t in sequence.truth]
    assert any(len({1, 2} & ids) < 2 for ids in ids_per_frame[10:30])
    assert {1, 2} <= ids_per_frame[2] and {1, 2} <= ids_per_frame[-3]
    rng = np.random.default_rng(seed)
    hypotheses, _, _ = track_sequence(
        sequence, lambda t, image: truth_detections(sequence.truth[t], rng, drop=0.0),
        FaceTracker())
    # each identity keeps one track id over the whole sequence, and ids are not shared
    track_of = {}
    for truth, (track_ids, boxes) in zip(sequence.truth, hypotheses):
        overlap = 1.0 - box_iou_distance(truth.boxes, boxes) if len(boxes) else None
        for row, identity in enumerate(truth.identities):
            if overlap is None or overlap[row].max() < 0.5:
                continue
            track_of.setdefault(int(identity), set()).add(int(track_ids[overlap[row].argmax()]))
    assert all(len(tracks) == 1 for tracks in track_of.values()), track_of
    assert len({next(iter(t)) for t in track_of.values()}) == len(track_of)
    summary = mot_summary([mot_accumulator(sequence.truth, hypotheses)], ['crossing'])
    assert summary['crossing']['id_switches'] == 0


def test_truth_detections_of_all_kinds_score_high():
    accumulators, names = [], []
    for kind in ('moving', 'entering', 'leaving', 'crossing'):
        sequence = make_sequence(kind, seed=3)
        rng = np.random.default_rng(3)
        hypotheses, _, _ = track_sequence(
            sequence, lambda t, image: truth_detections(sequence.truth[t], rng), FaceTracker())
        accumulators.append(mot_accumulator(sequence.truth, hypotheses))
        names.append(kind)
    overall = mot_summary(accumulators, names)['OVERALL']
    # misses: each track's first frame (initialization delay) and 5% dropped detections
    assert overall['mota'] > 0.85 and overall['idf1'] > 0.9 and overall['id_switches'] == 0


def test_smoothed_landmarks_are_closer_to_the_true_path():
    rng = np.random.default_rng(0)
    tracker = FaceTracker(best_shots=False)
    raw_errors, smooth_errors = [], []
    for t in range(60):
        faces, truth_points = _face_at(100 + 3.0 * t, 150 + 1.0 * t)
        noisy = truth_points + rng.normal(0, 2.0, truth_points.shape).astype(np.float32)
        tracked = tracker.update(faces, noisy, frame=t)
        if t >= 10:
            face, = tracked
            raw_errors.append(np.abs(face.landmarks - truth_points[0]).mean())
            smooth_errors.append(np.abs(face.smoothed_landmarks - truth_points[0]).mean())
    assert np.mean(smooth_errors) < 0.75 * np.mean(raw_errors), (np.mean(smooth_errors),
                                                                 np.mean(raw_errors))


def test_best_shot_is_the_largest_frontal_frame(tmp_path):
    tracker = FaceTracker()
    image = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    scales = [10, 12, 16, 14, 11]                     # the face is largest in frame 2
    for t, scale in enumerate(scales):
        faces, points = _face_at(200, 200, scale=scale)
        tracker.update(faces, points, image=image, frame=t)
    shot, = tracker.best_shots.values()
    assert shot.frame == 2 and shot.crop.shape == (112, 112, 3)
    _, points = _face_at(200, 200, scale=16)
    np.testing.assert_array_equal(shot.crop, align_faces(image, points)[0])
    records = write_best_shots(tracker.best_shots, str(tmp_path), 'clip')
    assert records[0]['frame'] == 2
    assert (tmp_path / ('clip_track%d_f000002.png' % shot.track_id)).is_file()
    assert (tmp_path / 'clip_best_shots.json').is_file()


def test_tracks_start_after_the_delay_and_die_after_a_long_gap():
    tracker = FaceTracker(hit_counter_max=4, reid_frames=0, initialization_delay=1)
    faces, points = _face_at(100, 100)
    assert tracker.update(faces, points) == []             # first hit: not confirmed yet
    first, = tracker.update(faces, points)
    for _ in range(3):
        tracker.update(faces, points)
    for _ in range(10):                                    # a long gap: the track dies
        assert tracker.update(np.zeros((0, 5), np.float32), np.zeros((0, 5, 2))) == []
    tracker.update(faces, points)
    second, = tracker.update(faces, points)
    assert second.track_id != first.track_id


def test_a_lost_track_is_found_again_within_reid_frames():
    tracker = FaceTracker(hit_counter_max=4, reid_frames=20)
    for t in range(6):
        faces, points = _face_at(100 + 4 * t, 100)
        face_id = tracker.update(faces, points)
    for t in range(6, 14):                                 # hidden for 8 frames
        tracker.update(np.zeros((0, 5), np.float32), np.zeros((0, 5, 2)))
    for t in range(14, 17):
        faces, points = _face_at(100 + 4 * t, 100)
        found = tracker.update(faces, points)
    assert found and found[0].track_id == face_id[0].track_id


def test_without_reid_a_lost_track_comes_back_with_a_new_id():
    tracker = FaceTracker(hit_counter_max=4, reid_frames=0)
    for t in range(6):
        faces, points = _face_at(100 + 4 * t, 100)
        face_id = tracker.update(faces, points)
    for t in range(6, 14):
        tracker.update(np.zeros((0, 5), np.float32), np.zeros((0, 5, 2)))
    for t in range(14, 17):
        faces, points = _face_at(100 + 4 * t, 100)
        found = tracker.update(faces, points)
    assert found and found[0].track_id != face_id[0].track_id


def test_tracker_refuses_bad_settings():
    with pytest.raises(ValueError, match='max_distance'):
        FaceTracker(max_distance=0.0)
    with pytest.raises(ValueError, match='initialization_delay'):
        FaceTracker(hit_counter_max=3, initialization_delay=3)
    faces, points = _face_at(100, 100)
    with pytest.raises(ValueError, match=r'landmarks must be \(1, 5, >=2\)'):
        FaceTracker().update(faces, points[:, :4])
    with pytest.raises(ValueError, match='faces must be'):
        FaceTracker().update(faces[:, :4], points)
    assert FaceTracker().update([], []) == []


def test_detections_of_a_model_with_blur_and_visibility_outputs():
    tracker = FaceTracker()
    image = np.zeros((300, 300, 3), np.uint8)
    for t in range(3):
        faces, points = _face_at(150, 150, scale=20)
        faces = np.concatenate([faces, [[0.5]]], axis=1)                     # blur column
        points = np.concatenate([points, np.ones((1, 5, 1), np.float32)], axis=2)
        tracked = tracker.update(faces, points, image=image, frame=t)
    face, = tracked
    assert face.landmarks.shape == (5, 2) and face.smoothed_landmarks.shape == (5, 2)
    shot, = tracker.best_shots.values()
    # the box is 64 x 84 px: quality 0.99 * (64 / 112) * 1 * (1 - 0.5) * 1, frontal, blur 0.5
    assert shot.quality == pytest.approx(0.99 * 64 / 112 * 0.5, rel=1e-4)
