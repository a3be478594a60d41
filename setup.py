"""Builds fastbp's Cython extensions, with OpenMP where the compiler supports it.

Every ``.pyx`` under ``fastbp/backends/cython`` becomes an extension module. OpenMP is probed
with the real compiler at build time (a tiny program compiled and linked with the platform's
flag); without it the extensions build serial. ``FASTBP_NO_OPENMP=1`` forces the serial build.
"""
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
CYTHON_DIR = Path("fastbp", "backends", "cython")

_OPENMP_TEST = r"""
#include <omp.h>
int main(void) { int n = 0;
#pragma omp parallel reduction(+:n)
  n += 1;
  return omp_get_max_threads() > 0 && n > 0 ? 0 : 1; }
"""


def _openmp_flags(compiler_type: str, platform: str):
    """(compile args, link args) that enable OpenMP for this compiler family."""
    if compiler_type == "msvc":
        return ["/openmp"], []
    if platform == "darwin":  # Apple clang: libomp from Homebrew or conda
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


class BuildExt(build_ext):
    """build_ext that adds OpenMP flags only when a test program compiles and links with them."""

    def _has_openmp(self, cflags, ldflags) -> bool:
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "omp_test.c")
            with open(src, "w") as f:
                f.write(_OPENMP_TEST)
            try:
                objs = self.compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                self.compiler.link_executable(objs, os.path.join(tmp, "omp_test"), extra_postargs=ldflags)
            except Exception:
                return False
        return True

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        cflags, ldflags = _openmp_flags(ctype, sys.platform)
        use_omp = os.environ.get("FASTBP_NO_OPENMP", "") in ("", "0") and self._has_openmp(cflags, ldflags)
        print(f"fastbp: building the Cython extensions {'with' if use_omp else 'without'} OpenMP")
        # -fno-math-errno: sqrt/sqrtf need not set errno, so loops that take square roots vectorize
        opt = ["/O2"] if ctype == "msvc" else ["-O3", "-fno-math-errno"]
        for ext in self.extensions:
            ext.extra_compile_args = opt + (cflags if use_omp else [])
            ext.extra_link_args = ldflags if use_omp else []
        super().build_extensions()


def _extensions():
    exts = []
    for pyx in sorted((HERE / CYTHON_DIR).glob("*.pyx")):
        rel = pyx.relative_to(HERE)
        module = ".".join(rel.with_suffix("").parts)
        exts.append(Extension(module, [str(rel)], include_dirs=[np.get_include()],
                              define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]))
    return cythonize(exts, compiler_directives={"language_level": 3, "boundscheck": False,
                                                "wraparound": False, "cdivision": True})


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
