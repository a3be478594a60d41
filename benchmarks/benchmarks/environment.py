"""What a comparison ran on: the CPU, and the BLAS (or matrix library) behind each contender.

Every side-by-side figure names these, since a ratio against PyTorch on MKL means something
else than one against NumPy on OpenBLAS. Used by the asv suite (``bench_environment``), the
``compare_*.py`` scripts and ``report.py``. Nothing here imports a contender that is not already
installed; a contender that is missing is described as such.
"""
from __future__ import annotations

import functools
import os
import platform
import re

#: CPU features that decide which GEMM and which kernels run
FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


@functools.lru_cache(maxsize=None)
def cpu():
    """'model name (family F model M; features; N CPUs)' from /proc/cpuinfo where there is one."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not line.strip():
                    break  # the first processor's block is enough
                info.setdefault(key.strip(), value.strip())
    except OSError:
        return f"{platform.processor() or platform.machine()} ({os.cpu_count()} CPUs)"
    flags = set(info.get("flags", "").split())
    have = " ".join(f for f in FEATURES if f in flags) or "no AVX2"
    return (f"{info.get('model name', platform.machine())} (family {info.get('cpu family', '?')} model "
            f"{info.get('model', '?')}; {have}; {os.cpu_count()} CPUs)")


def _numpy_blas():
    import numpy as np

    try:
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            if lib.get("user_api") == "blas" and "numpy" in lib.get("filepath", ""):
                arch = f", {lib['architecture']} kernels" if lib.get("architecture") else ""
                return f"{lib['internal_api']} {lib['version']} (NumPy {np.__version__}'s own{arch})"
    except ImportError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas.get('version', '')} (NumPy {np.__version__}'s own)"
    except Exception:  # noqa: BLE001 (NumPy's config layout varies between versions)
        return f"NumPy {np.__version__}'s BLAS"


def _fastbp_blas():
    import fastbp
    from fastbp.backends._cpu.openblas import gemm_addresses

    found = gemm_addresses()
    source = found[2] if found else "SciPy's BLAS (FASTBP_BLAS=scipy, or scipy-openblas32 unusable)"
    return f"{source}; fastbp {fastbp.__version__}"


def _torch_blas():
    import torch

    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    mkl = re.search(r"Math Kernel Library Version ([\d.]+)", config)
    dnn = re.search(r"MKL-DNN (v[\d.]+)", config)
    parts = [f"BLAS {blas.group(1) if blas else 'unknown'}" + (f" {mkl.group(1)}" if mkl else "")]
    if dnn and torch.backends.mkldnn.is_available():
        parts.append(f"oneDNN {dnn.group(1)}")
    return f"{', '.join(parts)} (PyTorch {torch.__version__})"


def _tensorflow_blas():
    """(from the installed distribution: importing TensorFlow takes seconds and starts its pools)"""
    from importlib import metadata

    for dist in ("tensorflow", "tensorflow-cpu"):
        try:
            version = metadata.version(dist)
            break
        except metadata.PackageNotFoundError:
            continue
    else:
        raise ImportError("tensorflow")
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0" and platform.machine() in ("x86_64", "AMD64")
    return f"{'oneDNN, then Eigen' if onednn else 'Eigen'} (TensorFlow {version})"


def _sklearn_blas():
    import sklearn

    return f"NumPy's: {_numpy_blas()} (scikit-learn {sklearn.__version__})"


_DESCRIBE = {"fastbp": _fastbp_blas, "numpy": _numpy_blas, "torch": _torch_blas, "tensorflow": _tensorflow_blas,
             "sklearn": _sklearn_blas}
CONTENDERS = tuple(_DESCRIBE)


@functools.lru_cache(maxsize=None)
def blas(contender):
    """The matrix-product library that ``contender`` ('fastbp', 'numpy', 'torch', 'tensorflow' or
    'sklearn') calls here, with versions; 'not installed' when it cannot be imported."""
    if contender not in _DESCRIBE:
        raise ValueError(f"contender must be one of {', '.join(CONTENDERS)}, got {contender!r}")
    try:
        return _DESCRIBE[contender]()
    except ImportError:
        return "not installed"


def describe(contenders=CONTENDERS):
    """Lines naming the CPU and each contender's BLAS, for a script's output or a report."""
    return [f"CPU: {cpu()}"] + [f"{name}: {blas(name)}" for name in contenders]
