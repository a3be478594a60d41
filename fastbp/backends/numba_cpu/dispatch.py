"""The one place the numba backend chooses between its serial and parallel kernels, and turns the
optional arrays of a layer table into the kernels' None arguments.

``linear_forward`` & co. pick the kernel from the shape alone (small problems skip the parallel
launch, which costs microseconds), so results are bitwise identical for any thread count. They
take ``None`` for an absent optional array and are what both ``fastbp.kernels`` (through
:mod:`.backend`) and the compiled training loop (:mod:`fastbp.nn.compiled`) call. The
``*_masked`` variants (layers and optimizers) take every array plus flags saying which ones to
use, for code whose arrays come from tables (Numba types ``None`` at compile time, so each
combination is a branch: written here once).
"""
from numba import njit

from .._cpu.tiling import SERIAL_ELEMENTS
from . import activation as act_k
from . import linear as lin_k
from . import losses as loss_k
from . import optim as opt_k


@njit(cache=True)
def linear_forward(x, w, b, code, alpha, y, z):
    """y = act(x @ w + b); z = x @ w + b when z is not None; b may be None."""
    m, k = x.shape
    if lin_k.is_serial(m, w.shape[1], k):
        lin_k.linear_forward_serial(x, w, b, code, alpha, y, z)
    else:
        lin_k.linear_forward(x, w, b, code, alpha, y, z)


@njit(cache=True)
def linear_forward_masked(x, w, b, use_b, code, alpha, y, z, keep_z):
    """linear_forward with b used only when use_b and z written only when keep_z."""
    if use_b and keep_z:
        linear_forward(x, w, b, code, alpha, y, z)
    elif use_b:
        linear_forward(x, w, b, code, alpha, y, None)
    elif keep_z:
        linear_forward(x, w, None, code, alpha, y, z)
    else:
        linear_forward(x, w, None, code, alpha, y, None)


@njit(cache=True)
def linear_backward(dy, x, w, saved, code, alpha, dz, dz_is_dy, dx, need_dx, dw, db):
    """dz = dy * f'(saved), dw = x.T @ dz, db = column sums of dz (db may be None), dx = dz @ w.T
    when need_dx (dx: any 2-D array of the dtype otherwise). dz_is_dy (linear only): dz is dy."""
    m, k = x.shape
    if lin_k.backward_is_serial(m, k, w.shape[1], need_dx):
        lin_k.linear_backward_serial(dy, x, w, saved, code, alpha, dz, dz_is_dy, dx, need_dx, dw, db)
    else:
        lin_k.linear_backward(dy, x, w, saved, code, alpha, dz, dz_is_dy, dx, need_dx, dw, db)


@njit(cache=True)
def linear_backward_masked(dy, x, w, saved, code, alpha, dz, dz_is_dy, dx, need_dx, dw, db, use_db):
    """linear_backward with db written only when use_db."""
    if use_db:
        linear_backward(dy, x, w, saved, code, alpha, dz, dz_is_dy, dx, need_dx, dw, db)
    else:
        linear_backward(dy, x, w, saved, code, alpha, dz, dz_is_dy, dx, need_dx, dw, None)


@njit(cache=True)
def activation_forward(z, code, alpha, y):
    """y = f(z) for 2-D z (elementwise, or along rows for softmax and log_softmax)."""
    if z.size >= SERIAL_ELEMENTS:
        act_k.activation_forward(z, code, alpha, y)
    else:
        act_k.activation_forward_serial(z, code, alpha, y)


@njit(cache=True)
def activation_backward(dy, saved, code, alpha, dz):
    """dz = dy * f'(saved) for 2-D dy (saved: y or z; dy itself for linear)."""
    if dy.size >= SERIAL_ELEMENTS:
        act_k.activation_backward(dy, saved, code, alpha, dz)
    else:
        act_k.activation_backward_serial(dy, saved, code, alpha, dz)


@njit(cache=True)
def softmax_cross_entropy(logits, labels, targets, dlogits):
    """Mean softmax cross-entropy over labels (or probability targets, labels None) and its
    gradient into dlogits (when not None); returns the loss."""
    if logits.size >= SERIAL_ELEMENTS:
        return loss_k.softmax_cross_entropy(logits, labels, targets, dlogits)
    return loss_k.softmax_cross_entropy_serial(logits, labels, targets, dlogits)


@njit(cache=True)
def mse_loss(pred, target, dpred):
    """mean((pred - target)^2) and its gradient into dpred (when not None); returns the loss."""
    return loss_k.mse_loss(pred, target, dpred)


@njit(cache=True)
def sigmoid_cross_entropy(logits, targets, dlogits):
    """mean binary cross-entropy of sigmoid(logits) against targets, and its gradient into dlogits
    (when not None); returns the loss."""
    return loss_k.sigmoid_cross_entropy(logits, targets, dlogits)


@njit(cache=True)
def sgd_update_masked(p, g, velocity, use_velocity, lr, momentum, nesterov, weight_decay):
    """optim.sgd_update with the velocity buffer used only when use_velocity (plain SGD otherwise)."""
    if use_velocity:
        opt_k.sgd_update(p, g, velocity, lr, momentum, nesterov, weight_decay)
    else:
        opt_k.sgd_update(p, g, None, lr, 0.0, False, weight_decay)


@njit(cache=True)
def adam_update_masked(p, g, m, v, vmax, use_vmax, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """optim.adam_update with AMSGrad's vmax used only when use_vmax."""
    if use_vmax:
        opt_k.adam_update(p, g, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay, decoupled)
    else:
        opt_k.adam_update(p, g, m, v, None, step, lr, beta1, beta2, eps, weight_decay, decoupled)


@njit(cache=True)
def rmsprop_update_masked(p, g, sq_avg, grad_avg, use_grad_avg, momentum_buf, use_momentum_buf, lr, rho, eps,
                          weight_decay, momentum):
    """optim.rmsprop_update with the centered mean (grad_avg) and the momentum buffer used only
    where their flags say."""
    if use_grad_avg and use_momentum_buf:
        opt_k.rmsprop_update(p, g, sq_avg, grad_avg, momentum_buf, lr, rho, eps, weight_decay, momentum)
    elif use_grad_avg:
        opt_k.rmsprop_update(p, g, sq_avg, grad_avg, None, lr, rho, eps, weight_decay, 0.0)
    elif use_momentum_buf:
        opt_k.rmsprop_update(p, g, sq_avg, None, momentum_buf, lr, rho, eps, weight_decay, momentum)
    else:
        opt_k.rmsprop_update(p, g, sq_avg, None, None, lr, rho, eps, weight_decay, 0.0)
