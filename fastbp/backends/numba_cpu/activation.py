"""Activation kernels on 2-D arrays: elementwise over flat chunks, softmax and log_softmax along
the rows. (Arrays of other ranks are reshaped to one row for the elementwise activations.)
Outputs never alias inputs (the public layer serves the documented in-place uses)."""
import math

from numba import float64, njit, prange

from ...activations import LINEAR, RELU, SIGMOID, SOFTMAX
from .._cpu.tiling import even_chunk
from ._formulas import F


@njit(cache=True, inline="always", error_model="numpy")
def rowwise_forward(z, y, i, code):
    """Row i of y = softmax(z) or log_softmax(z), with float64 sums; y[i] may be z[i]."""
    n = z.shape[1]
    m = z[i, 0]
    for j in range(1, n):
        if z[i, j] > m:
            m = z[i, j]
    m = float64(m)
    total = 0.0
    for j in range(n):
        total += math.exp(float64(z[i, j]) - m)
    if code == SOFTMAX:
        inv = 1.0 / total
        for j in range(n):
            y[i, j] = F.softmax_term(z[i, j], m, inv)
    else:
        lse = m + math.log(total)
        for j in range(n):
            y[i, j] = F.log_softmax_term(z[i, j], lse)


@njit(cache=True, inline="always", error_model="numpy")
def rowwise_derivative(dy, y, dz, i, code):
    """Row i of dz for softmax (y (dy - sum(dy y))) or log_softmax (dy - exp(y) sum(dy))."""
    n = dy.shape[1]
    acc = 0.0
    if code == SOFTMAX:
        for j in range(n):
            acc += float64(dy[i, j]) * float64(y[i, j])
        for j in range(n):
            dz[i, j] = F.softmax_derivative_term(dy[i, j], y[i, j], acc)
    else:
        for j in range(n):
            acc += float64(dy[i, j])
        for j in range(n):
            dz[i, j] = F.log_softmax_derivative_term(dy[i, j], y[i, j], acc)


@njit(cache=True, inline="always", error_model="numpy")
def forward_span(z, code, alpha, y):
    """y[j] = f(z[j]) over two 1-D spans (the linear and relu loops written out, so they vectorize)."""
    if code == LINEAR:
        for j in range(z.size):
            y[j] = z[j]
    elif code == RELU:
        for j in range(z.size):
            y[j] = F.relu(z[j])
    elif code == SIGMOID:
        for j in range(z.size):
            y[j] = F.sigmoid(z[j])
    else:
        for j in range(z.size):
            y[j] = F.act_forward(z[j], code, alpha)


@njit(cache=True, inline="always", error_model="numpy")
def derivative_span(dy, saved, code, alpha, dz):
    """dz[j] = dy[j] f'(saved[j]) over 1-D spans (saved: y or z; unread for linear)."""
    if code == LINEAR:
        for j in range(dy.size):
            dz[j] = dy[j]
    elif code == RELU:
        for j in range(dy.size):
            dz[j] = F.relu_derivative(dy[j], saved[j])
    else:
        for j in range(dy.size):
            dz[j] = F.act_derivative(dy[j], saved[j], code, alpha)


@njit(cache=True, parallel=True, error_model="numpy")
def activation_forward(z, code, alpha, y):
    """y = f(z) for 2-D z: elementwise in even_chunk pieces, or softmax/log_softmax along rows."""
    if F.is_rowwise(code):
        for i in prange(z.shape[0]):
            rowwise_forward(z, y, i, code)
        return
    zf, yf = z.reshape(-1), y.reshape(-1)
    size = even_chunk(zf.size)
    for c in prange(-(-zf.size // size)):
        lo, hi = c * size, min(zf.size, (c + 1) * size)
        forward_span(zf[lo:hi], code, alpha, yf[lo:hi])


@njit(cache=True, parallel=True, error_model="numpy")
def activation_backward(dy, saved, code, alpha, dz):
    """dz = dy * f'(.) for 2-D dy, with saved = y or z (anything of dy's shape, e.g. dy, for linear)."""
    if F.is_rowwise(code):
        for i in prange(dy.shape[0]):
            rowwise_derivative(dy, saved, dz, i, code)
        return
    dyf, sf, dzf = dy.reshape(-1), saved.reshape(-1), dz.reshape(-1)
    size = even_chunk(dyf.size)
    for c in prange(-(-dyf.size // size)):
        lo, hi = c * size, min(dyf.size, (c + 1) * size)
        derivative_span(dyf[lo:hi], sf[lo:hi], code, alpha, dzf[lo:hi])


@njit(cache=True, error_model="numpy")
def activation_forward_serial(z, code, alpha, y):
    """activation_forward on the calling thread (small arrays)."""
    if F.is_rowwise(code):
        for i in range(z.shape[0]):
            rowwise_forward(z, y, i, code)
        return
    forward_span(z.reshape(-1), code, alpha, y.reshape(-1))


@njit(cache=True, error_model="numpy")
def activation_backward_serial(dy, saved, code, alpha, dz):
    """activation_backward on the calling thread (small arrays)."""
    if F.is_rowwise(code):
        for i in range(dy.shape[0]):
            rowwise_derivative(dy, saved, dz, i, code)
        return
    derivative_span(dy.reshape(-1), saved.reshape(-1), code, alpha, dz.reshape(-1))
