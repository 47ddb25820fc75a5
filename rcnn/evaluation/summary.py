"""One evaluation of a prediction folder: the protocol, AP Easy / Medium / Hard, AP by face
size and the landmark NME, as a text report, a JSON-ready dict and a CSV row.

``evaluate_widerface.py`` and ``tools/protocol_report.py`` both go through
:func:`evaluate_folder`, so their figures are the same numbers.
"""
import csv
import io
import json
import logging
import math
import time
from dataclasses import dataclass

from rcnn.evaluation.landmarks import NME_MIN_SCORE, NME_THRESHOLD, evaluate_landmarks
from rcnn.evaluation.provenance import folder_protocol
from rcnn.evaluation.size_bands import BAND_SETTING, SIZE_BANDS, evaluate_size_bands
from rcnn.evaluation.widerface import SETTINGS, evaluate_predictions, match_set, read_predictions
from rcnn.utils.fileio import atomic_write_text

__all__ = ['FolderEvaluation', 'evaluate_folder', 'SUMMARY_COLUMNS', 'band_column',
           'summary_row', 'format_summary_csv', 'write_summary_csv', 'write_summary_json',
           'format_value']

logger = logging.getLogger(__name__)


def band_column(band):
    """CSV column of a size band's AP: ``'<16'`` -> ``'ap_lt16'``, ``'>=128'`` -> ``'ap_ge128'``."""
    return 'ap_' + band.replace('>=', 'ge').replace('<', 'lt').replace('-', '_')


#: the columns of one evaluation in CSV / Markdown tables, in order
SUMMARY_COLUMNS = (['protocol'] + ['ap_%s' % s for s in SETTINGS] +
                   [band_column(b) for b in SIZE_BANDS] +
                   ['nme', 'nme_auc', 'nme_failure_rate', 'nme_matched', 'nme_faces',
                    'images', 'predictions'])


