"""Build script for mgit's optional C extensions; all metadata lives in pyproject.toml.

All are optional: when no C compiler is available the build prints a warning, the install
still succeeds, and mgit uses a Python equivalent.

- ``mgit._planes``: byte-plane and delta kernels for the lossless codecs (else numpy).
- ``mgit._syscalls`` (Linux): ``sync_file_range`` and ``mallopt`` (else ctypes).
- ``mgit._diffstats``: the one-pass statistics of ``mgit diff`` (else numpy).
- ``mgit._jsonfmt``: re-indents compact JSON for ``--json`` output (else json's Python encoder).
"""

import sys

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


_EXTENSIONS = [
    Extension("mgit._planes", ["mgit/_planes.c"], optional=True),
    Extension("mgit._diffstats", ["mgit/_diffstats.c"], optional=True),
    Extension("mgit._jsonfmt", ["mgit/_jsonfmt.c"], optional=True),
]
if sys.platform.startswith("linux"):
    _EXTENSIONS.append(Extension("mgit._syscalls", ["mgit/_syscalls.c"], optional=True))

setup(
    ext_modules=_EXTENSIONS,
    cmdclass={"build_ext": _BuildExt},
)
