"""What ``fastbp info`` and :func:`fastbp.show_config` report: versions, backends, threads, BLAS."""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

from . import _backend
from ._version import __version__

_PACKAGES = ("numpy", "scipy", "numba", "llvmlite", "numba-cuda", "Cython", "threadpoolctl", "mpi4py", "mpich",
             "torch")
_THREAD_VARS = ("FASTBP_BACKEND", "FASTBP_ADAPTIVE_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                "NUMBA_THREADING_LAYER", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_CORETYPE",
                "FASTBP_BACKGROUND_COMPILE", "NUMBA_CACHE_DIR")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def config_info() -> dict:
    """The configuration as a dict (see :func:`show_config`)."""
    from threadpoolctl import threadpool_info

    import numpy  # noqa: F401  (loads NumPy's BLAS so that threadpoolctl sees it)

    return {
        "fastbp": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "backends": [
            {"name": name, "device": device, "available": reason is None, "reason": reason, "description": desc}
            for name, device, reason, desc in _backend.describe()
        ],
        "default_cpu_backend": _default_cpu_backend(),
        "cython_build": _cython_build(),
        "numba_threads": _numba_threads(),
        "training_path": _training_path(),
        "environment": {k: os.environ[k] for k in _THREAD_VARS if k in os.environ},
        "thread_pools": [
            {k: pool.get(k) for k in ("user_api", "internal_api", "num_threads", "version",
                                      "threading_layer", "architecture", "filepath")}
            for pool in threadpool_info()
        ],
    }


def _training_path() -> str | None:
    """The path fit() of the seed example (784-128-10, Adam, batch 32, float32) takes now, in words
    (None when no backend runs here); finding out compiles nothing."""
    import numpy as np

    from . import nn

    try:
        model = nn.Sequential([nn.Dense(128, activation="relu", input_shape=(784,)), nn.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.build(784)
        x, y = np.zeros((32, 784), np.float32), np.zeros(32, np.intp)
        if not model._use_compiled():
            return model._epoch_runner(x, y, 32).path
        if not model._standby():
            return "numba compiled steps (compiled by the first fit() where Numba's cache does not hold them)"
        from .nn.compiled.lowering import lower

        if lower(model, x, y, 32, standby=True, submit=False) is not None:
            return "numba compiled steps (compiled: in Numba's cache)"
        return ("cython kernels in a Python loop, while numba compiles its steps in the background "
                "(started by the first fit(); FASTBP_BACKGROUND_COMPILE=0 or `fastbp warmup` compile them at once)")
    except Exception as exc:  # noqa: BLE001 (info reports; it does not fail)
        return f"unknown ({type(exc).__name__}: {exc})"


def _default_cpu_backend() -> str | None:
    try:
        return _backend.auto_backend()
    except _backend.BackendUnavailableError:
        return None


def _numba_threads() -> str | None:
    if _backend.backend_status().get("numba") is not None:
        return None
    from .backends.numba_cpu import backend

    blas = backend._one_blas_thread
    blas._controls()
    if backend.BLAS_IS_PRIVATE:
        pin = backend.BLAS_SOURCE
    elif blas.pinned_for_good:
        pin = f"{backend.BLAS_SOURCE}, pinned to 1 thread for good (SciPy's private copy)"
    else:
        pin = f"{backend.BLAS_SOURCE}, pinned to 1 thread per call"
    return (f"{backend.get_num_threads()} threads, threading layer {backend.threading_layer()}; "
            f"BLAS inside the kernels: {pin}")


def _cython_build() -> str:
    try:
        from .backends.cython import _buildinfo
    except ImportError as exc:
        return f"extensions not built ({exc})"
    built = (f"extensions built with OpenMP ({_buildinfo.openmp_max_threads()} threads)"
             if _buildinfo.openmp_enabled() else "extensions built without OpenMP (serial)")
    try:
        from .backends.cython import backend
    except ImportError:
        return built
    return f"{built}; {backend.SIMD} kernels in use; BLAS: {backend.BLAS_SOURCE}"


def show_config(file=None) -> None:
    """Print versions, every backend (with the reason any is unavailable), thread pools and BLAS."""
    info = config_info()
    out = []
    out.append(f"fastbp {info['fastbp']}  python {info['python']}")
    out.append(f"platform {info['platform']}, {info['cpu_count']} CPUs")
    out.append("packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v))
    out.append("backends:")
    for b in info["backends"]:
        state = "available" if b["available"] else f"unavailable: {b['reason']}"
        out.append(f"  {b['name']:<7} [{b['device']}] {b['description']}: {state}")
    out.append(f"default CPU backend: {info['default_cpu_backend']}")
    if info["numba_threads"]:
        out.append(f"numba: {info['numba_threads']}")
    out.append(f"cython: {info['cython_build']}")
    out.append(f"fit() of the seed example now runs: {info['training_path']}")
    if info["environment"]:
        out.append("environment: " + ", ".join(f"{k}={v}" for k, v in info["environment"].items()))
    out.append("thread pools (threadpoolctl):")
    for p in info["thread_pools"]:
        extra = ", ".join(f"{k} {p[k]}" for k in ("threading_layer", "architecture") if p.get(k))
        out.append(f"  {p['user_api']:<7} {p['internal_api']:<9} {p['version'] or '':<8} "
                   f"{p['num_threads']} threads{', ' + extra if extra else ''}  {p['filepath']}")
    print("\n".join(out), file=file or sys.stdout)
