"""train.py: devices, sharding, frozen layers, checkpoint records, and end-to-end CPU runs.

The end-to-end runs (marked slow) train mnet on the real dlib photos in ../shared at
1 image per batch: a smoke run whose checkpoint RetinaFace loads, a resume after SIGKILL,
a NaN stop, two CPU contexts, and 2 dist_sync workers through tools/launch.py.
"""
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from conftest import RESUME_REFERENCE_FLAGS, shared_path, train_env, train_in_process
from rcnn.checkpoint.files import checkpoint_files
from rcnn.checkpoint.params import compare_params
from rcnn.checkpoint.record import (CorruptCheckpointError, latest_checkpoint, list_train_records,
                                    read_train_record, write_train_record)
from rcnn.core.devices import DeviceError, resolve_contexts, shard_roidb
from rcnn.core.param_policy import frozen_param_names

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / 'train.py'
LAUNCH = ROOT / 'tools' / 'launch.py'
HAS_CUDA = mx.runtime.Features().is_enabled('CUDA')


# ------------------------------------------------------------------------------ devices
@pytest.mark.skipif(HAS_CUDA, reason='this MXNet build has CUDA')
@pytest.mark.parametrize('gpus, environ', [('', {'CUDA_VISIBLE_DEVICES': '0,1'}),
                                           ('0', {})])
def test_gpu_request_on_a_cpu_build_is_a_clear_error(gpus, environ):
    with pytest.raises(DeviceError, match='no CUDA support'):
        resolve_contexts(gpus, 0, environ)


def test_cpu_contexts():
    assert resolve_contexts('', 0, {}) == [mx.cpu()]
    assert resolve_contexts('', 0, {'CUDA_VISIBLE_DEVICES': ' '}) == [mx.cpu()]
    assert resolve_contexts('', 2, {'CUDA_VISIBLE_DEVICES': '0'}) == [mx.cpu(0), mx.cpu(1)]


@pytest.mark.skipif(HAS_CUDA, reason='this MXNet build has CUDA')
def test_train_py_reports_gpu_request_and_exits(monkeypatch, capsys):
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '0')
    proc = train_in_process(['--prefix', '/tmp/never-written'], capsys)
    assert proc.returncode == 2
    assert 'CUDA_VISIBLE_DEVICES=0' in proc.stderr and 'no CUDA support' in proc.stderr


