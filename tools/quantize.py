"""INT8 post-training quantization of a RetinaFace deploy checkpoint (MXNet MKLDNN backend).

    python tools/quantize.py --prefix ../shared/models/mnet.25/mnet.25 --epoch 0 \\
        --out model/mnet25-int8 --calib ../shared/data/dlib_faces/train/images ../shared/images \\
        --eval ../shared/data/dlib_faces/val

writes <out>-symbol.json and <out>-0000.params, loadable as RetinaFace(<out>, 0, ctx_id=-1).
Every layout quantizes (the graph is checked against its recipe first); deformable convolutions
and the convolutions computing their offsets and masks stay FP32.
With --eval, the FP32 and INT8 detectors are scored on each RetinaFace val layout given
(label.txt + images/): recall of the faces at score >= 0.5 (IoU >= 0.5) and the WIDER-protocol
AP with every face counted; with --bench, the bare forward latency at --input-size.
A calibration image that is missing, truncated or not decodable is skipped with a warning
naming it (the next image takes its place, so --max-images counts readable images); a failure
(missing checkpoint, missing or empty calibration folder, no readable calibration image, an
unreadable --eval image, a calibration batch larger than half the available memory, an --out
that names a folder, ...) is one line on stderr and exit status 1; --debug shows the
traceback. Meaningless flags (--max-images 0, an --input-size beyond 8192, ...) are refused
by the argument parser (exit status 2).
"""
import argparse
import logging
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rcnn.utils import cli  # noqa: E402
from rcnn.deploy import quantize  # noqa: E402
from rcnn.utils.cli import non_negative_int, positive_int  # noqa: E402
from rcnn.checkpoint import files as checkpoint_files  # noqa: E402
from rcnn.checkpoint.files import params_path, symbol_path  # noqa: E402
from rcnn.utils.model_info import licence_line  # noqa: E402
from rcnn.utils.cli_errors import (check_not_overwriting, check_output_file,  # noqa: E402
                                   run_reporting_errors)

PROG = 'quantize.py'
#: largest calibration side: the detector's (rcnn.inference.detector.MAX_SCALED_SIDE)
MAX_SIDE = 8192


def _size(text):
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError('expected WIDTHxHEIGHT, got %r' % text)
    if width < 32 or height < 32:
        raise argparse.ArgumentTypeError('width and height must be >= 32, got %r' % text)
    if max(width, height) > MAX_SIDE:
        raise argparse.ArgumentTypeError('width and height must be at most %d (the largest side '
                                         'the detector feeds the network), got %r'
                                         % (MAX_SIDE, text))
    return width, height


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--prefix', required=True, help='FP32 checkpoint prefix')
    parser.add_argument('--epoch', type=non_negative_int, default=0,
                        help='FP32 checkpoint epoch (default %(default)s)')
    parser.add_argument('--out', required=True,
                        help='output prefix: writes <out>-symbol.json and <out>-0000.params')
    parser.add_argument('--calib', nargs='+', default=[],
                        help='calibration images: files or folders (searched recursively; '
                             'required unless --calib-mode none)')
    parser.add_argument('--max-images', type=positive_int, default=None,
                        help='use at most this many readable calibration images (default: all)')
    parser.add_argument('--input-size', type=_size, default=quantize.DEFAULT_INPUT_SIZE,
                        help='WIDTHxHEIGHT calibration images are resized to (default 640x480)')
    parser.add_argument('--calib-mode', default='entropy', choices=quantize.CALIB_MODES,
                        help='entropy: KL-optimal thresholds (default); naive: observed min/max; '
                             'none: ranges computed at run time')
    parser.add_argument('--dtype', default='auto', choices=quantize.QUANTIZED_DTYPES,
                        help='quantized type: auto (uint8 after ReLU, int8 elsewhere; default)')
    parser.add_argument('--granularity', default='tensor-wise', choices=quantize.GRANULARITIES,
                        help='weight scales per tensor (default) or per output channel')
    parser.add_argument('--exclude', nargs='*', default=[],
                        help='node names to keep in FP32 (e.g. the first convolution; '
                             'default: none)')
    parser.add_argument('--eval', nargs='*', default=[], metavar='SET_ROOT',
                        help='val sets (label.txt + images/) on which to compare FP32 and INT8 '
                             '(default: none)')
    parser.add_argument('--bench', action='store_true',
                        help='also time the bare FP32 and INT8 forward at --input-size')
    parser.add_argument('-v', '--verbose', action='store_true', help='log calibration steps')
    parser.add_argument('--debug', action='store_true',
                        help='on an error, show the full traceback instead of a one-line message')
    return parser.parse_args(argv)


