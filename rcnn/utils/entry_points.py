"""The console scripts of ``pip install`` (pyproject.toml ``[project.scripts]``).

Each runs one of the project's scripts as ``python <script>.py`` would: as ``__main__``, so the
script's start-up (train.py chooses MXNet's threads before importing it) and exit status are
the same. ``retinaface-train --help`` is ``python train.py --help``.
"""
import runpy
import sys

__all__ = ['SCRIPTS', 'run_script', 'train', 'test', 'evaluate', 'detect', 'export', 'quantize',
           'sample_data', 'demo', 'plot', 'launch']

#: console script -> module run as __main__
SCRIPTS = {
    'retinaface-train': 'train',
    'retinaface-test': 'test_widerface',
    'retinaface-eval': 'evaluate_widerface',
    'retinaface-detect': 'tools.detect',
    'retinaface-export': 'tools.export_onnx',
    'retinaface-quantize': 'tools.quantize',
    'retinaface-sample-data': 'tools.make_sample_data',
    'retinaface-demo': 'tools.demo',
    'retinaface-plot': 'tools.plot_training',
    'retinaface-launch': 'tools.launch',
}


def run_script(module):
    """Run ``module`` as ``__main__`` with the current ``sys.argv[1:]``; returns its exit status.

    ``sys.argv[0]`` becomes the module's file, as with ``python <file>`` (the tools' usage line
    and examples name the file).
    """
    try:
        runpy.run_module(module, run_name='__main__', alter_sys=True)
    except SystemExit as exc:
        return exc.code
    return 0


def train():
    return run_script(SCRIPTS['retinaface-train'])


def test():
    return run_script(SCRIPTS['retinaface-test'])


def evaluate():
    return run_script(SCRIPTS['retinaface-eval'])


def detect():
    return run_script(SCRIPTS['retinaface-detect'])


def export():
    return run_script(SCRIPTS['retinaface-export'])


def quantize():
    return run_script(SCRIPTS['retinaface-quantize'])


def sample_data():
    return run_script(SCRIPTS['retinaface-sample-data'])


def demo():
    return run_script(SCRIPTS['retinaface-demo'])


def plot():
    return run_script(SCRIPTS['retinaface-plot'])


def launch():
    return run_script(SCRIPTS['retinaface-launch'])


if __name__ == '__main__':
    sys.exit(run_script(sys.argv.pop(1)))
