"""The GPU check (bench/gpu_check.sh, bench/gpu_check.py): its CPU mode end to end, the reading
of GPU code in a library, the figures from a metrics table, the agreement rule and the shell
script's refusals (a stand-in nvidia-smi plays the driver)."""
import json
import os
import platform
import stat
import struct
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, shared_path

from bench import gpu_check

SCRIPT = ROOT / 'bench' / 'gpu_check.sh'


# ---------------------------------------------------------------------- the CPU run

@pytest.fixture(scope='module')
def cpu_report(tmp_path_factory):
    """The JSON, log and exit status of ``bench/gpu_check.sh --cpu`` (run once)."""
    shared_path('models', 'mnet.25', 'mnet.25-symbol.json')
    shared_path('images', gpu_check.IMAGE_NAME)
    out = tmp_path_factory.mktemp('gpu-check') / 'out'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run([str(SCRIPT), '--cpu', '--out', str(out)], cwd=str(ROOT), env=env,
                            capture_output=True, text=True, timeout=600)
    report = out / gpu_check.JSON_NAME
    assert report.is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    return {'status': result.returncode, 'data': json.loads(report.read_text()),
            'log': (out / 'gpu_check.log').read_text(), 'stdout': result.stdout}


@pytest.mark.slow
def test_cpu_run_passes_every_stage(cpu_report):
    data = cpu_report['data']
    assert cpu_report['status'] == 0, data['errors']
    assert data['errors'] == [] and data['skipped'] == {}
    assert data['device'] == 'cpu'
    for stage in ('machine', 'probe', 'train', 'detect', 'agreement', 'mode1', 'onnxruntime'):
        assert stage in data, stage
    # the shell script's steps and the Python stages share one log
    assert 'gpu_check.sh: building the Cython kernels' in cpu_report['log']
    assert 'stage onnxruntime' in cpu_report['log']
    assert 'exit status 0' in cpu_report['log']


@pytest.mark.slow
def test_cpu_run_describes_this_machine(cpu_report):
    import mxnet as mx
    data = cpu_report['data']
    assert data['machine']['python'] == platform.python_version()
    assert data['machine']['numpy'] == np.__version__
    assert data['machine']['cpus'] == os.cpu_count()
    # this project's venv holds the CPU build: no GPU code in libmxnet.so, no GPU seen
    assert data['probe']['features']['CUDA'] == mx.runtime.Features().is_enabled('CUDA')
    assert data['probe']['num_gpus'] == 0 and data['probe']['ok'] is False
    if not mx.runtime.Features().is_enabled('CUDA'):
        assert data['machine']['mxnet_gpu_code'] == {'cubin': [], 'ptx': []}


@pytest.mark.slow
def test_cpu_run_training_figures(cpu_report):
    data = cpu_report['data']
    runs = data['train']
    assert [(r['network'], r['batch'], r['devices']) for r in runs] == [
        (network, batch, 'cpu') for network, batch in gpu_check.CPU_SIZES.train]
    for run in runs:
        assert run['images_per_s'] > 0
        assert run['images_per_s'] == pytest.approx(run['batch'] / run['batch_s'], rel=1e-6)
        # waiting for the loader and computing are parts of one batch's time
        assert 0.0 <= run['loader_wait_share'] <= 1.0
        assert run['data_s'] + run['step_s'] <= run['batch_s'] * 1.02
        assert run['loader_wait_share'] == pytest.approx(run['data_s'] / run['batch_s'],
                                                         rel=1e-6)
        assert run['iterations_timed'] == gpu_check.CPU_SIZES.train_iters - \
            gpu_check.CPU_SIZES.log_every
        assert run['peak_rss_mib'] > 100      # an MXNet process with a bound network
        assert run['loader_workers'] >= 1


@pytest.mark.slow
def test_cpu_run_detection_and_agreement(cpu_report):
    data = cpu_report['data']
    sizes = ['%dx%d' % size for size in gpu_check.CPU_SIZES.detect_sizes]
    assert [row['size'] for row in data['detect']['sizes']] == sizes
    for row in data['detect']['sizes']:
        assert row['faces'] >= 10           # bald_guys.jpg is a group photo
        for timing in ('forward_device', 'forward', 'end_to_end'):
            figures = row[timing]
            assert 0 < figures['min_ms'] <= figures['median_ms'] <= figures['p90_ms']
            assert figures['repeat'] == gpu_check.CPU_SIZES.repeat
    agreement = data['agreement']
    assert agreement['ok'] and agreement['tolerance_px'] == 0.5
    # on the CPU the device detector and the reference are the same computation
    assert all(s['max_box_diff_px'] == 0.0 and s['faces'] == s['faces_cpu']
               for s in agreement['sizes'])
    mode1 = data['mode1']
    assert mode1['images'] == mode1['detected'] == gpu_check.CPU_SIZES.mode1_images
    assert mode1['images_per_s'] > 0 and mode1['wall_s'] >= mode1['seconds']
    onnx = data['onnxruntime']
    if onnx['available']:
        assert onnx['provider'] == 'CPUExecutionProvider'
        # another runtime of the same graph: boxes agree to ~1e-4 px
        assert onnx['agreement']['ok']
        assert max(s['max_box_diff_px'] for s in onnx['agreement']['sizes']) < 0.01
    else:
        assert 'onnxruntime' in onnx['reason']


