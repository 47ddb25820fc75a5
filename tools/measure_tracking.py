"""Measure face tracking on generated sequences with known identities: MOTA, IDF1, ID switches
and frames per second.

    python tools/measure_tracking.py --prefix ../shared/models/mnet.25/mnet.25 --gpu -1 \\
        --seeds 0 1 2

For every sequence kind of :mod:`tools.sample_data.video` and seed, the frames are rendered,
the detector runs on each (``--thresh``), :class:`rcnn.inference.tracking.FaceTracker` links the
faces, and motmetrics scores the tracks against the ground truth (a track box matches a truth
box at IoU >= 0.5). ``--truth-detections`` replaces the detector by the ground-truth boxes and
landmarks with pixel noise and dropped faces, to measure the tracker alone. Prints one line per
sequence and the overall figures.
"""
import argparse
import logging
import sys
import time
from pathlib import Path

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from rcnn.utils import cli  # noqa: E402

logger = logging.getLogger('measure_tracking')

#: IoU a hypothesis box needs with a truth box to count as the same face
MATCH_IOU = 0.5


def mot_accumulator(truth, hypotheses):
    """A motmetrics accumulator of one sequence.

    Args:
        truth: list of :class:`tools.sample_data.video.FrameTruth` (or objects with
            ``identities`` (K,) and ``boxes`` (K, 4) x1 y1 x2 y2), one per frame.
        hypotheses: list, per frame, of ``(track ids (M,), boxes (M, 4) x1 y1 x2 y2)``.
    Returns:
        ``motmetrics.MOTAccumulator``.
    """
    import motmetrics as mm
    if len(truth) != len(hypotheses):
        raise ValueError('%d truth frames but %d hypothesis frames' % (len(truth),
                                                                      len(hypotheses)))
    acc = mm.MOTAccumulator(auto_id=True)
    for frame_truth, (track_ids, boxes) in zip(truth, hypotheses):
        gt = _xywh(frame_truth.boxes)
        hyp = _xywh(boxes)
        distances = mm.distances.iou_matrix(gt, hyp, max_iou=1.0 - MATCH_IOU)
        acc.update(list(np.asarray(frame_truth.identities).tolist()),
                   list(np.asarray(track_ids).tolist()), distances)
    return acc


def _xywh(boxes):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def mot_summary(accumulators, names):
    """``{name: {'mota', 'idf1', 'id_switches', 'recall', 'precision', 'num_frames'}}`` plus an
    ``'OVERALL'`` entry (recall and precision of the tracked boxes, ids aside)."""
    import motmetrics as mm
    metrics = ['mota', 'idf1', 'num_switches', 'recall', 'precision', 'num_frames']
    host = mm.metrics.create()
    frame = host.compute_many(accumulators, metrics=metrics, names=names,
                              generate_overall=True)
    return {str(name): {'mota': float(row['mota']), 'idf1': float(row['idf1']),
                        'id_switches': int(row['num_switches']),
                        'recall': float(row['recall']), 'precision': float(row['precision']),
                        'num_frames': int(row['num_frames'])}
            for name, row in frame.iterrows()}


def truth_detections(frame_truth, rng, noise=1.5, drop=0.05):
    """Detections made from the truth: boxes and landmarks with Gaussian pixel noise
    (``noise`` px), each face dropped with probability ``drop``.

    Returns:
        faces (N, 5) float32 (score 0.99), landmarks (N, 5, 2) float32.
    """
    keep = rng.random(len(frame_truth.identities)) >= drop
    boxes = frame_truth.boxes[keep] + rng.normal(0, noise, (int(keep.sum()), 4))
    points = frame_truth.landmarks[keep] + rng.normal(0, noise, (int(keep.sum()), 5, 2))
    faces = np.concatenate([boxes, np.full((len(boxes), 1), 0.99)], axis=1)
    return faces.astype(np.float32), points.astype(np.float32)


