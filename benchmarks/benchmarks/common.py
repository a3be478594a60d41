"""Shared parameters and helpers of the asv suite.

The ``backend`` parameter holds fastbp's backends ("fastbp:numba", ...) and the peers the
dashboard compares them with ("numpy": plain NumPy expressions, "torch": PyTorch CPU).
A contender that cannot run here raises NotImplementedError in ``setup``, which asv shows as
skipped. Compilation happens in ``setup``, never in the timed region.
"""
import os
from pathlib import Path

import numpy as np

FASTBP_BACKENDS = ["fastbp:numba", "fastbp:cython", "fastbp:numpy"]
PEERS = ["numpy", "torch"]
BACKENDS = FASTBP_BACKENDS + PEERS
DTYPES = ["float32", "float64"]
#: the MNIST layers (batch 32 and 128) and a large one
LAYER_SHAPES = ["32x784x128", "128x784x128", "128x128x10", "1024x1024x1024"]
THREADS = 2


def shape_of(text):
    return tuple(int(v) for v in text.split("x"))


def fastbp_backend(backend):
    """The fastbp backend name, or NotImplementedError when it cannot run here (also for older
    commits without the backend machinery, so that history runs skip instead of failing)."""
    try:
        import fastbp
        from fastbp import kernels  # noqa: F401
    except ImportError as exc:
        raise NotImplementedError(f"fastbp at this commit: {exc}") from None

    name = backend.split(":", 1)[1]
    reason = fastbp.backend_status().get(name, "unknown backend")
    if reason is not None:
        raise NotImplementedError(f"{name}: {reason}")
    fastbp.set_num_threads(THREADS)
    return name


def torch_or_skip():
    try:
        import torch
    except ImportError:
        raise NotImplementedError("torch is not installed") from None
    torch.set_num_threads(THREADS)
    return torch


def layer(shape, dtype, seed=0):
    batch, n_in, n_out = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = (rng.standard_normal(n_out) * 0.1).astype(dtype)
    return x, w, b


def mnist_dir():
    """FASTBP_DATA, or ../shared/data beside the checkout; NotImplementedError when absent."""
    from fastbp.datasets import MNIST_FILES

    here = Path(__file__).resolve()
    for root in (os.environ.get("FASTBP_DATA"), *(p / "shared" / "data" for p in here.parents)):
        if root:
            for d in (Path(root), Path(root) / "mnist"):
                if all((d / f).is_file() for f in MNIST_FILES):
                    return d
    raise NotImplementedError("MNIST files not found (set FASTBP_DATA)")


def best_seconds(fn, repeat=5):
    import time

    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best
