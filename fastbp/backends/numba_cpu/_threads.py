"""Numba's thread pool, and the BLAS the numba kernels call, kept on one thread.

With the ``scipy-openblas32`` package (a dependency) the kernels call a copy of OpenBLAS of their
own, pinned to one thread when it is loaded (:mod:`fastbp._openblas`): nothing else to pin, and SciPy's and
NumPy's BLAS are never touched. Without it they call SciPy's BLAS, pinned as
:mod:`fastbp._blas_threads` says (shared with the cython backend).
"""
from __future__ import annotations

import numba

from ..._blas_threads import SingleThreadedBlas  # noqa: F401
from ..._openblas import blas_pin
from ._blas import BLAS_IS_PRIVATE, BLAS_SOURCE  # noqa: F401

#: ``with single_threaded_blas:`` around calls of the raw kernels keeps their BLAS on one thread
single_threaded_blas = blas_pin()


def set_num_threads(n: int) -> None:
    """Numba's pool for the calling thread (Numba's setting is per thread)."""
    numba.set_num_threads(n)


def get_num_threads() -> int:
    return numba.get_num_threads()


def threading_layer() -> str:
    """The Numba threading layer in use (after the first parallel run), else the configured one."""
    try:
        return numba.threading_layer()
    except ValueError:
        return numba.config.THREADING_LAYER