def track_sequence(sequence, detect, tracker):
    """Run ``detect(frame_index, image) -> (faces, landmarks)`` and ``tracker`` over a
    sequence.

    Returns:
        hypotheses (per frame ``(track ids, boxes)``), detection seconds, tracking seconds.
    """
    hypotheses = []
    detect_seconds = track_seconds = 0.0
    for t, image in enumerate(sequence.frames):
        tic = time.perf_counter()
        faces, landmarks = detect(t, image)
        toc = time.perf_counter()
        tracked = tracker.update(faces, landmarks, image=image, frame=t)
        track_seconds += time.perf_counter() - toc
        detect_seconds += toc - tic
        hypotheses.append((np.array([f.track_id for f in tracked], np.int64),
                           np.array([f.box for f in tracked], np.float64).reshape(-1, 4)))
    return hypotheses, detect_seconds, track_seconds


def build_parser():
    from tools.sample_data.video import NUM_FRAMES, SEQUENCE_KINDS
    parser = cli.ArgumentParser(prog='measure_tracking.py', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--prefix', default=None,
                        help='detector checkpoint prefix (required unless --truth-detections)')
    parser.add_argument('--epoch', type=cli.non_negative_int, default=0,
                        help='checkpoint epoch (default %(default)s)')
    parser.add_argument('--gpu', type=int, default=-1,
                        help='GPU id, -1 for the CPU (default %(default)s)')
    parser.add_argument('--thresh', type=float, default=0.5,
                        help='minimum face score (default %(default)s)')
    parser.add_argument('--kinds', nargs='+', choices=SEQUENCE_KINDS, default=list(SEQUENCE_KINDS),
                        help='sequence kinds (default: all)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0],
                        help='sequence seeds (default 0)')
    parser.add_argument('--frames', type=cli.positive_int, default=NUM_FRAMES,
                        help='frames per sequence (default %(default)s)')
    parser.add_argument('--truth-detections', action='store_true',
                        help='track noisy ground-truth detections instead of running a detector')
    return parser


def main(argv=None):
    from rcnn.inference.tracking import FaceTracker
    from tools.sample_data.video import make_sequence
    args = build_parser().parse_args(argv)
    # WARNING: motmetrics logs its timing through the root logger at INFO
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    if args.prefix is None and not args.truth_detections:
        print('measure_tracking.py: --prefix is required (or pass --truth-detections)',
              file=sys.stderr)
        return 2
    detector = None
    if not args.truth_detections:
        from retinaface import RetinaFace
        detector = RetinaFace(args.prefix, args.epoch, ctx_id=args.gpu)
    accumulators, names = [], []
    frames = detect_seconds = track_seconds = 0.0
    for seed in args.seeds:
        for kind in args.kinds:
            sequence = make_sequence(kind, seed=seed, num_frames=args.frames)
            if detector is None:
                rng = np.random.default_rng(seed)
                def detect(t, image, truth=sequence.truth, rng=rng):
                    return truth_detections(truth[t], rng)
            else:
                def detect(t, image):
                    return detector.detect(image, threshold=args.thresh)
            hypotheses, det_s, trk_s = track_sequence(sequence, detect, FaceTracker())
            accumulators.append(mot_accumulator(sequence.truth, hypotheses))
            names.append(sequence.name)
            frames += len(sequence.frames)
            detect_seconds += det_s
            track_seconds += trk_s
    summary = mot_summary(accumulators, names)
    for name in names + ['OVERALL']:
        row = summary[name]
        print('%-12s MOTA %6.3f  IDF1 %6.3f  ID switches %3d  recall %5.3f  precision %5.3f  '
              '(%d frames)' % (name, row['mota'], row['idf1'], row['id_switches'],
                               row['recall'], row['precision'], row['num_frames']))
    total = detect_seconds + track_seconds
    print('%d frames: %.1f frames/s detection + tracking, tracking alone %.2f ms/frame'
          % (frames, frames / total if total else 0.0, 1000.0 * track_seconds / max(frames, 1)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
