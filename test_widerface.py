"""Run a RetinaFace checkpoint over a WIDER FACE split and write the submission files.

Example (the released MobileNet-0.25 on the CPU, fast mode, then the evaluation)::

    python test_widerface.py --prefix ../shared/models/mnet.25/mnet.25 --epoch 0 --gpu -1 \\
        --dataset-path ./data/retinaface --image-set val --mode 0 --output ./wout
    python evaluate_widerface.py --pred ./wout --gt <folder with the wider_*_val.mat files>

Protocols (``--protocol``; each fixes the scales, flips, NMS or box voting, the NMS IoU and
the score threshold; see rcnn/evaluation/protocols.py and docs/detection.md):
  vga          one pass, the image fitted inside a 640x480 canvas; NMS.
  original     one pass at scale 1; NMS.
  single       one pass, short side 1600 px, long side at most 2150 px; NMS (--mode 0).
  pyramid      short sides [500, 800, 1100, 1400, 1700] relative to a base scale (short side
               800, long side at most 1200), each also flipped; box voting (--mode 1, the
               default: the original's mode and the paper's figures).
  pyramid-nms  the pyramid and flips, with NMS instead of box voting (--mode 2).
``--mode 0/1/2`` are the original's names for single / pyramid / pyramid-nms.

Output: ``<output>/<event>/<image>.txt``, line 1 ``event/image.jpg``, line 2 the number of
boxes, then ``x y w h score`` per box (``%d %d %d %d %g``, w = x2 - x1); with ``--landmarks``
each line also has the 5 landmarks' x y (10 ``%.1f`` columns: left eye, right eye, nose, left
and right mouth corner). Files are written atomically. ``<output>/manifest.json`` records what
produces the files (checkpoint prefix, epoch, sha1 of its params and symbol files, network,
the protocol and its settings, threshold, nocrop, backend, landmarks, data set). A rerun into
the same --output resumes (an existing readable file is kept and its image skipped) only when
the manifest matches; otherwise it stops and names the differing settings. ``--overwrite``
recomputes this run's images; in a folder of another run (other checkpoint, protocol, images)
it first removes every prediction file there, so the folder holds this run's files only.
``--part K --parts N`` processes images K, K+N, K+2N, ... of the label file (run N processes
in parallel into one --output); ``--max-images K`` only its first K images (train.py's
validation during training runs this same code). On a split whose labels have boxes (val)
the recall at IoU >= 0.5 is logged, as the original did.

An image that is missing, empty, truncated or not decodable is skipped with a warning naming
it (no prediction file is written, so the evaluator counts it as having no detections), the
other images are written and the exit status is 1. Errors (output folder not writable, a
file where the folder should be, a manifest mismatch, a bad label file, an image worker
process that died) are one line on stderr with exit status 2; ``--debug`` shows the
traceback. Ctrl-C stops the run (and its image workers) with exit status 130; the files
written so far are kept and a rerun resumes.

Speed (see README, Performance): images are detected by ``--image-workers`` processes at
once, each with its own detector and ``--threads`` CPU threads (default ``auto``: on the CPU
one process per core, at most 4, with cores / workers threads each; 1 on a GPU); the files
are the same as with one process. ``--backend onnxruntime`` runs the exported graph (needs
the extras of requirements-deploy.txt; boxes agree with MXNet to ~1e-4 px). In the pyramid
protocols ``--flip-batch on`` runs each scale's unflipped and flipped inputs in one forward
pass (a batch of 2; the default ``auto`` does so on a GPU only: on the CPU the batch of 2
measured slower than two passes), and ``--scale-workers K`` runs K scales at once where the backend
allows it (onnxruntime). ``--engine naive`` (the default on the CPU) runs MXNet's operators in
the calling thread. ``--serial`` runs one forward per scale and flip, as ``detect()``. A given
backend writes the same files with every schedule.
"""
import argparse
import logging
import os
import sys

# MXNet's start-up notes ("Subgraph backend MKLDNN is activated") would break the progress bar
os.environ.setdefault('MXNET_SUBGRAPH_VERBOSE', '0')

