"""CropLoader batches of every layout: label names and shapes from the recipe's
``ModelLayout`` (anchor tables, dense anchors, blur, occlusion, no landmarks), and
``RANDOM_FEAT_STRIDE`` keeping one stride per batch, deterministically."""
import numpy as np
import pytest

from rcnn.config import generate_config
from rcnn.core.loader import CropLoader
from rcnn.io.sample import batch_select_stride
from test_loader import _feat_syms, roidb  # noqa: F401 -- the shared fixture

BATCH = 2


def _cfg(**overrides):
    cfg, _ = generate_config('mnet', 'retinaface', overrides=overrides)
    return cfg


@pytest.mark.parametrize('overrides, strides, anchors, box, landmark', [
    ({'RPN_ANCHOR_CFG': 'RAC_SSH2'}, (32, 16, 8), 4, 4, 10),
    ({'RPN_ANCHOR_CFG': 'RAC_SSH3'}, (32, 16, 8, 4), 4, 4, 10),
    ({'RPN_ANCHOR_CFG': 'RAC_RETINA'}, (64, 32, 16, 8, 4), 3, 4, 10),
    ({'DENSE_ANCHOR': True}, (32, 16, 8), 4, 4, 10),
    ({'USE_BLUR': True, 'USE_OCCLUSION': True}, (32, 16, 8), 2, 5, 15),
    ({'FACE_LANDMARK': False}, (32, 16, 8), 2, 4, 0)])
