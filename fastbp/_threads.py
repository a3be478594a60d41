"""Thread counts of the pools fastbp uses."""
from __future__ import annotations

from . import _backend


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in fastbp's parallel kernels: Numba's pool (for the calling thread, as
    ``numba.set_num_threads``) and the OpenMP pool of the compiled Cython extensions.

    The BLAS inside the kernels always runs single-threaded (the kernels split the work
    themselves); NumPy's and SciPy's own BLAS settings are left as they are.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be an integer >= 1; got {n!r}")
    if _backend.backend_status().get("numba") is None:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="openmp")


def get_num_threads() -> int:
    """Threads fastbp's parallel kernels use in the calling thread."""
    if _backend.backend_status().get("numba") is None:
        import numba

        return numba.get_num_threads()
    from threadpoolctl import threadpool_info

    counts = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"]
    return max(counts, default=1)
