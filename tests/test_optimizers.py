"""Optimizer kernels against the published update rules, step by step, on every backend.

The oracles below transcribe the algorithm boxes of PyTorch's documentation for
torch.optim.SGD, Adam (and AdamW) and RMSprop, in float64, one element at a time: a different
arrangement of the arithmetic from the kernels, so agreement is a real check.
"""
import math

import numpy as np
import pytest
from helpers import DTYPES, RTOL, cpu_backends

from fastbp import kernels as K

BACKENDS = cpu_backends()
STEPS = 5


def sgd_oracle(theta, grads, lr, mu, wd, nesterov):
    theta = list(theta)
    b = [0.0] * len(theta)
    for t, g_t in enumerate(grads, start=1):
        for i, g in enumerate(g_t):
            g = g + wd * theta[i]
            if mu != 0:
                b[i] = g if t == 1 else mu * b[i] + g  # dampening 0
                g = g + mu * b[i] if nesterov else b[i]
            theta[i] = theta[i] - lr * g
    return np.array(theta)


def adam_oracle(theta, grads, lr, b1, b2, eps, wd, decoupled, amsgrad):
    n = len(theta)
    theta, m, v, vmax = list(theta), [0.0] * n, [0.0] * n, [0.0] * n
    for t, g_t in enumerate(grads, start=1):
        for i, g in enumerate(g_t):
            if decoupled:
                theta[i] = theta[i] - lr * wd * theta[i]
            elif wd != 0:
                g = g + wd * theta[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat = m[i] / (1 - b1**t)
            if amsgrad:
                vmax[i] = max(vmax[i], v[i])
                v_hat = vmax[i] / (1 - b2**t)
            else:
                v_hat = v[i] / (1 - b2**t)
            theta[i] = theta[i] - lr * m_hat / (math.sqrt(v_hat) + eps)
    return np.array(theta)


def rmsprop_oracle(theta, grads, lr, alpha, eps, wd, mu, centered):
    n = len(theta)
    theta, v, g_ave, b = list(theta), [0.0] * n, [0.0] * n, [0.0] * n
    for g_t in grads:
        for i, g in enumerate(g_t):
            if wd != 0:
                g = g + wd * theta[i]
            v[i] = alpha * v[i] + (1 - alpha) * g * g
            v_tilde = v[i]
            if centered:
                g_ave[i] = g_ave[i] * alpha + (1 - alpha) * g
                v_tilde = v_tilde - g_ave[i] ** 2
            if mu > 0:
                b[i] = mu * b[i] + g / (math.sqrt(v_tilde) + eps)
                theta[i] = theta[i] - lr * b[i]
            else:
                theta[i] = theta[i] - lr * g / (math.sqrt(v_tilde) + eps)
    return np.array(theta)


def _problem(rng, dtype, n=23):
    theta = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(STEPS)]
    return theta, grads


def _check(param, oracle, dtype):
    # a few steps of O(1) updates: each step adds a few roundoffs of the dtype
    rtol = RTOL[np.dtype(dtype).type] * 5
    np.testing.assert_allclose(param, oracle, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0),
                                                  (0.0, False, 0.1), (0.8, True, 0.05)])
def test_sgd_follows_published_rule(backend, dtype, momentum, nesterov, wd, rng):
    theta, grads = _problem(rng, dtype)
    p = theta.copy()
    vel = np.zeros_like(p)
    for g in grads:
        K.sgd_update(p, g, lr=0.1, momentum=momentum, velocity=vel, nesterov=nesterov, weight_decay=wd,
                     backend=backend)
    _check(p, sgd_oracle(theta.astype(float), [g.astype(float) for g in grads], 0.1, momentum, wd, nesterov), dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wd,decoupled,amsgrad", [(0.0, False, False), (0.1, False, False), (0.1, True, False),
                                                  (0.0, False, True), (0.01, True, True)])
