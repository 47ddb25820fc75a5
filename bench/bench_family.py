"""Forward + backward time per image of the paper configuration beside the released R50 layout.

    python bench/bench_family.py [--quick] [--size 320] [--batch 1] [--repeat 3]
                                  [--gpu [--native_dcn]]

Both are ``--network resnet`` training graphs, timed in the same run on the same input:

* ``released R50``: the preset (RAC_SSH: strides 32/16/8, 2 anchors, plain SSH modules);
* ``paper``: ``--set USE_DCN=2 RPN_ANCHOR_CFG=RAC_RETINA`` (strides 64..4, 3 anchors, every
  3x3 conv of the modules and aggregations modulated-deformable; the training graph computes
  DCN v2 with differentiable sampling, see ``rcnn/symbol/deformable.py``; ``--native_dcn``:
  MXNet's ``ModulatedDeformableConvolution``, whose backward runs on the GPU only).

Random weights and labels (OHEM in the graph, as training). ``--quick``: 256x256, 2 repeats.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from bench.bench_network import training_executor  # noqa: E402
from bench.common import measure, print_rows  # noqa: E402
from rcnn.config import generate_config  # noqa: E402
from rcnn.symbol import get_symbol_train  # noqa: E402

#: (row name, generate_config overrides)
CONFIGURATIONS = (('released R50 layout (RAC_SSH)', {}),
                  ('paper (USE_DCN=2, RAC_RETINA)', {'USE_DCN': 2, 'RPN_ANCHOR_CFG': 'RAC_RETINA'}))


def _executor(overrides, batch, size, ctx, rng, native_dcn):
    cfg, _ = generate_config('resnet', 'retinaface', overrides)
    sym = get_symbol_train('resnet', cfg, native_dcn=native_dcn)
    return training_executor(sym, cfg, batch, size, rng, ctx)


def run(quick=False, size=None, batch=1, repeat=None, gpu=False, native_dcn=False):
    size = size or (256 if quick else 640)
    repeat = repeat or (2 if quick else 5)
    ctx = mx.gpu(0) if gpu else mx.cpu()
    rng = np.random.RandomState(0)
    rows = []
    for name, overrides in CONFIGURATIONS:
        executor = _executor(overrides, batch, size, ctx, rng, native_dcn)

        def step():
            executor.forward(is_train=True)
            executor.backward()
            mx.nd.waitall()

        row = measure('forward+backward %s %dx%d batch %d %s' % (name, size, size, batch, ctx),
                      step, repeat=repeat, warmup=1, images=batch)
        row['per_image_ms'] = round(row['median_ms'] / batch, 1)
        rows.append(row)
        del executor
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='256x256 input, 2 repeats')
    parser.add_argument('--size', type=int, default=None, help='square input side (640)')
    parser.add_argument('--batch', type=int, default=1, help='images per batch (1)')
    parser.add_argument('--repeat', type=int, default=None, help='timed steps (5; quick 2)')
    parser.add_argument('--gpu', action='store_true', help='run on gpu(0)')
    parser.add_argument('--native_dcn', action='store_true',
                        help="DCN v2 as MXNet's operator (its backward needs --gpu)")
    args = parser.parse_args()
    if args.native_dcn and not args.gpu:
        parser.error('--native_dcn: MXNet has no CPU backward for ModulatedDeformableConvolution;'
                     ' add --gpu')
    rows = run(args.quick, args.size, args.batch, args.repeat, args.gpu, args.native_dcn)
    print_rows(rows)
    base, paper = (row['per_image_ms'] for row in rows)
    print('paper / released R50 layout: %.2fx per image' % (paper / base))


if __name__ == '__main__':
    main()
