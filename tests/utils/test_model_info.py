"""rcnn/utils/model_info.py: released models recognised by content, with their licence line."""
import hashlib
import shutil

import pytest

from conftest import shared_path

from rcnn.utils import model_info
from rcnn.utils.model_info import identify, licence_line, sha256_of


def test_sha256_matches_hashlib(tmp_path):
    path = tmp_path / 'x.params'
    data = bytes(range(256)) * 5000          # over one read chunk
    path.write_bytes(data)
    assert sha256_of(str(path)) == hashlib.sha256(data).hexdigest()


def test_unknown_files_give_no_line(tmp_path):
    path = tmp_path / 'model-0001.params'
    path.write_bytes(b'weights a user trained')
    (tmp_path / 'model-symbol.json').write_text('{}')
    assert identify(str(path)) is None and licence_line(str(path)) is None
    assert licence_line(str(tmp_path / 'absent-0000.params')) is None


def test_a_renamed_copy_is_recognised_by_content(tmp_path, monkeypatch):
    payload = b'released weights'
    digest = hashlib.sha256(payload).hexdigest()
    monkeypatch.setitem(model_info.KNOWN_FILES, digest, model_info.KnownModel(
        'Released', 'params', 'for research'))
    path = tmp_path / 'renamed-0007.params'
    path.write_bytes(payload)
    assert licence_line(str(path)) == 'model: Released; licence: for research'


def test_graph_beside_the_params_identifies_a_release(tmp_path, monkeypatch):
    graph = b'{"nodes": []}'
    monkeypatch.setitem(model_info.KNOWN_FILES, hashlib.sha256(graph).hexdigest(),
                        model_info.KnownModel('Graph only', 'symbol', 'non-commercial'))
    (tmp_path / 'r50-symbol.json').write_bytes(graph)
    (tmp_path / 'r50-0000.params').write_bytes(b'any weights')
    assert identify(str(tmp_path / 'r50-0000.params')).name == 'Graph only'
    # only <prefix>-NNNN.params has a graph beside it
    (tmp_path / 'r50.params').write_bytes(b'any weights')
    assert identify(str(tmp_path / 'r50.params')) is None


def test_released_mnet25_has_the_non_commercial_licence(tmp_path):
    params = shared_path('models', 'mnet.25', 'mnet.25-0000.params')
    if not params.exists():
        pytest.skip('released mnet.25 not in ../shared (see ../shared/README.md)')
    line = licence_line(str(params))
    assert line is not None and 'mnet.25' in line and 'non-commercial research' in line
    # the params alone, copied under another name, without the graph
    copy = tmp_path / 'my-model-0003.params'
    shutil.copy(str(params), str(copy))
    assert licence_line(str(copy)) == line


def test_released_r50_graph_is_recognised(tmp_path):
    graph = shared_path('models', 'R50', 'R50-symbol.json')
    if not graph.exists():
        pytest.skip('released R50 graph not in ../shared (see ../shared/README.md)')
    shutil.copy(str(graph), str(tmp_path / 'R50-symbol.json'))
    (tmp_path / 'R50-0000.params').write_bytes(b'weights not shipped here')
    line = licence_line(str(tmp_path / 'R50-0000.params'))
    assert line is not None and 'R50' in line and 'non-commercial research' in line
