"""The numba backend: the kernel protocol of :mod:`fastbp.backends` over the ``@njit`` kernels.

Every call goes through :mod:`.dispatch` (the serial/parallel choice, from the shape alone) with
the kernels' BLAS kept on one thread (:mod:`.._cpu.openblas`). Outputs never alias inputs: the
public layer serves the documented in-place uses.
"""
import functools

import numpy as np

from ...formulas import nan_max
from .._cpu import threads as _threads
from .._cpu.openblas import blas_pin as _blas_pin
from . import dispatch as _d
from . import dropout as _drop
from . import normalization as _norm
from . import optim as _opt
from ._blas import BLAS_IS_PRIVATE, BLAS_SOURCE  # noqa: F401  (what fastbp info reports)

NAME, DEVICE = "numba", "cpu"
empty = np.empty
_one_blas_thread = _blas_pin()


def set_num_threads(n: int) -> None:
    """Numba's pool for the calling thread (Numba's setting is per thread)."""
    import numba

    numba.set_num_threads(n)


def get_num_threads() -> int:
    import numba

    return numba.get_num_threads()


threading_layer = _threads.numba_threading_layer


def copy_(dst, src):
    np.copyto(dst, src)


def linear_forward(x, w, b, code, alpha, y, z):
    with _one_blas_thread:
        _d.linear_forward(x, w, b, code, alpha, y, z)


def linear_backward(dy, x, w, saved, code, alpha, dz, dx, dw, db):
    need_dx = dx is not None
    if not need_dx:
        dx = np.empty((0, x.shape[1]), x.dtype)
    with _one_blas_thread:
        _d.linear_backward(dy, x, w, dy if saved is None else saved, code, alpha, dy if dz is None else dz,
                           dz is None, dx, need_dx, dw, db)


def _as_2d(a):
    """The kernels take 2-D arrays; elementwise activations see any other rank as one row."""
    return a if a.ndim == 2 else a.reshape(1, -1)


def activation_forward(z, code, alpha, y):
    _d.activation_forward(_as_2d(z), code, alpha, _as_2d(y))


def activation_backward(dy, saved, code, alpha, dz):
    _d.activation_backward(_as_2d(dy), _as_2d(dy if saved is None else saved), code, alpha, _as_2d(dz))


def softmax_cross_entropy(logits, labels, targets, dlogits):
    return _d.softmax_cross_entropy(logits, labels, targets, dlogits)


def mse_loss(pred, target, dpred):
    return _d.mse_loss(pred, target, dpred)


def sigmoid_cross_entropy(logits, targets, dlogits):
    return _d.sigmoid_cross_entropy(logits, targets, dlogits)


def sgd_update(p, g, velocity, lr, momentum, nesterov, weight_decay):
    _opt.sgd_update(p, g, velocity, lr, momentum, nesterov, weight_decay)


def adam_update(p, g, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    _opt.adam_update(p, g, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay, decoupled)


def rmsprop_update(p, g, sq_avg, grad_avg, momentum_buf, lr, rho, eps, weight_decay, momentum):
    _opt.rmsprop_update(p, g, sq_avg, grad_avg, momentum_buf, lr, rho, eps, weight_decay, momentum)


def sum_of_squares(arrays):
    return float(sum(_opt.sum_of_squares(a) for a in arrays))


def max_abs(arrays):
    return functools.reduce(nan_max, (_opt.max_abs(a) for a in arrays), 0.0)


def scale_(arrays, factor):
    for a in arrays:
        _opt.scale_(a, factor)


def clip_value_(arrays, clip):
    for a in arrays:
        _opt.clip_value_(a, clip)


def layernorm_forward(x, gamma, beta, eps, y, mean, rstd):
    _norm.layernorm_forward(x, gamma, beta, eps, y, mean, rstd)


def layernorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    _norm.layernorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta)


def batchnorm_forward(x, gamma, beta, eps, running_mean, running_var, momentum, training, unbiased, y, mean, rstd):
    _norm.batchnorm_forward(x, gamma, beta, eps, running_mean, running_var, momentum, training, unbiased, y, mean,
                            rstd)


def batchnorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    _norm.batchnorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta)


def dropout_forward(x, key, threshold, scale, y, mask):
    _drop.dropout_forward(x.reshape(-1), np.uint64(key), np.uint64(threshold), scale, y.reshape(-1),
                          mask.reshape(-1))


def dropout_backward(dy, mask, scale, dx):
    _drop.dropout_backward(dy.reshape(-1), mask.reshape(-1), scale, dx.reshape(-1))
