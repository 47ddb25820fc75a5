"""INT8 post-training quantization of a deploy checkpoint with MXNet's MKLDNN backend.

:func:`quantize_checkpoint` runs ``mx.contrib.quantization.quantize_model_mkldnn``: the graph is
first fused for MKLDNN (Convolution + BatchNorm + ReLU [+ elementwise add] become one
``_sg_mkldnn_conv``), then every quantizable node is rewritten to INT8/UINT8 and the
requantization ranges are calibrated on real images:

* ``calib_mode='entropy'`` (default) picks each layer's threshold minimising the KL divergence
  between the FP32 and quantized activation histograms; ``'naive'`` takes the observed min/max;
  ``'none'`` computes ranges at run time (slower).
* ``quantized_dtype='auto'`` uses UINT8 after ReLU (non-negative) and INT8 elsewhere.
* ``quantize_mode='smart'`` leaves alone the ops MKLDNN has no INT8 kernel for or where INT8
  does not pay; in our graphs the neck's ``UpSampling`` / ``Crop`` and the score ``Reshape`` /
  ``SoftmaxActivation`` stay FP32, with dequantize nodes in front of them.

Deformable convolutions (``USE_DCN``) have no INT8 kernel: they stay FP32, fed through
dequantize nodes, and so do the convolutions that compute their offsets and masks
(:func:`deformable_offset_producers`): those outputs are sampling positions in pixels, where
INT8's rounding would move every sample of the deformable convolution.

Calibration images are read whole or not at all (:func:`rcnn.io.decode.imread_checked`: a
missing, truncated or undecodable file is skipped with a warning naming it, and the next image
is taken in its place; no readable image at all is an error), resized to one fixed input size
(default 640x480, aspect ratio not kept: only activation ranges are collected) and go through the model's pixel transform
(:mod:`rcnn.processing.pixels`, from the checkpoint's recipe; raw RGB for the released models),
like the detector's input. The result is saved as an ordinary checkpoint
(``<out>-symbol.json``, ``<out>-0000.params``, and ``<out>-recipe.json`` when the source has
one) that ``mx.mod.Module`` binds at any input shape, so ``RetinaFace(out, 0)`` loads it. INT8 kernels
exist on x86 CPUs only (``ctx_id=-1``).
"""
import json
import logging
import os

import numpy as np

from rcnn.model_layout import DATA_NAME
from rcnn.processing.pixels import PixelTransform
from rcnn.utils import machine
from rcnn.utils.param_names import fit_to_graph

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
DEFAULT_INPUT_SIZE = (640, 480)          # width, height
CALIB_MODES = ('entropy', 'naive', 'none')
QUANTIZED_DTYPES = ('auto', 'int8', 'uint8')
GRANULARITIES = ('tensor-wise', 'channel-wise')


def check_mkldnn():
    """Raise RuntimeError unless this MXNet build has MKLDNN (INT8 kernels)."""
    import mxnet as mx
    if not mx.runtime.Features().is_enabled('MKLDNN'):
        raise RuntimeError('INT8 quantization needs an MXNet build with MKLDNN '
                           '(pip package mxnet, not mxnet-native)')


def _raise_unreadable(error):
    raise PermissionError('calibration folder %s is not readable: %s'
                          % (error.filename, error.strerror or error)) from error


def list_images(sources):
    """Image files under ``sources`` (files or folders, searched recursively), sorted per source.

    Raises FileNotFoundError for a missing source or when no image is found, PermissionError
    naming a folder that cannot be listed.
    """
    paths = []
    for source in sources:
        source = str(source)
        if os.path.isfile(source):
            paths.append(source)
        elif os.path.isdir(source):
            found = []
            for root, _, files in os.walk(source, onerror=_raise_unreadable):
                found += [os.path.join(root, name) for name in files
                          if name.lower().endswith(IMAGE_EXTENSIONS)]
            paths += sorted(found)
        else:
            raise FileNotFoundError('calibration source %s not found' % source)
    if not paths:
        raise FileNotFoundError('no calibration image (%s) found in %s'
                                % ('/'.join(IMAGE_EXTENSIONS), ', '.join(map(str, sources))))
    return paths


