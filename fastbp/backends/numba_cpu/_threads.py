"""Numba's thread pool, and the BLAS pinning the numba kernels share with the cython ones
(:mod:`fastbp._blas_threads`)."""
from __future__ import annotations

import numba

from ..._blas_threads import SingleThreadedBlas, single_threaded_blas  # noqa: F401


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
