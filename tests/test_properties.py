"""Property tests (hypothesis): random shapes (1, primes, wide, tall), dtypes, activations and
values (magnitudes up to 1e4, tiny ones, zeros, repeated values) give the same results on every
CPU backend as on the NumPy reference, and the gradients satisfy finite differences.

The comparison tolerance is the conformance suite's (helpers.RTOL: 2e-5 in float32, 1e-12 in
float64, relative to the result's magnitude): both sides compute the same formula in the same
dtype and differ only in summation order and libm.
"""
import numpy as np
import pytest
from helpers import ACTIVATIONS, assert_close, numerical_grad, other_backends
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastbp import activations as A
from fastbp import kernels as K

BACKENDS = other_backends()
pytestmark = pytest.mark.skipif(not BACKENDS, reason="no backend besides the reference")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sizes = st.sampled_from([1, 2, 3, 5, 7, 13, 31, 64, 97])
dtypes = st.sampled_from([np.float32, np.float64])
scales = st.sampled_from([0.0, 1e-30, 1e-3, 1.0, 30.0, 1e4])
patterns = st.sampled_from(["normal", "repeated", "zeros", "integers"])


def _values(seed, shape, dtype, scale, pattern):
    rng = np.random.default_rng(seed)
    if pattern == "zeros":
        return np.zeros(shape, dtype)
    if pattern == "repeated":
        return np.full(shape, rng.standard_normal() * scale, dtype)
    if pattern == "integers":
        return rng.integers(-3, 4, shape).astype(dtype)
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _saved(act, y, z):
    needs = A.get(act).needs
    return {"y": y} if needs == A.NEEDS_OUTPUT else {"z": z} if needs == A.NEEDS_PREACT else {}


@SETTINGS
@given(backend=st.sampled_from(BACKENDS or ["numpy"]), batch=sizes, n_in=sizes, n_out=sizes, dtype=dtypes,
       activation=st.sampled_from(ACTIVATIONS), scale=scales, pattern=patterns, seed=st.integers(0, 2**32 - 1))
def test_dense_layer_matches_reference(backend, batch, n_in, n_out, dtype, activation, scale, pattern, seed):
    x = _values(seed, (batch, n_in), dtype, scale, pattern)
    w = _values(seed + 1, (n_in, n_out), dtype, 1.0 / np.sqrt(n_in), "normal")
    b = _values(seed + 2, (n_out,), dtype, scale, pattern)
    z_ref = np.empty((batch, n_out), dtype)
    y_ref = K.linear_forward(x, w, b, activation, alpha=0.1, preact_out=z_ref, backend="numpy")
    z = np.empty((batch, n_out), dtype)
    y = K.linear_forward(x, w, b, activation, alpha=0.1, preact_out=z, backend=backend)
    # the product's roundoff scales with sum |x||w| (its terms), not with the result
    product_scale = float((np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64)).max()) if x.size else 0.0
    assert_close(z, z_ref, dtype, scale=max(1.0, product_scale + float(np.abs(b).max())))
    # the epilogue: y is act of the backend's own z (softmax of large logits amplifies z's roundoff)
    assert_close(y, K.activation_forward(z, activation, alpha=0.1, backend="numpy"), dtype)
    dy = _values(seed + 3, (batch, n_out), dtype, 1.0, "normal")
    saved = _saved(activation, y_ref, z_ref)
    ref = K.linear_backward(dy, x, w, activation=activation, alpha=0.1, backend="numpy", **saved)
    got = K.linear_backward(dy, x, w, activation=activation, alpha=0.1, backend=backend, **saved)
    dz_ref = K.activation_backward(dy, activation, alpha=0.1, backend="numpy", **saved)
    for g, r, inner in zip(got, ref, (n_out, batch, batch)):
        terms = max(1.0, float(np.abs(dz_ref).max()) * max(float(np.abs(x).max()), float(np.abs(w).max()), 1.0) * inner)
        assert_close(g, r, dtype, scale=terms)
    if not A.get(activation).rowwise:  # elementwise: y is f(z) of the same z on both sides
        assert_close(K.activation_forward(z_ref, activation, alpha=0.1, backend=backend), y_ref, dtype)


@SETTINGS
@given(backend=st.sampled_from(BACKENDS or ["numpy"]), batch=sizes, classes=sizes, dtype=dtypes, scale=scales,
       pattern=patterns, seed=st.integers(0, 2**32 - 1), probabilities=st.booleans())