def check_calibration_memory(num_images, input_size, available=None):
    """Refuse a calibration batch that would not fit in half the available memory (the
    batch is held whole while MXNet collects the activation ranges).

    Args:
        num_images: images in the batch; input_size: (width, height).
        available: bytes available (None: ``MemAvailable`` of /proc/meminfo; unknown: no check).
    Raises:
        MemoryError naming the batch and its size.
    """
    available = machine.available_memory() if available is None else available
    width, height = (int(v) for v in input_size)
    needed = 4.0 * 3 * width * height * num_images
    if available is not None and needed > available / 2.0:
        raise MemoryError('%d calibration images at %dx%d take %.1f GB, more than half the %.1f '
                          'GB of memory available' % (num_images, width, height,
                                                     needed / 2 ** 30, available / 2 ** 30))


def load_calibration_batch(paths, input_size=DEFAULT_INPUT_SIZE, pixels=None, max_images=None):
    """Read and resize images for calibration, skipping unreadable ones.

    paths: image files, in order; input_size: (width, height); pixels: the model's
    :class:`rcnn.processing.pixels.PixelTransform` (None: raw RGB, the released models');
    max_images: stop after this many readable images (None: all).
    Returns (N, 3, height, width) float32 network inputs (the detector's input convention),
    N <= max_images readable images. A missing, truncated or undecodable file is skipped with
    a warning naming it.
    Raises:
        ValueError naming the unreadable files when none is readable.
    """
    import cv2
    from rcnn.io.decode import ImageReadError, imread_checked
    pixels = PixelTransform() if pixels is None else pixels
    width, height = (int(v) for v in input_size)
    if width < 32 or height < 32:
        raise ValueError('input_size %r: width and height must be >= 32' % (input_size,))
    wanted = len(paths) if max_images is None else min(len(paths), int(max_images))
    if wanted < 1:
        raise ValueError('max_images=%r: at least one calibration image is needed'
                         % (max_images,))
    check_calibration_memory(wanted, (width, height))
    batch = np.empty((wanted, 3, height, width), dtype=np.float32)
    filled, skipped = 0, []
    for path in paths:
        if filled == wanted:
            break
        try:
            image = imread_checked(str(path), cv2.IMREAD_COLOR)
        except ImageReadError as err:
            skipped.append(str(err))
            continue
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        batch[filled] = pixels.network_input(image)[0]
        filled += 1
    if not filled:
        raise ValueError('no calibration image could be read: %s%s' % (
            skipped[0], ' (and %d more)' % (len(skipped) - 1) if len(skipped) > 1 else ''))
    for reason in skipped:          # after the loop: none readable is one error line instead
        logger.warning('calibration image skipped: %s', reason)
    if skipped:
        logger.warning('calibrating on %d images; %d unreadable skipped', filled, len(skipped))
    return batch[:filled]


def quantize_checkpoint(sym, arg_params, aux_params, calib_data=None, calib_mode='entropy',
                        quantized_dtype='auto', quantize_mode='smart',
                        granularity='tensor-wise', excluded_sym_names=(), excluded_op_names=()):
    """Quantize a deploy graph (input ``data``) for MKLDNN INT8 inference.

    calib_data: (N, 3, H, W) float32 calibration inputs (required unless calib_mode='none').
    excluded_sym_names / excluded_op_names: nodes / op types kept in FP32.
    Returns ``(qsym, qarg_params, aux_params)``.
    """
    import mxnet as mx
    from mxnet.contrib import quantization
    check_mkldnn()
    if calib_mode not in CALIB_MODES:
        raise ValueError('calib_mode %r: expected one of %s' % (calib_mode, CALIB_MODES))
    if quantized_dtype not in QUANTIZED_DTYPES:
        raise ValueError('quantized_dtype %r: expected one of %s' % (quantized_dtype, QUANTIZED_DTYPES))
    if granularity not in GRANULARITIES:
        raise ValueError('granularity %r: expected one of %s' % (granularity, GRANULARITIES))
    kept_fp32 = list(excluded_sym_names) + [name for name in deformable_offset_producers(sym)
                                            if name not in excluded_sym_names]
    excluded_fused = fused_node_names(sym, kept_fp32)
    arg_params, aux_params = fit_to_graph(sym, arg_params, aux_params)

    calib_iter, num_examples = None, None
    if calib_mode != 'none':
        if calib_data is None or len(calib_data) == 0:
            raise ValueError('calib_mode=%r needs calibration images' % calib_mode)
        calib_data = np.ascontiguousarray(calib_data, dtype=np.float32)
        calib_iter = mx.io.NDArrayIter(calib_data, batch_size=1, data_name=DATA_NAME)
        num_examples = len(calib_data)
        logger.info('calibrating on %d images at %dx%d (%s)', num_examples,
                    calib_data.shape[3], calib_data.shape[2], calib_mode)
    qsym, qarg_params, qaux_params = quantization.quantize_model_mkldnn(
        sym, arg_params, aux_params, data_names=(DATA_NAME,), label_names=None, ctx=mx.cpu(),
        excluded_sym_names=excluded_fused, excluded_op_names=list(excluded_op_names),
        calib_mode=calib_mode, calib_data=calib_iter, num_calib_examples=num_examples,
        quantized_dtype=quantized_dtype, quantize_mode=quantize_mode,
        quantize_granularity=granularity)
    return restore_output_names(qsym, sym.list_outputs()), qarg_params, qaux_params


