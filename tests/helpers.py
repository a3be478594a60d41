"""Shared test helpers: data makers, finite differences, tolerances from numerical analysis."""
from __future__ import annotations

import numpy as np

import fastbp
from fastbp import activations as A

#: relative tolerance of a backend against the NumPy reference. Both compute the same formula in
#: the same dtype with different summation orders and libm implementations: the difference is a
#: few units of roundoff times the reduction length (K <= ~800 here), so ~1e-5 in float32 and
#: ~1e-12 in float64, relative to the magnitude of the result.
RTOL = {np.float32: 2e-5, np.float64: 1e-12}

DTYPES = (np.float32, np.float64)

#: every activation, with alpha given to leaky_relu
ACTIVATIONS = A.NAMES

#: (batch, in, out): batch 1, in 1, out 1, primes, wide, tall, an empty batch, an MNIST layer
AWKWARD_SHAPES = [
    (1, 1, 1), (1, 7, 3), (13, 1, 5), (7, 11, 1), (2, 257, 3), (257, 3, 2), (31, 17, 29),
    (0, 5, 3), (64, 784, 128),
    # cross the cuda simulator geometry's 8x8 product tiles and its 4-deep inner step, leaving
    # partial tiles (config.SIMULATOR), while staying small enough for the simulator
    (9, 13, 11), (3, 5, 17),
]


def cpu_backends():
    """Every available backend that takes host arrays."""
    from fastbp._backend import device_of

    return [b for b in fastbp.available_backends() if device_of(b) == "cpu"]


def other_backends():
    """Every available CPU backend except the reference itself (see :func:`conformance_backends`
    for the list with the cuda backend)."""
    return [b for b in cpu_backends() if b != "numpy"]


def conformance_backends():
    """Every available backend except the reference itself, the cuda backend included (on a GPU
    or on Numba's CUDA simulator; tests/conftest.py chooses): the conformance suite's targets."""
    return [b for b in fastbp.available_backends() if b != "numpy"]


class Target:
    """Where a backend computes, for tests that run the same case on every backend.

    ``put(a)`` moves a host array to where backend ``name`` computes (itself for CPU backends, a
    Numba device array for cuda; None stays None), ``get(a)`` brings a result back as a host
    numpy array, ``empty(shape, dtype)`` allocates there. ``shapes(list)`` keeps the shapes the
    target can afford: everything, except on Numba's CUDA simulator, where every GPU thread is a
    Python thread (a 64x64x64 product takes seconds), which keeps the shapes whose every dimension
    is at most :attr:`SIMULATOR_MAX_DIM` (the empty batch included).

    Use it as a context manager around a test: on the simulator it sets the small launch geometry
    (``fastbp.backends.cuda.config.SIMULATOR``: 8x8 tiles, 16-thread blocks, 4-block reduction
    grids) that the affordable shapes still cross, and restores the previous one afterwards.
    """

    SIMULATOR_MAX_DIM = 17

    def __init__(self, name):
        from fastbp._backend import device_of

        self.name = name
        self.device = device_of(name)
        self.simulated = False
        if self.device == "cuda":
            from fastbp.backends.cuda import _jit

            self.simulated = bool(_jit.SIMULATOR)
        self._previous = None

    def __repr__(self):
        return f"Target({self.name!r}{', simulated' if self.simulated else ''})"

    def __enter__(self):
        if self.simulated:
            from fastbp.backends.cuda import config

            self._previous = config.configure(**config.SIMULATOR)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            from fastbp.backends.cuda import config

            config.restore(self._previous)
            self._previous = None
        return False

    def put(self, a):
        if a is None or self.device == "cpu":
            return a
        from numba import cuda

        return cuda.to_device(np.ascontiguousarray(a))

    def get(self, a):
        """``a`` (a result of this target's backend) as a host numpy array; checks that it lies
        where the backend computes (a host array from cuda, or a device array from a CPU
        backend, is an error)."""
        if self.device == "cpu":
            assert isinstance(a, np.ndarray), f"backend {self.name!r} returned {type(a).__name__}, not a numpy array"
            return a
        assert not isinstance(a, np.ndarray) and hasattr(a, "copy_to_host"), \
            f"backend {self.name!r} returned {type(a).__name__}, not a device array"
        return a.copy_to_host()

    def empty(self, shape, dtype):
        if self.device == "cpu":
            return np.empty(shape, dtype)
        from numba import cuda

        return cuda.device_array(shape, dtype)

    def affordable(self, shape):
        return not self.simulated or all(d <= self.SIMULATOR_MAX_DIM for d in shape)

    def shapes(self, shapes):
        return [s for s in shapes if self.affordable(s)]


def assert_close(got, ref, dtype, scale=None):
    """|got - ref| <= rtol * max(|ref|, scale) elementwise, rtol from :data:`RTOL`."""
    got = np.asarray(got)
    ref = np.asarray(ref)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    rtol = RTOL[np.dtype(dtype).type]
    mag = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1.0 if scale is None else scale)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * mag)


def preactivations(rng, shape, dtype, activation, margin=1e-2):
    """Random z ~ N(0, 1) away from the kinks of relu / leaky_relu (|z| >= margin), so that
    finite differences with a tiny step never cross one."""
    z = rng.standard_normal(shape)
    if activation in ("relu", "leaky_relu"):
        z = np.where(np.abs(z) < margin, np.sign(z + 0.5 * margin) * margin * 2, z)
    return z.astype(dtype)


def numerical_grad(f, a, h=1e-6):
    """Central differences of the scalar function f() with respect to every element of a (in place)."""
    grad = np.zeros_like(a, dtype=np.float64)
    flat = a.reshape(-1)
    g = grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + h
        up = f()
        flat[i] = keep - h
        down = f()
        flat[i] = keep
        g[i] = (up - down) / (2 * h)
    return grad


def layer_data(rng, batch, n_in, n_out, dtype, activation="relu"):
    """x, w, b for a layer whose pre-activations stay away from relu's kink."""
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype) * 0.1
    if activation in ("relu", "leaky_relu") and batch:
        z = x.astype(np.float64) @ w + b
        # shift b so that no pre-activation lies within 1e-2 of zero
        for j in range(n_out):
            col = z[:, j]
            while np.min(np.abs(col)) < 1e-2:
                b[j] += dtype(0.05)
                col = col + 0.05
    return x, w, b
