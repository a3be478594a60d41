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
]


def cpu_backends():
    """Every available backend that takes host arrays (the cuda backend is tested on device arrays
    in tests/test_cuda.py)."""
    from fastbp._backend import device_of

    return [b for b in fastbp.available_backends() if device_of(b) == "cpu"]


def other_backends():
    """Every available CPU backend except the reference itself (the conformance suite's
    parameters; the cuda backend has its own suite on device arrays, tests/test_cuda.py)."""
    return [b for b in cpu_backends() if b != "numpy"]


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
