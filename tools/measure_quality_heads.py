"""Train an mnet with the blur and visibility heads on a generated sample set and measure them
on its val split.

    python tools/measure_quality_heads.py --prefix model/quality/mnet \\
        --pretrained ../shared/models/mnet.25/mnet.25 --iters 240 --lr 0.02 --thresh 0.3 \\
        --train-images 160 --val-images 40 --set 'SCALES=[(256, 256)]' TRAIN.BATCH_IMAGES=8 \\
        TRAIN.BLUR_WEIGHT=1.0 TRAIN.VISIBILITY_WEIGHT=1.0

Steps: the sample set (:func:`tools.sample_data.make_sample_dataset` with half of the faces
blurred on their own at known levels and half occluded, ``--face-blur`` / ``--occlusion``;
reused when ``--data`` already holds one drawn so); ``train.py --network mnet --set
USE_BLUR=True USE_OCCLUSION=True`` for ``--iters`` iterations or ``--max-minutes``, from
scratch or from ``--pretrained`` (a checkpoint without the heads, e.g. the released mnet.25,
its box and landmark output convolutions widened by :func:`widened_init`); ``--set`` adds
config overrides; ``--skip-train`` measures the checkpoint already at ``--prefix``, the final
one or ``--epoch N``; then
on every val image the detector's faces (``--thresh``) are matched to the generator's exact
labels of that image (greedy by score, IoU >= 0.5; the val label file has boxes only, so the
labels are drawn again from the same seed), and over the matched faces that have landmarks:

* blur: Spearman rank correlation between the predicted blur (faces column 5) and the label
  blur (higher = blurrier);
* visibility: ROC AUC of the predicted visibility (landmarks [..., 2]) against the label flags
  (positive = visible), over all 5 points of every matched face.

Prints both with the number of faces and points, writes them to
``<prefix>-<epoch>-quality-heads.json``
and, with ``--min-spearman`` / ``--min-auc``, exits 1 when a figure is below its bound.
"""
import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from rcnn.model_layout import (BLUR_BOX_LEN, BOX_LEN, LANDMARK_LEN,  # noqa: E402
                               OCCLUSION_LANDMARK_LEN)

logger = logging.getLogger('measure_quality_heads')

MATCH_IOU = 0.5
#: share of faces blurred on their own in the generated set: half, so that blur labels spread
#: over 0.2..0.9 instead of tying at 0.2 (the standard set blurs a fifth of the scenes as a
#: whole, mostly within 0.2..0.3 of the label rule)
FACE_BLUR = 0.5
#: share of faces with an occluder: half (the standard set's 0.15 leaves about 3% of the
#: points occluded, too few to train and measure the visibility head on a small set)
OCCLUSION = 0.5
#: config switches of the model measured here
HEAD_SWITCHES = ('USE_BLUR=True', 'USE_OCCLUSION=True')


# ------------------------------------------------------------------ measurement functions

def average_ranks(values):
    """(N,) float64 ranks 1..N of ``values``, ties getting the mean of their ranks."""
    values = np.asarray(values, np.float64).ravel()
    order = np.argsort(values, kind='mergesort')
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman_rank_correlation(predicted, truth):
    """Spearman's rho: the Pearson correlation of the average ranks; NaN when either side is
    constant or fewer than 2 values.

    Args: (N,) each.
    """
    predicted, truth = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    if predicted.shape != truth.shape:
        raise ValueError('predicted %s and truth %s differ in shape'
                         % (predicted.shape, truth.shape))
    if len(predicted) < 2:
        return float('nan')
    a, b = average_ranks(predicted), average_ranks(truth)
    a -= a.mean()
    b -= b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float('nan')


