# cython: language_level=3
"""Inline helpers every Cython kernel shares: activation formulas (the same, line for line, as
``numba_cpu/_act.py`` and ``cuda/_act.py``), the thread count.

Transcendental functions are evaluated in double and rounded once when stored.
"""
from libc.math cimport erf, exp, fabs, log, log1p, sqrt, tanh

ctypedef fused floating:
    float
    double

# activation codes (fastbp.activations)
cdef enum:
    LINEAR = 0
    RELU = 1
    LEAKY_RELU = 2
    SIGMOID = 3
    TANH = 4
    GELU = 5
    GELU_TANH = 6
    SILU = 7
    SOFTPLUS = 8
    SOFTMAX = 9
    LOG_SOFTMAX = 10

cdef extern from *:
    """
    #define FASTBP_SQRT_2_OVER_PI 0.7978845608028654  /* math.sqrt(2 / pi), as the other backends */
    #define FASTBP_GELU_C 0.044715
    #define FASTBP_INV_SQRT_2 0.7071067811865475  /* 1 / math.sqrt(2) */
    #define FASTBP_INV_SQRT_2PI 0.3989422804014327
    """
    const double SQRT_2_OVER_PI "FASTBP_SQRT_2_OVER_PI"
    const double GELU_C "FASTBP_GELU_C"
    const double INV_SQRT_2 "FASTBP_INV_SQRT_2"
    const double INV_SQRT_2PI "FASTBP_INV_SQRT_2PI"


cdef inline double sigmoid64(double z) noexcept nogil:
    """1 / (1 + exp(-z)), exp of a non-positive number only."""
    cdef double e
    if z >= 0.0:
        return 1.0 / (1.0 + exp(-z))
    e = exp(z)
    return e / (1.0 + e)


cdef inline double act_forward(double z, int code, double alpha) noexcept nogil:
    """f(z) for an elementwise activation code."""
    if code == LINEAR:
        return z
    if code == RELU:
        return z if z > 0 else z * 0
    if code == LEAKY_RELU:
        return z if z > 0 else z * alpha
    if code == SIGMOID:
        return sigmoid64(z)
    if code == TANH:
        return tanh(z)
    if code == GELU:
        return 0.5 * z * (1.0 + erf(z * INV_SQRT_2))
    if code == GELU_TANH:
        return 0.5 * z * (1.0 + tanh(SQRT_2_OVER_PI * (z + GELU_C * z * z * z)))
    if code == SILU:
        return z * sigmoid64(z)
    # SOFTPLUS: max(z, 0) + log1p(exp(-|z|))
    return (z if z > 0.0 else 0.0) + log1p(exp(-fabs(z)))


cdef inline double act_derivative(double dy, double s, int code, double alpha) noexcept nogil:
    """dy * f'(.) for an elementwise activation; ``s`` is y or z, as fastbp.activations says."""
    cdef double cdf, t, dt, sg
    if code == LINEAR:
        return dy
    if code == RELU:
        return dy if s > 0 else dy * 0
    if code == LEAKY_RELU:
        return dy if s > 0 else dy * alpha
    if code == SIGMOID:
        return dy * s * (1.0 - s)
    if code == TANH:
        return dy * (1.0 - s * s)
    if code == GELU:
        cdf = 0.5 * (1.0 + erf(s * INV_SQRT_2))
        return dy * (cdf + s * INV_SQRT_2PI * exp(-0.5 * s * s))
    if code == GELU_TANH:
        t = tanh(SQRT_2_OVER_PI * (s + GELU_C * s * s * s))
        dt = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * s * s)
        return dy * (0.5 * (1.0 + t) + 0.5 * s * (1.0 - t * t) * dt)
    if code == SILU:
        sg = sigmoid64(s)
        return dy * sg * (1.0 + s * (1.0 - sg))
    # SOFTPLUS: f' = sigmoid(z)
    return dy * sigmoid64(s)


cdef inline void rowwise_forward(floating* z, floating* y, int n, int code) noexcept nogil:
    """One row of y = softmax(z) or log_softmax(z), with double sums; y may be z."""
    cdef int j
    cdef double m = z[0], total = 0.0, inv, lse
    for j in range(1, n):
        if z[j] > m:
            m = z[j]
    for j in range(n):
        total += exp(z[j] - m)
    if code == SOFTMAX:
        inv = 1.0 / total
        for j in range(n):
            y[j] = <floating>(exp(z[j] - m) * inv)
    else:
        lse = m + log(total)
        for j in range(n):
            y[j] = <floating>(z[j] - lse)


cdef inline void rowwise_derivative(floating* dy, floating* y, floating* dz, int n, int code) noexcept nogil:
    """One row of dz for softmax (y (dy - sum(dy y))) or log_softmax (dy - exp(y) sum(dy)); dz may be dy."""
    cdef int j
    cdef double acc = 0.0
    if code == SOFTMAX:
        for j in range(n):
            acc += <double>dy[j] * y[j]
        for j in range(n):
            dz[j] = <floating>(y[j] * (<double>dy[j] - acc))
    else:
        for j in range(n):
            acc += dy[j]
        for j in range(n):
            dz[j] = <floating>(dy[j] - exp(y[j]) * acc)