# ---------------------------------------------------------------------- GPU code in a library

def _fat_binary(entries):
    """A CUDA fat binary: header (magic, version 1, header size 16, payload size), then per
    ``(kind, sm, payload)`` a 64-byte entry header (kind, version, header size, padded payload
    size, ..., SM version at byte 28) and the payload padded to 8 bytes."""
    body = b''
    for kind, sm_version, payload in entries:
        padded = payload + b'\0' * (-len(payload) % 8)
        header = struct.pack('<HHIQIIII', kind, 1, 64, len(padded), 0, len(payload), 0,
                             sm_version)
        body += header + b'\0' * (64 - len(header)) + padded
    return struct.pack('<IHHQ', 0xBA55ED50, 1, 16, len(body)) + body


def _elf_with_section(name, content):
    """A minimal 64-bit little-endian ELF file: null section, .shstrtab, and ``name``."""
    names = b'\0.shstrtab\0' + name.encode() + b'\0'
    names_at, content_at = 64, 64 + len(names)
    shoff = content_at + len(content) + (-(content_at + len(content)) % 8)
    header = bytearray(64)
    header[:6] = b'\x7fELF\x02\x01'
    struct.pack_into('<Q', header, 0x28, shoff)
    struct.pack_into('<HHH', header, 0x3A, 64, 3, 1)

    def section(name_offset, offset, size):
        return struct.pack('<IIQQQQIIQQ', name_offset, 1, 0, 0, offset, size, 0, 0, 1, 0)
    table = bytes(64) + section(1, names_at, len(names)) + section(11, content_at, len(content))
    body = bytes(header) + names + content
    return body + b'\0' * (shoff - len(body)) + table


def test_fatbin_architectures_lists_cubins_and_ptx(tmp_path):
    # two fat binaries, 8-byte padding between them, as the linker lays them out
    content = _fat_binary([(2, 80, b'cubin-80' * 3), (1, 86, b'.version 7.7')]) + bytes(8) + \
        _fat_binary([(2, 70, b'cubin-70')])
    library = tmp_path / 'libfake.so'
    library.write_bytes(_elf_with_section('.nv_fatbin', content))
    assert gpu_check.fatbin_architectures(library) == {'cubin': [70, 80], 'ptx': [86]}


def test_fatbin_architectures_of_a_library_without_gpu_code(tmp_path):
    library = tmp_path / 'libplain.so'
    library.write_bytes(_elf_with_section('.text', b'\x90' * 32))
    assert gpu_check.fatbin_architectures(library) == {'cubin': [], 'ptx': []}
    with pytest.raises(ValueError, match='ELF'):
        (tmp_path / 'text.so').write_bytes(b'not an ELF file at all, only text........')
        gpu_check.fatbin_architectures(tmp_path / 'text.so')


def test_runs_on_follows_cuda_compatibility():
    # mxnet-cu117 1.9.1's libmxnet.so (read with --wheel-archs): cubins only, up to sm_86
    released = {'cubin': [50, 60, 70, 80, 86], 'ptx': []}
    assert gpu_check.runs_on(released, 86)          # A10 / RTX 30xx
    assert gpu_check.runs_on(released, 89)          # sm_86 code runs on 8.9 (same major)
    assert gpu_check.runs_on(released, 75)          # sm_70 code on a T4
    assert not gpu_check.runs_on(released, 90)      # H100 / H200: no code at all
    assert gpu_check.runs_on({'cubin': [], 'ptx': [80]}, 90)   # the driver compiles PTX
    assert not gpu_check.runs_on({'cubin': [86], 'ptx': []}, 80)


# ---------------------------------------------------------------------- figures and agreement

