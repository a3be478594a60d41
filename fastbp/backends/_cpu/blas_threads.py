"""One thread pool at a time: SciPy's BLAS pinned to one thread while our kernels run, when the
kernels call SciPy's BLAS (``FASTBP_BLAS=scipy``, or no ``scipy-openblas32``: see
:mod:`.openblas`; fastbp's own OpenBLAS is on one thread for good and needs none of this).

The numba and cython kernels get their parallelism from ``prange`` (Numba's workers, OpenMP) and
call BLAS on tiles from inside it, so the BLAS they call must run single-threaded there: two
pools on the same cores (OpenBLAS's pthreads and the OpenMP workers) spin against each other
(an order of magnitude slower; the CHANGELOG has the figures).

How that BLAS is pinned to one thread:

* pip wheels: SciPy ships its own OpenBLAS, separate from NumPy's. It is pinned to one thread
  once, when a numba or cython kernel first runs, and stays so: toggling it per call costs
  microseconds per kernel (OpenBLAS wakes its threads when the count goes back up). NumPy's BLAS
  is untouched; only ``scipy.linalg`` runs single-threaded in such a process.
* a BLAS shared with NumPy (conda, Linux distributions), or ``FASTBP_PIN_BLAS=0``: pinned for the
  duration of each kernel call and restored afterwards, so NumPy keeps its threads.
"""
from __future__ import annotations

import ctypes
import os
import threading


# (setter, getter) symbol names per BLAS family, as threadpoolctl names the families
_SYMBOLS = {
    "openblas": ("openblas_set_num_threads", "openblas_get_num_threads"),
    "blis": ("bli_thread_set_num_threads", "bli_thread_get_num_threads"),
    "mkl": ("MKL_Set_Num_Threads", "MKL_Get_Max_Threads"),
}


def _find(dynlib, name):
    for prefix in ("", "scipy_"):
        for suffix in ("", "64_", "_64"):
            fn = getattr(dynlib, prefix + name + suffix, None)
            if fn is not None:
                return fn
    return None


def _scipy_blas_libraries():
    """(threadpoolctl controllers of the BLAS that Numba's np.dot and our gemm call, whether that
    BLAS is SciPy's private copy)."""
    import scipy
    import scipy.linalg.cython_blas  # noqa: F401  (loads it, so threadpoolctl sees it)
    from threadpoolctl import ThreadpoolController

    blas = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    scipy_dir = os.path.dirname(os.path.dirname(os.path.abspath(scipy.__file__)))
    own = [lib for lib in blas if os.path.abspath(lib.filepath).startswith(os.path.join(scipy_dir, "scipy"))]
    if own:
        return own, True
    return blas, False  # a shared system BLAS (conda, distributions): pin that one, per call


class SingleThreadedBlas:
    """Context manager: the BLAS Numba calls runs on one thread inside; re-entrant and thread-safe
    (the first entry pins it, the last exit restores the previous count)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._libs = None
        self._saved = []
        self.pinned_for_good = False

    def _controls(self):
        if self._libs is None:
            libs = []
            found, private = _scipy_blas_libraries()
            for lib in found:
                names = _SYMBOLS.get(lib.internal_api)
                setter = getter = None
                if names is not None:
                    setter, getter = (_find(lib.dynlib, n) for n in names)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    getter.argtypes, getter.restype = [], ctypes.c_int
                    libs.append((setter, getter))
                else:  # unknown family: threadpoolctl's slower generic path
                    libs.append((lib.set_num_threads, lib.get_num_threads))
            if private and os.environ.get("FASTBP_PIN_BLAS", "1") != "0":
                for setter, _ in libs:
                    setter(1)
                self.pinned_for_good = True
            self._libs = libs
        return self._libs

    def __enter__(self):
        if self._libs is None:
            self._controls()  # may pin a private BLAS for good
        if self.pinned_for_good:
            return self
        with self._lock:
            if self._depth == 0:
                self._saved = []
                for setter, getter in self._controls():
                    n = getter()
                    self._saved.append(n)
                    if n != 1:
                        setter(1)
            self._depth += 1
        return self

    def __exit__(self, *exc):
        if self.pinned_for_good:
            return
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                for (setter, _), n in zip(self._controls(), self._saved):
                    if n != 1:
                        setter(n)


single_threaded_blas = SingleThreadedBlas()