def roc_auc(scores, labels):
    """Area under the ROC curve: the probability that a positive scores above a negative
    (ties count one half; the Mann-Whitney U statistic over ``n_pos * n_neg``). NaN without
    both classes.

    Args:
        scores: (N,) float; labels: (N,) bool or 0/1, 1 = positive.
    """
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError('scores %s and labels %s differ in shape' % (scores.shape,
                                                                     labels.shape))
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        return float('nan')
    ranks = average_ranks(scores)
    u = ranks[labels].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def box_iou(a, b):
    """(N, K) IoU of boxes ``a`` (N, 4) and ``b`` (K, 4), x1 y1 x2 y2 (continuous)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_faces(detected_boxes, scores, truth_boxes, min_iou=MATCH_IOU):
    """Greedy one-to-one matching, best score first.

    Returns:
        (M, 2) int64 rows ``(detection index, truth index)``.
    """
    iou = box_iou(detected_boxes, truth_boxes)
    pairs, used = [], set()
    for d in np.argsort(-np.asarray(scores, np.float64), kind='mergesort'):
        if not iou.shape[1]:
            break
        candidates = [(iou[d, t], t) for t in range(iou.shape[1]) if t not in used]
        if candidates:
            best, t = max(candidates)
            if best >= min_iou:
                pairs.append((int(d), int(t)))
                used.add(t)
    return np.array(pairs, np.int64).reshape(-1, 2)


def head_pairs(faces, landmarks, truth_boxes, truth_landmarks, truth_blur, min_iou=MATCH_IOU):
    """Predicted and true blur / visibility of the matched faces of one image.

    Args:
        faces: (N, 6) detections x1 y1 x2 y2 score blur; landmarks: (N, 5, 3) x y visibility.
        truth_boxes: (K, 4) x1 y1 x2 y2; truth_landmarks: (K, 5, 3) x y flag (0 visible,
            1 occluded, all -1 without landmarks); truth_blur: (K,) (-1 without landmarks).
    Returns:
        dict of arrays: ``blur_pred``, ``blur_true`` (M,), ``vis_pred`` (M * 5,),
        ``vis_true`` (M * 5,) bool, over the matched faces that have landmarks.
    Raises:
        ValueError when there are detections without the blur or visibility column.
    """
    faces = np.asarray(faces, np.float64)
    landmarks = np.asarray(landmarks, np.float64)
    if not faces.size:
        empty = np.zeros(0)
        return {'blur_pred': empty, 'blur_true': empty, 'vis_pred': empty,
                'vis_true': np.zeros(0, bool)}
    if faces.ndim != 2 or faces.shape[1] < 6 or landmarks.ndim != 3 or landmarks.shape[2] < 3:
        raise ValueError('the detections have no blur / visibility outputs (faces %s, '
                         'landmarks %s); train with --set USE_BLUR=True USE_OCCLUSION=True'
                         % (faces.shape, landmarks.shape))
    truth_landmarks = np.asarray(truth_landmarks, np.float64).reshape(-1, 5, 3)
    truth_blur = np.asarray(truth_blur, np.float64).reshape(-1)
    pairs = match_faces(faces[:, :4], faces[:, 4], truth_boxes, min_iou)
    if len(pairs):
        labelled = truth_blur[pairs[:, 1]] >= 0
        pairs = pairs[labelled]
    d, t = pairs[:, 0], pairs[:, 1]
    return {'blur_pred': faces[d, 5], 'blur_true': truth_blur[t],
            'vis_pred': landmarks[d, :, 2].ravel(),
            'vis_true': (truth_landmarks[t, :, 2] == 0.0).ravel()}


def summarise(pairs):
    """The figures over a list of :func:`head_pairs` results."""
    joined = {k: np.concatenate([p[k] for p in pairs]) if pairs else np.zeros(0)
              for k in ('blur_pred', 'blur_true', 'vis_pred', 'vis_true')}
    return {'faces': int(len(joined['blur_pred'])),
            'blur_spearman': spearman_rank_correlation(joined['blur_pred'], joined['blur_true']),
            'points': int(len(joined['vis_pred'])),
            'occluded_points': int((~joined['vis_true'].astype(bool)).sum()),
            'visibility_auc': roc_auc(joined['vis_pred'], joined['vis_true'])}


# ------------------------------------------------------------------ the run

def build_parser():
    from rcnn.utils import cli
    from tools.sample_data.dataset import add_drawing_arguments
    parser = cli.ArgumentParser(prog='measure_quality_heads.py', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', default='data/sample-blur',
                        help='sample set folder (generated when absent; default %(default)s)')
    parser.add_argument('--train-images', type=cli.positive_int, default=400,
                        help='train images when generating (default %(default)s)')
    parser.add_argument('--val-images', type=cli.positive_int, default=100,
                        help='val images when generating (default %(default)s)')
    parser.add_argument('--data-seed', type=cli.non_negative_int, default=0,
                        help='generator seed (default %(default)s)')
    add_drawing_arguments(parser, FACE_BLUR, OCCLUSION)       # when generating
    parser.add_argument('--prefix', default='model/quality/mnet',
                        help='checkpoint prefix to train into (default %(default)s)')
    parser.add_argument('--iters', type=cli.positive_int, default=2000,
                        help='training iterations (default %(default)s)')
    parser.add_argument('--max-minutes', type=cli.positive_float, default=None,
                        help='also stop training after this many minutes (train.py '
                             '--max_minutes)')
    parser.add_argument('--lr', type=cli.positive_float, default=None,
                        help="train.py's --lr (default: train.py's)")
    parser.add_argument('--seed', type=cli.non_negative_int, default=None,
                        help="train.py's --seed, of the initialisation and the loader; also "
                             "seeds the widened output rows (default: random, rows seed 0)")
    parser.add_argument('--pretrained', default=None, metavar='PREFIX',
                        help='start from this checkpoint without the heads (epoch '
                             '--pretrained-epoch), e.g. the released '
                             '../shared/models/mnet.25/mnet.25: its box and landmark outputs are '
                             'widened, the released values kept and only the blur and visibility '
                             'rows new')
    parser.add_argument('--pretrained-epoch', type=cli.non_negative_int, default=0,
                        help='epoch of --pretrained (default %(default)s)')
    parser.add_argument('--set', nargs='+', action='extend', default=[], metavar='KEY=VALUE',
                        dest='overrides',
                        help="more config overrides for train.py, e.g. 'SCALES=[(320, 320)]'")
    parser.add_argument('--epoch', type=cli.non_negative_int, default=None,
                        help='measure this checkpoint number instead of the final one (train.py '
                             'saves one per epoch)')
    parser.add_argument('--skip-train', action='store_true',
                        help='measure the last checkpoint at --prefix without training')
    parser.add_argument('--gpu', type=int, default=-1,
                        help='GPU for measuring, -1 for the CPU (default %(default)s; '
                             'training follows CUDA_VISIBLE_DEVICES as train.py does)')
    parser.add_argument('--thresh', type=float, default=0.5,
                        help='detection threshold of the measured faces (default %(default)s)')
    parser.add_argument('--min-spearman', type=float, default=None,
                        help='exit 1 when the blur rank correlation is below this')
    parser.add_argument('--min-auc', type=float, default=None,
                        help='exit 1 when the visibility AUC is below this')
    return parser


def _drawing(args):
    """The generator settings a sample set must have been drawn with for these arguments."""
    return {'seed': args.data_seed, 'val': args.val_images, 'face_blur': args.face_blur,
            'occlusion': args.occlusion}


def ensure_sample_set(args):
    from tools.sample_data import make_sample_dataset
    from tools.sample_data.dataset import read_marker
    made = read_marker(args.data)
    if made is not None:
        wanted = _drawing(args)
        differ = [key for key in wanted if made.get(key) != wanted[key]]
        if differ:
            raise ValueError('%s holds a sample set drawn with %s; pass %s or another --data'
                             % (args.data, ', '.join('%s %s' % (k, made.get(k)) for k in differ),
                                ' '.join('--%s %s' % (_FLAGS[k], made.get(k)) for k in differ)))
        return
    make_sample_dataset(args.data, n_train=args.train_images, n_val=args.val_images,
                        seed=args.data_seed, face_blur=args.face_blur, occlusion=args.occlusion)


#: the flag of each generator setting
_FLAGS = {'seed': 'data-seed', 'val': 'val-images', 'face_blur': 'face-blur',
          'occlusion': 'occlusion'}


#: standard deviation of the new channels' weights (the head convolutions' Normal(0.01))
NEW_CHANNEL_STD = 0.01


def widen_output(array, old_per_anchor, new_per_anchor, kept, rng):
    """One output convolution's weight (A * old, C, 1, 1) or bias (A * old,) widened to
    ``new_per_anchor`` values per anchor: value ``kept[k]`` of the new layout is value ``k`` of
    the old one (channels are anchor-major: anchor ``a``'s value ``k`` is row
    ``a * per_anchor + k``), the other rows are new: weights drawn from
    Normal(0, :data:`NEW_CHANNEL_STD`), biases 0.

    Args:
        array: numpy array; kept: (old_per_anchor,) indices into the new values.
    """
    rows = array.shape[0]
    if rows % old_per_anchor:
        raise ValueError('%d output rows are not a multiple of %d values per anchor'
                         % (rows, old_per_anchor))
    anchors = rows // old_per_anchor
    old = array.reshape((anchors, old_per_anchor) + array.shape[1:])
    if array.ndim == 1:
        new = np.zeros((anchors, new_per_anchor), array.dtype)
    else:
        new = rng.normal(0.0, NEW_CHANNEL_STD,
                         (anchors, new_per_anchor) + array.shape[1:]).astype(array.dtype)
    new[:, list(kept)] = old
    return new.reshape((anchors * new_per_anchor,) + array.shape[1:])


#: (name part, values per anchor without / with the head, new index of each old value): the
#: blur is the box's 5th value; each point's visibility follows its x and y
WIDENED_OUTPUTS = (('_bbox_pred_', BOX_LEN, BLUR_BOX_LEN, range(BOX_LEN)),
                   ('_landmark_pred_', LANDMARK_LEN, OCCLUSION_LANDMARK_LEN,
                    [3 * (k // 2) + k % 2 for k in range(LANDMARK_LEN)]))


def widened_init(source, epoch, prefix, seed=0):
    """Write ``<prefix>-init-0000.params``: checkpoint ``source`` (epoch ``epoch``, a model
    without the blur and visibility heads, e.g. the released mnet.25) with its box and landmark
    output convolutions widened to the heads' layout (:func:`widen_output`): the released box
    and landmark values start where they were, only the blur and visibility channels start
    fresh. Returns the new prefix."""
    import mxnet as mx
    from rcnn.checkpoint.files import params_path
    path = params_path(source, epoch)
    if not os.path.isfile(path):
        raise FileNotFoundError('--pretrained %s: %s not found' % (source, path))
    saved = mx.nd.load(path)
    rng = np.random.default_rng(seed)
    widened = 0
    for name in sorted(saved):
        array = saved[name]
        for part, old, new, kept in WIDENED_OUTPUTS:
            if part in name:
                try:
                    array = mx.nd.array(widen_output(array.asnumpy(), old, new, kept, rng),
                                        dtype=array.dtype)
                except ValueError as err:
                    raise ValueError('--pretrained %s: %s: %s' % (path, name, err))
                widened += 1
        saved[name] = array
    init_prefix = prefix + '-init'
    os.makedirs(os.path.dirname(os.path.abspath(init_prefix)), exist_ok=True)
    mx.nd.save(params_path(init_prefix, 0), saved)
    logger.info('pretrained %s: %d output convolution arrays widened for the blur and '
                'visibility heads, %d arrays as saved', path, widened, len(saved) - widened)
    return init_prefix


def train(args):
    command = [sys.executable, str(ROOT / 'train.py'), '--network', 'mnet', '--dataset_path',
               args.data, '--image_set', 'train', '--prefix', args.prefix,
               '--max_iters', str(args.iters)]
    if args.max_minutes is not None:
        command += ['--max_minutes', str(args.max_minutes)]
    if args.lr is not None:
        command += ['--lr', repr(args.lr)]
    if args.seed is not None:
        command += ['--seed', str(args.seed)]
    if args.pretrained:
        init = widened_init(args.pretrained, args.pretrained_epoch, args.prefix,
                            seed=args.seed or 0)
        command += ['--pretrained', init, '--pretrained_epoch', '0']
    command += ['--set'] + list(HEAD_SWITCHES) + list(args.overrides)
    logger.info('training: %s', ' '.join(command))
    subprocess.run(command, check=True)


def final_epoch(prefix):
    """The number of the checkpoint training ended with (``checkpoint`` of
    ``<prefix>-train-summary.json``)."""
    path = prefix + '-train-summary.json'
    try:
        with open(path) as f:
            summary = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError('%s not found: train first (without --skip-train)' % path)
    checkpoint = summary.get('checkpoint')
    if not isinstance(checkpoint, int) or isinstance(checkpoint, bool):
        raise ValueError('%s: no final checkpoint number ("checkpoint") in it' % path)
    return checkpoint


#: mean absolute pixel difference between a val JPEG and its scene drawn again above which the
#: file was not made by this generator (the quality-90 JPEG of a noisy scene differs by 3 to 6,
#: two different scenes by tens)
MAX_MEAN_DIFFERENCE = 15.0


def check_same_image(path, image, drawn):
    """Refuse a val image that is not the scene drawn again (a sample set written by another
    version of the generator, or another seed): its labels would not be this image's.

    Raises:
        ValueError naming the file.
    """
    if image.shape != drawn.shape or float(
            np.abs(image.astype(np.float32) - drawn.astype(np.float32)).mean()) \
            > MAX_MEAN_DIFFERENCE:
        raise ValueError('%s is not the image the generator draws for it now (another '
                         'generator version or seed): regenerate the sample set or pass '
                         'another --data' % path)


def measure(args, epoch):
    import cv2
    from retinaface import RetinaFace
    from tools.sample_data import image_name, image_rng, render_scene
    detector = RetinaFace(args.prefix, epoch, ctx_id=args.gpu)
    pairs = []
    for index in range(args.val_images):
        event, name = image_name('val', index)
        path = os.path.join(args.data, 'val', 'images', event, name + '.jpg')
        image = cv2.imread(path)
        if image is None:
            raise FileNotFoundError('val image %s not readable' % path)
        scene = render_scene(image_rng(args.data_seed, 'val', index),
                             face_blur=args.face_blur, occlusion=args.occlusion)
        check_same_image(path, image, scene.image)
        boxes = np.array([[f.box[0], f.box[1], f.box[0] + f.box[2], f.box[1] + f.box[3]]
                          for f in scene.faces], np.float64).reshape(-1, 4)
        truth_landmarks = np.array([f.landmarks for f in scene.faces]).reshape(-1, 5, 3)
        truth_blur = np.array([f.blur for f in scene.faces], np.float64)
        faces, landmarks = detector.detect(image, threshold=args.thresh)
        pairs.append(head_pairs(faces, landmarks, boxes, truth_landmarks, truth_blur))
    return summarise(pairs)


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        ensure_sample_set(args)
        if not args.skip_train:
            train(args)
        epoch = final_epoch(args.prefix) if args.epoch is None else args.epoch
        figures = measure(args, epoch)
    except (FileNotFoundError, ValueError, subprocess.CalledProcessError) as err:
        print('measure_quality_heads.py: %s' % err, file=sys.stderr)
        return 2
    figures.update({'epoch': epoch, 'prefix': args.prefix, 'data': args.data})
    with open('%s-%04d-quality-heads.json' % (args.prefix, epoch), 'w') as f:
        json.dump(figures, f, indent=1)
        f.write('\n')
    print('blur: Spearman %.3f over %d faces; visibility: ROC AUC %.3f over %d points '
          '(%d occluded)' % (figures['blur_spearman'], figures['faces'],
                             figures['visibility_auc'], figures['points'],
                             figures['occluded_points']))
    failed = [(name, value, bound) for name, value, bound in (
        ('blur Spearman', figures['blur_spearman'], args.min_spearman),
        ('visibility AUC', figures['visibility_auc'], args.min_auc))
        if bound is not None and not value >= bound]
    for name, value, bound in failed:
        print('measure_quality_heads.py: %s %.3f is below %.3f' % (name, value, bound),
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
