"""Standalone activation kernels on 2-D arrays: elementwise over flat chunks, softmax and
log_softmax along the rows. (Reshape arrays of other ranks to 2-D for elementwise activations.)"""
from numba import njit, prange

from ..._tiling import even_chunk
from ._act import LINEAR, RELU, SOFTMAX, derivative, forward, rowwise_derivative, rowwise_forward


@njit(cache=True, inline="always")
def _forward_chunk(zf, code, alpha, yf, lo, hi):
    zs = zf[lo:hi]
    ys = yf[lo:hi]
    if code == LINEAR:
        for j in range(zs.size):
            ys[j] = zs[j]
    elif code == RELU:
        for j in range(zs.size):
            v = zs[j]
            ys[j] = v if v > 0 else v * 0 + 0
    else:
        for j in range(zs.size):
            ys[j] = forward(zs[j], code, alpha)


@njit(cache=True, inline="always")
def _backward_chunk(dyf, sf, code, alpha, dzf, lo, hi):
    dys = dyf[lo:hi]
    dzs = dzf[lo:hi]
    if code == LINEAR:
        for j in range(dys.size):
            dzs[j] = dys[j]
    elif code == RELU:
        ss = sf[lo:hi]
        for j in range(dys.size):
            dzs[j] = dys[j] if ss[j] > 0 else dys[j] * 0
    else:
        ss = sf[lo:hi]
        for j in range(dys.size):
            dzs[j] = derivative(dys[j], ss[j], code, alpha)


@njit(cache=True, parallel=True)
def activation_forward(z, code, alpha, y):
    """y = f(z) for 2-D z: elementwise, or softmax/log_softmax along the rows; y may be z."""
    if code >= SOFTMAX:
        for i in prange(z.shape[0]):
            rowwise_forward(z, y, i, code)
        return
    zf = z.reshape(-1)
    yf = y.reshape(-1)
    n = zf.size
    size = even_chunk(n)
    for c in prange(-(-n // size)):
        _forward_chunk(zf, code, alpha, yf, c * size, min(n, (c + 1) * size))


@njit(cache=True, parallel=True)
def activation_backward(dy, saved, code, alpha, dz):
    """dz = dy * f'(.) for 2-D dy, with saved = y or z (anything of dy's shape, e.g. dy, for linear); dz may be dy."""
    if code >= SOFTMAX:
        for i in prange(dy.shape[0]):
            rowwise_derivative(dy, saved, dz, i, code)
        return
    dyf = dy.reshape(-1)
    dzf = dz.reshape(-1)
    sf = saved.reshape(-1)
    n = dyf.size
    size = even_chunk(n)
    for c in prange(-(-n // size)):
        _backward_chunk(dyf, sf, code, alpha, dzf, c * size, min(n, (c + 1) * size))


@njit(cache=True)
def activation_forward_serial(z, code, alpha, y):
    """activation_forward on the calling thread (small arrays)."""
    if code >= SOFTMAX:
        for i in range(z.shape[0]):
            rowwise_forward(z, y, i, code)
        return
    zf = z.reshape(-1)
    _forward_chunk(zf, code, alpha, y.reshape(-1), 0, zf.size)


@njit(cache=True)
def activation_backward_serial(dy, saved, code, alpha, dz):
    """activation_backward on the calling thread (small arrays)."""
    if code >= SOFTMAX:
        for i in range(dy.shape[0]):
            rowwise_derivative(dy, saved, dz, i, code)
        return
    dyf = dy.reshape(-1)
    sf = saved.reshape(-1)
    _backward_chunk(dyf, sf, code, alpha, dz.reshape(-1), 0, dyf.size)
