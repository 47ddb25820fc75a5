"""MKLDNN INT8 quantization of the released mnet.25: the saved checkpoint loads, is really
quantized, runs at any input size and still finds every annotated dlib val face."""
import json
import os

import numpy as np
import pytest

mx = pytest.importorskip('mxnet')
if not mx.runtime.Features().is_enabled('MKLDNN'):
    pytest.skip('this MXNet build has no MKLDNN (INT8 kernels)', allow_module_level=True)

from conftest import shared_path  # noqa: E402
from rcnn.deploy import quantize  # noqa: E402
from test_retinaface import read_val_labels  # noqa: E402


def _iou(a, b):
    """(N, 4) x (K, 4) IoU, +1 pixel convention."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


@pytest.fixture(scope='module')
def int8_prefix(tmp_path_factory):
    prefix = str(shared_path('models', 'mnet.25') / 'mnet.25')
    calib = shared_path('data', 'dlib_faces', 'train', 'images')
    out = str(tmp_path_factory.mktemp('int8') / 'mnet25-int8')
    # naive (min/max) calibration: ~1 s; entropy, the CLI default, spends ~25 s searching
    # thresholds in Python and gives the same result on this set (tools/quantize.py --eval)
    quantize.quantize_prefix(prefix, 0, out, [str(calib)], input_size=(640, 480),
                             calib_mode='naive')
    return out


def test_quantized_checkpoint_is_int8_and_loads(int8_prefix):
    from rcnn.checkpoint.params import load_checkpoint
    assert os.path.isfile(int8_prefix + '-symbol.json')
    assert os.path.isfile(int8_prefix + '-0000.params')
    nodes = json.loads(open(int8_prefix + '-symbol.json').read())['nodes']
    quantized_convs = [n for n in nodes if n['op'] == '_sg_mkldnn_conv'
                       and n.get('attrs', {}).get('quantized') == 'true']
    assert len(quantized_convs) >= 50                   # mnet.25 has 56 convolutions
    assert any(n['op'] == '_contrib_quantize_v2' for n in nodes)
    # calibrated: the requantization ranges are stored in the graph
    assert all('min_calib_range' in n['attrs'] for n in quantized_convs)

    sym, arg, aux = load_checkpoint(int8_prefix, 0)
    assert [n for n in sym.list_outputs()] == [
        'face_rpn_%s_stride%d_output' % (kind, stride) for stride in (32, 16, 8)
        for kind in ('cls_prob_reshape', 'bbox_pred', 'landmark_pred')]
    # any input size (not only the calibration one) binds and runs
    module = mx.mod.Module(sym, data_names=['data'], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[('data', (1, 3, 333, 517))], for_training=False)
    module.set_params(arg, aux)
    module.forward(mx.io.DataBatch([mx.nd.array(np.random.RandomState(0).uniform(
        0, 255, (1, 3, 333, 517)).astype(np.float32))]), is_train=False)
    outputs = [o.asnumpy() for o in module.get_outputs()]
    assert outputs[0].shape == (1, 4, 11, 17) and outputs[8].shape == (1, 20, 42, 65)
    probs = outputs[0].reshape(1, 2, -1, 17)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)    # softmax stays FP32


def test_quantized_detector_finds_every_dlib_val_face(int8_prefix):
    pytest.importorskip('retinaface', reason='retinaface.py (inference) not available')
    import cv2
    from retinaface import RetinaFace
    val = shared_path('data', 'dlib_faces', 'val')
    labels = read_val_labels(str(val / 'label.txt'))
    detector = RetinaFace(int8_prefix, 0, ctx_id=-1, network='net3')
    missed = []
    for image_name, gt_boxes in labels.items():
        image = cv2.imread(str(val / 'images' / image_name))
        faces, landmarks = detector.detect(image, threshold=0.5)
        assert landmarks.shape == (len(faces), 5, 2)
        best = _iou(gt_boxes, faces[:, :4]).max(axis=1) if len(faces) else np.zeros(len(gt_boxes))
        missed += ['%s face %d (IoU %.2f)' % (image_name, i, v) for i, v in enumerate(best) if v < 0.5]
    assert not missed, 'INT8 model missed: %s' % missed


def test_bad_arguments_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match='not found'):
        quantize.list_images([str(tmp_path / 'absent')])
    with pytest.raises(FileNotFoundError, match='no calibration image'):
        quantize.list_images([str(tmp_path)])
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'not a jpeg')
    with pytest.raises(ValueError, match='broken.jpg'):
        quantize.load_calibration_batch([str(bad)])
    data = mx.sym.Variable('data')
    sym = mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), name='c')
    with pytest.raises(ValueError, match='calib_mode'):
        quantize.quantize_checkpoint(sym, {}, {}, calib_mode='percentile')
    with pytest.raises(ValueError, match='no node named'):
        quantize.quantize_checkpoint(sym, {}, {}, calib_mode='none', excluded_sym_names=['nope'])
    with pytest.raises(ValueError, match='calibration images'):
        quantize.quantize_checkpoint(sym, {}, {}, calib_mode='naive')


def test_excluded_node_stays_fp32(mnet25_prefix):
    """Excluding an original node name keeps the fused MKLDNN node that holds it in FP32."""
    from rcnn.checkpoint.params import load_checkpoint
    sym, arg, aux = load_checkpoint(mnet25_prefix, 0)
    qsym, _, _ = quantize.quantize_checkpoint(sym, arg, aux, calib_mode='none',
                                              excluded_sym_names=['mobilenet0_conv0'])
    convs = [n for n in json.loads(qsym.tojson())['nodes'] if n['op'] == '_sg_mkldnn_conv']
    holding = [n for n in convs if any(inner['name'] == 'mobilenet0_conv0'
                                       for inner in n['subgraphs'][0]['nodes'])]
    assert len(holding) == 1
    assert holding[0].get('attrs', {}).get('quantized') != 'true'
    assert sum(n.get('attrs', {}).get('quantized') == 'true' for n in convs) == len(convs) - 1
    assert qsym.list_outputs() == sym.list_outputs()
