"""Thread counts of the two CPU backends' pools (Numba's workers, the cython extension's OpenMP)."""
from __future__ import annotations

from ... import _backend

#: how many Numba compilations this process's background worker has in hand (see
#: fastbp.backends.numba_cpu.background, which keeps the count): while there are any, one core is
#: the worker's, and the cython kernels' OpenMP loops run on one thread fewer (an OpenMP loop
#: waiting at its barrier for a thread placed on the worker's core was slowed 30x)
compiling_in_background = [0]


def _loaded(name: str):
    """The backend module if it is available here (probing only that one), else None."""
    try:
        return _backend.load(name)
    except _backend.BackendUnavailableError:
        return None


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in fastbp's parallel kernels: Numba's pool for the calling thread (as
    ``numba.set_num_threads``; capped at ``NUMBA_NUM_THREADS``) and the cython extension's OpenMP
    loops (process-wide).

    The BLAS inside the kernels always runs single-threaded (the kernels split the work
    themselves); NumPy's, SciPy's and other libraries' pools are left as they are.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be an integer >= 1; got {n!r}")
    if _loaded("numba") is not None:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    cython_backend = _loaded("cython")
    if cython_backend is not None:
        cython_backend.set_num_threads(n)


def get_num_threads() -> int:
    """Threads fastbp's parallel kernels use in the calling thread: Numba's count where Numba is
    installed, else the cython extension's (1 when neither runs in parallel)."""
    if _loaded("numba") is not None:
        import numba

        return numba.get_num_threads()
    cython_backend = _loaded("cython")
    return cython_backend.get_num_threads() if cython_backend is not None else 1


def numba_threading_layer() -> str:
    """The Numba threading layer in use (after the first parallel run), else the configured one."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return numba.config.THREADING_LAYER
