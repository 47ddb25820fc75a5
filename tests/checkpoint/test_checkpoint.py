"""Checkpoint loading (legacy BatchNorm names), parameter checks and atomic saving."""
import os

import mxnet as mx
import numpy as np
import pytest

from rcnn.checkpoint import params as checkpoint
from rcnn.checkpoint.params import (ParamMismatchError, check_params, load_checkpoint, load_params,
                                   save_checkpoint)


def _tiny_symbol():
    data = mx.sym.var('data')
    conv = mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), pad=(1, 1), name='conv')
    norm = mx.sym.BatchNorm(conv, name='bn')
    return mx.sym.Convolution(norm, num_filter=2, kernel=(1, 1), name='head')


def _tiny_params(rng):
    arg = {'conv_weight': rng.randn(4, 3, 3, 3), 'conv_bias': rng.randn(4),
           'bn_gamma': rng.rand(4), 'bn_beta': rng.randn(4),
           'head_weight': rng.randn(2, 4, 1, 1), 'head_bias': rng.randn(2)}
    aux = {'bn_moving_mean': rng.randn(4), 'bn_moving_var': rng.rand(4) + 0.5}
    as_nd = lambda d: {k: mx.nd.array(v.astype(np.float32)) for k, v in d.items()}  # noqa: E731
    return as_nd(arg), as_nd(aux)


def test_released_mnet25_legacy_names_are_mapped(mnet25_prefix):
    raw = mx.nd.load(mnet25_prefix + '-0000.params')
    legacy = [k for k in raw if k.endswith(('_running_mean', '_running_var'))]
    assert len(legacy) == 54
    sym, arg, aux = load_checkpoint(mnet25_prefix, 0)
    assert not [k for k in aux if 'running' in k]
    assert len(arg) + len(aux) == len(raw)
    for key in legacy:
        mapped = key[len('aux:'):].replace('_running_', '_moving_')
        np.testing.assert_array_equal(aux[mapped].asnumpy(), raw[key].asnumpy())
    assert set(aux) == set(sym.list_auxiliary_states())
    check_params(sym, arg, aux)  # nothing missing, unexpected or mis-shaped


def test_check_params_lists_missing_unexpected_and_misshaped():
    sym = _tiny_symbol()
    arg, aux = _tiny_params(np.random.RandomState(0))
    check_params(sym, arg, aux, data_shapes={'data': (1, 3, 8, 8)})

    del arg['head_bias']
    arg['stray_weight'] = mx.nd.zeros((3,))
    arg['conv_weight'] = mx.nd.zeros((4, 3, 5, 5))
    del aux['bn_moving_var']
    with pytest.raises(ParamMismatchError) as info:
        check_params(sym, arg, aux, data_shapes={'data': (1, 3, 8, 8)})
    err = info.value
    assert isinstance(err, ValueError)
    assert err.missing == ['arg:head_bias', 'aux:bn_moving_var']
    assert err.unexpected == ['arg:stray_weight']
    assert err.misshaped == ['arg:conv_weight has shape (4, 3, 5, 5), the graph needs (4, 3, 3, 3)']
    for text in ('missing (2)', 'arg:head_bias', 'unexpected (1)', 'arg:stray_weight',
                 'mis-shaped (1)', '(4, 3, 5, 5)'):
        assert text in str(err)


def test_save_then_load_round_trip(tmp_path):
    sym = _tiny_symbol()
    arg, aux = _tiny_params(np.random.RandomState(1))
    arg['conv_bias'] = arg['conv_bias'].asnumpy()  # numpy arrays are accepted too
    prefix = str(tmp_path / 'sub' / 'model')
    sym_file, param_file = save_checkpoint(prefix, 7, sym, arg, aux)
    assert sym_file == prefix + '-symbol.json' and param_file == prefix + '-0007.params'
    assert sorted(os.listdir(tmp_path / 'sub')) == ['model-0007.params', 'model-symbol.json']
    loaded_sym, loaded_arg, loaded_aux = load_checkpoint(prefix, 7)
    assert loaded_sym.tojson() == sym.tojson()
    assert set(loaded_arg) == set(arg) and set(loaded_aux) == set(aux)
    for saved, loaded in ((arg, loaded_arg), (aux, loaded_aux)):
        for name, value in saved.items():
            expected = value.asnumpy() if isinstance(value, mx.nd.NDArray) else value
            np.testing.assert_array_equal(loaded[name].asnumpy(), expected)
    only_arg, only_aux = load_params(prefix, 7)
    assert set(only_arg) == set(arg) and set(only_aux) == set(aux)