def test_window_figures_from_a_metrics_table(tmp_path):
    table = tmp_path / 'm-metrics.csv'
    # 3 windows of 10 batches of 16 images; the first is warm-up
    table.write_text('iteration,epoch,batch,lr,samples_per_s,data_s,step_s,RPNAcc_s32\n'
                     '10,0,10,0.01,20.0,0.5,0.3,0.9\n'
                     '20,0,20,0.01,160.0,0.01,0.09,0.9\n'
                     '30,0,30,0.01,80.0,0.05,0.14,\n')
    figures = gpu_check.window_figures(str(table), batch_size=16)
    # batches of 0.1 s and 0.2 s: 320 images in 3 s
    assert figures['images_per_s'] == pytest.approx(320 / 3.0)
    assert figures['loader_wait_share'] == pytest.approx((0.01 + 0.05) / 0.3)
    assert figures['batch_s'] == pytest.approx(0.15)
    assert figures['step_s'] == pytest.approx(0.115)
    assert figures['windows_timed'] == 2 and figures['iterations_timed'] == 20
    table.write_text('iteration,epoch,batch,lr,samples_per_s,data_s,step_s\n'
                     '10,0,10,0.01,20.0,0.5,0.3\n')
    with pytest.raises(RuntimeError, match='none after the 1 warm-up'):
        gpu_check.window_figures(str(table), batch_size=16)


def test_nearest_distance_both_ways():
    first = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    second = np.array([[50.2, 50, 60, 60.4], [0, 0.1, 10, 10]], np.float32)
    assert gpu_check.nearest_distance(first, second) == pytest.approx(0.4, abs=1e-5)
    # an extra box far from every other one counts, whichever side it is on: its nearest is
    # (50, 50, 60, 60), 160 px away at x2 and y2
    extra = np.vstack([second, [[200, 200, 220, 220]]])
    assert gpu_check.nearest_distance(first, extra) == pytest.approx(160, abs=1e-4)
    assert gpu_check.nearest_distance(extra, first) == pytest.approx(160, abs=1e-4)
    assert gpu_check.nearest_distance(np.zeros((0, 4)), np.zeros((0, 4))) == 0.0
    assert gpu_check.nearest_distance(first, np.zeros((0, 4))) == float('inf')


def test_compare_detections_tolerance_and_counts():
    faces = np.array([[10, 10, 50, 50, 0.9]], np.float32)
    landmarks = np.full((1, 5, 2), 30, np.float32)
    shifted = faces.copy()
    shifted[0, 2] += 0.4
    result = gpu_check.compare_detections({(64, 48): (faces, landmarks)},
                                          {(64, 48): (shifted, landmarks + 0.3)})
    assert result['ok'] and result['sizes'][0]['size'] == '64x48'
    assert result['sizes'][0]['max_box_diff_px'] == pytest.approx(0.4, abs=1e-5)
    assert result['sizes'][0]['max_landmark_diff_px'] == pytest.approx(0.3, abs=1e-5)
    shifted[0, 0] -= 0.6
    assert not gpu_check.compare_detections({(64, 48): (faces, landmarks)},
                                            {(64, 48): (shifted, landmarks)})['ok']
    two = np.vstack([faces, faces])
    result = gpu_check.compare_detections({(64, 48): (two, np.vstack([landmarks] * 2))},
                                          {(64, 48): (faces, landmarks)})
    assert not result['ok'] and (result['sizes'][0]['faces'], result['sizes'][0]['faces_cpu']) \
        == (2, 1)


# ---------------------------------------------------------------------- the shell script

def _fake_nvidia_smi(folder, cuda_version, compute_cap='9.0'):
    """A stand-in nvidia-smi on PATH: one GPU, a driver supporting ``cuda_version``; its
    ``memory.used`` grows by 100 MiB at every query (from 1100)."""
    folder.mkdir(exist_ok=True)
    tool = folder / 'nvidia-smi'
    counter = folder / 'queries'
    tool.write_text('#!/bin/sh\n'
                    'case "$*" in\n'
                    '  *memory.used*) n=$(cat %s 2>/dev/null || echo 0); n=$((n + 1));'
                    ' echo $n > %s; echo "0, $((1000 + n * 100))" ;;\n'
                    '  *compute_cap*) echo "0, NVIDIA Stand-in, 81559, 999.1, %s" ;;\n'
                    '  *--query-gpu*) echo "0, NVIDIA Stand-in, 81559, 999.1" ;;\n'
                    '  *) echo "| NVIDIA-SMI 999.1   Driver Version: 999.1   CUDA Version: %s |"'
                    ' ;;\n'
                    'esac\n' % (counter, counter, compute_cap, cuda_version))
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return folder


