"""Thread counts of the pools fastbp uses."""
from __future__ import annotations

from . import _backend


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in fastbp's parallel kernels: Numba's pool, for the calling thread (as
    ``numba.set_num_threads``; capped at ``NUMBA_NUM_THREADS``).

    The BLAS inside the kernels always runs single-threaded (the kernels split the work
    themselves); NumPy's, SciPy's and other libraries' pools are left as they are.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be an integer >= 1; got {n!r}")
    if _backend.backend_status().get("numba") is None:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def get_num_threads() -> int:
    """Threads fastbp's parallel kernels use in the calling thread (1 without Numba)."""
    if _backend.backend_status().get("numba") is None:
        import numba

        return numba.get_num_threads()
    return 1
