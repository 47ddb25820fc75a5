"""Build the Cython geometry kernels in place: ``python setup.py build_ext --inplace``."""
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

setup(
    name='retinaface-mxnet',
    version='0.1.0',
    description='RetinaFace face detection (MXNet): training, inference, WIDER FACE evaluation',
    packages=['rcnn', 'cython_ext'],
    ext_modules=cythonize(extensions, compiler_directives={'language_level': 3}),
)
