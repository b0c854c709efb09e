"""Build: one package `scangate` from three source roots (python/, core/, server/).

SCANGATE_DEBUG=1 builds the core with bounds checks, wraparound and line tracing,
the one debug switch for the native code.
"""
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("SCANGATE_DEBUG", "") not in ("", "0")

directives = {"language_level": "3", "embedsignature": True}
if DEBUG:
    directives.update(boundscheck=True, wraparound=True, linetrace=True)
    macros = [("CYTHON_TRACE_NOGIL", "1")]
    cflags = ["-O0", "-g"]
else:
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    cflags = ["-O3"]

extensions = [
    Extension(
        "scangate._core.codec",
        ["core/codec.pyx"],
        include_dirs=[np.get_include()],
        define_macros=macros,
        extra_compile_args=cflags,
    )
]

setup(
    package_dir={
        "scangate": "python/scangate",
        "scangate._core": "core",
        "scangate.server": "server",
    },
    packages=["scangate", "scangate.v1", "scangate._core", "scangate.server"],
    package_data={"scangate": ["py.typed"], "scangate._core": ["*.pyi", "*.pxd"]},
    exclude_package_data={"scangate._core": ["*.c"]},
    ext_modules=cythonize(extensions, compiler_directives=directives),
)
