"""Face tracking over video frames: stable track ids, smoothed landmarks and a best shot per track.

:class:`FaceTracker` feeds each frame's detections to norfair's tracker (a constant-velocity
Kalman filter per coordinate). A face is tracked as 7 points: its box corners (x1, y1), (x2, y2)
and its 5 landmarks, so one filter both predicts the box for matching and smooths the landmarks.
Detections are matched to tracks by ``1 - IoU`` between the detected box and the track's
predicted box, closest pair first (norfair's greedy matching), up to :data:`MAX_DISTANCE`
(IoU >= 0.3). A track is reported from its ``initialization_delay + 1``-th hit on and lives on
without detections while its hit counter (+2 per hit, -1 per frame, at most
``hit_counter_max``) stays positive; once lost it is remembered ``reid_frames`` more frames with
its box still predicted, and a new track starting where it is predicted takes over its id. So a
face hidden for a few frames (another face passing in front) keeps its id when it reappears
near where its motion predicted it.

Best shots: for every track the frame with the highest quality value
(:mod:`rcnn.inference.quality`) is kept as an aligned 112x112 crop (ArcFace template,
:mod:`rcnn.inference.align`) of the detected landmarks, with its frame number.
"""
import dataclasses

import numpy as np

__all__ = ['MAX_DISTANCE', 'TrackedFace', 'BestShot', 'FaceTracker', 'box_iou_distance',
           'write_best_shots']

#: largest ``1 - IoU`` between a detection and a track's predicted box that still matches
MAX_DISTANCE = 0.7
_BOX_POINTS = 2                   # the first two tracked points are the box corners


@dataclasses.dataclass
class TrackedFace:
    """One detected face of a frame with its track.

    ``box`` (4,) and ``landmarks`` (5, 2) float32 are the detection's; ``smoothed_box`` and
    ``smoothed_landmarks`` the track's filtered estimate; ``index`` the face's row in the
    frame's detections.
    """
    track_id: int
    index: int
    score: float
    quality: float
    box: np.ndarray
    landmarks: np.ndarray
    smoothed_box: np.ndarray
    smoothed_landmarks: np.ndarray


@dataclasses.dataclass
class BestShot:
    """The best frame of a track: ``crop`` (size, size, 3) uint8 BGR aligned face."""
    track_id: int
    frame: int
    quality: float
    box: np.ndarray
    landmarks: np.ndarray
    crop: np.ndarray


def box_iou_distance(candidates, objects):
    """``1 - IoU`` between box rows (norfair's vectorised distance signature).

    Args:
        candidates: (N, >=4) flattened tracked points, the first 4 values x1 y1 x2 y2.
        objects: (K, >=4) likewise.
    Returns:
        (N, K) float64 in [0, 1].
    """
    a = np.asarray(candidates, np.float64)[:, :4]
    b = np.asarray(objects, np.float64)[:, :4]
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return 1.0 - np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _track_distance(track, candidate):
    """``1 - IoU`` of two tracks' predicted boxes (norfair's re-identification signature)."""
    return float(box_iou_distance(track.estimate.reshape(1, -1),
                                  candidate.estimate.reshape(1, -1))[0, 0])


