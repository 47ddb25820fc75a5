"""The optimizer ``.states`` pickle (rcnn/checkpoint/states.py): loaded only when the training
record lists its SHA-256 and the bytes match; a planted pickle never runs."""
import json
import pickle
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from rcnn.checkpoint.commit import write_module_checkpoint
from rcnn.checkpoint.files import checkpoint_files
from rcnn.checkpoint.record import CorruptCheckpointError, read_train_record
from rcnn.checkpoint.states import load_optimizer_states

RECORD = {'network': 'tiny', 'epoch': 0, 'batch_in_epoch': 1, 'iteration': 1, 'lr': 0.1,
          'base_lr': 0.1, 'lr_steps': [], 'lr_factors': [], 'iters_per_epoch': 4,
          'batch_size': 2, 'num_devices': 1, 'num_workers': 1}


class CreatesAFile(object):
    """Unpickling this opens ``path`` for writing, i.e. creates it: code run by a load."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def _module():
    data = mx.sym.var('data')
    out = mx.sym.LinearRegressionOutput(mx.sym.FullyConnected(data, num_hidden=2, name='fc'),
                                        name='out')
    mod = mx.mod.Module(out, data_names=['data'], label_names=['out_label'],
                        context=[mx.cpu()])
    mod.bind(data_shapes=[('data', (2, 3))], label_shapes=[('out_label', (2, 2))])
    mx.random.seed(0)
    mod.init_params(mx.init.Xavier())
    mod.init_optimizer(kvstore='local', optimizer='sgd',
                       optimizer_params={'learning_rate': 0.1, 'momentum': 0.9})
    return mod, out


def _trained_checkpoint(prefix):
    mod, sym = _module()
    batch = mx.io.DataBatch([mx.nd.ones((2, 3))], [mx.nd.zeros((2, 2))])
    mod.forward_backward(batch)
    mod.update()
    write_module_checkpoint(prefix, 1, mod, sym, RECORD)
    return mod, read_train_record(prefix, 1)


def _momentum(mod):
    states = pickle.loads(mod._updater.get_states(dump_optimizer=False))
    return {key: value.asnumpy() for key, value in states.items()}


def test_the_states_the_record_vouches_for_are_restored(tmp_path):
    prefix = str(tmp_path / 'm')
    trained, record = _trained_checkpoint(prefix)
    fresh, _ = _module()
    load_optimizer_states(fresh, prefix, record)
    expected, restored = _momentum(trained), _momentum(fresh)
    assert sorted(restored) == sorted(expected) and expected
    for key in expected:
        np.testing.assert_array_equal(restored[key], expected[key])
        assert np.abs(expected[key]).sum() > 0          # a real momentum, not zeros


def test_a_planted_states_pickle_is_refused_and_never_runs(tmp_path):
    prefix = str(tmp_path / 'm')
    _, record = _trained_checkpoint(prefix)    # verified: the record matched the files
    states = Path(checkpoint_files(prefix, 1)['states'])
    marker = tmp_path / 'pwned'
    planted = pickle.dumps(CreatesAFile(str(marker)))
    # the threat is real: MXNet's own loader runs the pickle
    probe, _ = _module()
    probe_file = tmp_path / 'probe.states'
    probe_file.write_bytes(pickle.dumps(CreatesAFile(str(tmp_path / 'probe-ran'))))
    try:
        probe.load_optimizer_states(str(probe_file))
    except Exception:   # noqa: BLE001 -- what the object does next does not matter here
        pass
    assert (tmp_path / 'probe-ran').exists()
    # swapped after the record was checked (or planted with a record left as it was)
    states.write_bytes(planted)
    fresh, _ = _module()
    with pytest.raises(CorruptCheckpointError) as info:
        load_optimizer_states(fresh, prefix, record)
    message = str(info.value)
    assert str(states) in message and 'refusing to load that pickle' in message
    assert '\n' not in message and not marker.exists()


def test_a_record_without_the_states_digest_is_refused(tmp_path):
    prefix = str(tmp_path / 'm')
    _, record = _trained_checkpoint(prefix)
    files = checkpoint_files(prefix, 1)
    marker = tmp_path / 'pwned'
    Path(files['states']).write_bytes(pickle.dumps(CreatesAFile(str(marker))))
    stripped = dict(record, sha256={k: v for k, v in record['sha256'].items() if k != 'states'})
    Path(files['record']).write_text(json.dumps(stripped))
    fresh, _ = _module()
    with pytest.raises(CorruptCheckpointError, match='lists no SHA-256 of the optimizer state'):
        load_optimizer_states(fresh, prefix, stripped)
    with pytest.raises(CorruptCheckpointError, match=r'\.states is corrupted or was changed'):
        read_train_record(prefix, 1)
    assert not marker.exists()


def test_train_py_refuses_to_resume_from_a_planted_states_file(tmp_path, monkeypatch, capsys):
    from conftest import train_in_process
    from rcnn.checkpoint.commit import save_checkpoint_files
    prefix = str(tmp_path / 'm')
    writers = {'params': lambda path: Path(path).write_bytes(b'p' * 64),
               'states': lambda path: Path(path).write_bytes(b'momentum'),
               'symbol': lambda path: Path(path).write_text('{"nodes": []}')}
    save_checkpoint_files(prefix, 1, writers, dict(RECORD, network='mnet'))
    marker = tmp_path / 'pwned'
    Path(checkpoint_files(prefix, 1)['states']).write_bytes(
        pickle.dumps(CreatesAFile(str(marker))))
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    # refused during start-up: train.py's main in this process
    proc = train_in_process(['--network', 'mnet', '--prefix', prefix, '--resume',
                             '--dataset_path', str(tmp_path), '--root_path', str(tmp_path)],
                            capsys)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith('train.py')]
    assert len(lines) == 1 and 'Traceback' not in proc.stderr
    assert '%s-0001.states is corrupted or was changed after it was saved' % prefix in lines[0]
    assert not marker.exists()