def _graph_nodes(sym):
    return json.loads(sym.tojson())


#: MXNet's deformable convolutions -> how many inputs after ``data`` are offsets / masks
_DEFORMABLE_POSITION_INPUTS = {'_contrib_DeformableConvolution': 1,
                               '_contrib_ModulatedDeformableConvolution': 2}


def deformable_offset_producers(sym):
    """Names of the convolutions whose outputs reach a deformable convolution's offset or mask
    input (through slices, activations and scalar arithmetic), sorted."""
    nodes = _graph_nodes(sym)['nodes']
    found = set()
    for node in nodes:
        count = _DEFORMABLE_POSITION_INPUTS.get(node['op'])
        if not count:
            continue
        pending = [entry[0] for entry in node['inputs'][1:1 + count]]
        seen = set()
        while pending:
            index = pending.pop()
            if index in seen:
                continue
            seen.add(index)
            source = nodes[index]
            if source['op'] == 'Convolution':
                found.add(source['name'])
            elif source['op'] != 'null':
                pending.extend(entry[0] for entry in source['inputs'])
    return sorted(found)


def fused_node_names(sym, names):
    """Names, in the MKLDNN-fused graph that the quantizer works on, of the nodes holding the
    original nodes ``names`` (a convolution and the BatchNorm / ReLU / add fused into it share
    one ``sg_mkldnn_conv*`` node; an unfused node keeps its name).

    Raises ValueError naming the nodes the graph does not have.
    """
    names = list(names)
    if not names:
        return []
    original = {node['name'] for node in _graph_nodes(sym)['nodes'] if node['op'] != 'null'}
    unknown = [name for name in names if name not in original]
    if unknown:
        raise ValueError('excluded_sym_names: no node named %s in the graph' % unknown)
    holder = {}
    for node in _graph_nodes(sym.get_backend_symbol('MKLDNN_QUANTIZE'))['nodes']:
        holder[node['name']] = node['name']
        for subgraph in node.get('subgraphs', []):
            for inner in subgraph['nodes']:
                holder.setdefault(inner['name'], node['name'])
    return sorted({holder.get(name, name) for name in names})


def restore_output_names(qsym, output_names):
    """Give the graph outputs their original names back.

    Fusion renames a head convolution ``face_rpn_bbox_pred_stride32`` to ``sg_mkldnn_conv_34``
    (and quantization to ``..._dequantize``); detectors select the deploy outputs by name, so
    the nodes producing the outputs are renamed to the original names, position by position.
    output_names: the FP32 symbol's ``list_outputs()`` (``<name>_output``).
    """
    import mxnet as mx
    graph = _graph_nodes(qsym)
    if len(graph['heads']) != len(output_names):
        raise RuntimeError('quantized graph has %d outputs, the FP32 graph %d'
                           % (len(graph['heads']), len(output_names)))
    taken = {node['name'] for node in graph['nodes']}
    for (node_id, index, _), wanted in zip(graph['heads'], output_names):
        node = graph['nodes'][node_id]
        target = wanted[:-len('_output')] if wanted.endswith('_output') else wanted
        if node['name'] == target:
            continue
        if index != 0 or target in taken:
            raise RuntimeError('cannot rename output %s of the quantized graph to %s'
                               % (node['name'], target))
        taken.discard(node['name'])
        node['name'] = target
        taken.add(target)
    return mx.sym.load_json(json.dumps(graph))


