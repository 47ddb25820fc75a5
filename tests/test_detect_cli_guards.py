"""tools/detect.py never writes over its input photos and names truncated images (issue 12
items 2 and 6)."""
import shutil
import subprocess
import sys

from conftest import ROOT, shared_path

SCRIPT = ROOT / 'tools' / 'detect.py'


def _run(prefix, *args):
    return subprocess.run([sys.executable, str(SCRIPT), '--prefix', prefix, '--epoch', '0']
                          + [str(a) for a in args], capture_output=True, text=True,
                          cwd=str(ROOT), timeout=300)


def test_output_onto_the_inputs_is_refused(mnet25_prefix, tmp_path):
    photos = tmp_path / 'photos'
    photos.mkdir()
    shutil.copy(str(shared_path('images', 'dogs.jpg')), str(photos))
    original = (photos / 'dogs.jpg').read_bytes()
    link = tmp_path / 'link'
    link.symlink_to(photos)
    for argv in ([photos, '--out', photos], [photos / 'dogs.jpg', '--out', photos],
                 [photos, '--out', link], [photos, '--out', str(photos) + '/./']):
        result = _run(mnet25_prefix, *argv)
        assert result.returncode == 2, result.stderr
        assert 'would overwrite the input image' in result.stderr and 'dogs.jpg' in result.stderr
        assert 'Traceback' not in result.stderr
        assert (photos / 'dogs.jpg').read_bytes() == original
    # a hard link of the input where a drawn copy would go
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'dogs.jpg').hardlink_to(photos / 'dogs.jpg')
    result = _run(mnet25_prefix, photos, '--out', out)
    assert result.returncode == 2 and 'would overwrite the input image' in result.stderr
    assert (photos / 'dogs.jpg').read_bytes() == original
    # --json only (nothing drawn) into the input folder is fine
    result = _run(mnet25_prefix, photos, '--out', photos, '--json', '--no-draw')
    assert result.returncode == 0, result.stderr
    assert (photos / 'dogs.jpg').read_bytes() == original


def test_truncated_image_is_reported_by_name(mnet25_prefix, tmp_path):
    photos = tmp_path / 'photos'
    photos.mkdir()
    data = shared_path('images', 'Tom_Cruise_avp_2014_4.jpg').read_bytes()
    (photos / 'cut.jpg').write_bytes(data[:len(data) // 2])
    result = _run(mnet25_prefix, photos, '--out', tmp_path / 'out', '--json')
    assert result.returncode == 1
    assert 'cut.jpg' in result.stderr and 'truncated' in result.stderr
    assert not (tmp_path / 'out' / 'cut.jpg').exists()
