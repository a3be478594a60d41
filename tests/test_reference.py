"""The reference forward values against independent implementations (SciPy, math), on every backend,
and the stability the kernels promise at large magnitudes."""
import math

import numpy as np
import pytest
from helpers import DTYPES, assert_close, cpu_backends
from scipy import special

from fastbp import kernels as K

BACKENDS = cpu_backends()


def _softplus(z):
    return np.logaddexp(0.0, z)


INDEPENDENT = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.1 * z),
    "sigmoid": special.expit,
    "tanh": np.tanh,
    "gelu": lambda z: z * special.ndtr(z),
    "gelu_tanh": lambda z: 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3))),
    "silu": lambda z: z * special.expit(z),
    "softplus": _softplus,
    "softmax": lambda z: special.softmax(z, axis=1),
    "log_softmax": lambda z: special.log_softmax(z, axis=1),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", sorted(INDEPENDENT))
def test_activation_forward_matches_independent_formula(backend, activation, dtype, rng):
    z = (rng.standard_normal((7, 9)) * 4).astype(dtype)
    got = K.activation_forward(z, activation, alpha=0.1, backend=backend)
    assert got.dtype == dtype
    assert_close(got, INDEPENDENT[activation](z.astype(np.float64)), dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_forward_is_activation_of_affine_map(backend, dtype, rng):
    x = rng.standard_normal((6, 5)).astype(dtype)
    w = rng.standard_normal((5, 4)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    z = np.empty((6, 4), dtype)
    y = K.linear_forward(x, w, b, "tanh", preact_out=z, backend=backend)
    exact = x.astype(np.float64) @ w.astype(np.float64) + b
    assert_close(z, exact, dtype, scale=np.abs(x).max() * np.abs(w).max() * 5)
    assert_close(y, np.tanh(exact), dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("magnitude", [1e4, -1e4])
def test_softmax_cross_entropy_is_stable_for_huge_logits(backend, dtype, magnitude, rng):
    logits = np.array([[magnitude, 0.0, -magnitude], [0.0, magnitude, magnitude - 1.0]], dtype)
    labels = np.array([0, 2])
    loss, grad = K.softmax_cross_entropy(logits, labels, backend=backend)
    exact = np.mean(special.logsumexp(logits.astype(np.float64), axis=1) - logits[[0, 1], labels])
    assert math.isfinite(loss) and np.all(np.isfinite(grad))
    assert loss == pytest.approx(exact, rel=1e-6, abs=1e-6)
    p = special.softmax(logits.astype(np.float64), axis=1)
    p[[0, 1], labels] -= 1
    assert_close(grad, p / 2, dtype)
    targets = np.full((2, 3), 1 / 3, dtype)
    loss_p, grad_p = K.softmax_cross_entropy(logits, targets, backend=backend)
    lp = special.log_softmax(logits.astype(np.float64), axis=1)
    assert loss_p == pytest.approx(-np.mean(np.sum(targets * lp, axis=1)), rel=1e-6)
    assert np.all(np.isfinite(grad_p))


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_values(backend):
    # one row, uniform logits: loss = log(classes), gradient = (1/classes - onehot)
    loss, grad = K.softmax_cross_entropy(np.zeros((1, 4)), np.array([2]), backend=backend)
    assert loss == pytest.approx(math.log(4), rel=1e-14)
    np.testing.assert_allclose(grad, [[0.25, 0.25, -0.75, 0.25]], rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mse_loss_values_and_gradient_factor(backend):
    pred = np.array([[1.0, 2.0], [3.0, 5.0]])
    target = np.array([[1.0, 1.0], [1.0, 1.0]])
    loss, grad = K.mse_loss(pred, target, backend=backend)
    assert loss == pytest.approx((0 + 1 + 4 + 16) / 4, rel=1e-15)
    np.testing.assert_allclose(grad, 2 * (pred - target) / 4, rtol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigmoid_cross_entropy_values_and_saturation(backend):
    """-[t log s + (1 - t) log(1 - s)] by hand at z = 0 and +-2; at |z| = 1e3 (where s rounds to 0
    or 1 and the log of a probability would be -inf) the loss is |z| for the wrong label and
    exp(-|z|) = 0 for the right one, with no overflow or NaN."""
    z = np.array([[0.0, 2.0, -2.0, 1e3, -1e3, 1e3]])
    t = np.array([[1.0, 1.0, 1.0, 0.0, 0.0, 1.0]])
    s = 1 / (1 + np.exp(-z[0, :3]))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, grad = K.sigmoid_cross_entropy(z, t, backend=backend)
    expected = (-np.log(s).sum() + 1e3 + 0.0 + 0.0) / 6
    assert loss == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(grad[0, :3], (s - 1) / 6, rtol=1e-14)
    np.testing.assert_array_equal(grad[0, 3:], [1 / 6, 0.0, 0.0])
    z32 = z.astype(np.float32)
    loss32, grad32 = K.sigmoid_cross_entropy(z32, t.astype(np.float32), backend=backend)
    assert loss32 == pytest.approx(expected, rel=1e-6) and grad32.dtype == np.float32


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "softplus", "silu", "gelu", "gelu_tanh"])
def test_activations_saturate_without_overflow(backend, activation):
    z = np.array([[-1e3, -50.0, 0.0, 50.0, 1e3]], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = K.activation_forward(z.astype(np.float64), activation, backend=backend)
    y32 = K.activation_forward(z, activation, backend=backend)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(y32))
    assert_close(y32, INDEPENDENT[activation](z.astype(np.float64)), np.float32)
