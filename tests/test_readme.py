"""The README's commands run as printed.

Its shell blocks are read line by line (continuations joined, comments dropped). Every command
of the project's own tools is checked against that tool's ``--help``: each flag it passes must
be one the tool defines. The cheap ones run for real: ``--help`` of every tool named, the Python
blocks (the API on ../shared/images with the released mnet.25, when ../shared is there), the
detection CLI on ../shared/images. Commands of ``make`` must name targets of the Makefile.
"""
import functools
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED

README = ROOT / 'README.md'
FENCE = re.compile(r'^```(\w*)\s*$')
#: program -> script of the project (console scripts and the plain files)
PROGRAMS = {
    'train.py': 'train.py', 'retinaface-train': 'train.py',
    'test_widerface.py': 'test_widerface.py', 'retinaface-test': 'test_widerface.py',
    'evaluate_widerface.py': 'evaluate_widerface.py', 'retinaface-eval': 'evaluate_widerface.py',
    'tools/detect.py': 'tools/detect.py', 'retinaface-detect': 'tools/detect.py',
    'tools/export_onnx.py': 'tools/export_onnx.py', 'retinaface-export': 'tools/export_onnx.py',
    'tools/quantize.py': 'tools/quantize.py', 'retinaface-quantize': 'tools/quantize.py',
    'tools/make_sample_data.py': 'tools/make_sample_data.py',
    'retinaface-sample-data': 'tools/make_sample_data.py',
    'tools/demo.py': 'tools/demo.py', 'retinaface-demo': 'tools/demo.py',
    'tools/plot_training.py': 'tools/plot_training.py', 'retinaface-plot': 'tools/plot_training.py',
    'tools/launch.py': 'tools/launch.py', 'retinaface-launch': 'tools/launch.py',
}
#: tools that run a model: on the CPU their README commands pass --gpu -1
NEEDS_GPU_FLAG = {'test_widerface.py', 'tools/detect.py'}


def blocks(kinds):
    """(kind, first line number, text) of the README's fenced blocks of these kinds."""
    found, current, start, lines = [], None, 0, []
    for number, line in enumerate(README.read_text().splitlines(), 1):
        match = FENCE.match(line)
        if match and current is None:
            current, start, lines = match.group(1) or 'text', number + 1, []
        elif line.strip() == '```' and current is not None:
            if current in kinds:
                found.append((current, start, '\n'.join(lines)))
            current = None
        elif current is not None:
            lines.append(line)
    return found


def shell_commands():
    """(README line, argv) of every command in the bash blocks."""
    commands = []
    for _, start, text in blocks({'bash', 'sh', 'shell'}):
        pending, first = '', None
        for offset, line in enumerate(text.splitlines()):
            stripped = line.split(' #', 1)[0].rstrip() if not line.lstrip().startswith('#') \
                else ''
            if not stripped and not pending:
                continue
            first = start + offset if not pending else first
            if stripped.endswith('\\'):
                pending += stripped[:-1] + ' '
                continue
            full = (pending + stripped).strip()
            pending = ''
            if full:
                commands += [(first, argv) for argv in split_commands(full)]
    return commands


def split_commands(line):
    """The argv lists of a shell line, split at ``;``, ``&&`` and ``||`` outside quotes."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=';&|')
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token in (';', '&&', '||'):
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [c for c in commands + [current] if c]


def project_script(argv):
    """(script, its arguments) when ``argv`` runs one of the project's tools, else None."""
    words = [w for w in argv if not re.match(r'^[A-Z_]+=', w)]      # VAR=value prefixes
    if not words:
        return None
    if os.path.basename(words[0]).startswith('python') and len(words) > 1:
        words = words[1:]
    if words[0] in PROGRAMS:
        return PROGRAMS[words[0]], words[1:]
    return None


@functools.lru_cache(maxsize=None)
def help_text(script):
    proc = subprocess.run([sys.executable, str(ROOT / script), '--help'], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, '%s --help failed:\n%s' % (script, proc.stderr[-2000:])
    return proc.stdout


def _flags(arguments):
    return [a.split('=', 1)[0] for a in arguments if a.startswith('--')]


def _defined(flag, text):
    spellings = {flag, '--' + flag[2:].replace('_', '-'), '--' + flag[2:].replace('-', '_')}
    return any(re.search(re.escape(s) + r'(?![\w-])', text) for s in spellings)


def test_the_readme_has_commands_of_each_kind():
    scripts = {project_script(argv)[0] for _, argv in shell_commands() if project_script(argv)}
    for wanted in ('train.py', 'test_widerface.py', 'evaluate_widerface.py', 'tools/detect.py'):
        assert wanted in scripts, 'the README shows no %s command' % wanted
    assert any(argv[:2] == ['make', 'demo'] for _, argv in shell_commands())
    assert any(argv[:2] == ['make', 'test'] for _, argv in shell_commands())


@pytest.mark.parametrize('line, argv', shell_commands(), ids=lambda v: str(v)[:60])
def test_each_command_parses(line, argv):
    """Every flag a README command passes exists in the tool's --help; make targets exist."""
    if argv[0] == 'make':
        targets = [a for a in argv[1:] if not a.startswith('-') and '=' not in a]
        proc = subprocess.run(['make', '-n'] + targets, cwd=str(ROOT), capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, 'README.md:%d: make %s: %s' % (
            line, ' '.join(targets), proc.stderr)
        return
    found = project_script(argv)
    if found is None:
        return               # not one of the project's tools (source, pip, cp, curl, ...)
    script, arguments = found
    text = help_text(script)
    unknown = [f for f in _flags(arguments) if f not in ('--help', '-h') and not _defined(f, text)]
    assert unknown == [], 'README.md:%d: %s has no flag %s' % (line, script, ', '.join(unknown))
    if script in NEEDS_GPU_FLAG and '--help' not in arguments:
        assert '--gpu' in arguments, 'README.md:%d: %s on the CPU needs --gpu -1' % (line, script)


def test_python_blocks_run(tmp_path):
    """Each Python block of the README runs (from the repository root, as a user would)."""
    if not (SHARED / 'models' / 'mnet.25' / 'mnet.25-0000.params').exists():
        pytest.skip('the README examples use ../shared (absent; see ../shared/README.md)')
    runnable = [(start, text) for kind, start, text in blocks({'python'})
                if '../shared' in text]
    assert runnable, 'the README has no Python example on ../shared'
    for start, text in runnable:
        proc = subprocess.run([sys.executable, '-c', text], cwd=str(ROOT), capture_output=True,
                              text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS='1'))
        assert proc.returncode == 0, 'README.md:%d: the Python block fails:\n%s' % (
            start, proc.stderr[-3000:])


def test_detection_command_on_the_shared_photos_runs(tmp_path):
    """The README's tools/detect.py command on ../shared/images, into a temporary folder."""
    if not (SHARED / 'images').exists():
        pytest.skip('../shared/images absent (see ../shared/README.md)')
    commands = [(line, argv) for line, argv in shell_commands()
                if project_script(argv) and project_script(argv)[0] == 'tools/detect.py'
                and any('../shared/images' in a for a in argv)]
    assert commands, 'the README has no detection command on ../shared/images'
    line, argv = commands[0]
    script, arguments = project_script(argv)
    if '--out' in arguments:
        arguments[arguments.index('--out') + 1] = str(tmp_path / 'out')
    proc = subprocess.run([sys.executable, str(ROOT / script)] + arguments, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, 'README.md:%d: %s' % (line, proc.stderr[-3000:])