def _forward_ms(prefix, epoch, input_size, repeat=30):
    import mxnet as mx
    import numpy as np
    from rcnn.model_layout import DATA_NAME
    from rcnn.checkpoint.params import load_checkpoint
    sym, arg_params, aux_params = load_checkpoint(prefix, epoch)
    width, height = input_size
    module = mx.mod.Module(sym, data_names=[DATA_NAME], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[(DATA_NAME, (1, 3, height, width))], for_training=False)
    module.set_params(arg_params, aux_params)
    batch = mx.io.DataBatch([mx.nd.array(np.random.RandomState(0).uniform(
        0, 255, (1, 3, height, width)).astype(np.float32))])
    times = []
    for i in range(repeat + 3):
        t0 = time.perf_counter()
        module.forward(batch, is_train=False)
        for out in module.get_outputs():
            out.wait_to_read()
        if i >= 3:
            times.append((time.perf_counter() - t0) * 1000.0)
    return float(np.median(times))


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else
                        logging.INFO if args.verbose else logging.WARNING,
                        format='%(levelname)s %(name)s: %(message)s')
    if args.calib_mode != 'none' and not args.calib:
        print('%s: error: --calib is required unless --calib-mode none' % PROG, file=sys.stderr)
        return 2
    return run_reporting_errors(PROG, lambda: run(args), debug=args.debug)


def check_out_prefix(out, prefix, epoch):
    """Refuse an --out prefix that names a folder (``models/`` would write ``models/-symbol.json``),
    whose files cannot be written, or whose files are the FP32 checkpoint's."""
    if out.endswith(('/', os.sep)) or os.path.isdir(out):
        raise ValueError('--out %s names a folder; pass a prefix such as %s'
                         % (out, os.path.join(out, 'mnet25-int8')))
    outputs = [symbol_path(out), params_path(out, 0)]
    for path in outputs:
        check_output_file('--out', path)
    check_not_overwriting('--out', outputs, [symbol_path(prefix), params_path(prefix, epoch)])


def run(args):
    """Quantize (and optionally benchmark and evaluate) as ``args`` say; returns the exit status."""
    check_out_prefix(args.out, args.prefix, args.epoch)
    t0 = time.perf_counter()
    try:
        symbol_path, params_path, qsym = quantize.quantize_prefix(
            args.prefix, args.epoch, args.out, args.calib, input_size=args.input_size,
            max_images=args.max_images, calib_mode=args.calib_mode, quantized_dtype=args.dtype,
            granularity=args.granularity, excluded_sym_names=args.exclude)
    except MemoryError as exc:
        raise MemoryError('%s; pass a smaller --max-images or --input-size' % exc) from None
    counts = quantize.quantized_op_counts(qsym)
    line = licence_line(checkpoint_files.params_path(args.prefix, args.epoch))
    if line:
        print(line)
    print('wrote %s and %s in %.1f s' % (symbol_path, params_path, time.perf_counter() - t0))
    print('ops: %s' % ', '.join('%s x%d' % kv for kv in sorted(counts.items())))

    if args.bench:
        fp32 = _forward_ms(args.prefix, args.epoch, args.input_size)
        int8 = _forward_ms(args.out, 0, args.input_size)
        print('forward %dx%d: FP32 %.2f ms, INT8 %.2f ms (x%.2f)'
              % (args.input_size + (fp32, int8, fp32 / int8)))
    if args.eval:
        from retinaface import RetinaFace
        detectors = {'FP32': RetinaFace(args.prefix, args.epoch, ctx_id=-1),
                     'INT8': RetinaFace(args.out, 0, ctx_id=-1)}
        for set_root in args.eval:
            for label, detector in detectors.items():
                result = quantize.evaluate_on_label_set(detector, set_root)
                print('%s %s: recall@0.5 %d/%d (%.4f), AP %.4f, %d detections >= 0.5' % (
                    set_root, label, result['recalled'], result['faces'], result['recall'],
                    result['ap'], result['detections']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
