"""Packaging (pyproject.toml): the console scripts run the project's scripts, from any folder.

The editable install itself (``make setup``: ``pip install -e .``) is checked where it has been
done (the tests that need it skip with the reason otherwise)."""
import os
import shutil
import subprocess
import sys
import tomllib

import pytest

from conftest import ROOT

from rcnn.utils import entry_points

PYPROJECT = tomllib.loads((ROOT / 'pyproject.toml').read_text())
SCRIPTS = PYPROJECT['project']['scripts']


def _module_file(module):
    return ROOT / (module.replace('.', os.sep) + '.py')


def test_every_console_script_names_a_runner_of_an_existing_script():
    assert set(SCRIPTS) == set(entry_points.SCRIPTS)
    for name, target in SCRIPTS.items():
        module, function = target.split(':')
        assert module == 'rcnn.utils.entry_points' and callable(getattr(entry_points, function))
        script = _module_file(entry_points.SCRIPTS[name])
        assert script.is_file(), script
        assert "if __name__ == '__main__':" in script.read_text()
    for wanted in ('retinaface-train', 'retinaface-test', 'retinaface-eval', 'retinaface-detect',
                   'retinaface-export', 'retinaface-quantize', 'retinaface-sample-data'):
        assert wanted in SCRIPTS


def test_packaged_modules_cover_the_scripts_and_packages():
    modules = PYPROJECT['tool']['setuptools']['py-modules']
    assert {'retinaface', 'train', 'test_widerface', 'evaluate_widerface'} <= set(modules)
    assert all((ROOT / (m + '.py')).is_file() for m in modules)
    include = PYPROJECT['tool']['setuptools']['packages']['find']['include']
    assert {'rcnn*', 'cython_ext*', 'tools*'} <= set(include)


def _run_entry(function, argv, cwd, threads='1'):
    """A console script's function, as its generated wrapper calls it, from ``cwd``
    (``threads``: OMP_NUM_THREADS, None: unset)."""
    code = ('import sys; from rcnn.utils import entry_points; sys.argv = %r; '
            'sys.exit(entry_points.%s())' % (['retinaface-x'] + list(argv), function))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop('OMP_NUM_THREADS', None)
    if threads is not None:
        env['OMP_NUM_THREADS'] = threads
    return subprocess.run([sys.executable, '-c', code], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('function, usage', [('evaluate', 'usage: evaluate_widerface.py'),
                                             ('sample_data', 'usage: make_sample_data.py'),
                                             ('train', 'usage: train.py')])
def test_runner_gives_the_script_help_from_another_folder(function, usage, tmp_path):
    proc = _run_entry(function, ['--help'], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(usage)
    assert os.listdir(tmp_path) == []


def test_runner_passes_the_exit_status_and_arguments(tmp_path):
    proc = _run_entry('evaluate', ['--pred', str(tmp_path / 'none'), '--gt',
                                   str(tmp_path / 'nothing')], tmp_path)
    assert proc.returncode == 2 and 'nothing' in proc.stderr
    proc = _run_entry('sample_data', ['--out', str(tmp_path / 's'), '--train', '1', '--val', '1',
                                      '--quiet', '--workers', '1'], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / 's' / 'val' / 'gt' / 'wider_easy_val.mat').is_file()


def _installed():
    """True when this Python finds the project from outside the repository (an install)."""
    import tempfile
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    code = 'import importlib.util as u; print(u.find_spec("retinaface") is not None)'
    proc = subprocess.run([sys.executable, '-c', code], cwd=tempfile.gettempdir(), env=env,
                          capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() == 'True'


needs_install = pytest.mark.skipif(
    not _installed(), reason='the project is not installed in this Python: `make setup` '
                                 'installs it editable (pip install -e .)')


@needs_install
def test_installed_project_imports_from_any_folder(tmp_path):
    code = ('import retinaface, rcnn, cython_ext.cpu_nms; from retinaface import RetinaFace; '
            'print(retinaface.__file__)')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([sys.executable, '-c', code], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(ROOT / 'retinaface.py')


@needs_install
@pytest.mark.parametrize('script', ['retinaface-detect', 'retinaface-test', 'retinaface-eval'])
def test_installed_console_scripts_show_their_help(script, tmp_path):
    path = shutil.which(script, path=os.path.dirname(sys.executable))
    assert path is not None, 'console script %s not installed' % script
    proc = subprocess.run([path, '--help'], cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0 and proc.stdout.startswith('usage:'), proc.stderr[-2000:]


def _make_dry_run(*targets):
    proc = subprocess.run(['make', '-n'] + list(targets), cwd=str(ROOT), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_setup_leaves_the_insightface_environment_to_its_own_target():
    assert '.venv-insightface' not in _make_dry_run('setup')
    assert '.venv-insightface' not in _make_dry_run('test')
    insightface = _make_dry_run('setup-insightface')
    # built now, or already up to date
    assert 'requirements-insightface.txt' in insightface or 'Nothing to be done' in insightface


def test_ci_builds_the_optional_environment_then_runs_the_readme_test_command():
    lines = [line.strip() for line in (ROOT / '.ci' / 'run').read_text().splitlines()
             if line.strip() and not line.lstrip().startswith('#')]
    assert lines[-2:] == ['make setup-insightface', 'make test']
    assert 'make test' in (ROOT / 'README.md').read_text()


@pytest.mark.slow
def test_train_runner_trains_with_a_spawned_loader_worker(tmp_path):
    """retinaface-train runs train.py as __main__: its thread set-up, and a loader worker
    process (spawned, it re-imports the main module) works through the runner too."""
    from tools.sample_data import make_sample_dataset
    make_sample_dataset(str(tmp_path / 'set'), n_train=4, n_val=1, seed=1, progress=False)
    proc = _run_entry('train', ['--network', 'mnet', '--dataset_path', str(tmp_path / 'set'),
                                '--root_path', str(tmp_path), '--prefix', str(tmp_path / 'm'),
                                '--batch_images', '2', '--workers', '1', '--max_iters', '2',
                                '--seed', '1'], tmp_path, threads=None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / 'm-0001.params').is_file()
    # train.py's __main__ block chose the threads (imported as a module, they stay unset)
    log = (tmp_path / 'm-train.log').read_text()
    assert 'MXNet compute threads OMP_NUM_THREADS=' in log
    assert 'OMP_NUM_THREADS=(unset)' not in log
