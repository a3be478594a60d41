"""The GEMM provider of the CPU kernels: a BLAS of their own, on one thread, shared by the numba
and cython backends (and the compiled training loop, which runs the numba kernels).

Providers, chosen once per process (:func:`gemm_addresses`):

* ``openblas``: ``scipy-openblas32`` (a dependency), the OpenBLAS that NumPy's and SciPy's wheels
  are built from, published on PyPI. Loaded here, it is an instance no other library calls (NumPy
  and SciPy bundle their own, renamed copies), so it is pinned to one thread once, for good, and
  nothing else changes: the kernels split the work themselves (see :mod:`.blas_threads` for the
  trap of two thread pools), while NumPy's and SciPy's BLAS keep their threads.
* ``mkl``: Intel's oneMKL from PyPI's ``mkl`` wheel (the ``mkl`` extra): ``libmkl_rt`` with its
  sequential threading layer (no OpenMP runtime of its own; one thread per call, like the
  OpenBLAS copy) and 32-bit integers. The default on Intel CPUs where it is installed.
* ``scipy``: SciPy's BLAS, pinned as :mod:`.blas_threads` says (the fallback when neither of the
  others can be loaded).

``FASTBP_BLAS`` (``auto``, the default, or one of the names above) overrides the choice; a
provider that was asked for and cannot be loaded gives a warning naming why, and the next one
serves. ``fastbp info`` prints the provider and why it was chosen.
"""
from __future__ import annotations

import ctypes
import functools
import os
import re
import warnings

PROVIDERS = ("openblas", "mkl", "scipy")
#: libmkl_rt's MKL_Set_Threading_Layer / MKL_Set_Interface_Layer codes
_MKL_THREADING_SEQUENTIAL, _MKL_INTERFACE_LP64 = 1, 0


def requested_provider():
    """FASTBP_BLAS as a provider name, or None for the automatic choice (unset, empty, ``auto``;
    an unknown value warns and counts as ``auto``)."""
    value = os.environ.get("FASTBP_BLAS", "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in PROVIDERS:
        warnings.warn(f"FASTBP_BLAS={value!r} is not one of auto, {', '.join(PROVIDERS)}: choosing automatically",
                      RuntimeWarning, stacklevel=2)
        return None
    return value


@functools.lru_cache(maxsize=None)
def cpu_vendor():
    """The CPU's vendor string (``GenuineIntel``, ``AuthenticAMD``, ...), '' where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("vendor_id")), "")
    except OSError:
        import platform

        return "GenuineIntel" if "Intel" in platform.processor() else ""


def _openblas():
    """(sgemm, dgemm, version) of scipy-openblas32 pinned to one thread, or (None, why)."""
    try:
        import scipy_openblas32 as pkg
    except ImportError:
        return None, "scipy-openblas32 is not installed"
    try:
        lib = ctypes.CDLL(os.path.join(pkg.get_lib_dir(), pkg.get_library(fullname=True)))
        set_threads = lib.scipy_openblas_set_num_threads
        set_threads.argtypes, set_threads.restype = [ctypes.c_int], None
        set_threads(1)
        sgemm, dgemm = (ctypes.cast(getattr(lib, f"scipy_{p}gemm_"), ctypes.c_void_p).value for p in "sd")
    except (OSError, AttributeError, IndexError) as exc:  # an unusable install (e.g. no shared library found)
        return None, f"scipy-openblas32 could not be loaded ({exc})"
    return (sgemm, dgemm, f"scipy-openblas32 {pkg.__version__}"), None


def mkl_library():
    """The path of libmkl_rt from the ``mkl`` distribution (PyPI's wheel puts it in the
    environment's lib/), or None."""
    from importlib import metadata

    try:
        files = metadata.files("mkl") or []
    except metadata.PackageNotFoundError:
        return None
    found = sorted((f for f in files if f.name.startswith("libmkl_rt.so") or f.name in ("mkl_rt.2.dll", "libmkl_rt.2.dylib")),
                   key=lambda f: len(f.name))
    return str(found[0].locate().resolve()) if found else None


def _mkl():
    """(sgemm, dgemm, version) of libmkl_rt, sequential, LP64, or (None, why)."""
    path = mkl_library()
    if path is None:
        return None, "the mkl package is not installed (pip install 'fastbp[mkl]')"
    try:
        lib = ctypes.CDLL(path)
        for setter, value in (("MKL_Set_Threading_Layer", _MKL_THREADING_SEQUENTIAL),
                              ("MKL_Set_Interface_Layer", _MKL_INTERFACE_LP64)):
            fn = getattr(lib, setter)
            fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
            fn(value)
        text = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(text, ctypes.c_int(len(text)))
        sgemm, dgemm = (ctypes.cast(getattr(lib, f"{p}gemm_"), ctypes.c_void_p).value for p in "sd")
    except (OSError, AttributeError) as exc:
        return None, f"libmkl_rt could not be loaded ({exc})"
    version = re.search(r"Version ([\d.]+)", text.value.decode(errors="replace"))
    return (sgemm, dgemm, f"oneMKL {version.group(1) if version else '(version unknown)'} (sequential)"), None


def provider_order(requested, vendor):
    """(the providers to try in turn, why the first): the one asked for, then the others; else
    MKL before OpenBLAS on Intel CPUs, and OpenBLAS alone elsewhere (MKL's fast paths are for
    Intel's CPUs). An empty list means SciPy's BLAS."""
    if requested == "scipy":
        return [], "FASTBP_BLAS=scipy"
    if requested is not None:
        return [requested] + [p for p in ("openblas", "mkl") if p != requested], f"FASTBP_BLAS={requested}"
    if vendor == "GenuineIntel":
        return ["mkl", "openblas"], "Intel CPU"
    return ["openblas"], f"the default on {vendor or 'this'} CPU"


@functools.lru_cache(maxsize=None)
def gemm_addresses():
    """(sgemm address, dgemm address, description) of the provider the kernels call (Fortran
    interface, 32-bit integers; loaded and pinned to one thread once), or None when they must use
    SciPy's BLAS. The description names the provider and why it was chosen."""
    requested = requested_provider()
    order, reason = provider_order(requested, cpu_vendor())
    missing = []
    for name in order:
        found, why = {"openblas": _openblas, "mkl": _mkl}[name]()
        if found is not None:
            sgemm, dgemm, version = found
            chosen = "; ".join(missing) if missing else reason  # (why the ones before could not serve)
            return sgemm, dgemm, f"{version}, fastbp's own, one thread ({chosen})"
        missing.append(why)
        if name == requested:
            warnings.warn(f"FASTBP_BLAS={requested}: {why}; the kernels use the next provider", RuntimeWarning,
                          stacklevel=2)
    return None


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
