"""Structural figures of the library (``rcnn/``), read from its source with ``ast``.

    python tools/layout_metrics.py [--root DIR] [--json]

Prints:
* library modules importing a top-level script (``train``, ``test_widerface``,
  ``evaluate_widerface``, ``retinaface``) or ``tools``;
* sub-package pairs of ``rcnn`` that import each other (any import, also inside functions);
* library functions taking an argparse namespace (a parameter named ``args`` whose attributes
  the function reads, or one annotated ``argparse.Namespace``);
* read sites that carry their own config default (``cfg.get('KEY', default)`` on a name or
  attribute called ``cfg``/``config``/``*_cfg``);
* the longest library function and the biggest class, in lines.
"""
import argparse
import ast
import collections
import json
import os
import sys

SCRIPTS = ('train', 'test_widerface', 'evaluate_widerface', 'retinaface', 'tools')


def library_files(root):
    for folder, _, names in os.walk(os.path.join(root, 'rcnn')):
        for name in sorted(names):
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, root).replace(os.sep, '/'), path


def module_name(relative):
    parts = relative[:-3].split('/')
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imported_modules(tree, current):
    """Absolute names of every module the tree imports (relative imports resolved)."""
    package = current.split('.')
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + (0 if current.endswith('__init__')
                                                             else 0)]
                name = '.'.join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ''
            yield name
            for alias in node.names:
                yield name + '.' + alias.name


def _is_config_name(node):
    name = node.id if isinstance(node, ast.Name) else (
        node.attr if isinstance(node, ast.Attribute) else '')
    return name in ('cfg', 'config') or name.endswith('_cfg')


def config_defaults(tree):
    """Line numbers of ``cfg.get('KEY', default)`` calls."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == 'get' and _is_config_name(node.func.value)
                and len(node.args) + len(node.keywords) >= 2):
            yield node.lineno


def takes_namespace(func):
    for arg in func.args.args + func.args.kwonlyargs:
        annotation = ast.unparse(arg.annotation) if arg.annotation is not None else ''
        if annotation.endswith('Namespace'):
            return True
        if arg.arg == 'args':
            for node in ast.walk(func):
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                        and node.value.id == 'args'):
                    return True
    return False


def measure(root):
    scripts, namespace_funcs, defaults = [], [], []
    package_imports = collections.defaultdict(set)
    longest = (0, '')
    biggest = (0, '')
    for relative, path in library_files(root):
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), path)
        current = module_name(relative)
        own_package = '.'.join(current.split('.')[:2])
        for name in set(imported_modules(tree, current)):
            top = name.split('.')[0]
            if top in SCRIPTS:
                scripts.append('%s imports %s' % (relative, name))
            parts = name.split('.')
            if top == 'rcnn' and len(parts) > 1:
                other = '.'.join(parts[:2])
                if other != own_package and os.path.isdir(os.path.join(root, *parts[:2])):
                    package_imports[own_package].add(other)
        defaults.extend('%s:%d' % (relative, line) for line in config_defaults(tree))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > longest[0]:
                    longest = (lines, '%s:%d %s' % (relative, node.lineno, node.name))
                if takes_namespace(node):
                    namespace_funcs.append('%s:%d %s' % (relative, node.lineno, node.name))
            elif isinstance(node, ast.ClassDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > biggest[0]:
                    biggest = (lines, '%s:%d %s' % (relative, node.lineno, node.name))
    pairs = sorted({tuple(sorted((a, b))) for a, targets in package_imports.items()
                    for b in targets if a in package_imports.get(b, ())})
    return {'modules_importing_a_script': sorted(set(scripts)),
            'subpackage_pairs_importing_each_other': ['%s <-> %s' % p for p in pairs],
            'functions_taking_an_argparse_namespace': namespace_funcs,
            'config_reads_with_their_own_default': defaults,
            'longest_function': {'lines': longest[0], 'where': longest[1]},
            'biggest_class': {'lines': biggest[0], 'where': biggest[1]}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--root', default=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), help='project root to measure')
    parser.add_argument('--json', action='store_true', help='print JSON instead of text')
    args = parser.parse_args(argv)
    figures = measure(args.root)
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    for key, value in figures.items():
        if isinstance(value, list):
            print('%-42s %d' % (key.replace('_', ' '), len(value)))
            for item in value:
                print('    ' + item)
        else:
            print('%-42s %d lines (%s)' % (key.replace('_', ' '), value['lines'], value['where']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
