"""The GEMM provider of the CPU kernels: the OpenBLAS they call: a copy of their own, one thread, shared by the numba and
cython backends.

``scipy-openblas32`` (a dependency) is the OpenBLAS that NumPy's and SciPy's wheels are built
from, published on PyPI. Loaded here, it is an instance no other library calls (NumPy and SciPy
bundle their own, renamed copies), so it is pinned to one thread once, for good, and nothing else
changes: the kernels split the work themselves (see :mod:`.blas_threads` for the trap of
two thread pools), while NumPy's and SciPy's BLAS keep their threads.

``FASTBP_BLAS=scipy`` (or the package missing or unusable) makes the backends call SciPy's BLAS
instead, pinned as :mod:`.blas_threads` says.
"""
from __future__ import annotations

import ctypes
import functools
import os


@functools.lru_cache(maxsize=None)
def gemm_addresses():
    """(sgemm address, dgemm address, description) of the private OpenBLAS, or None when the
    backends must use SciPy's BLAS. Fortran interface, 32-bit integers; loaded and pinned once."""
    if os.environ.get("FASTBP_BLAS", "").lower() == "scipy":
        return None
    try:
        import scipy_openblas32 as pkg
    except ImportError:
        return None
    try:
        lib = ctypes.CDLL(os.path.join(pkg.get_lib_dir(), pkg.get_library(fullname=True)))
        set_threads = lib.scipy_openblas_set_num_threads
        set_threads.argtypes, set_threads.restype = [ctypes.c_int], None
        set_threads(1)
        sgemm, dgemm = (ctypes.cast(getattr(lib, f"scipy_{p}gemm_"), ctypes.c_void_p).value for p in "sd")
    except (OSError, AttributeError, IndexError):  # an unusable install (e.g. no shared library found)
        return None
    return sgemm, dgemm, f"scipy-openblas32 {pkg.__version__} (fastbp's own copy, one thread)"


class _AlreadyOneThread:
    """The BLAS pin of a backend whose BLAS is the private copy above: entering it costs nothing
    and changes nothing (that copy stays on one thread)."""

    pinned_for_good = True

    def _controls(self):
        return []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def scipy_gemm_addresses():
    """(sgemm, dgemm) addresses of SciPy's ``cython_blas`` (from the module's C-API capsules):
    the BLAS of the kernels where fastbp's own is missing (importing it imports scipy.linalg)."""
    import ctypes

    from scipy.linalg import cython_blas

    name = ctypes.pythonapi.PyCapsule_GetName
    name.restype, name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    pointer = ctypes.pythonapi.PyCapsule_GetPointer
    pointer.restype, pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    capsules = [cython_blas.__pyx_capi__[f"{p}gemm"] for p in "sd"]
    return tuple(pointer(c, name(c)) for c in capsules)


def blas_pin():
    """The context manager a CPU backend enters around its kernels so that their BLAS runs on one
    thread: nothing to do for the private copy, else :data:`.blas_threads.single_threaded_blas`."""
    if gemm_addresses() is not None:
        return _AlreadyOneThread()
    from .blas_threads import single_threaded_blas

    return single_threaded_blas
