"""Scalar activation functions and derivatives for ``@njit`` code (codes from fastbp.activations).

Transcendental functions are evaluated in float64 and rounded once when stored, so float32
results are correctly rounded or within one unit of it. relu, leaky_relu and linear stay in the
input dtype (they are exact). Row-wise activations (softmax, log_softmax) are in ``rowwise``.
"""
import math

from numba import njit

from ... import activations as A

LINEAR, RELU, LEAKY_RELU, SIGMOID, TANH = A.LINEAR, A.RELU, A.LEAKY_RELU, A.SIGMOID, A.TANH
GELU, GELU_TANH, SILU, SOFTPLUS, SOFTMAX, LOG_SOFTMAX = A.GELU, A.GELU_TANH, A.SILU, A.SOFTPLUS, A.SOFTMAX, A.LOG_SOFTMAX

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@njit(cache=True, inline="always")
def sigmoid64(z):
    """1 / (1 + exp(-z)) in float64, exp of a non-positive number only."""
    z = float(z)
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=True)
def forward(z, code, alpha):
    """f(z) for an elementwise activation code (as float64 for the transcendental ones)."""
    if code == LINEAR:
        return z
    if code == RELU:
        return z if z > 0 else z * 0
    if code == LEAKY_RELU:
        return z if z > 0 else z * alpha
    if code == SIGMOID:
        return sigmoid64(z)
    if code == TANH:
        return math.tanh(float(z))
    if code == GELU:
        z = float(z)
        return 0.5 * z * (1.0 + math.erf(z * _INV_SQRT_2))
    if code == GELU_TANH:
        z = float(z)
        return 0.5 * z * (1.0 + math.tanh(_SQRT_2_OVER_PI * (z + _GELU_C * z * z * z)))
    if code == SILU:
        return float(z) * sigmoid64(z)
    # SOFTPLUS: max(z, 0) + log1p(exp(-|z|))
    z = float(z)
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


@njit(cache=True)
def derivative(dy, s, code, alpha):
    """dy * f'(.) for an elementwise activation; ``s`` is y or z, as fastbp.activations says."""
    if code == LINEAR:
        return dy
    if code == RELU:
        return dy if s > 0 else dy * 0
    if code == LEAKY_RELU:
        return dy if s > 0 else dy * alpha
    if code == SIGMOID:
        s = float(s)
        return float(dy) * s * (1.0 - s)
    if code == TANH:
        s = float(s)
        return float(dy) * (1.0 - s * s)
    if code == GELU:
        z = float(s)
        cdf = 0.5 * (1.0 + math.erf(z * _INV_SQRT_2))
        return float(dy) * (cdf + z * _INV_SQRT_2PI * math.exp(-0.5 * z * z))
    if code == GELU_TANH:
        z = float(s)
        t = math.tanh(_SQRT_2_OVER_PI * (z + _GELU_C * z * z * z))
        dt = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_C * z * z)
        return float(dy) * (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * dt)
    if code == SILU:
        z = float(s)
        sg = sigmoid64(z)
        return float(dy) * sg * (1.0 + z * (1.0 - sg))
    # SOFTPLUS: f' = sigmoid(z)
    return float(dy) * sigmoid64(s)


@njit(cache=True)
def rowwise_forward(z, y, i, code):
    """Row i of y = softmax(z) or log_softmax(z), with float64 sums; y[i] may be z[i]."""
    n = z.shape[1]
    m = z[i, 0]
    for j in range(1, n):
        if z[i, j] > m:
            m = z[i, j]
    m = float(m)
    total = 0.0
    for j in range(n):
        total += math.exp(float(z[i, j]) - m)
    if code == SOFTMAX:
        inv = 1.0 / total
        for j in range(n):
            y[i, j] = math.exp(float(z[i, j]) - m) * inv
    else:
        lse = m + math.log(total)
        for j in range(n):
            y[i, j] = float(z[i, j]) - lse


@njit(cache=True)
def rowwise_derivative(dy, y, dz, i, code):
    """Row i of dz for softmax (y (dy - sum(dy y))) or log_softmax (dy - exp(y) sum(dy));
    dz[i] may be dy[i]."""
    n = dy.shape[1]
    acc = 0.0
    if code == SOFTMAX:
        for j in range(n):
            acc += float(dy[i, j]) * float(y[i, j])
        for j in range(n):
            dz[i, j] = float(y[i, j]) * (float(dy[i, j]) - acc)
    else:
        for j in range(n):
            acc += float(dy[i, j])
        for j in range(n):
            dz[i, j] = float(dy[i, j]) - math.exp(float(y[i, j])) * acc
