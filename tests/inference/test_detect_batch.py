"""detect_batch: several images per forward pass give the per-image results of detect()."""
import numpy as np
import pytest

from conftest import shared_path

pytest.importorskip('mxnet')
cv2 = pytest.importorskip('cv2')

from rcnn.inference.pipeline import Schedule, feature_size, plan_batches, plan_scale  # noqa: E402


@pytest.fixture(scope='module')
def detector():
    from retinaface import RetinaFace
    prefix = str(shared_path('models', 'mnet.25') / 'mnet.25')
    return RetinaFace(prefix, 0, ctx_id=-1, network='net3')


@pytest.fixture(scope='module')
def photos():
    """The 9 dlib photos: several share 500x375, the others differ."""
    root = shared_path('data', 'dlib_faces')
    paths = sorted(root.glob('*/images/*/*.jpg'))
    assert len(paths) == 9
    return [cv2.imread(str(p)) for p in paths]


def _assert_same(batch_results, single_results, atol=1e-3):
    assert len(batch_results) == len(single_results)
    for (faces, points), (ref_faces, ref_points) in zip(batch_results, single_results):
        assert faces.shape == ref_faces.shape and points.shape == ref_points.shape
        np.testing.assert_allclose(faces, ref_faces, atol=atol)
        np.testing.assert_allclose(points, ref_points, atol=atol)


def test_plan_batches_hand_cases():
    shapes = [(480, 640), (375, 500), (480, 640), (480, 640), (375, 500)]
    assert plan_batches(shapes, max_batch=2) == [[0, 2], [3], [1, 4]]
    assert plan_batches(shapes, max_batch=8) == [[0, 2, 3], [1, 4]]
    assert plan_batches(shapes, max_batch=2, pad=True) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match='max_batch'):
        plan_batches(shapes, max_batch=0)


def test_plan_scale_hand_cases():
    shapes = [(64, 96), (32, 32), (64, 96)]
    both = (False, True)
    # each flip on its own, unflipped first; same-shape images share a batch
    assert plan_scale(shapes, both, Schedule(max_batch=8)) == [
        [(0, False), (2, False)], [(1, False)], [(0, True), (2, True)], [(1, True)]]
    # one forward per input, grouped by shape all the same
    assert plan_scale(shapes, (False,), Schedule()) == [[(0, False)], [(2, False)], [(1, False)]]
    # flip batches: an image's two flips together, max_batch counts images
    assert plan_scale(shapes, both, Schedule(flip_batch=True)) == [
        [(0, False), (0, True)], [(2, False), (2, True)], [(1, False), (1, True)]]
    assert plan_scale(shapes, both, Schedule(max_batch=2, flip_batch=True)) == [
        [(0, False), (0, True), (2, False), (2, True)], [(1, False), (1, True)]]
    assert plan_scale(shapes, both, Schedule(max_batch=3, pad=True)) == [
        [(0, False), (1, False), (2, False)], [(0, True), (1, True), (2, True)]]
    # flip batching has nothing to pair without flips
    assert plan_scale(shapes[:1], (False,), Schedule(flip_batch=True)) == [[(0, False)]]
    with pytest.raises(ValueError, match='scale_workers'):
        Schedule(scale_workers=0)


def test_feature_size_matches_the_released_graph():
    import mxnet as mx
    sym = mx.sym.load(str(shared_path('models', 'mnet.25') / 'mnet.25-symbol.json'))
    names = sym.list_outputs()
    for height, width in [(480, 640), (375, 500), (333, 517), (33, 65), (1545, 1986)]:
        _, out_shapes, _ = sym.infer_shape(data=(1, 3, height, width))
        for stride in (32, 16, 8):
            shape = out_shapes[names.index('face_rpn_bbox_pred_stride%d_output' % stride)]
            assert shape[2:] == (feature_size(height, stride), feature_size(width, stride))


def test_same_size_batches_equal_detect(detector, photos):
    same = [p for p in photos if p.shape == (375, 500, 3)]
    assert len(same) >= 4
    single = [detector.detect(p, 0.3, [1.0, 0.5], do_flip=True) for p in same]
    _assert_same(detector.detect_batch(same, 0.3, [1.0, 0.5], do_flip=True, max_batch=3), single)
    assert any(len(faces) for faces, _ in single)


def test_flip_batches_across_images_equal_detect(detector, photos):
    """Both flips of two images in one forward of 4: the faces of detect() on each image."""
    same = [p for p in photos if p.shape == (375, 500, 3)][:3]
    single = [detector.detect(p, 0.3, [0.5, 0.8], do_flip=True) for p in same]
    schedule = Schedule(max_batch=2, flip_batch=True)
    _assert_same(detector.detect_images(same, 0.3, [0.5, 0.8], True, schedule), single)


def test_mixed_sizes_grouped_by_shape_equal_detect(detector, photos):
    single = [detector.detect(p, 0.02) for p in photos]
    _assert_same(detector.detect_batch(photos, 0.02, max_batch=4), single)


def test_padded_batches_map_faces_back(detector, photos):
    """pad=True: boxes in each image's own coordinates; near the bottom/right border the padded
    context shifts scores and boxes slightly, so match faces instead of comparing exactly."""
    results = detector.detect_batch(photos, 0.5, pad=True, max_batch=9)
    for image, (faces, points) in zip(photos, results):
        ref_faces, _ = detector.detect(image, 0.5)
        assert len(faces) == len(ref_faces)
        for ref in ref_faces:
            dist = np.abs(faces[:, :4] - ref[:4]).max(axis=1)
            assert dist.min() < 3.0            # pixels
        assert (faces[:, 2] < image.shape[1]).all() and (faces[:, 3] < image.shape[0]).all()


def test_onnxruntime_backend_batches(detector, photos, tmp_path):
    pytest.importorskip('onnxruntime', reason='optional extra (requirements-deploy.txt)')
    from test_onnx_export import onnxruntime_detector
    prefix = str(shared_path('models', 'mnet.25') / 'mnet.25')
    ort_detector = onnxruntime_detector(prefix, tmp_path)
    single = [ort_detector.detect(p, 0.3) for p in photos]
    _assert_same(ort_detector.detect_batch(photos, 0.3, max_batch=8), single)


def test_bad_images_are_named(detector, photos):
    with pytest.raises(ValueError, match=r'images\[1\]'):
        detector.detect_batch([photos[0], None])
    with pytest.raises(ValueError, match='max_batch'):
        detector.detect_batch(photos[:2], max_batch=0)
    assert detector.detect_batch([]) == []
