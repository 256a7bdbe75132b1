"""Build script for mgit's optional C extension; all metadata lives in pyproject.toml.

``mgit._planes`` (byte-plane and delta kernels for the lossless codecs) is optional: when no C
compiler is available the build prints a warning, the install still succeeds, and mgit uses its
numpy implementation of the same kernels.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# gcc/clang flags; other compilers (MSVC) get their defaults.
_UNIX_FLAGS = ["-O3", "-std=gnu99", "-fvisibility=hidden"]


class _BuildExt(build_ext):
    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "unix":
            for ext in self.extensions:
                ext.extra_compile_args = [*_UNIX_FLAGS, *ext.extra_compile_args]
        super().build_extensions()


setup(
    ext_modules=[Extension("mgit._planes", ["mgit/_planes.c"], optional=True)],
    cmdclass={"build_ext": _BuildExt},
)
