"""Every analytic gradient against central finite differences, in float64."""
import numpy as np
import pytest
from helpers import ACTIVATIONS, cpu_backends, layer_data, numerical_grad, preactivations

from fastbp import activations as A
from fastbp import kernels as K

BACKENDS = cpu_backends()
# central differences with h = 1e-6 in float64: truncation O(h^2 f''') ~ 1e-12, roundoff
# O(eps |L| / h) ~ 1e-9; 1e-6 relative leaves a wide margin and still catches any wrong term.
FD_RTOL, FD_ATOL = 1e-6, 1e-8


def _saved_kwargs(act, y, z):
    needs = A.get(act).needs
    return {"y": y} if needs == A.NEEDS_OUTPUT else {"z": z} if needs == A.NEEDS_PREACT else {}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_backward_matches_finite_differences(backend, activation, use_bias, rng):
    x, w, b = layer_data(rng, 4, 5, 3, np.float64, activation)
    b = b if use_bias else None
    r = rng.standard_normal((4, 3))  # L = sum(y * r), so dL/dy = r

    def loss():
        return float(np.sum(K.linear_forward(x, w, b, activation, alpha=0.1, backend=backend) * r))

    z = np.empty((4, 3))
    y = K.linear_forward(x, w, b, activation, alpha=0.1, preact_out=z, backend=backend)
    dx, dw, db = K.linear_backward(r, x, w, activation=activation, alpha=0.1, need_db=use_bias,
                                   backend=backend, **_saved_kwargs(activation, y, z))
    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=FD_RTOL, atol=FD_ATOL)
    np.testing.assert_allclose(dw, numerical_grad(loss, w), rtol=FD_RTOL, atol=FD_ATOL)
    if use_bias:
        np.testing.assert_allclose(db, numerical_grad(loss, b), rtol=FD_RTOL, atol=FD_ATOL)
    else:
        assert db is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_backward_matches_finite_differences(backend, activation, rng):
    z = preactivations(rng, (3, 6), np.float64, activation) * 2
    r = rng.standard_normal((3, 6))

    def loss():
        return float(np.sum(K.activation_forward(z, activation, alpha=0.2, backend=backend) * r))

    y = K.activation_forward(z, activation, alpha=0.2, backend=backend)
    dz = K.activation_backward(r, activation, alpha=0.2, backend=backend, **_saved_kwargs(activation, y, z.copy()))
    np.testing.assert_allclose(dz, numerical_grad(loss, z), rtol=FD_RTOL, atol=FD_ATOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target_kind", ["labels", "probabilities"])
def test_softmax_cross_entropy_matches_finite_differences(backend, target_kind, rng):
    logits = rng.standard_normal((5, 4)) * 3
    if target_kind == "labels":
        targets = rng.integers(0, 4, size=5)
    else:
        targets = rng.random((5, 4))
        targets /= targets.sum(axis=1, keepdims=True)

    def loss():
        return K.softmax_cross_entropy(logits, targets, need_grad=False, backend=backend)[0]

    _, grad = K.softmax_cross_entropy(logits, targets, backend=backend)
    np.testing.assert_allclose(grad, numerical_grad(loss, logits), rtol=FD_RTOL, atol=FD_ATOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mse_loss_matches_finite_differences(backend, rng):
    pred = rng.standard_normal((4, 3))
    target = rng.standard_normal((4, 3))

    def loss():
        return K.mse_loss(pred, target, need_grad=False, backend=backend)[0]

    _, grad = K.mse_loss(pred, target, backend=backend)
    np.testing.assert_allclose(grad, numerical_grad(loss, pred), rtol=FD_RTOL, atol=FD_ATOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigmoid_cross_entropy_matches_finite_differences(backend, rng):
    logits = rng.standard_normal((5, 3)) * 3
    targets = rng.random((5, 3))

    def loss():
        return K.sigmoid_cross_entropy(logits, targets, need_grad=False, backend=backend)[0]

    _, grad = K.sigmoid_cross_entropy(logits, targets, backend=backend)
    np.testing.assert_allclose(grad, numerical_grad(loss, logits), rtol=FD_RTOL, atol=FD_ATOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_layer_chain_rule_matches_finite_differences(backend, rng):
    """Forward and backward through relu -> softmax-CE, as a training step composes them."""
    x, w1, b1 = layer_data(rng, 6, 5, 4, np.float64, "relu")
    w2 = rng.standard_normal((4, 3))
    b2 = rng.standard_normal(3)
    labels = rng.integers(0, 3, size=6)

    def loss():
        h = K.linear_forward(x, w1, b1, "relu", backend=backend)
        return K.softmax_cross_entropy(K.linear_forward(h, w2, b2, backend=backend), labels,
                                       need_grad=False, backend=backend)[0]

    h = K.linear_forward(x, w1, b1, "relu", backend=backend)
    _, dlogits = K.softmax_cross_entropy(K.linear_forward(h, w2, b2, backend=backend), labels, backend=backend)
    dh, dw2, db2 = K.linear_backward(dlogits, h, w2, backend=backend)
    _, dw1, db1 = K.linear_backward(dh, x, w1, y=h, activation="relu", need_dx=False, backend=backend)
    for analytic, param in ((dw1, w1), (db1, b1), (dw2, w2), (db2, b2)):
        np.testing.assert_allclose(analytic, numerical_grad(loss, param), rtol=FD_RTOL, atol=FD_ATOL)


# ------------------------------------------------------------------- normalization and dropout

def _check_fd(loss, grads, wrt):
    """Each analytic gradient against central differences of loss() in the array it belongs to."""
    for g, a in zip(grads, wrt):
        np.testing.assert_allclose(g, numerical_grad(loss, a), rtol=FD_RTOL, atol=FD_ATOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("kind, shape, center", [("layernorm", (4, 6), 1), ("batchnorm", (70, 3), 5)])
def test_normalization_backward_matches_finite_differences(kind, shape, center, backend, affine, rng):
    """Layer normalization per row; batch normalization through the batch statistics (training),
    70 rows: across one chunk boundary."""
    forward, backward = getattr(K, f"{kind}_forward"), getattr(K, f"{kind}_backward")
    x = rng.standard_normal(shape) * 2 + center
    n = shape[1]
    gamma, beta = (rng.uniform(0.5, 1.5, n), rng.standard_normal(n)) if affine else (None, None)
    r = rng.standard_normal(shape)

    def loss():
        return float(np.sum(forward(x, gamma, beta, eps=1e-3, backend=backend)[0] * r))

    _, mean, rstd = forward(x, gamma, beta, eps=1e-3, backend=backend)
    dx, dgamma, dbeta = backward(r, x, gamma, mean, rstd, backend=backend)
    _check_fd(loss, (dx, dgamma, dbeta) if affine else (dx,), (x, gamma, beta) if affine else (x,))
    np.testing.assert_allclose(dbeta, r.sum(axis=0), rtol=1e-12)  # (no beta: still the sum of dy)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_backward_matches_finite_differences(backend, rng):
    x = rng.standard_normal((5, 7))
    r = rng.standard_normal((5, 7))

    def loss():
        return float(np.sum(K.dropout_forward(x, 0.4, seed=3, backend=backend)[0] * r))

    _, mask = K.dropout_forward(x, 0.4, seed=3, backend=backend)
    assert 0 < mask.sum() < mask.size
    _check_fd(loss, (K.dropout_backward(r, mask, 0.4, backend=backend),), (x,))
