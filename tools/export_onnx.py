"""Export a RetinaFace deploy checkpoint to ONNX and check it against MXNet.

    python tools/export_onnx.py --prefix ../shared/models/mnet.25/mnet.25 --epoch 0 \\
        --out mnet25.onnx --dynamic

Works on our deploy checkpoints of every layout (strides, anchors, box and landmark lengths read
from <prefix>-recipe.json; a graph the recipe does not describe is refused naming both files;
deformable convolutions become ONNX DeformConv at opset 19, see docs/deployment.md, "Every
layout") and on the released insightface graphs (their
``SoftmaxActivation(mode=channel)`` is rewritten to ``softmax(axis=1)``; BatchNorm statistics
saved as ``_running_`` or ``_moving_`` are fitted to the graph's spelling by the checkpoint
loader). Weights are stored as initializers.
The check runs MXNet and onnxruntime on the same random input (and, with --dynamic, on a
second input of another batch and size) and prints max |diff| per output; it fails (exit 1)
when an output differs by more than --tol (absolute for outputs within +-1, else relative to
the largest value of the output).
Any other failure (missing or mismatched checkpoint, unwritable --out, ...) is one line on
stderr and exit status 1; --debug shows the traceback.
--static HxW writes a fixed 1x3xHxW input (OpenCV's DNN module, cv2.dnn.readNetFromONNX, cannot
load the dynamic export: its importer rejects Shape of a symbolic size).
Sizes: height and width (of --static or --input-shape) are at most 8192, the largest side the
detector feeds the network. Before anything is written, the check's memory is estimated from
MXNet's memory plan of the graph at that input (times 2: MXNet's and onnxruntime's forwards);
when it exceeds the memory available the export is refused with one line naming the flag
(pass a smaller size, or --no-verify to export without the check).
The check runs in a process of its own: when it dies (MXNet's MKLDNN kernels end with a
floating-point exception on some large inputs, e.g. 4096x2048; or the OOM killer), the export
ends with one line naming the flag, the signal and the file left unchecked.
An --out that is a folder, or lies under a file, is refused naming --out.
--layout insightface writes a model that the insightface package's model_zoo.get_model loads as
its face detector (input (pixel - 127.5) / 128 of RGB, outputs score/bbox[/kps] of strides 8, 16,
32 with 2 anchors, or 8 to 128 with 1 anchor, the layouts the package reads; any other layout is
refused in one line; see rcnn/deploy/insightface_layout.py); its check decodes the outputs with the package's
formulas and compares with our detector's decoding of MXNet's outputs (pixels).
Needs the optional extras: pip install -r requirements-deploy.txt -c requirements.txt
"""
import argparse
import logging
import math
import sys
from pathlib import Path

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rcnn.utils import cli  # noqa: E402
from rcnn.deploy import onnx_export  # noqa: E402
from rcnn.utils.cli import non_negative_int, positive_int  # noqa: E402
from rcnn.checkpoint.files import params_path, symbol_path  # noqa: E402
from rcnn.utils.model_info import licence_line  # noqa: E402
from rcnn.utils.cli_errors import (check_not_overwriting, check_output_file,  # noqa: E402
                                   run_reporting_errors)

PROG = 'export_onnx.py'


def _input_shape(text):
    try:
        shape = onnx_export.parse_input_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))
    try:
        onnx_export.check_input_side(*shape[2:])
    except ValueError as exc:
        raise argparse.ArgumentTypeError('input shape %r: %s' % (text, exc))
    return shape


