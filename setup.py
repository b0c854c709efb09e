"""Build: one package `scangate` from three source roots (python/, core/, server/).

SCANGATE_DEBUG=1 builds the core with bounds checks, wraparound and line tracing,
the one debug switch for the native code.
"""
import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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
        define_macros=macros,
        extra_compile_args=cflags,
    )
]


class CythonBuildExt(build_ext):
    """Cythonize, with numpy's headers, only when the core is compiled: making the
    sdist keeps core/codec.pyx as the extension's source (the sdist carries it) and
    writes no generated C into the tree."""

    def run(self) -> None:
        import numpy as np
        from Cython.Build import cythonize

        for ext in self.extensions:
            if np.get_include() not in ext.include_dirs:
                ext.include_dirs.append(np.get_include())
        # the .pyx sources become the generated .c; the Extension objects stay the
        # ones build_ext has finalized
        generated = {e.name: e.sources for e in cythonize(self.extensions, compiler_directives=directives)}
        for ext in self.extensions:
            ext.sources = generated[ext.name]
        super().run()


setup(
    package_dir={
        "scangate": "python/scangate",
        "scangate._core": "core",
        "scangate.server": "server",
    },
    packages=["scangate", "scangate.v1", "scangate._core", "scangate.server", "scangate.state", "scangate.decide",
              "scangate.cli"],
    # The wheel: the modules, the compiled core and exactly this package data (the
    # typing marker and stubs, the Cython declarations, the .proto files that document
    # the gRPC API for any gRPC client); never the .pyx, the generated C or
    # server/proto/generate.py. MANIFEST.in says what the sdist carries besides.
    include_package_data=False,
    package_data={
        "scangate": ["py.typed"],
        "scangate._core": ["*.pyi", "*.pxd"],
        "scangate.server": ["proto/scangate/v1/*.proto"],
    },
    exclude_package_data={"": ["*.c"]},
    ext_modules=extensions,
    cmdclass={"build_ext": CythonBuildExt},
)