def test_batches_have_the_shapes_of_the_layout(
        roidb, overrides, strides, anchors, box, landmark):  # noqa: F811
    cfg = _cfg(**overrides)
    with CropLoader(_feat_syms(cfg), roidb, BATCH, cfg=cfg, num_workers=0, seed=0) as loader:
        expected = []
        for stride in strides:
            cells = (640 // stride) ** 2
            name = 'face_%%s_stride%d' % stride
            expected += [(name % 'label', (BATCH, anchors * cells)),
                         (name % 'bbox_target', (BATCH, box * anchors, cells)),
                         (name % 'bbox_weight', (BATCH, box * anchors, cells))]
            if landmark:
                expected += [(name % 'landmark_target', (BATCH, landmark * anchors, cells)),
                             (name % 'landmark_weight', (BATCH, landmark * anchors, cells))]
        assert [(d.name, d.shape) for d in loader.provide_label] == expected
        assert loader.label_name == [name for name, _ in expected]
        batch = next(loader)
        for (name, shape), array in zip(expected, batch.label):
            assert array.shape == shape, name
        positives = sum(float((batch.label[i].asnumpy() == 1).sum())
                        for i, (name, _) in enumerate(expected) if '_label_' in name)
        assert positives > 0


@pytest.mark.slow
@pytest.mark.parametrize('overrides', [{'RPN_ANCHOR_CFG': 'RAC_SSH2'}, {'DENSE_ANCHOR': True}])
def test_the_mnet_training_graph_binds_and_runs_on_loader_batches(roidb, overrides):  # noqa: F811
    """Where the graph already follows the layout (4 anchors per position), its label inputs
    take the loader's batches as they are."""
    import mxnet as mx
    from rcnn.core.loader import feature_symbols
    from rcnn.symbol import get_symbol_train
    cfg = _cfg(**overrides)
    train_sym = get_symbol_train('mnet', cfg)
    with CropLoader(feature_symbols(train_sym, cfg), roidb, 1, cfg=cfg, num_workers=0,
                    seed=2) as loader:
        module = mx.mod.Module(train_sym, data_names=['data'], label_names=loader.label_name,
                               context=[mx.cpu()])
        module.bind(data_shapes=loader.provide_data, label_shapes=loader.provide_label)
        module.init_params(mx.init.Normal(0.01))
        module.forward(next(loader), is_train=True)
        outputs = module.get_outputs()
        assert outputs and all(np.isfinite(o.asnumpy()).all() for o in outputs)
        assert dict(loader.provide_label)['face_label_stride8'] == (1, 4 * 80 * 80)


def test_graph_with_another_anchor_count_is_refused(roidb):  # noqa: F811
    with pytest.raises(ValueError, match='expected 2 x 4 anchors per position'):
        CropLoader(_feat_syms(_cfg()), roidb, BATCH, cfg=_cfg(DENSE_ANCHOR=True), num_workers=0)


def test_batch_select_stride_is_uniform_and_deterministic():
    strides = (64, 32, 16, 8, 4)
    draws = [batch_select_stride(7, 0, b, strides) for b in range(500)]
    assert draws == [batch_select_stride(7, 0, b, strides) for b in range(500)]
    counts = np.array([draws.count(s) for s in strides])
    assert counts.min() > 60                      # 100 expected each
    assert draws != [batch_select_stride(8, 0, b, strides) for b in range(500)]


def test_random_feat_stride_keeps_one_stride_per_batch(roidb):  # noqa: F811
    cfg = _cfg(RANDOM_FEAT_STRIDE=True)
    strides = tuple(cfg.RPN_FEAT_STRIDE)

    def kept_strides(num_workers):
        with CropLoader(_feat_syms(cfg), roidb, BATCH, cfg=cfg, num_workers=num_workers,
                        seed=3) as loader:
            kept, arrays = [], []
            for batch_no, batch in enumerate(loader):
                labels = dict(zip(loader.label_name, (a.asnumpy() for a in batch.label)))
                alive = [s for s in strides if np.any(labels['face_label_stride%d' % s] != -1)]
                assert len(alive) == 1, alive
                assert alive[0] == batch_select_stride(3, 0, batch_no, strides)
                kept.append(alive[0])
                arrays.append([a.asnumpy() for a in batch.label])
            return kept, arrays

    inline, inline_arrays = kept_strides(0)
    workers, worker_arrays = kept_strides(1)
    assert inline == workers
    for a, b in zip(inline_arrays, worker_arrays):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def _write_train_set(root, blur):
    """One 400 x 400 photo-like image with a 120 px face; its points: visible, occluded,
    visible, missing, visible."""
    import cv2
    images = root / 'train' / 'images' / '0--test'
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    image = rng.integers(60, 120, size=(400, 400, 3), dtype=np.uint8)
    cv2.rectangle(image, (140, 140), (260, 260), (30, 160, 220), thickness=-1)
    cv2.imwrite(str(images / 'face.jpg'), image)
    points = '170 180 0.0 230 180 1.0 200 210 0.0 -1 -1 -1 220 240 0.0'
    (root / 'train' / 'label.txt').write_text(
        '# 0--test/face.jpg\n140 140 120 120 %s %s\n' % (points, blur))


@pytest.mark.parametrize('blur, expected', [('0.45', 0.45), ('-1.0', 0.3)])
def test_blur_and_visibility_from_label_txt_reach_the_labels(tmp_path, blur, expected):
    from rcnn.dataset.retinaface_dataset import RetinaFaceDataset
    _write_train_set(tmp_path, blur)
    cfg = _cfg(USE_BLUR=True, USE_OCCLUSION=True)
    records = RetinaFaceDataset('train', None, str(tmp_path), cfg).gt_roidb() * 4
    with CropLoader(_feat_syms(cfg), records, 2, cfg=cfg, num_workers=0, seed=1,
                    shuffle=False) as loader:
        found = 0
        for batch in loader:
            labels = dict(zip(loader.label_name, (a.asnumpy() for a in batch.label)))
            for stride in cfg.RPN_FEAT_STRIDE:
                name = 'face_%%s_stride%d' % stride
                label = labels[name % 'label']                     # (B, A*H*W)
                b, index = np.nonzero(label == 1)
                cells = label.shape[1] // 2
                a, position = index // cells, index % cells
                box = labels[name % 'bbox_target'].reshape(2, 2, 5, cells)[b, a, :, position]
                box_w = labels[name % 'bbox_weight'].reshape(2, 2, 5, cells)[b, a, :, position]
                lmk_w = labels[name % 'landmark_weight'].reshape(2, 2, 5, 3, cells)
                lmk = labels[name % 'landmark_target'].reshape(2, 2, 5, 3, cells)
                np.testing.assert_allclose(box[:, 4], expected, rtol=1e-6)
                np.testing.assert_allclose(box_w, np.tile([1, 1, 1, 1, 0.1], (len(b), 1)))
                visibility = lmk[b, a, :, 2, position]             # (n, 5)
                weights = lmk_w[b, a, :, :, position]              # (n, 5, 3)
                # a mirrored crop swaps the eyes: the occluded eye is point 0 or 1
                assert np.all(np.sort(visibility[:, :2], axis=1) == [0, 1])
                assert np.all(visibility[:, 2] == 1)
                missing = np.all(weights == 0, axis=2)             # (n, 5)
                assert np.all(missing.sum(axis=1) == 1)
                assert np.all(missing[:, 3] | missing[:, 4])       # the mouth corner
                assert np.all(visibility[missing] == 0)
                np.testing.assert_allclose(weights[~missing], np.tile([1, 1, 0.1],
                                                                      ((~missing).sum(), 1)))
                found += len(b)
    assert found > 0
