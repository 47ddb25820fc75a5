"""The library's structural figures (tools/layout_metrics.py): what they detect on a hand-made
tree, and that the real library has none of them."""
import textwrap

from conftest import ROOT
from tools.layout_metrics import measure


def _write(root, relative, text):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_each_figure_is_found_in_a_hand_made_tree(tmp_path):
    _write(tmp_path, 'rcnn/__init__.py', '')
    _write(tmp_path, 'rcnn/a/__init__.py', '')
    _write(tmp_path, 'rcnn/b/__init__.py', '')
    _write(tmp_path, 'rcnn/a/one.py', '''
        from rcnn.b.two import g
        import test_widerface

        def f(args, cfg):
            return args.prefix, cfg.get('KEY', 3)
        ''')
    _write(tmp_path, 'rcnn/b/two.py', '''
        def g(cfg):
            from rcnn.a import one
            return cfg.KEY

        class Big(object):
            def a(self):
                return 1

            def b(self):
                return 2
        ''')
    figures = measure(str(tmp_path))
    assert figures['modules_importing_a_script'] == ['rcnn/a/one.py imports test_widerface']
    assert figures['subpackage_pairs_importing_each_other'] == ['rcnn.a <-> rcnn.b']
    assert figures['functions_taking_an_argparse_namespace'] == ['rcnn/a/one.py:5 f']
    assert figures['config_reads_with_their_own_default'] == ['rcnn/a/one.py:6']
    assert figures['biggest_class'] == {'lines': 6, 'where': 'rcnn/b/two.py:6 Big'}


def test_the_library_has_no_script_import_cycle_namespace_or_read_default():
    figures = measure(str(ROOT))
    for key in ('modules_importing_a_script', 'subpackage_pairs_importing_each_other',
                'functions_taking_an_argparse_namespace', 'config_reads_with_their_own_default'):
        assert figures[key] == [], key