def quantized_op_counts(sym):
    """{op name: count} over the graph's compute nodes (how much ended up INT8)."""
    counts = {}
    for node in json.loads(sym.tojson())['nodes']:
        if node['op'] != 'null':
            counts[node['op']] = counts.get(node['op'], 0) + 1
    return counts


def save_checkpoint(out_prefix, sym, arg_params, aux_params, epoch=0):
    """Write ``<out_prefix>-symbol.json`` and ``<out_prefix>-%04d.params`` atomically;
    returns both paths."""
    from rcnn.checkpoint import params as checkpoint
    return checkpoint.save_checkpoint(out_prefix, epoch, sym, arg_params, aux_params)


def quantize_prefix(prefix, epoch, out_prefix, calib_sources, input_size=DEFAULT_INPUT_SIZE,
                    max_images=None, **options):
    """Load a checkpoint (BatchNorm spellings fitted to its graph), calibrate on the images of
    ``calib_sources`` (at most ``max_images`` readable ones, None: all), quantize (``options`` as :func:`quantize_checkpoint`) and save as
    epoch 0 under ``out_prefix``. Returns ``(symbol_path, params_path, qsym)``."""
    from rcnn.recipe import load_recipe, read_recipe
    from rcnn.checkpoint.params import load_checkpoint
    calib_data = None
    if options.get('calib_mode', 'entropy') != 'none':
        paths = list_images(calib_sources)
        calib_data = load_calibration_batch(paths, input_size, load_recipe(prefix).pixels,
                                            max_images=max_images)
    from rcnn.deploy.checkpoint_layout import checkpoint_layout
    sym, arg_params, aux_params = load_checkpoint(prefix, epoch)
    checkpoint_layout(prefix, sym)           # a graph its recipe does not describe: refused
    qsym, qarg_params, qaux_params = quantize_checkpoint(sym, arg_params, aux_params,
                                                         calib_data=calib_data, **options)
    symbol_path, params_path = save_checkpoint(out_prefix, qsym, qarg_params, qaux_params)
    logger.info('saved %s and %s', symbol_path, params_path)
    recipe = read_recipe(prefix)
    if recipe is not None:
        logger.info('saved %s', recipe.write(out_prefix))
    return symbol_path, params_path, qsym


def evaluate_on_label_set(detector, set_root, score_thresh=0.02, recall_thresh=0.5, iou_thresh=0.5):
    """Accuracy of ``detector`` (anything with RetinaFace's ``detect(img, threshold)``) on a
    RetinaFace val layout: ``<set_root>/label.txt`` + ``<set_root>/images/<event>/<name>.jpg``.

    Every face counts in every setting. Detections at ``score_thresh`` give the WIDER AP; those
    at ``recall_thresh`` give the recall (faces overlapped at IoU >= ``iou_thresh``).
    Returns ``{'images', 'faces', 'recalled', 'recall', 'ap', 'detections'}``.
    """
    from rcnn.evaluation import widerface
    from rcnn.io.decode import ImageReadError, imread_checked
    label_path = os.path.join(set_root, 'label.txt')
    gt = widerface.load_label_ground_truth(label_path, split='all')
    predictions, recalled, detections = [], 0, 0
    for event, name, gt_boxes in zip(gt.events, gt.names, gt.boxes):
        image_path = os.path.join(set_root, 'images', event, name + '.jpg')
        try:
            image = imread_checked(image_path)
        except ImageReadError as err:
            # a skipped image would change the AP: the comparison needs every image
            raise ImageReadError('%s (listed in %s); --eval needs every image of the set'
                                 % (err, label_path)) from None
        faces, _ = detector.detect(image, threshold=score_thresh)
        faces = np.asarray(faces, dtype=np.float64).reshape(-1, 5)
        predictions.append(np.hstack([faces[:, :2], faces[:, 2:4] - faces[:, :2], faces[:, 4:5]]))
        confident = faces[faces[:, 4] >= recall_thresh]
        detections += len(confident)
        gt_xyxy = np.hstack([gt_boxes[:, :2], gt_boxes[:, :2] + gt_boxes[:, 2:4]])
        recalled += widerface.count_recalled(confident, gt_xyxy, iou_thresh)
    results = widerface.evaluate_predictions(predictions, gt, iou_thresh=iou_thresh)
    return {'images': gt.num_images, 'faces': gt.num_faces(), 'recalled': recalled,
            'recall': recalled / max(1, gt.num_faces()), 'ap': float(results['hard'].ap),
            'detections': detections}