def test_adam_follows_published_rule(backend, dtype, wd, decoupled, amsgrad, rng):
    theta, grads = _problem(rng, dtype)
    p = theta.copy()
    m, v, vmax = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        K.adam_update(p, g, m, v, step=t, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=wd,
                      decoupled_weight_decay=decoupled, amsgrad=amsgrad, vmax=vmax, backend=backend)
    oracle = adam_oracle(theta.astype(float), [g.astype(float) for g in grads], 0.01, 0.9, 0.999, 1e-8, wd,
                         decoupled, amsgrad)
    _check(p, oracle, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_adam_first_step_moves_by_lr_times_sign(backend):
    # with bias correction, step 1 gives m_hat = g, v_hat = g^2: p -= lr * g / (|g| + eps)
    p = np.array([1.0, 1.0, 1.0])
    g = np.array([3.0, -0.5, 1e-3])
    K.adam_update(p, g, np.zeros(3), np.zeros(3), step=1, lr=0.1, eps=0.0, backend=backend)
    np.testing.assert_allclose(p, [0.9, 1.1, 0.9], rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wd,momentum,centered", [(0.0, 0.0, False), (0.1, 0.0, False), (0.0, 0.9, False),
                                                  (0.0, 0.0, True), (0.05, 0.5, True)])
def test_rmsprop_follows_published_rule(backend, dtype, wd, momentum, centered, rng):
    theta, grads = _problem(rng, dtype)
    p = theta.copy()
    sq, avg, buf = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        K.rmsprop_update(p, g, sq, lr=0.01, rho=0.99, eps=1e-8, weight_decay=wd, momentum=momentum,
                         momentum_buf=buf, centered=centered, grad_avg=avg, backend=backend)
    oracle = rmsprop_oracle(theta.astype(float), [g.astype(float) for g in grads], 0.01, 0.99, 1e-8, wd,
                            momentum, centered)
    _check(p, oracle, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_norm_scales_to_max_norm(backend, dtype, rng):
    grads = [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(5).astype(dtype)]
    originals = [g.astype(np.float64) for g in grads]
    norm = math.sqrt(sum(np.sum(g * g) for g in originals))
    got = K.clip_grad_norm(grads, 1.0, backend=backend)
    assert got == pytest.approx(norm, rel=RTOL[np.dtype(dtype).type])
    coef = 1.0 / (norm + 1e-6)
    for g, o in zip(grads, originals):
        np.testing.assert_allclose(g, o * coef, rtol=RTOL[np.dtype(dtype).type] * 2)
    # below the threshold nothing changes
    before = [g.copy() for g in grads]
    assert K.clip_grad_norm(grads, 10.0, backend=backend) == pytest.approx(1.0, rel=1e-4)
    for g, b in zip(grads, before):
        np.testing.assert_array_equal(g, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_clip_grad_norm_inf_norm(backend):
    grads = [np.array([1.0, -4.0]), np.array([[2.0]])]
    assert K.clip_grad_norm(grads, 2.0, norm_type=math.inf, backend=backend) == 4.0
    np.testing.assert_allclose(grads[0], np.array([1.0, -4.0]) * 2 / (4 + 1e-6))


@pytest.mark.parametrize("backend", BACKENDS)
def test_clip_grad_value_clamps_in_place(backend):
    grads = [np.array([-3.0, 0.5, 2.0]), np.array([[7.0, -0.1]])]
    K.clip_grad_value(grads, 1.0, backend=backend)
    np.testing.assert_array_equal(grads[0], [-1.0, 0.5, 1.0])
    np.testing.assert_array_equal(grads[1], [[1.0, -0.1]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_clip_of_nothing(backend):
    assert K.clip_grad_norm([], 1.0, backend=backend) == 0.0
    K.clip_grad_value([], 1.0, backend=backend)
    assert K.clip_grad_norm([np.zeros(0)], 1.0, backend=backend) == 0.0
