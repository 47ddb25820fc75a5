"""tools/protocol_report.py on a tiny real split (the released mnet.25, 2 dlib photos)."""
import csv
import json

import cv2
import numpy as np
import pytest

from rcnn.evaluation.protocols import get_protocol
from rcnn.evaluation.widerface import read_prediction_file
from tools import protocol_report


@pytest.fixture(scope='module')
def train_report(tmp_path_factory):
    """The report of protocols original and vga on the first 2 dlib train photos (they have
    landmarks), with the real mnet.25."""
    from conftest import SHARED
    prefix = SHARED / 'models' / 'mnet.25' / 'mnet.25'
    dataset = SHARED / 'data' / 'dlib_faces'
    if not (dataset / 'train' / 'label.txt').is_file() or not prefix.with_name(
            'mnet.25-0000.params').is_file():
        pytest.skip('real data %s / %s not found (../shared is absent; see ../shared/README.md)'
                    % (dataset, prefix))
    out = tmp_path_factory.mktemp('report')
    rc = protocol_report.main([str(prefix), '0', '--dataset-path', str(dataset), '--image-set',
                               'train', '--protocols', 'original,vga', '--max-images', '2',
                               '--out', str(out)])
    assert rc == 0
    return prefix, dataset, out


def test_one_row_per_protocol_with_ap_size_bands_nme_and_speed(train_report):
    _, _, out = train_report
    rows = list(csv.DictReader((out / 'protocol_report.csv').open()))
    assert [(r['protocol'], r['variant']) for r in rows] == [('original', 'mxnet'),
                                                               ('vga', 'mxnet')]
    for row in rows:
        # the 13 faces of these photos are 37-45 px: all in the hard setting and band 32-64,
        # none tall enough (50 px) for easy; the released model finds them all
        assert row['ap_easy'] == '' and float(row['ap_hard']) > 0.9
        assert float(row['ap_32_64']) == pytest.approx(float(row['ap_hard']))
        assert row['ap_lt16'] == row['ap_16_32'] == row['ap_64_128'] == row['ap_ge128'] == ''
        assert int(row['nme_faces']) == 13 and int(row['nme_matched']) >= 12
        assert 0.0 < float(row['nme']) < 0.1 and float(row['images_per_s']) > 0
    text = (out / 'protocol_report.md').read_text()
    assert '| protocol | variant | AP easy | AP medium | AP hard | AP <16 |' in text
    assert '| original | mxnet | - |' in text and '| vga | mxnet | - |' in text
    assert 'hard setting (<16: 0, 16-32: 0, 32-64: 13, 64-128: 0, >=128: 0)' in text
    assert '`python tools/protocol_report.py ' in text and '--protocols original,vga' in text


def test_prediction_files_are_the_detectors_own_output_at_the_protocols_scales(train_report):
    prefix, dataset, out = train_report
    from rcnn.inference.detector import RetinaFace
    image_path = dataset / 'train' / 'images' / '0--dlib' / '2007_007763.jpg'
    image = cv2.imread(str(image_path))
    assert image.shape[:2] == (375, 500)
    # vga fits 500 x 375 into 640 x 480: scale 1.28 on both sides
    assert get_protocol('vga').scales(375, 500) == [pytest.approx(1.28)]
    detector = RetinaFace(str(prefix), 0, ctx_id=-1, nms=0.4)
    for name, scale in (('original', 1.0), ('vga', 1.28)):
        faces, landmarks = detector.detect(image, threshold=0.02, scales=[scale])
        path = out / 'predictions' / 'mxnet' / name / '0--dlib' / '2007_007763.txt'
        boxes, points = read_prediction_file(str(path), '2007_007763', with_landmarks=True)
        np.testing.assert_allclose(boxes[:, :2], np.floor(faces[:, :2]), atol=1)
        np.testing.assert_allclose(boxes[:, 4], faces[:, 4], rtol=1e-5)
        np.testing.assert_allclose(points, landmarks, atol=0.051)
        manifest = json.loads((path.parent.parent / 'manifest.json').read_text())
        assert manifest['protocol'] == name and manifest['variant'] == 'mxnet'


def test_val_split_without_landmarks_says_so(tmp_path, dlib_faces, mnet25_prefix, capsys):
    rc = protocol_report.main([mnet25_prefix, '0', '--dataset-path', str(dlib_faces),
                               '--protocols', 'original', '--max-images', '1', '--out',
                               str(tmp_path)])
    assert rc == 0
    text = (tmp_path / 'protocol_report.md').read_text()
    assert 'landmark NME: not computed (no landmarks in' in text
    assert 'AP ground truth `%s`' % (dlib_faces / 'val' / 'gt') in text
    row, = csv.DictReader((tmp_path / 'protocol_report.csv').open())
    assert row['nme'] == '' and row['images'] == '1'


def test_bad_inputs_are_one_line(tmp_path, capsys):
    assert protocol_report.main([str(tmp_path / 'nope'), '0', '--dataset-path', str(tmp_path),
                                 '--out', str(tmp_path / 'o')]) == 1
    assert 'checkpoint file not found' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        protocol_report.parse_args(['p', '0', '--dataset-path', 'd', '--out', 'o',
                                    '--protocols', 'vga,hd'])
    assert 'unknown protocol hd (known: vga, original, single, pyramid' in capsys.readouterr().err


def test_variants_without_their_extras_are_skipped_with_the_reason(tmp_path, monkeypatch):
    import importlib.util
    from rcnn.deploy import quantize
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'onnxruntime' else real_find_spec(name,
                                                                                         *a))

    def no_mkldnn():
        raise RuntimeError('INT8 quantization needs an MXNet build with MKLDNN')
    monkeypatch.setattr(quantize, 'check_mkldnn', no_mkldnn)
    args = protocol_report.parse_args(['p', '0', '--dataset-path', 'd', '--out', str(tmp_path)])
    model, reason = protocol_report.variant_model('onnxruntime', args, [])
    assert model is None and reason.startswith('onnxruntime not installed')
    model, reason = protocol_report.variant_model('int8', args, [])
    assert model is None and 'MKLDNN' in reason
    assert protocol_report.variant_model('mxnet', args, []) == (('mxnet', 'p', 0), None)