def _script(args, tmp_path, path_first=None):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    if path_first:
        env['PATH'] = '%s:%s' % (path_first, env['PATH'])
    return subprocess.run([str(SCRIPT)] + args + ['--out', str(tmp_path / 'out')],
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=120)


def _last_line(result):
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else ''


def test_script_refuses_bad_flags(tmp_path):
    result = _script(['--shared', str(tmp_path / 'nowhere'), '--cpu'], tmp_path)
    assert result.returncode == 2
    assert '--shared' in _last_line(result) and 'mnet.25-symbol.json' in _last_line(result)
    result = _script(['--cpu', '--speed'], tmp_path)
    assert result.returncode == 2 and "unknown argument '--speed'" in _last_line(result)
    result = _script(['--cpu', '--time-limit'], tmp_path)
    assert result.returncode == 2 and '--time-limit needs a value' in result.stderr


def test_script_without_a_driver(tmp_path):
    empty = tmp_path / 'bin'
    empty.mkdir()
    env = dict(os.environ, PATH='%s:/usr/bin:/bin' % empty)
    if any(os.access(os.path.join(d, 'nvidia-smi'), os.X_OK) for d in env['PATH'].split(':')):
        pytest.skip('this machine has nvidia-smi')
    result = subprocess.run([str(SCRIPT), '--out', str(tmp_path / 'out')], cwd=str(ROOT),
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and 'nvidia-smi not found' in _last_line(result)


def _wheel_folder(tmp_path, tags):
    folder = tmp_path / 'wheels'
    folder.mkdir()
    for tag in tags:
        (folder / ('mxnet_%s-1.9.1-py3-none-manylinux2014_x86_64.whl' % tag)).write_bytes(b'')
    return folder


def _failing_python(tmp_path):
    """An interpreter stand-in that cannot create a virtualenv."""
    tool = tmp_path / 'python-stand-in'
    tool.write_text('#!/bin/sh\necho "Python 3.11.0"\nexit 1\n')
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return tool


def test_script_picks_the_newest_wheel_the_driver_supports(tmp_path):
    bin_dir = _fake_nvidia_smi(tmp_path / 'bin', '11.4')
    wheels = _wheel_folder(tmp_path, ['cu101', 'cu112', 'cu117'])
    result = _script(['--wheels', str(wheels), '--python', str(_failing_python(tmp_path))],
                     tmp_path, path_first=bin_dir)
    # cu117 needs a CUDA 11.7 driver; cu112 is the newest this one (11.4) runs
    assert 'MXNet mxnet_cu112-1.9.1-py3-none-manylinux2014_x86_64.whl' in result.stdout
    assert result.returncode == 2 and 'cannot create a virtualenv' in _last_line(result)


def test_script_names_the_missing_wheel(tmp_path):
    bin_dir = _fake_nvidia_smi(tmp_path / 'bin', '10.0')
    wheels = _wheel_folder(tmp_path, ['cu112', 'cu117'])
    result = _script(['--wheels', str(wheels)], tmp_path, path_first=bin_dir)
    line = _last_line(result)
    assert result.returncode == 2
    assert 'no mxnet_cuXYZ-1.9.1 wheel for CUDA <= 10.0' in line
    assert 'mxnet_cu112-1.9.1' in line and 'bench/gpu_wheels.sh' in line


@pytest.mark.slow
def test_script_without_a_cuda_build_of_mxnet(tmp_path):
    import mxnet as mx
    if mx.runtime.Features().is_enabled('CUDA'):
        pytest.skip('this venv holds a CUDA build of MXNet')
    bin_dir = _fake_nvidia_smi(tmp_path / 'bin', '12.2')
    result = _script(['--python', sys.executable], tmp_path, path_first=bin_dir)
    assert result.returncode == 2
    assert 'its MXNet is not a CUDA build' in _last_line(result)


def test_gpus_and_memory_from_nvidia_smi(tmp_path, monkeypatch):
    bin_dir = _fake_nvidia_smi(tmp_path / 'bin', '13.0', compute_cap='9.0')
    monkeypatch.setenv('PATH', '%s:%s' % (bin_dir, os.environ['PATH']))
    assert gpu_check.nvidia_smi_gpus() == [{'index': 0, 'name': 'NVIDIA Stand-in',
                                            'memory_total_mib': 81559.0, 'driver': '999.1',
                                            'compute_capability': 90}]
    assert gpu_check.driver_cuda_version() == '13.0'
    import time
    with gpu_check.GpuMemoryWatch([0], interval=0.05) as watch:   # first query: 1100 MiB
        time.sleep(0.5)
    queries = int((bin_dir / 'queries').read_text())
    assert queries >= 3
    # the peak is the last reading: 1000 + 100 x queries, against 1100 before
    assert watch.added_mib == {'0': 100.0 * (queries - 1)}
    assert gpu_check.GpuMemoryWatch([]).added_mib is None      # the CPU: nothing watched


@pytest.mark.slow
def test_script_names_the_interpreters_it_tried(tmp_path):
    import mxnet as mx
    if mx.runtime.Features().is_enabled('CUDA'):
        pytest.skip('this venv holds a CUDA build of MXNet')
    bin_dir = _fake_nvidia_smi(tmp_path / 'bin', '12.2')
    result = _script([], tmp_path, path_first=bin_dir)
    line = _last_line(result)
    assert result.returncode == 2 and 'no MXNet CUDA build found (tried: ' in line
    assert str(ROOT / '.venv' / 'bin' / 'python') in line and '--wheels DIR' in line


# ---------------------------------------------------------------------- wheel preparation

WHEELS_SCRIPT = ROOT / 'bench' / 'gpu_wheels.sh'


def _requirement_pins():
    pins = {}
    for name in ('requirements.txt', 'requirements-deploy.txt'):
        for line in (ROOT / name).read_text().splitlines():
            if '==' in line and not line.startswith('#'):
                package, version = line.split('==')
                pins[package.strip().lower()] = version.strip()
    return pins


def test_wheel_list_follows_the_requirement_pins():
    result = subprocess.run([str(WHEELS_SCRIPT), '--dry-run', '--cuda', 'cu112',
                             '--onnxruntime-gpu', '--cuda-libs'], cwd=str(ROOT),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.strip().splitlines()
    asked = dict(arg.lower().split('==') for arg in first.split() if '==' in arg)
    pins = _requirement_pins()
    assert asked.pop('mxnet-cu112') == '1.9.1'
    assert asked.pop('onnxruntime-gpu') == pins['onnxruntime']
    assert asked == {name: pins[name] for name in asked}
    assert {'numpy', 'opencv-python-headless', 'cython', 'easydict', 'scipy', 'tqdm', 'onnx',
            'protobuf'} == set(asked)
    assert '--python-version 3.11' in first and '--only-binary=:all:' in first
    # the CUDA 11 libraries go in a second call, without dependency resolution
    assert '--no-deps' in second and 'nvidia-cudnn-cu11==8.9.6.50' in second


def test_wheel_preparation_refuses_unpublished_builds():
    result = subprocess.run([str(WHEELS_SCRIPT), '--dry-run', '--cuda', 'cu118'], cwd=str(ROOT),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and 'cu117' in result.stderr
    result = subprocess.run([str(WHEELS_SCRIPT), '--dry-run', '--cuda', 'cu102', '--cuda-libs'],
                            cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and 'CUDA 11 libraries' in result.stderr


# ---------------------------------------------------------------------- the probe's verdict

def _probe_stand_in(tmp_path, lines, stderr='', status=0):
    """An interpreter stand-in for the probe child: prints ``lines`` (JSON after the probe's
    mark), ``stderr``, exits with ``status``."""
    tool = tmp_path / 'probe-python'
    body = ''.join("echo '%s%s'\n" % (gpu_check._PROBE_MARK, json.dumps(line)) for line in lines)
    tool.write_text('#!/bin/sh\n%secho "%s" >&2\nexit %d\n' % (body, stderr, status))
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return str(tool)


def test_probe_verdicts(tmp_path):
    known = {'mxnet': '1.9.1', 'features': {'CUDA': True}, 'num_gpus': 1}
    good = dict(known, max_rel_diff_vs_cpu=2e-7)
    result = gpu_check.gpu_probe(_probe_stand_in(tmp_path, [known, good]))
    assert result['ok'] and result['error'] is None
    result = gpu_check.gpu_probe(_probe_stand_in(tmp_path, [known, dict(known,
                                                                       max_rel_diff_vs_cpu=0.01)]))
    assert not result['ok'] and 'differ' in result['error']
    # an sm_86-only build on an sm_90 GPU dies at its first kernel: what was known stays
    result = gpu_check.gpu_probe(_probe_stand_in(
        tmp_path, [known], 'CUDA: no kernel image is available for execution on the device',
        status=134))
    assert not result['ok'] and result['num_gpus'] == 1
    assert 'exited with 134' in result['error'] and 'no kernel image' in result['error']
    result = gpu_check.gpu_probe(_probe_stand_in(tmp_path, [dict(known, num_gpus=0)]))
    assert not result['ok'] and 'sees no GPU' in result['error']
