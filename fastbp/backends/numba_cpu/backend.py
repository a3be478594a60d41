"""The numba backend: the kernel protocol of :mod:`fastbp.backends` over the ``@njit`` kernels.

Each call picks the serial or the parallel kernel from the shape alone (small problems skip the
parallel launch, about 4 us here) and runs with the BLAS pinned to one thread
(:mod:`._threads`). Both choices depend only on shapes, so results are bitwise identical for any
thread count.

Numba's parallel loops tell LLVM that array arguments do not alias, so the raw kernels must never
get an output that is also an input. The documented in-place uses of the public API (out=z,
dz=dy, dlogits=logits, dpred=pred) are served here through a scratch array copied back.
"""
import numpy as np

from . import activation as _act
from . import linear as _lin
from . import losses as _loss
from . import optim as _opt
from ...activations import LINEAR as _LINEAR
from ._threads import single_threaded_blas as _one_blas_thread

NAME, DEVICE = "numba", "cpu"
empty = np.empty

#: elementwise work (elements) below which a kernel runs on the calling thread
SERIAL_ELEMENTS = 1 << 15


def linear_forward(x, w, b, code, alpha, y, z):
    m, k = x.shape
    kernel = _lin.linear_forward_serial if _lin.is_serial(m, w.shape[1], k) else _lin.linear_forward
    with _one_blas_thread:
        kernel(x, w, b, code, alpha, y, z)


def _scratch_if_same(out, *inputs):
    """A fresh array to write instead of ``out`` when ``out`` is one of the inputs, else ``out``."""
    return np.empty_like(out) if any(out is a for a in inputs) else out


def _copy_back(target, written):
    if written is not target:
        target[...] = written


def linear_backward(dy, x, w, saved, code, alpha, dz, dx, dw, db):
    if dz is dy and code != _LINEAR:  # in place over dy: compute into scratch, then copy back
        scratch = np.empty_like(dz)
        linear_backward(dy, x, w, saved, code, alpha, scratch, dx, dw, db)
        dy[...] = scratch
        return
    m, k = x.shape
    n = w.shape[1]
    need_dx = dx is not None
    kernel = _lin.linear_backward_serial if _lin.backward_is_serial(m, k, n, need_dx) else _lin.linear_backward
    with _one_blas_thread:
        if not need_dx:
            dx = np.empty((0, k), x.dtype)
        kernel(dy, x, w, dy if saved is None else saved, code, alpha, dz, dz is dy, dx, need_dx, dw, db)


def _as_2d(a):
    """The kernels take 2-D arrays; elementwise activations see any other rank as one row."""
    return a if a is None or a.ndim == 2 else a.reshape(1, -1)


def activation_forward(z, code, alpha, y):
    kernel = _act.activation_forward if z.size >= SERIAL_ELEMENTS else _act.activation_forward_serial
    out = _scratch_if_same(y, z)
    kernel(_as_2d(z), code, alpha, _as_2d(out))
    _copy_back(y, out)


def activation_backward(dy, saved, code, alpha, dz):
    kernel = _act.activation_backward if dy.size >= SERIAL_ELEMENTS else _act.activation_backward_serial
    out = _scratch_if_same(dz, dy, saved)
    kernel(_as_2d(dy), _as_2d(dy if saved is None else saved), code, alpha, _as_2d(out))
    _copy_back(dz, out)


def softmax_cross_entropy(logits, labels, targets, dlogits):
    kernel = _loss.softmax_cross_entropy if logits.size >= SERIAL_ELEMENTS else _loss.softmax_cross_entropy_serial
    out = None if dlogits is None else _scratch_if_same(dlogits, logits)
    loss = kernel(logits, labels, targets, out)
    if out is not None:
        _copy_back(dlogits, out)
    return loss


def mse_loss(pred, target, dpred):
    out = None if dpred is None else _scratch_if_same(dpred, pred)
    loss = _loss.mse_loss(pred, target, out)
    if out is not None:
        _copy_back(dpred, out)
    return loss


def sgd_update(p, g, velocity, lr, momentum, nesterov, weight_decay):
    _opt.sgd_update(p, g, velocity, lr, momentum, nesterov, weight_decay)


def adam_update(p, g, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    _opt.adam_update(p, g, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay, decoupled)


def rmsprop_update(p, g, sq_avg, grad_avg, momentum_buf, lr, rho, eps, weight_decay, momentum):
    _opt.rmsprop_update(p, g, sq_avg, grad_avg, momentum_buf, lr, rho, eps, weight_decay, momentum)


def sum_of_squares(arrays):
    return float(sum(_opt.sum_of_squares(a) for a in arrays))


def max_abs(arrays):
    best = 0.0
    for a in arrays:
        peak = _opt.max_abs(a)
        if peak > best or peak != peak:
            best = peak
    return best


def scale_(arrays, factor):
    for a in arrays:
        _opt.scale_(a, factor)


def clip_value_(arrays, clip):
    for a in arrays:
        _opt.clip_value_(a, clip)