def test_failed_save_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    sym = _tiny_symbol()
    arg, aux = _tiny_params(np.random.RandomState(2))
    prefix = str(tmp_path / 'model')
    save_checkpoint(prefix, 1, sym, arg, aux)
    before = open(prefix + '-0001.params', 'rb').read()

    def broken_save(path, data):
        with open(path, 'wb') as handle:
            handle.write(b'partial')
        raise IOError('disk full')

    monkeypatch.setattr(checkpoint.mx.nd, 'save', broken_save)
    changed = {k: v * 2 for k, v in arg.items()}
    with pytest.raises(IOError, match='disk full'):
        save_checkpoint(prefix, 1, sym, changed, aux)
    assert open(prefix + '-0001.params', 'rb').read() == before
    assert sorted(os.listdir(tmp_path)) == ['model-0001.params', 'model-symbol.json']


def test_save_rejects_a_name_in_both_dicts(tmp_path):
    with pytest.raises(ValueError, match='both'):
        save_checkpoint(str(tmp_path / 'm'), 0, None, {'x': np.zeros(1)}, {'x': np.zeros(1)})


def test_missing_and_corrupt_files_are_named(tmp_path):
    prefix = str(tmp_path / 'model')
    with pytest.raises(FileNotFoundError, match='model-symbol.json'):
        load_checkpoint(prefix, 0)
    with pytest.raises(FileNotFoundError, match='model-0003.params'):
        load_params(prefix, 3)
    (tmp_path / 'model-0000.params').write_bytes(b'not an ndarray file')
    with pytest.raises(ValueError, match='model-0000.params.*corrupt'):
        load_params(prefix, 0)
    (tmp_path / 'model-symbol.json').write_text('{"nodes": [')
    with pytest.raises(ValueError, match='model-symbol.json.*corrupt'):
        load_checkpoint(prefix, 0)


def test_malformed_keys_and_ambiguous_legacy_names_raise(tmp_path):
    prefix = str(tmp_path / 'model')
    mx.nd.save(prefix + '-0000.params', {'weight': mx.nd.zeros(1)})
    with pytest.raises(ValueError, match="model-0000.params: key 'weight'"):
        load_params(prefix, 0)
    mx.nd.save(prefix + '-0001.params', [mx.nd.zeros(1)])
    with pytest.raises(ValueError, match='unnamed list'):
        load_params(prefix, 1)
    mx.nd.save(prefix + '-0002.params', {'aux:bn_running_mean': mx.nd.zeros(1),
                                         'aux:bn_moving_mean': mx.nd.ones(1)})
    with pytest.raises(ValueError, match='both'):
        load_params(prefix, 2)


def _copy_released(src_prefix, prefix, change):
    """Copy the released checkpoint to ``prefix``, its params dict passed through ``change``."""
    import shutil
    shutil.copyfile(src_prefix + '-symbol.json', prefix + '-symbol.json')
    saved = mx.nd.load(src_prefix + '-0000.params')
    change(saved)
    mx.nd.save(prefix + '-0000.params', saved)


def test_non_finite_values_are_refused_at_load_naming_the_arrays(tmp_path, mnet25_prefix):
    prefix = str(tmp_path / 'nan')

    def poison(saved):
        weight = saved['arg:face_rpn_bbox_pred_stride16_weight'].asnumpy()
        weight[0, 0, 0, 0] = np.nan
        saved['arg:face_rpn_bbox_pred_stride16_weight'] = mx.nd.array(weight)
        var = saved['aux:mobilenet0_batchnorm2_running_var'].asnumpy()
        var[:2] = np.inf
        saved['aux:mobilenet0_batchnorm2_running_var'] = mx.nd.array(var)

    _copy_released(mnet25_prefix, prefix, poison)
    for load in (load_checkpoint, load_params):
        with pytest.raises(ValueError) as info:
            load(prefix, 0)
        message = str(info.value)
        for text in ('nan-0000.params', 'arg:face_rpn_bbox_pred_stride16_weight (1 NaN',
                     'aux:mobilenet0_batchnorm2_running_var (0 NaN, 2 Inf'):
            assert text in message
        assert '\n' not in message
    from retinaface import RetinaFace
    with pytest.raises(ValueError, match='non-finite.*face_rpn_bbox_pred_stride16_weight'):
        RetinaFace(prefix, 0, ctx_id=-1)


def test_wrong_shaped_array_fails_at_load_not_at_detect(tmp_path, mnet25_prefix):
    prefix = str(tmp_path / 'shape')
    name = 'face_rpn_landmark_pred_stride8_weight'

    def reshape(saved):
        assert saved['arg:' + name].shape == (20, 64, 1, 1)
        saved['arg:' + name] = mx.nd.zeros((20, 32, 1, 1))

    _copy_released(mnet25_prefix, prefix, reshape)
    from retinaface import RetinaFace
    with pytest.raises(ParamMismatchError) as info:
        RetinaFace(prefix, 0, ctx_id=-1)          # before any detect()
    message = str(info.value)
    assert 'shape-0000.params' in message and 'arg:%s' % name in message
    assert '(20, 32, 1, 1)' in message and '(20, 64, 1, 1)' in message
    assert '\n' not in message
