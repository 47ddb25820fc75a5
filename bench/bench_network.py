"""Network graphs: the OHEM op per training batch and forward+backward time per image.

* OHEM: the training graph's ``retinaface_ohem`` CustomOp on a batch of 16 images at the
  640x640 label shapes (strides 32/16/8: 800/3,200/12,800 anchors per image), run through an
  MXNet executor (as in training: host copy + NumPy selection), per stride and for the three
  strides together; and the bare NumPy selection ``ohem_select`` for comparison.
* forward+backward of the training graph (losses, OHEM included) per image on this CPU:
  ``mnet`` at 640x640 (batch 2, quick: batch 1) and ``resnet`` at 640x640 (batch 1).
"""
import mxnet as mx
import numpy as np

from bench.common import measure, print_rows
from rcnn.config import generate_config
from rcnn.symbol import get_symbol_train, label_shapes
from rcnn.symbol.ohem import ohem_select, ohem_symbol

OHEM_BATCH = 16
ANCHORS_AT_640 = {32: 800, 16: 3200, 8: 12800}
#: label mix of a typical crop: a few positives, some ignored anchors, the rest negatives
LABEL_MIX = {'ignored': 0.02, 'positive': 0.01}


def _random_labels(rng, shape):
    draw = rng.uniform(size=shape)
    labels = np.zeros(shape, np.float32)
    labels[draw < LABEL_MIX['ignored']] = -1
    labels[draw > 1 - LABEL_MIX['positive']] = 1
    return labels


def _ohem_rows(cfg, rng, repeat):
    inputs = {}
    outputs = []
    for stride, anchors in ANCHORS_AT_640.items():
        inputs['score%d' % stride] = rng.randn(OHEM_BATCH, 2, anchors).astype(np.float32)
        inputs['label%d' % stride] = _random_labels(rng, (OHEM_BATCH, anchors))
        outputs.extend(ohem_symbol(mx.sym.var('score%d' % stride), mx.sym.var('label%d' % stride),
                                   cfg, name='ohem%d' % stride))
    rows = []

    def executor_for(syms, names):
        args = {name: mx.nd.array(inputs[name]) for name in names}
        return mx.sym.Group(syms).bind(mx.cpu(), args, grad_req='null')

    def run(executor):
        for out in executor.forward(is_train=True):
            out.wait_to_read()

    all_names = sorted(inputs)
    every = executor_for(outputs, all_names)
    rows.append(measure('ohem op, batch 16, strides 32+16+8 (640x640)', lambda: run(every),
                        repeat=repeat, warmup=2, anchors=sum(ANCHORS_AT_640.values())))
    for index, (stride, anchors) in enumerate(ANCHORS_AT_640.items()):
        one = executor_for(outputs[2 * index:2 * index + 2], ['label%d' % stride, 'score%d' % stride])
        rows.append(measure('ohem op, batch 16, stride %d' % stride, lambda ex=one: run(ex),
                            repeat=repeat, warmup=2, anchors=anchors))
    score8, label8 = inputs['score8'], inputs['label8']
    rows.append(measure('ohem_select numpy only, batch 16, stride 8',
                        lambda: ohem_select(score8[:, 1] - score8[:, 0], label8, cfg),
                        repeat=repeat, warmup=2, anchors=ANCHORS_AT_640[8]))
    return rows


def training_executor(sym, cfg, batch, size, rng, ctx=None):
    """A bound training executor of ``sym`` for ``batch`` crops of ``size``: random image and
    labels, He-initialised weights, BatchNorm as identity, deformable offsets at zero."""
    data_shape = (batch, 3, size, size)
    shapes = dict(label_shapes(sym, data_shape, cfg), data=data_shape)
    executor = sym.simple_bind(ctx or mx.cpu(), grad_req='write', **shapes)
    for name, array in executor.arg_dict.items():
        if name == 'data':
            array[:] = rng.uniform(0, 255, array.shape)
        elif name.startswith('face_label'):
            array[:] = _random_labels(rng, array.shape)
        elif name in shapes:
            array[:] = rng.uniform(-1, 1, array.shape) if 'target' in name else 1.0
        elif name.endswith('_gamma'):
            array[:] = 1.0
        elif name.endswith(('_beta', '_bias')) or '_offset_' in name:
            array[:] = 0.0
        else:
            array[:] = rng.normal(0, np.sqrt(1.0 / np.prod(array.shape[1:])), array.shape)
    for name, array in executor.aux_dict.items():
        array[:] = 1.0 if name.endswith('_var') else 0.0
    return executor


def _forward_backward_row(network, batch, size, repeat, warmup, rng):
    cfg, _ = generate_config(network, 'retinaface')
    executor = training_executor(get_symbol_train(network, cfg), cfg, batch, size, rng)

    def step():
        executor.forward(is_train=True)
        executor.backward()
        mx.nd.waitall()

    row = measure('forward+backward %s %dx%d, batch %d' % (network, size, size, batch), step,
                  repeat=repeat, warmup=warmup, images=batch)
    row['per_image_ms'] = round(row['median_ms'] / batch, 1)
    return row


def run(quick=False):
    rng = np.random.RandomState(0)
    cfg, _ = generate_config('mnet', 'retinaface')
    rows = _ohem_rows(cfg, rng, repeat=5 if quick else 20)
    rows.append(_forward_backward_row('mnet', 1 if quick else 2, 640, 2 if quick else 5, 1, rng))
    rows.append(_forward_backward_row('resnet', 1, 640, 1 if quick else 3, 1, rng))
    return rows


if __name__ == '__main__':
    import argparse
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='fewer repeats and smaller batches')
    print_rows(run(quick=parser.parse_args().quick))