from rcnn.evaluation.protocols import DEFAULT_PROTOCOL, MODE_PROTOCOLS, PROTOCOLS  # noqa: E402
from rcnn.evaluation.wider_test import (DATASETS, WiderTestOptions, format_summary,  # noqa: E402
                                        protocol_of_mode, run_wider_test)
from rcnn.inference import BACKENDS  # noqa: E402
from rcnn.inference.image_workers import MAX_AUTO_WORKERS, ImageWorkerError  # noqa: E402
from rcnn.utils import cli  # noqa: E402
from rcnn.utils.run_manifest import ManifestMismatch  # noqa: E402

logger = logging.getLogger('test_widerface')


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and every flag's default: appended as ``(default:
    X)`` unless the help already says it (a default of None is explained in words) or the
    flag is a switch (off unless given)."""

    def _get_help_string(self, action):
        text = action.help or ''
        if ('default' in text or action.required or action.default is None
                or action.default is False
                or action.default is argparse.SUPPRESS or not action.option_strings):
            return text
        return text + ' (default: %(default)s)'


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument('--network', default='net3',
                        help='the original detector\'s layout name (net3 ... x5) for a '
                             'checkpoint without a recipe file')
    parser.add_argument('--dataset', default='retinaface', choices=sorted(DATASETS),
                        help='dataset reader (the RetinaFace label.txt format)')
    parser.add_argument('--image-set', default='val',
                        help='sub-folder of --dataset-path to test: val, test, ...')
    parser.add_argument('--root-path', default='./data',
                        help='the label cache goes to <root-path>/cache')
    parser.add_argument('--dataset-path', default='./data/retinaface',
                        help='folder holding <image-set>/label.txt and <image-set>/images/')
    parser.add_argument('--gpu', type=int, default=0,
                        help='GPU id, or -1 for the CPU (a CPU-only MXNet build needs -1)')
    parser.add_argument('--prefix', required=True,
                        help='checkpoint prefix: <prefix>-symbol.json, <prefix>-%%04d.params')
    parser.add_argument('--epoch', type=int, default=0, help='checkpoint epoch')
    parser.add_argument('--output', default='./wout',
                        help='folder for the <event>/<image>.txt prediction files')
    parser.add_argument('--nocrop', action='store_true',
                        help='zero-pad every network input up to a multiple of 32')
    parser.add_argument('--protocol', default=None, choices=list(PROTOCOLS),
                        help='test protocol (scales, flips, NMS or voting, threshold); '
                             'default: the one of --mode, else %s' % DEFAULT_PROTOCOL)
    parser.add_argument('--mode', type=int, default=None, choices=sorted(MODE_PROTOCOLS),
                        help='the original\'s name of a protocol: ' + '; '.join(
                            '%d %s' % kv for kv in sorted(MODE_PROTOCOLS.items()))
                        + ' (default: 1, unless --protocol is given)')
    parser.add_argument('--thresh', type=float, default=None,
                        help='minimum face score written; default: the protocol\'s (%g for '
                             'every protocol: low, so the evaluation sees the whole '
                             'precision/recall curve)' % PROTOCOLS[DEFAULT_PROTOCOL].threshold)
    parser.add_argument('--landmarks', action='store_true',
                        help='also write the 5 landmarks of each face (10 columns after the '
                             'score; the standard evaluator reads 5 columns only)')
    parser.add_argument('--max-images', type=int, default=None, metavar='K',
                        help='only the first K images of the label file (a fixed subset, as '
                             'train.py --val_images validates on; default: all)')
    parser.add_argument('--part', type=int, default=0,
                        help='this process handles the images i with i %% parts == part')
    parser.add_argument('--parts', type=int, default=1, help='number of shards')
    parser.add_argument('--overwrite', action='store_true',
                        help='recompute images whose output file already exists; in a folder '
                             'of another run, first remove every prediction file there (its '
                             'manifest.json is replaced)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    speed = parser.add_argument_group(
        'speed (the files depend on the backend only: onnxruntime agrees with MXNet to ~1e-4 px)')
    speed.add_argument('--backend', default='mxnet', choices=sorted(BACKENDS),
                       help='network runtime: mxnet, or onnxruntime (CPU, --gpu -1; the '
                            'checkpoint is exported and cached once)')
    speed.add_argument('--image-workers', default='auto', type=_image_workers,
                       help='processes detecting images at once, each with its own detector and '
                            '--threads threads; auto: 1 on a GPU, on the CPU one per core (at '
                            'most %d, at most one per 2 GB of free memory)' % MAX_AUTO_WORKERS)
    speed.add_argument('--threads', type=int, default=None,
                       help='CPU threads of the backend in each image worker (MXNet: '
                            'OMP_NUM_THREADS, set before mxnet is imported; onnxruntime: '
                            'intra-op threads); default: cores / image workers')
    speed.add_argument('--engine', default='auto', choices=('auto', 'threaded', 'naive'),
                       help='MXNet backend: naive runs each operator in the calling thread '
                            '(faster CPU inference); auto: naive on the CPU unless '
                            'MXNET_ENGINE_TYPE is set, MXNet\'s default (threaded) on a GPU')
    speed.add_argument('--flip-batch', default='auto', choices=('auto', 'on', 'off'),
                       help='pyramid protocols: run the unflipped and flipped input of a scale '
                            'as one batch of 2; auto: on with --gpu >= 0, off on the CPU (where '
                            'it measured slower)')
    speed.add_argument('--scale-workers', type=int, default=1,
                       help='pyramid protocols: scales processed at once (only onnxruntime '
                            'runs forwards concurrently; mxnet ignores it)')
    speed.add_argument('--serial', action='store_true',
                       help='one forward per scale and flip, as detect() (the reference for '
                            'the speed-ups)')
    parser.add_argument('--debug', action='store_true',
                        help='show the traceback of an error instead of one line')
    args = parser.parse_args(argv)
    if args.mode is not None:
        named = protocol_of_mode(args.mode)
        if args.protocol is not None and args.protocol != named:
            parser.error('--mode %d is --protocol %s; it contradicts --protocol %s'
                         % (args.mode, named, args.protocol))
        args.protocol = named
    elif args.protocol is None:
        args.protocol = DEFAULT_PROTOCOL
    args.flip_batch = args.gpu >= 0 if args.flip_batch == 'auto' else args.flip_batch == 'on'
    try:
        args.options = options_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    return args


def _image_workers(text):
    """``--image-workers``: ``auto`` or an int >= 1."""
    if text == 'auto':
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError('expected auto or an integer >= 1, got %r' % text)
    return value


def options_from_args(args):
    """The :class:`WiderTestOptions` of the parsed flags (ValueError naming a bad flag)."""
    return WiderTestOptions(
        prefix=args.prefix, epoch=args.epoch, ctx_id=args.gpu, network=args.network,
        protocol=args.protocol, thresh=args.thresh, dataset=args.dataset,
        image_set=args.image_set, root_path=args.root_path, dataset_path=args.dataset_path,
        output=args.output, nocrop=args.nocrop, landmarks=args.landmarks,
        max_images=args.max_images, part=args.part, parts=args.parts, overwrite=args.overwrite,
        quiet=args.quiet, backend=args.backend, image_workers=args.image_workers,
        threads=args.threads, engine=args.engine, flip_batch=args.flip_batch,
        scale_workers=args.scale_workers, serial=args.serial)


#: errors reported as one line (exit status 2); anything else keeps its traceback
USER_ERRORS = (OSError, ValueError, ManifestMismatch, ImageWorkerError)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    logger.info('called with %s', {k: v for k, v in vars(args).items() if k != 'options'})
    try:
        summary = run_wider_test(args.options)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print('error: %s' % err, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print('interrupted: the prediction files written so far are kept; rerun the same '
              'command to resume', file=sys.stderr)
        return 130
    print(format_summary(summary))
    return 1 if summary['unreadable'] else 0


if __name__ == '__main__':
    sys.exit(main())
