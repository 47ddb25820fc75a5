"""The loader's worker protocol (rcnn/core/worker_protocol.py, rcnn/core/loader_worker.py): named
messages, the shared-memory batch buffer, one answer per task. The worker loop runs in this
process on multiprocessing queues, so each message can be inspected."""
import multiprocessing
import os
import pickle
import signal
import types
from multiprocessing import shared_memory

import cv2
import numpy as np
import pytest

from rcnn.config import generate_config
from rcnn.core import worker_protocol as protocol
from rcnn.core.loader_worker import sample_worker_loop
from rcnn.io.anchor_targets import AnchorTargetGenerator
from rcnn.io.sample import MAX_REPLACEMENTS, SampleMaker

SEED = 3
BATCH = 2


def test_buffer_layout_is_aligned_and_views_share_memory():
    layout, total = protocol.batch_buffer_layout([('data', (2, 3, 5, 5)), ('label', (2, 7))])
    assert layout == [('data', (2, 3, 5, 5), 0), ('label', (2, 7), 640)]   # 600 B -> 640
    assert total == 640 + 64                                                # 56 B -> 64
    buffer = bytearray(total)
    views = protocol.batch_buffer_views(buffer, layout)
    protocol.write_sample(views, 1, np.ones((1, 3, 5, 5), np.float32),
                          {'label': np.full((1, 7), 2, np.float32)})
    again = protocol.batch_buffer_views(buffer, layout)
    assert again['data'][1].sum() == 75 and again['data'][0].sum() == 0
    np.testing.assert_array_equal(again['label'][1], np.full(7, 2))


def test_messages_are_named_and_survive_pickling():
    task = protocol.SampleTask(epoch=1, batch_no=2, slot=0, position=4, index=9, buffer_id=1)
    assert pickle.loads(pickle.dumps(task)) == task and task.index == 9
    done = protocol.SampleDone(1, 2, 0, 1, used_index=5, failures=[(9, 'x.jpg', 'gone')])
    assert pickle.loads(pickle.dumps(done)).failures == [(9, 'x.jpg', 'gone')]
    assert protocol.STOP is None


@pytest.fixture
def setup(tmp_path):
    cfg, _ = generate_config('mnet', 'retinaface')
    image = np.random.default_rng(0).integers(60, 120, size=(360, 480, 3), dtype=np.uint8)
    cv2.rectangle(image, (100, 80), (180, 170), (30, 160, 220), thickness=-1)
    cv2.imwrite(str(tmp_path / 'a.jpg'), image)
    good = {'image': str(tmp_path / 'a.jpg'), 'height': 360, 'width': 480,
            'boxes': np.array([[100, 80, 180, 170]], np.float32),
            'landmarks': np.full((1, 5, 3), -1, np.float32),
            'gt_classes': np.ones(1, np.int32), 'flipped': False}
    missing = dict(good, image=str(tmp_path / 'missing.jpg'))
    size = int(cfg.SCALES[0][0])
    feat_shapes = [(1, 2 * cfg.NUM_ANCHORS, size // s, size // s) for s in cfg.RPN_FEAT_STRIDE]
    shapes = [('data', (BATCH, 3, size, size))] + AnchorTargetGenerator.from_config(
        cfg).label_shapes(feat_shapes, BATCH)
    layout, total = protocol.batch_buffer_layout(shapes)
    return types.SimpleNamespace(cfg=cfg, good=good, missing=missing, feat_shapes=feat_shapes,
                                 layout=layout, total=total)


def _run_worker(setup, roidb, tasks, current_epoch=0):
    """Run the worker loop here on ``tasks`` (then STOP); returns its answers and the buffer."""
    context = multiprocessing.get_context('spawn')
    task_queue, result_queue = context.Queue(), context.Queue()
    for task in tasks:
        task_queue.put(task)
    task_queue.put(protocol.STOP)
    block = shared_memory.SharedMemory(create=True, size=setup.total)
    previous = signal.getsignal(signal.SIGINT)
    try:
        sample_worker_loop(task_queue, result_queue, roidb, setup.feat_shapes, setup.cfg, SEED,
                           types.SimpleNamespace(value=current_epoch), os.getppid(),
                           [block.name], setup.layout)
        answers = [result_queue.get(timeout=10) for _ in tasks]
        views = protocol.batch_buffer_views(block.buf, setup.layout)
        arrays = {name: view.copy() for name, view in views.items()}
        del views
        return answers, arrays
    finally:
        signal.signal(signal.SIGINT, previous)
        block.close()
        block.unlink()


def test_worker_answers_every_task_with_a_named_message(setup):
    roidb = [setup.good]
    tasks = [protocol.SampleTask(epoch=1, batch_no=0, slot=1, position=3, index=0, buffer_id=0),
             protocol.SampleTask(epoch=0, batch_no=5, slot=0, position=0, index=0, buffer_id=0)]
    answers, arrays = _run_worker(setup, roidb, tasks, current_epoch=1)
    done, skipped = answers
    assert done == protocol.SampleDone(1, 0, 1, 0, used_index=0, failures=[])
    assert skipped == protocol.SampleSkipped(0, 5, 0, 0)          # epoch 0 < current epoch 1
    maker = SampleMaker.from_config(setup.cfg, setup.feat_shapes)
    expected_tensor, expected_labels, _, _ = maker.load(roidb, 0, SEED, 1, 3)
    np.testing.assert_array_equal(arrays['data'][1], expected_tensor[0])
    for name in maker.targets.label_names:
        np.testing.assert_array_equal(arrays[name][1], expected_labels[name][0])
    assert not arrays['data'][0].any()                             # the skipped task wrote nothing


def test_worker_reports_a_failed_sample_with_its_image(setup):
    roidb = [setup.missing]
    task = protocol.SampleTask(epoch=0, batch_no=0, slot=0, position=0, index=0, buffer_id=0)
    (failed,), _ = _run_worker(setup, roidb, [task])
    assert isinstance(failed, protocol.SampleFailed)
    assert (failed.epoch, failed.batch_no, failed.slot, failed.buffer_id) == (0, 0, 0, 0)
    assert setup.missing['image'] in failed.summary and '\n' not in failed.summary
    assert 'could not be read' in failed.details and str(MAX_REPLACEMENTS + 1) in failed.details