# ------------------------------------------------------------------------------ sharding
def test_shards_are_disjoint_equal_and_interleaved():
    roidb = [{'image': str(i)} for i in range(11)]
    shards = [shard_roidb(roidb, rank, 3) for rank in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert [[int(r['image']) for r in s] for s in shards] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert shard_roidb(roidb, 0, 1) == roidb
    with pytest.raises(ValueError, match='2 roidb entries cannot be shared by 3 workers'):
        shard_roidb(roidb[:2], 0, 3)


# ------------------------------------------------------------------------------ parameters
def test_param_comparison_lists_missing_unexpected_and_mismatched():
    arg_shapes = {'a_weight': (2, 3), 'b_bias': (2,), 'c_weight': (0, 4)}
    aux_shapes = {'bn_moving_mean': (4,)}
    missing, unexpected, mismatched = compare_params(
        arg_shapes, aux_shapes, {'a_weight': mx.nd.zeros((3, 2)), 'extra': mx.nd.zeros(1),
                                 'c_weight': mx.nd.zeros((5, 4))},
        {'bn_moving_mean': mx.nd.zeros(4)})
    assert missing == ['arg:b_bias'] and unexpected == ['arg:extra']
    # a shape the graph leaves unknown (0) is not compared
    assert mismatched == ['arg:a_weight has shape (3, 2), the graph needs (2, 3)']


def released_mnet_param_order(prefix):
    """Learnable parameter names of the released graph, in graph order (from its JSON)."""
    graph = json.loads(Path(prefix + '-symbol.json').read_text())
    aux = ('_moving_mean', '_moving_var', '_running_mean', '_running_var')
    return [n['name'] for n in graph['nodes']
            if n['op'] == 'null' and n['name'] != 'data' and not n['name'].endswith(aux)]


def test_mnet_from_pretrained_freezes_the_first_six_backbone_arrays(mnet25_prefix):
    from rcnn.config import generate_config
    from rcnn.symbol import get_symbol_train
    cfg, _ = generate_config('mnet', 'retinaface')
    sym = get_symbol_train('mnet', cfg)
    labels = re.compile(r'^face_(label|bbox_|landmark_)')
    params = [n for n in sym.list_arguments() if n != 'data' and not labels.match(n)]
    frozen = frozen_param_names(cfg.LAYER_FIX, params, loaded_names=params)
    assert frozen == released_mnet_param_order(mnet25_prefix)[:6] == [
        'mobilenet0_conv0_weight', 'mobilenet0_batchnorm0_gamma', 'mobilenet0_batchnorm0_beta',
        'mobilenet0_conv1_weight', 'mobilenet0_batchnorm1_gamma', 'mobilenet0_batchnorm1_beta']
    assert frozen_param_names(cfg.LAYER_FIX, params, loaded_names=[]) == []
    resnet_cfg, _ = generate_config('resnet', 'retinaface')
    assert frozen_param_names(resnet_cfg.LAYER_FIX, params, loaded_names=params) == []


# ------------------------------------------------------------------------------ records
def make_checkpoint_files(prefix, number, payload=b'params'):
    files = checkpoint_files(prefix, number)
    Path(files['params']).write_bytes(payload * 100)
    Path(files['symbol']).write_text('{"nodes": []}')
    Path(files['states']).write_bytes(b'momentum' * 50)
    record = {'network': 'mnet', 'epoch': 1, 'batch_in_epoch': 0, 'iteration': 7, 'lr': 0.01,
              'base_lr': 0.01, 'lr_steps': [55], 'lr_factors': [0.1], 'iters_per_epoch': 7,
              'batch_size': 1, 'num_devices': 1, 'num_workers': 1}
    return write_train_record(prefix, number, record), files


def test_record_round_trip_and_latest(tmp_path):
    prefix = str(tmp_path / 'm')
    make_checkpoint_files(prefix, 1)
    make_checkpoint_files(prefix, 3)
    assert list_train_records(prefix) == [1, 3]
    assert latest_checkpoint(prefix) == 3
    record = read_train_record(prefix, 3)
    assert record['iteration'] == 7 and record['checkpoint'] == 3
    assert not list(tmp_path.glob('*.tmp'))   # no temporary file left behind


@pytest.mark.parametrize('kind', ['params', 'states', 'symbol'])
def test_a_changed_or_truncated_file_is_refused_naming_it(tmp_path, kind):
    prefix = str(tmp_path / 'm')
    _, files = make_checkpoint_files(prefix, 2)
    data = Path(files[kind]).read_bytes()
    Path(files[kind]).write_bytes(data[:len(data) // 2])       # truncated
    with pytest.raises(CorruptCheckpointError, match=re.escape(files[kind])):
        read_train_record(prefix, 2)


def test_a_garbled_record_is_refused(tmp_path):
    prefix = str(tmp_path / 'm')
    _, files = make_checkpoint_files(prefix, 2)
    Path(files['record']).write_bytes(Path(files['record']).read_bytes()[:40])
    with pytest.raises(CorruptCheckpointError, match='m-0002.train.json is corrupted'):
        read_train_record(prefix, 2)
    with pytest.raises(CorruptCheckpointError, match='not found'):
        read_train_record(prefix, 5)


# ------------------------------------------------------------------------------ stop rule
def test_stop_rule_and_a_resumed_runs_last_good_checkpoint():
    import dataclasses
    from rcnn.core.hooks import Checkpointer, StopRule
    from rcnn.core.schedule import LRSchedule
    from rcnn.core.trainer import Position, SavedCheckpoint, Trainer
    schedule = LRSchedule(0.01, [100])
    rule = StopRule(end_epoch=3, max_iters=10)
    assert rule.stop_iteration(schedule) == 10
    assert rule.reason(schedule, Position(1, 0, 10)) == 'max_iters'
    assert rule.reason(schedule, Position(3, 0, 5)) == 'end_epoch'
    assert rule.reason(schedule, Position(1, 0, 9)) is None
    assert StopRule(end_epoch=9).reason(schedule, Position(1, 0, 100)) == 'schedule'
    with pytest.raises(dataclasses.FrozenInstanceError):
        Position(1).iteration = 5
    resumed = Checkpointer('p', None, {}, resumed_from=(2, 14))
    trainer = Trainer(None, None, schedule, 2, 0, (32, 16, 8), [resumed])
    assert trainer.iters_per_epoch == 1 and trainer.last_checkpoint is None
    resumed.before_train(trainer)
    assert trainer.last_checkpoint == SavedCheckpoint('p', 2, 14)
    assert str(trainer.last_checkpoint) == 'p-0002'
    Checkpointer('p', None, {}).before_train(trainer)
    assert trainer.last_checkpoint is None


# ------------------------------------------------------------------------------ end to end
def train_argv(prefix, *extra):
    return ['--network', 'mnet', '--prefix', str(prefix), '--batch_images', '1', '--workers', '1',
            '--frequent', '1', '--seed', '3', *extra]


def train_cmd(prefix, *extra):
    return [sys.executable, str(TRAIN), *train_argv(prefix, *extra)]


# Runs whose assertions concern neither the process nor the loader workers run train.py's main
# in the test process (train_in_process) with the crops made inline (the same batches,
# tests/core/test_loader.py): a process or a loader worker of their own spends ~3 s of CPU
# importing MXNet, longer than these runs train.
INLINE_LOADER = ('--workers', '0')


def run_train(cmd, timeout=300):
    return subprocess.run(cmd, cwd=str(ROOT), env=train_env(), capture_output=True, text=True,
                          timeout=timeout)


def logged_losses(log_text, name):
    return [float(v) for v in re.findall(r'%s=([0-9.eE+-]+|nan)' % name, log_text)]


def final_digest(text):
    match = re.search(r'final parameter digest \(rank (\d+) of (\d+)\): ([0-9a-f]{64})', text)
    assert match, text[-3000:]
    return match.group(3)


def dlib_args(dlib_root, root_path):
    return ['--dataset_path', str(dlib_root), '--root_path', str(root_path)]


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    """The prefix of a 6-iteration train.py run on the dlib photos (run once: the smoke test
    reads it, the corrupted-resume test damages a copy of its checkpoint)."""
    dlib_root = shared_path('data', 'dlib_faces')
    folder = tmp_path_factory.mktemp('smoke')
    prefix = folder / 'm'
    proc = run_train(train_cmd(prefix, '--max_iters', '6', *dlib_args(dlib_root, folder)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return prefix


@pytest.mark.slow
def test_smoke_run_logs_metrics_and_writes_a_checkpoint_retinaface_loads(smoke_run, dlib_faces):
    import cv2
    from rcnn.config import generate_config
    from rcnn.symbol import get_symbol_test
    from rcnn.checkpoint.params import check_params, load_checkpoint
    from retinaface import RetinaFace

    prefix = smoke_run
    log = Path(str(prefix) + '-train.log').read_text()
    assert len(re.findall(r'Iter\[\d\] Speed: [0-9.]+ samples/sec', log)) == 6
    assert len(logged_losses(log, 'RPNAcc_s8')) == 6
    # 8 records (4 photos + mirrors), batch 1: stopped inside epoch 0 -> checkpoint 1
    record = read_train_record(str(prefix), 1)
    assert (record['epoch'], record['batch_in_epoch'], record['iteration']) == (0, 6, 6)
    assert record['iters_per_epoch'] == 8 and record['lr'] == pytest.approx(0.01)
    # the saved graph is the deploy graph, with exactly its parameters
    sym, arg_params, aux_params = load_checkpoint(str(prefix), 1)
    cfg, _ = generate_config('mnet', 'retinaface')
    deploy = get_symbol_test('mnet', cfg)
    assert sym.list_outputs() == deploy.list_outputs() and len(sym.list_outputs()) == 9
    check_params(deploy, arg_params, aux_params)
    # the recipe inference needs is written beside the checkpoints, and the detector reads it
    from rcnn.recipe import Recipe, read_recipe
    assert read_recipe(str(prefix)) == Recipe.from_config(cfg, 'mnet')
    detector = RetinaFace(str(prefix), 1, ctx_id=-1)
    assert detector.recipe.source == str(prefix) + '-recipe.json'
    image = cv2.imread(str(next((Path(dlib_faces) / 'val' / 'images').rglob('*.jpg'))))
    faces, landmarks = detector.detect(image, threshold=0.0)
    assert faces.ndim == 2 and faces.shape[1] == 5 and landmarks.shape[1:] == (5, 2)


@pytest.mark.slow
def test_resume_after_kill_continues_exactly(tmp_path, dlib_faces, resume_reference):
    """Kill a run after a mid-epoch checkpoint; the resumed run ends with the parameters of an
    uninterrupted run (the same flags), across an lr step (at iteration 8) it had not reached
    when killed."""
    assert 'lr changes to 0.001 at iteration 8' in resume_reference
    prefix = tmp_path / 'run'
    victim = subprocess.Popen([sys.executable, str(TRAIN), '--prefix', str(prefix),
                               *RESUME_REFERENCE_FLAGS, *dlib_args(dlib_faces, tmp_path)],
                              cwd=str(ROOT), env=train_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    record_path = Path(checkpoint_files(str(prefix), 1)['record'])
    deadline = time.time() + 240
    while not record_path.exists() and time.time() < deadline and victim.poll() is None:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    record = read_train_record(str(prefix), 1)
    killed_at = record['iteration']
    assert 2 <= killed_at < 8 and killed_at % 2 == 0   # mid-epoch, before the lr step

    resumed = run_train(train_cmd(prefix, '--max_iters', '10', '--resume',
                                  *dlib_args(dlib_faces, tmp_path)))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert 'resuming from checkpoint %s-0001 at Position(epoch=0, batch_in_epoch=%d, ' \
           'iteration=%d), lr 0.01' % (prefix, killed_at, killed_at) in resumed.stdout
    assert 'optimizer state restored' in resumed.stdout
    assert 'lr changes to 0.001 at iteration 8' in resumed.stdout
    first_iter = re.search(r'Iter\[(\d+)\]', resumed.stdout).group(1)
    assert int(first_iter) == killed_at + 1
    assert final_digest(resumed.stdout) == final_digest(resume_reference)
    final = read_train_record(str(prefix), 2)
    assert (final['epoch'], final['batch_in_epoch'], final['iteration']) == (1, 2, 10)
    assert final['lr'] == pytest.approx(0.001)


@pytest.mark.slow
def test_corrupted_checkpoint_is_refused_on_resume(tmp_path, dlib_faces, smoke_run, capsys):
    prefix = tmp_path / 'm'
    # a copy of the smoke run's checkpoint 1 (the record names its files relative to the prefix)
    for path in smoke_run.parent.glob(smoke_run.name + '-*'):
        if path.is_file() and not path.name.endswith('.lock'):
            shutil.copy2(path, tmp_path / path.name)
    assert read_train_record(str(prefix), 1)['iteration'] == 6     # the copy is intact
    params = Path(checkpoint_files(str(prefix), 1)['params'])
    data = bytearray(params.read_bytes())
    data[len(data) // 2] ^= 0xFF                       # one flipped byte
    params.write_bytes(bytes(data))
    # refused during start-up: train.py's main in this process
    again = train_in_process(train_argv(prefix, '--max_iters', '8', '--resume',
                                        *dlib_args(dlib_faces, tmp_path)), capsys)
    assert again.returncode == 2
    assert 'cannot resume: %s is corrupted' % params in again.stderr


@pytest.mark.slow
def test_nan_loss_stops_naming_the_batch_and_keeps_the_last_checkpoint(tmp_path, dlib_faces,
                                                                       capsys):
    prefix = tmp_path / 'm'
    proc = train_in_process(train_argv(prefix, '--lr', '1e8', '--max_iters', '30', '--no_flip',
                                       '--checkpoint_iters', '1', *INLINE_LOADER,
                                       *dlib_args(dlib_faces, tmp_path)), capsys)
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    # either the loss of a batch, or the parameters its update produced, overflowed first
    match = re.search(r'non-finite (?:loss at|parameters after the update of) epoch (\d+), '
                      r'batch (\d+) \(iteration (\d+)\)', proc.stderr)
    assert match, proc.stderr[-3000:]
    epoch, batch, iteration = (int(g) for g in match.groups())
    assert iteration == epoch * 4 + batch - 1          # 4 batches per epoch
    latest = latest_checkpoint(str(prefix))
    record = read_train_record(str(prefix), latest)   # intact
    assert record['iteration'] == iteration                        # saved just before it
    from rcnn.checkpoint.params import load_params
    arg_params, _ = load_params(str(prefix), latest)
    assert all(np.isfinite(v.asnumpy()).all() for v in arg_params.values())


@pytest.mark.slow
def test_two_cpu_contexts_train_with_the_device_kvstore(tmp_path, dlib_faces, capsys):
    prefix = tmp_path / 'm'
    proc = train_in_process(train_argv(prefix, '--cpus', '2', '--kvstore', 'device',
                                       '--max_iters', '3', '--no_flip', *INLINE_LOADER,
                                       *dlib_args(dlib_faces, tmp_path)), capsys)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'devices [cpu(0), cpu(1)], batch 2 (1 per device)' in proc.stdout
    # 4 photos, batch 2: epoch 0 ends at iteration 2 (checkpoint 1), the run inside epoch 1
    assert latest_checkpoint(str(prefix)) == 2
    record = read_train_record(str(prefix), 2)
    assert (record['num_devices'], record['batch_size'], record['iteration']) == (2, 2, 3)


@pytest.mark.slow
def test_two_dist_sync_workers_end_with_identical_parameters(tmp_path, dlib_faces):
    logs = tmp_path / 'logs'
    prefix = tmp_path / 'm'
    cmd = [sys.executable, str(LAUNCH), '-n', '2', '-s', '1', '--log-dir', str(logs),
           '--grace', '10', *train_cmd(prefix, '--kvstore', 'dist_sync', '--max_iters', '3',
                                       '--no_flip', *INLINE_LOADER,
                                       *dlib_args(dlib_faces, tmp_path))]
    proc = run_train(cmd, timeout=300)
    outputs = [(logs / ('worker%d.log' % i)).read_text() for i in range(2)]
    assert proc.returncode == 0, proc.stderr[-2000:] + outputs[0][-2000:] + outputs[1][-2000:]
    digests = {}
    for text in outputs:
        match = re.search(r'final parameter digest \(rank (\d) of 2\): ([0-9a-f]{64})', text)
        assert match, text[-3000:]
        digests[int(match.group(1))] = match.group(2)
        # each worker trains on its own shard: 4 photos / 2 workers, 2 batches per epoch
        assert '2 images (2 iterations per epoch)' in text
    assert sorted(digests) == [0, 1] and digests[0] == digests[1]
    broadcast = re.search(r'broadcast from rank 0 \(digest ([0-9a-f]{16})\)', outputs[0])
    assert broadcast and not digests[0].startswith(broadcast.group(1))   # training moved them
    # only rank 0 writes checkpoints; rank 1 logs to its own file
    assert read_train_record(str(prefix), 2)['num_workers'] == 2
    assert Path(str(prefix) + '-train-rank1.log').exists()
    assert len(list(tmp_path.glob('m-*.params'))) == 2   # epoch 1 end and the final one


def val_faces_found(prefix, epoch, val_roidb):
    """GT faces of the dlib val photos matched (IoU >= 0.5) by a detection at score 0.5."""
    import cv2
    from rcnn.processing.bbox_transform import bbox_overlaps
    from retinaface import RetinaFace
    detector = RetinaFace(str(prefix), epoch, ctx_id=-1)
    found = 0
    for entry in val_roidb:
        faces, _ = detector.detect(cv2.imread(entry['image']), threshold=0.5)
        if len(faces):
            overlaps = bbox_overlaps(entry['boxes'].astype(np.float64),
                                     faces[:, :4].astype(np.float64))
            found += int((overlaps.max(axis=1) >= 0.5).sum())
    return found


@pytest.mark.slow
def test_fine_tuning_from_the_release_loads_everything_and_still_finds_the_val_faces(
        tmp_path, dlib_faces, mnet25_prefix, capsys):
    from rcnn.config import generate_config
    from rcnn.dataset import RetinaFaceDataset
    from rcnn.checkpoint.params import load_params
    prefix = tmp_path / 'ft'
    proc = train_in_process(train_argv(prefix, '--pretrained', mnet25_prefix,
                                       '--pretrained_epoch', '0', '--batch_images', '2',
                                       '--max_iters', '4', *INLINE_LOADER,
                                       *dlib_args(dlib_faces, tmp_path)), capsys)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r'pretrained symbolic checkpoint \S*mnet\.25-0000\.params: 273 arrays '
                     r'loaded, 0 initialised fresh \(\), 0 ignored', proc.stdout)
    frozen = released_mnet_param_order(mnet25_prefix)[:6]
    assert 'frozen parameters (6): %s' % frozen in proc.stdout
    released, _ = load_params(mnet25_prefix, 0)
    trained, _ = load_params(str(prefix), 1)     # 8 records, batch 2: epoch 0 ends at 4
    for name in frozen:
        np.testing.assert_array_equal(trained[name].asnumpy(), released[name].asnumpy())
    assert not np.array_equal(trained['mobilenet0_conv2_weight'].asnumpy(),
                              released['mobilenet0_conv2_weight'].asnumpy())
    cfg, _ = generate_config('mnet', 'retinaface')
    val = RetinaFaceDataset('val', None, str(dlib_faces), cfg).gt_roidb()
    total = sum(len(entry['boxes']) for entry in val)
    reference = val_faces_found(mnet25_prefix, 0, val)
    assert reference >= total - 2
    assert val_faces_found(prefix, 1, val) >= reference - 1