class FaceTracker(object):
    """Tracks faces from frame to frame.

    Args:
        max_distance: largest ``1 - IoU`` that matches a detection to a track.
        hit_counter_max: frames a track survives without a detection (see the module docstring).
        initialization_delay: hits before a track gets an id (0: from its first detection).
        reid_frames: frames a lost track is remembered (its box still predicted) so that a new
            track starting where it is predicted takes over its id; 0: never.
        measurement_noise, process_noise: the Kalman filter's R and Q multipliers (norfair's
            OptimizedKalmanFilterFactory): a larger R / smaller Q smooths landmarks more and
            follows fast motion later.
        best_shots: keep a best shot per track (needs the frame image in :meth:`update`).
        crop_size: side of the best-shot crops.
    """

    def __init__(self, max_distance=MAX_DISTANCE, hit_counter_max=15, initialization_delay=1,
                 reid_frames=20, measurement_noise=4.0, process_noise=0.1, best_shots=True,
                 crop_size=112):
        from norfair import Tracker
        from norfair.distances import VectorizedDistance
        from norfair.filter import OptimizedKalmanFilterFactory
        if not 0.0 < float(max_distance) <= 1.0:
            raise ValueError('max_distance must be a 1 - IoU in (0, 1], got %r' % (max_distance,))
        if int(hit_counter_max) < 1 or not 0 <= int(initialization_delay) < int(hit_counter_max):
            raise ValueError('need hit_counter_max >= 1 and 0 <= initialization_delay < '
                             'hit_counter_max, got %r and %r'
                             % (hit_counter_max, initialization_delay))
        self._tracker = Tracker(
            distance_function='iou', distance_threshold=float(max_distance),
            hit_counter_max=int(hit_counter_max), initialization_delay=int(initialization_delay),
            filter_factory=OptimizedKalmanFilterFactory(R=float(measurement_noise),
                                                        Q=float(process_noise)),
            reid_distance_function=_track_distance, reid_distance_threshold=float(max_distance),
            reid_hit_counter_max=int(reid_frames) if reid_frames else None)
        # norfair's constructor takes a distance by name or a per-pair Python callable; its
        # own 'iou' reads (N, 4) rows, ours the first 4 of the 14 flattened values (box
        # corners then landmarks), vectorised over all pairs
        self._tracker.distance_function = VectorizedDistance(box_iou_distance)
        self.keep_best_shots = bool(best_shots)
        self.crop_size = int(crop_size)
        self.best_shots = {}
        self.frames_seen = 0

    def update(self, faces, landmarks, qualities=None, image=None, frame=None, period=1):
        """Match one frame's detections to the tracks.

        Args:
            faces: (N, >=5) float32 x1 y1 x2 y2 score [...] as ``RetinaFace.detect`` returns.
            landmarks: (N, 5, >=2) float32.
            qualities: N quality records (:class:`rcnn.inference.quality.FaceQuality`) or
                None (computed here when best shots are kept).
            image: the frame, (H, W, 3) uint8 BGR; needed for best shots.
            frame: the frame number (default: the count of updates so far).
            period: frames since the previous update (``--every``).
        Returns:
            list of :class:`TrackedFace`, one per detection that belongs to an
            initialised track, in detection order.
        """
        from norfair import Detection
        faces = np.asarray(faces, np.float32)
        faces = faces.reshape(0, 5) if faces.size == 0 else faces
        points = np.asarray(landmarks, np.float32)
        if faces.ndim != 2 or faces.shape[1] < 5:
            raise ValueError('faces must be (N, >=5) x1 y1 x2 y2 score, got %s' % (faces.shape,))
        if points.size == 0 and not len(faces):
            points = points.reshape(0, 5, 2)
        if points.ndim != 3 or points.shape[:2] != (len(faces), 5) or points.shape[2] < 2:
            raise ValueError('landmarks must be (%d, 5, >=2) for %d faces, got %s'
                             % (len(faces), len(faces), points.shape))
        points = points[..., :2]
        frame = self.frames_seen if frame is None else int(frame)
        self.frames_seen += 1
        if qualities is None and self.keep_best_shots and len(faces):
            from rcnn.inference.quality import face_qualities
            qualities = face_qualities(faces, landmarks)
        detections = [Detection(points=np.concatenate([faces[i, :4].reshape(2, 2), points[i]]),
                                data={'index': i})
                      for i in range(len(faces))]
        active = self._tracker.update(detections=detections, period=int(period))
        for obj in self._tracker.tracked_objects:
            # norfair starts a track's re-identification countdown the first time its hit
            # counter reaches 0 and never stops it, so a track that was lost for a moment and
            # found again would be deleted later while still matched; a hit ends the countdown
            if obj.hit_counter > 0 and self._hit_now(obj, detections):
                obj.reid_hit_counter = None
        tracked = []
        for obj in active:
            # norfair also returns tracks coasting without a detection in this frame
            if self._hit_now(obj, detections):
                tracked.append(self._tracked_face(obj, obj.last_detection.data['index'], faces,
                                                  points, qualities))
        tracked.sort(key=lambda t: t.index)
        if self.keep_best_shots and image is not None:
            self._update_best_shots(tracked, image, frame)
        return tracked

    @staticmethod
    def _hit_now(obj, detections):
        """Whether norfair track ``obj`` was matched to one of this frame's ``detections``."""
        index = obj.last_detection.data['index']
        return index < len(detections) and obj.last_detection is detections[index]

    def _tracked_face(self, obj, index, faces, points, qualities):
        estimate = np.asarray(obj.estimate, np.float32)
        quality = float(qualities[index].quality) if qualities is not None else float('nan')
        return TrackedFace(track_id=int(obj.id), index=int(index), score=float(faces[index, 4]),
                           quality=quality, box=faces[index, :4].copy(),
                           landmarks=points[index].copy(),
                           smoothed_box=estimate[:_BOX_POINTS].reshape(4),
                           smoothed_landmarks=estimate[_BOX_POINTS:].copy())

    def _update_best_shots(self, tracked, image, frame):
        from rcnn.inference.align import align_faces
        for face in tracked:
            best = self.best_shots.get(face.track_id)
            if best is not None and not face.quality > best.quality:
                continue
            crop = align_faces(image, face.landmarks, size=self.crop_size)[0]
            self.best_shots[face.track_id] = BestShot(
                track_id=face.track_id, frame=frame, quality=face.quality, box=face.box,
                landmarks=face.landmarks, crop=crop)


def write_best_shots(best_shots, folder, stem):
    """Write every best shot as ``folder/<stem>_track<id>_f<frame>.png`` and list them in
    ``folder/<stem>_best_shots.json``.

    Args:
        best_shots: ``{track id: BestShot}`` (:attr:`FaceTracker.best_shots`).
    Returns:
        the list of records written, ``{'track', 'frame', 'quality', 'box', 'crop'}`` by track.
    Raises:
        OSError when a file cannot be written.
    """
    import json
    import os

    import cv2
    os.makedirs(folder, exist_ok=True)
    records = []
    for track_id in sorted(best_shots):
        shot = best_shots[track_id]
        path = os.path.join(folder, '%s_track%d_f%06d.png' % (stem, track_id, shot.frame))
        if not cv2.imwrite(path, shot.crop):
            raise OSError('cannot write best shot %s' % path)
        records.append({'track': int(track_id), 'frame': int(shot.frame),
                        'quality': round(float(shot.quality), 4),
                        'box': [round(float(v), 2) for v in shot.box], 'crop': path})
    with open(os.path.join(folder, '%s_best_shots.json' % stem), 'w') as f:
        json.dump(records, f, indent=1)
        f.write('\n')
    return records
