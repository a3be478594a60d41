"""Scalar activation functions and derivatives as CUDA device functions (codes from
fastbp.activations): the same formulas, line for line, as ``numba_cpu/_act.py``.

Transcendental functions are evaluated in float64 and rounded once when stored, so float32
results are correctly rounded or within one unit of it, on every backend alike.
"""
import math

from ._jit import device_function

from ... import activations as A

LINEAR, RELU, LEAKY_RELU, SIGMOID, TANH = A.LINEAR, A.RELU, A.LEAKY_RELU, A.SIGMOID, A.TANH
GELU, GELU_TANH, SILU, SOFTPLUS, SOFTMAX, LOG_SOFTMAX = A.GELU, A.GELU_TANH, A.SILU, A.SOFTPLUS, A.SOFTMAX, A.LOG_SOFTMAX

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@device_function
def sigmoid64(z):
    """1 / (1 + exp(-z)) in float64, exp of a non-positive number only."""
    z = float(z)
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@device_function
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


@device_function
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