def _static_size(text):
    """'HxW' -> (height, width)."""
    try:
        height, width = (int(v) for v in str(text).lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError('--static %r: expected HEIGHTxWIDTH, e.g. 640x640' % (text,))
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError('--static %r: sizes must be positive' % (text,))
    try:
        onnx_export.check_input_side(height, width)
    except ValueError as exc:
        raise argparse.ArgumentTypeError('--static %r: %s' % (text, exc))
    return height, width


def _tolerance(text):
    """A finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError('expected a number >= 0, got %r' % (text,))
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError('must be a finite number >= 0, got %s' % text)
    return value


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--prefix', required=True,
                        help='checkpoint prefix: reads <prefix>-symbol.json and <prefix>-EPOCH.params')
    parser.add_argument('--epoch', type=non_negative_int, default=0,
                        help='checkpoint epoch (default %(default)s)')
    parser.add_argument('--out', required=True, help='ONNX file to write')
    parser.add_argument('--input-shape', type=_input_shape, default=(1, 3, 640, 640),
                        help='B,C,H,W of the data input (default 1,3,640,640): the fixed model '
                             'input, or with --dynamic the shape used for export and the check')
    parser.add_argument('--dynamic', action='store_true',
                        help='symbolic batch, height and width (one file for every input size)')
    parser.add_argument('--static', type=_static_size, default=None, metavar='HxW',
                        help='fixed input 1x3xHxW (for OpenCV DNN; same as --input-shape 1,3,H,W)')
    parser.add_argument('--layout', choices=('retinaface', 'insightface'), default='retinaface',
                        help='retinaface: our 9 deploy outputs (default); insightface: the '
                             'insightface package detector layout (dynamic height/width, '
                             'multiples of 32, unless --static)')
    parser.add_argument('--opset', type=int, default=onnx_export.DEFAULT_OPSET, choices=(12, 13),
                        help='ONNX opset (default %d)' % onnx_export.DEFAULT_OPSET)
    parser.add_argument('--tol', type=_tolerance, default=1e-4,
                        help='largest accepted difference to MXNet (default %(default)s)')
    parser.add_argument('--threads', type=positive_int, default=None,
                        help='onnxruntime threads for the check (default: its own default)')
    parser.add_argument('--no-verify', action='store_true', help='skip the check against MXNet')
    parser.add_argument('-v', '--verbose', action='store_true', help='log every export step')
    parser.add_argument('--debug', action='store_true',
                        help='on an error, show the full traceback instead of a one-line message')
    args = parser.parse_args(argv)
    if args.static is not None:
        if args.dynamic:
            parser.error('--static and --dynamic exclude each other')
        args.input_shape = (1, 3) + tuple(args.static)
    return args


def _size_flag(args):
    """The flag and value that set the input size, as the user gave them."""
    if args.static is not None:
        return '--static %dx%d' % tuple(args.static)
    if args.layout == 'insightface':
        return '--layout insightface (checked at 640x640)'
    return '--input-shape %s' % ','.join(map(str, args.input_shape))


def export_insightface(args):
    """--layout insightface: write, check, print; returns the exit status."""
    from rcnn.deploy.insightface_layout import export_insightface_checkpoint
    diffs = export_insightface_checkpoint(args.prefix, args.epoch, args.out,
                                          input_size=args.static, verify=not args.no_verify,
                                          isolate=True)
    print('wrote %s (insightface detector layout, input 1x3x%s)' % (
        args.out, 'x'.join(map(str, args.static)) if args.static else 'HxW (multiples of 32)'))
    if diffs:
        print('decoded like the insightface package vs our detector: max |diff| score %.3g, '
              'box %.3g px%s' % (diffs['score'], diffs['box'],
                                 ', keypoints %.3g px' % diffs['kps'] if 'kps' in diffs else ''))
        if diffs['score'] > args.tol or max(diffs['box'], diffs.get('kps', 0.0)) > 0.05:
            print('FAILED: the layout model does not reproduce the detector', file=sys.stderr)
            return 1
    return 0


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else
                        logging.INFO if args.verbose else logging.WARNING,
                        format='%(levelname)s %(name)s: %(message)s')
    return run_reporting_errors(PROG, lambda: export(args), debug=args.debug)


def export(args):
    """Export (and check) as ``args`` say; returns the exit status."""
    check_output_file('--out', args.out, example='model.onnx')
    check_not_overwriting('--out', [args.out], [symbol_path(args.prefix),
                                                params_path(args.prefix, args.epoch)])
    try:
        if args.layout == 'insightface':
            return export_insightface(args)
        path, rows = onnx_export.export_checkpoint(
            args.prefix, args.epoch, args.out, input_shape=args.input_shape, dynamic=args.dynamic,
            opset=args.opset, verify=not args.no_verify, tol=args.tol, threads=args.threads,
            isolate=True)
    except onnx_export.ExportMismatchError as exc:
        print('FAILED: %s' % exc, file=sys.stderr)
        return 1
    except onnx_export.CheckMemoryError as exc:
        raise onnx_export.CheckMemoryError('%s: %s; pass a smaller size or --no-verify'
                                           % (_size_flag(args), exc)) from None
    except onnx_export.CheckCrashedError as exc:
        raise onnx_export.CheckCrashedError('%s: %s' % (_size_flag(args), exc)) from None
    line = licence_line(params_path(args.prefix, args.epoch))
    if line:
        print(line)
    import onnx
    print('wrote %s (%s input %s, opset %d)' % (
        path, 'dynamic' if args.dynamic else 'fixed',
        'batch x 3 x height x width' if args.dynamic else 'x'.join(map(str, args.input_shape)),
        onnx_export.model_opset(onnx.load(path, load_external_data=False))))
    if rows:
        print('%-40s %-18s %-16s %12s %12s' % ('output', 'input', 'shape', 'max|diff|', 'max err'))
        for row in rows:
            print('%-40s %-18s %-16s %12.3g %12.3g' % (
                row['output'], 'x'.join(map(str, row['input_shape'])),
                'x'.join(map(str, row['shape'])), row['max_abs'], row['max_err']))
        print('OK: every output within %.3g of MXNet' % args.tol)
    return 0


if __name__ == '__main__':
    sys.exit(main())