def test_losses_match_reference(backend, batch, classes, dtype, scale, pattern, seed, probabilities):
    logits = _values(seed, (batch, classes), dtype, scale, pattern)
    rng = np.random.default_rng(seed)
    if probabilities:
        labels = rng.random((batch, classes)).astype(dtype)
        labels /= labels.sum(axis=1, keepdims=True)
    else:
        labels = rng.integers(0, classes, batch)
    loss_ref, g_ref = K.softmax_cross_entropy(logits, labels, backend="numpy")
    loss, g = K.softmax_cross_entropy(logits, labels, backend=backend)
    assert np.isfinite(loss)
    assert np.isclose(loss, loss_ref, rtol=1e-5, atol=1e-5 * max(1.0, scale))
    assert_close(g, g_ref, dtype)
    target = _values(seed + 1, (batch, classes), dtype, scale, "normal")
    mse_ref, d_ref = K.mse_loss(logits, target, backend="numpy")
    mse, d = K.mse_loss(logits, target, backend=backend)
    assert np.isclose(mse, mse_ref, rtol=1e-5, atol=1e-30)
    assert_close(d, d_ref, dtype, scale=float(np.abs(d_ref).max()) if d_ref.size else None)


@SETTINGS
@given(backend=st.sampled_from(BACKENDS or ["numpy"]), n=st.sampled_from([1, 2, 7, 97, 16_385, 40_000]),
       dtype=dtypes, scale=scales, pattern=patterns, seed=st.integers(0, 2**32 - 1),
       optimizer=st.sampled_from(["sgd", "nesterov", "adam", "adamw", "amsgrad", "rmsprop", "centered"]))
def test_optimizers_match_reference(backend, n, dtype, scale, pattern, seed, optimizer):
    p0 = _values(seed, (n,), dtype, 1.0, "normal")
    g = _values(seed + 1, (n,), dtype, scale, pattern)
    results = []
    for be in ("numpy", backend):
        p = p0.copy()
        state = [np.zeros_like(p) for _ in range(3)]
        for step in (1, 2):
            if optimizer in ("sgd", "nesterov"):
                K.sgd_update(p, g, lr=0.1, momentum=0.9, velocity=state[0], nesterov=optimizer == "nesterov",
                             weight_decay=0.01, backend=be)
            elif optimizer in ("adam", "adamw", "amsgrad"):
                K.adam_update(p, g, state[0], state[1], step=step, lr=0.01, weight_decay=0.01,
                              decoupled_weight_decay=optimizer == "adamw", amsgrad=optimizer == "amsgrad",
                              vmax=state[2], backend=be)
            else:
                K.rmsprop_update(p, g, state[0], lr=0.01, momentum=0.5, momentum_buf=state[1],
                                 centered=optimizer == "centered", grad_avg=state[2], backend=be)
        results.append((p, state))
    (p_ref, s_ref), (p_got, s_got) = results
    assert_close(p_got, p_ref, dtype)
    for a, r in zip(s_got, s_ref):
        assert_close(a, r, dtype)


SMOOTH = [a for a in ACTIVATIONS if a not in ("relu", "leaky_relu")]


@settings(max_examples=60, deadline=None)
@given(backend=st.sampled_from(BACKENDS or ["numpy"]), batch=st.sampled_from([1, 2, 3, 5]),
       n_in=st.sampled_from([1, 2, 3, 7]), n_out=st.sampled_from([1, 2, 5]), activation=st.sampled_from(SMOOTH),
       scale=st.sampled_from([0.1, 1.0, 3.0]), seed=st.integers(0, 2**32 - 1))
def test_gradients_satisfy_finite_differences(backend, batch, n_in, n_out, activation, scale, seed):
    """float64, L = sum(r * act(x @ w + b)): analytic dx, dw, db against central differences."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in)) * scale
    w = rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)
    b = rng.standard_normal(n_out) * 0.1
    r = rng.standard_normal((batch, n_out))

    def loss():
        return float(np.sum(K.linear_forward(x, w, b, activation, backend=backend) * r))

    z = np.empty((batch, n_out))
    y = K.linear_forward(x, w, b, activation, preact_out=z, backend=backend)
    dx, dw, db = K.linear_backward(r, x, w, activation=activation, backend=backend, **_saved(activation, y, z))
    for analytic, wrt in ((dx, x), (dw, w), (db, b)):
        np.testing.assert_allclose(analytic, numerical_grad(loss, wrt), rtol=1e-6, atol=1e-7)
