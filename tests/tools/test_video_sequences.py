"""The generated video sequences: moving, entering, leaving and crossing faces with known
identities per frame; the MOTChallenge ground-truth files; the motmetrics scoring."""
import numpy as np
import pytest

from tools.measure_tracking import mot_accumulator, mot_summary
from tools.sample_data.face import face_box
from tools.sample_data.video import (FRAME_SIZE, MIN_VISIBLE, SEQUENCE_KINDS, FrameTruth,
                                     make_sequence, read_mot_ground_truth, write_sequence)


def _presence(sequence, identity):
    return [identity in t.identities for t in sequence.truth]


def test_same_seed_same_frames_other_seed_other_frames():
    a, b = make_sequence('moving', seed=5, num_frames=4), make_sequence('moving', seed=5,
                                                                        num_frames=4)
    c = make_sequence('moving', seed=6, num_frames=4)
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))
    assert not np.array_equal(a.frames[0], c.frames[0])
    assert a.frames[0].shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3)


def test_moving_faces_move_and_stay():
    sequence = make_sequence('moving', seed=0)
    for identity in (1, 2, 3):
        assert all(_presence(sequence, identity))
    first = sequence.truth[0].boxes[sequence.truth[0].identities == 1][0]
    last = sequence.truth[-1].boxes[sequence.truth[-1].identities == 1][0]
    assert np.abs(first - last).max() > 10


def test_entering_faces_appear_and_stay():
    sequence = make_sequence('entering', seed=0)
    for identity in (2, 3):
        present = _presence(sequence, identity)
        assert not present[0] and present[-1]
        start = present.index(True)
        assert all(present[start:])                      # once in, stays in
    assert all(_presence(sequence, 1))


def test_leaving_faces_disappear():
    sequence = make_sequence('leaving', seed=0)
    for identity in (2, 3):
        present = _presence(sequence, identity)
        assert present[0] and not present[-1]
        gone = present.index(False)
        assert not any(present[gone:])
    assert all(_presence(sequence, 1))


def test_crossing_hides_the_back_face_only_while_covered():
    sequence = make_sequence('crossing', seed=0)
    back, front = _presence(sequence, 1), _presence(sequence, 2)
    assert all(front)
    hidden = [t for t, present in enumerate(back) if not present]
    assert hidden and back[0] and back[-1]
    assert hidden == list(range(hidden[0], hidden[-1] + 1))   # one contiguous occlusion
    for t in hidden:                                      # the front face covers the back one
        actors = {a.identity: a.at(t) for a in sequence.actors}
        back_box, front_box = face_box(actors[1]), face_box(actors[2])
        assert back_box[0] < front_box[2] and front_box[0] < back_box[2]
    visible = [v for t in sequence.truth for v in t.visible]
    assert min(visible) >= MIN_VISIBLE


def test_truth_boxes_follow_the_drawn_faces():
    sequence = make_sequence('moving', seed=1, num_frames=3)
    truth = sequence.truth[2]
    for identity, box in zip(truth.identities, truth.boxes):
        actor = next(a for a in sequence.actors if a.identity == identity)
        np.testing.assert_allclose(box, face_box(actor.at(2)))  # fully inside: unclipped
    with pytest.raises(ValueError, match='unknown sequence kind'):
        make_sequence('dancing')
    assert set(SEQUENCE_KINDS) == {'moving', 'entering', 'leaving', 'crossing'}


def test_mot_ground_truth_round_trip(tmp_path):
    sequence = make_sequence('entering', seed=2, num_frames=8)
    folder = write_sequence(sequence, str(tmp_path), video=True)
    assert (tmp_path / (sequence.name + '.avi')).is_file()
    assert len(list((tmp_path / sequence.name).glob('frame_*.png'))) == 8
    read = read_mot_ground_truth(folder + '/gt.txt')
    for truth in sequence.truth:
        ids, boxes = read.get(truth.frame, (np.zeros(0), np.zeros((0, 4))))
        np.testing.assert_array_equal(ids, truth.identities)
        np.testing.assert_allclose(boxes, truth.boxes, atol=0.01)
    bad = tmp_path / 'bad.txt'
    bad.write_text('1,1,0,0,10,10,1,-1,-1,-1\n1,2,oops\n')
    with pytest.raises(ValueError, match=r'bad.txt:2: expected 10'):
        read_mot_ground_truth(str(bad))


def _truth(identities, boxes):
    return FrameTruth(frame=0, identities=np.array(identities), boxes=np.array(boxes, float),
                      landmarks=np.zeros((len(identities), 5, 2)),
                      visible=np.ones(len(identities)))


def test_mot_scores_count_a_swap_by_hand():
    a, b = [0, 0, 10, 10], [50, 0, 60, 10]
    truth = [_truth([1, 2], [a, b])] * 4
    # the tracks follow faces 1 and 2, then swap in the last two frames
    hypotheses = [(np.array([7, 8]), np.array([a, b], float))] * 2 + \
                 [(np.array([8, 7]), np.array([a, b], float))] * 2
    row = mot_summary([mot_accumulator(truth, hypotheses)], ['swap'])['swap']
    assert row['id_switches'] == 2
    assert row['mota'] == pytest.approx(1 - 2 / 8.0)
    assert row['idf1'] == pytest.approx(0.5)
    # a missed face and a false box
    hypotheses = [(np.array([7]), np.array([a], float))] * 3 + \
                 [(np.array([7, 8, 9]), np.array([a, b, [200, 200, 210, 210]], float))]
    row = mot_summary([mot_accumulator(truth, hypotheses)], ['miss'])['miss']
    assert row['id_switches'] == 0
    assert row['mota'] == pytest.approx(1 - (3 + 1) / 8.0)