@dataclass
class FolderEvaluation:
    """Everything :func:`evaluate_folder` measured on one prediction folder.

    Attributes:
        pred_dir: the folder.
        protocol: :class:`rcnn.evaluation.provenance.FolderProtocol`.
        settings: setting -> :class:`rcnn.evaluation.widerface.SettingResult`.
        bands: size band -> SettingResult (:mod:`rcnn.evaluation.size_bands`).
        landmarks: :class:`rcnn.evaluation.landmarks.LandmarkResult`, or None (no landmark
            ground truth, or no landmarks in the predictions).
        landmark_note: why ``landmarks`` is None ('' otherwise).
        num_images, num_predictions: of the evaluated set.
        seconds: evaluation time.
        iou: the match threshold.
    """
    pred_dir: str
    protocol: object
    settings: dict
    bands: dict
    landmarks: object = None
    landmark_note: str = ''
    num_images: int = 0
    num_predictions: int = 0
    seconds: float = 0.0
    iou: float = 0.5

    def summary(self):
        """Flat JSON-ready dict with the :data:`SUMMARY_COLUMNS` (NaN -> None) and details."""
        data = {'pred': self.pred_dir, 'protocol': self.protocol.name,
                'protocol_source': self.protocol.source, 'iou': self.iou,
                'images': self.num_images, 'predictions': self.num_predictions}
        for setting in SETTINGS:
            data['ap_%s' % setting] = self.settings[setting].ap
            data['faces_%s' % setting] = self.settings[setting].num_faces
        for band, result in self.bands.items():
            data[band_column(band)] = result.ap
            data['faces_' + band_column(band)[3:]] = result.num_faces
        data['size_bands'] = {band: list(limits) for band, limits in SIZE_BANDS.items()}
        data['size_measure'] = 'sqrt(w*h) of the box, px; faces of the %s setting' % BAND_SETTING
        if self.landmarks is not None:
            data.update(self.landmarks.summary())
        else:
            data.update({'nme': None, 'nme_auc': None, 'nme_failure_rate': None,
                         'nme_matched': None, 'nme_faces': None,
                         'nme_note': self.landmark_note})
        return {k: _json_number(v) for k, v in data.items()}

    def report_lines(self, name=None):
        """The text report (the Easy / Medium / Hard lines keep the reference tool's form)."""
        title = ('Results (IoU %g)' % self.iou if name is None
                 else '%s: results (IoU %g)' % (name, self.iou))
        lines = ['%s %s %s' % ('=' * 20, title, '=' * max(1, 36 - len(title))),
                 'Protocol: %s [%s]' % (self.protocol.description, self.protocol.source)]
        for setting in SETTINGS:
            result = self.settings[setting]
            lines.append('%-6s Val AP: %.4f  (%d faces)' % (setting.capitalize(), result.ap,
                                                              result.num_faces))
        lines.append('AP by face size (sqrt(w*h) px, %s-setting faces):' % BAND_SETTING)
        lines.append('  ' + '  '.join('%s %s (%d)' % (band, format_value(r.ap), r.num_faces)
                                      for band, r in self.bands.items()))
        if self.landmarks is not None:
            lm = self.landmarks
            lines.append('Landmark NME (/ sqrt(w*h) of the gt box, score >= %g): %s on %d of %d '
                         'faces; AUC@%g %s, failure rate@%g %s'
                         % (lm.min_score, format_value(lm.mean_nme), lm.matched, lm.faces,
                            lm.threshold, format_value(lm.auc, 3), lm.threshold,
                            format_value(lm.failure_rate, 3)))
        elif self.landmark_note:
            lines.append('Landmark NME: not computed (%s)' % self.landmark_note)
        lines.append('%d images, %d predictions, evaluated in %.2f s'
                     % (self.num_images, self.num_predictions, self.seconds))
        lines.append('=' * 58)
        return lines


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_value(value, digits=4):
    """``'%.4f'`` of a number, ``'-'`` for None / NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '-'
    if isinstance(value, int):
        return '%d' % value
    return '%.*f' % (digits, value)


def evaluate_folder(pred_dir, gt, landmark_truth=None, iou_thresh=0.5, strict=False,
                    nme_min_score=NME_MIN_SCORE, nme_threshold=NME_THRESHOLD, progress=False,
                    landmark_note=''):
    """Evaluate one prediction folder.

    Args:
        pred_dir: folder of ``<event>/<image>.txt`` files.
        gt: :class:`rcnn.evaluation.widerface.WiderGroundTruth` of the AP.
        landmark_truth: :class:`rcnn.evaluation.landmarks.LandmarkGroundTruth` or None.
        landmark_note: reported when ``landmark_truth`` is None (why there is none).
    Returns:
        :class:`FolderEvaluation`.
    """
    start = time.perf_counter()
    protocol = folder_protocol(pred_dir)
    predictions, points = read_predictions(pred_dir, gt, strict=strict, progress=progress,
                                           with_landmarks=True)
    matches = match_set(predictions, gt, iou_thresh, progress=progress)
    settings = evaluate_predictions(predictions, gt, matches=matches)
    bands = evaluate_size_bands(predictions, gt, matches=matches)
    landmarks, note = None, landmark_note
    if landmark_truth is not None:
        landmarks, note = _landmark_result(pred_dir, gt, predictions, points, landmark_truth,
                                           iou_thresh, nme_min_score, nme_threshold)
    return FolderEvaluation(pred_dir=pred_dir, protocol=protocol, settings=settings,
                            bands=bands, landmarks=landmarks, landmark_note=note,
                            num_images=gt.num_images,
                            num_predictions=sum(len(p) for p in predictions),
                            seconds=time.perf_counter() - start, iou=iou_thresh)


def _landmark_result(pred_dir, gt, predictions, points, truth, iou_thresh, min_score,
                     threshold):
    """(LandmarkResult or None, note). The files already read for the AP are reused when the
    landmark ground truth lists the same images."""
    read = {key: i for i, key in enumerate(zip(gt.events, gt.names))}
    keys = list(zip(truth.boxes.events, truth.boxes.names))
    if all(key in read for key in keys):
        boxes = [predictions[read[key]] for key in keys]
        landmark_points = [points[read[key]] for key in keys]
    else:
        boxes, landmark_points = read_predictions(pred_dir, truth.boxes, with_landmarks=True)
    result = evaluate_landmarks(boxes, landmark_points, truth, iou_thresh=iou_thresh,
                                min_score=min_score, threshold=threshold)
    if result is None:
        return None, 'the prediction files carry no landmarks'
    return result, ''


def summary_row(summary, columns=SUMMARY_COLUMNS):
    """Values of ``columns`` from a :meth:`FolderEvaluation.summary` dict (and extra keys)."""
    return [summary.get(column) for column in columns]


def format_summary_csv(rows, columns):
    """CSV text: a header of ``columns``, then each row (None -> empty, floats ``%.6g``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(columns)
    for row in rows:
        writer.writerow(['' if v is None else ('%.6g' % v if isinstance(v, float) else v)
                         for v in row])
    return out.getvalue()


def write_summary_csv(path, summaries, columns):
    """Write one CSV row per summary dict (atomically)."""
    atomic_write_text(path, format_summary_csv([summary_row(s, columns) for s in summaries],
                                               columns))


def write_summary_json(path, summaries):
    """Write the summary dicts as a JSON list (atomically)."""
    atomic_write_text(path, json.dumps(summaries, indent=1, sort_keys=True) + '\n')
