"""Cython geometry kernels: anchors, IoU, NMS.

Build them in place with ``python setup.py build_ext --inplace`` (``make setup`` does it).
Importing a kernel that was not built raises an ImportError naming that command.
"""
import importlib.abc
import sys

KERNELS = ('anchors', 'bbox', 'cpu_nms')
BUILD_COMMAND = 'python setup.py build_ext --inplace'


class _UnbuiltKernelFinder(importlib.abc.MetaPathFinder):
    """Last-resort finder: explains how to build a kernel the normal finders did not find."""

    def find_spec(self, fullname, path, target=None):
        package, _, name = fullname.rpartition('.')
        if package == __name__ and name in KERNELS:
            raise ImportError(
                'Cython kernel %s is not built; run `%s` in the project root (or `make setup`)'
                % (fullname, BUILD_COMMAND), name=fullname)
        return None


if not any(isinstance(f, _UnbuiltKernelFinder) for f in sys.meta_path):
    sys.meta_path.append(_UnbuiltKernelFinder())
