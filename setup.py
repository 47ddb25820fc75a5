"""The Cython geometry kernels; everything else about the package is in pyproject.toml.

``pip install -e .`` (``make setup``) builds them; ``python setup.py build_ext --inplace``
builds them in place without installing anything.
"""
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

COMPILE_ARGS = ['-O3', '-Wno-cpp', '-Wno-unused-function']
KERNELS = ['anchors', 'bbox', 'cpu_nms']

extensions = [
    Extension('cython_ext.%s' % name, ['cython_ext/%s.pyx' % name],
              include_dirs=[np.get_include()],
              define_macros=[('NPY_NO_DEPRECATED_API', 'NPY_1_7_API_VERSION')],
              extra_compile_args=COMPILE_ARGS)
    for name in KERNELS
]

setup(ext_modules=cythonize(extensions, compiler_directives={'language_level': 3}))
