"""Whole training steps in compiled code, for models on the numba backend.

``train_steps`` runs a chunk of steps (forward, loss, backward, clipping, optimizer) of a stack
of Dense/Activation layers without returning to Python, calling the same raw kernels, with the
same serial/parallel choices, as the Python loop does through ``fastbp.kernels``: the weights
after a step are the same. The model is described by integer tables (see ``Sequential._compiled``),
every buffer lives in a few flat arrays, allocated once. (The kernels compiled into these cached
functions call fastbp's own OpenBLAS: see the note in ``backends/numba_cpu/linear.py``.)
"""
import math

import numpy as np
from numba import njit, prange

from ..activations import LINEAR, NEEDS_OUTPUT, NEEDS_PREACT, SOFTMAX
from ..backends.numba_cpu import activation as act_k
from ..backends.numba_cpu import linear as lin_k
from ..backends.numba_cpu import losses as loss_k
from ..backends.numba_cpu import optim as opt_k
from ..backends.numba_cpu.backend import SERIAL_ELEMENTS

# layer table columns
KIND, CODE, N_IN, N_OUT, W_OFF, B_OFF, SAVED = range(7)
DENSE, ACTIVATION = 0, 1
SAVED_NONE, SAVED_Y, SAVED_Z = 0, 1, 2
# loss and optimizer codes
SPARSE_CE, DENSE_CE, MSE = 0, 1, 2
OPT_SGD, OPT_ADAM, OPT_RMSPROP = 0, 1, 2


def saved_code(needs):
    return {NEEDS_OUTPUT: SAVED_Y, NEEDS_PREACT: SAVED_Z}.get(needs, SAVED_NONE)


@njit(cache=True)
def _view(buf, rows, cols):
    return buf[:rows * cols].reshape(rows, cols)


#: rows gathered per parallel chunk (a batch smaller than two chunks is gathered on this thread)
GATHER_ROWS = 32


@njit(cache=True, inline="always")
def _copy_rows(src, order, lo, dst, r0, r1):
    """dst[r] = src[order[lo + r]] for r in [r0, r1), element by element: Numba's row-slice
    assignment measured 3.5 GB/s here against 6.6 GB/s for this loop (random rows of MNIST)."""
    for r in range(r0, r1):
        s = src[order[lo + r]]
        d = dst[r]
        for j in range(d.shape[0]):
            d[j] = s[j]


@njit(cache=True, parallel=True)
def _gather_parallel(src, order, lo, dst):
    b = dst.shape[0]
    for c in prange(-(-b // GATHER_ROWS)):
        _copy_rows(src, order, lo, dst, c * GATHER_ROWS, min(b, (c + 1) * GATHER_ROWS))


@njit(cache=True)
def gather_rows(src, order, lo, dst):
    """dst = src[order[lo:lo + len(dst)]] (2-D rows), on both threads when the batch is large."""
    b = dst.shape[0]
    if b * dst.shape[1] >= SERIAL_ELEMENTS and b >= 2 * GATHER_ROWS:
        _gather_parallel(src, order, lo, dst)
    else:
        _copy_rows(src, order, lo, dst, 0, b)


@njit(cache=True)
def _forward(layers, alphas, params, xb, ys, zs, b):
    h = xb
    for i in range(layers.shape[0]):
        kind, code, n_in, n_out = layers[i, KIND], layers[i, CODE], layers[i, N_IN], layers[i, N_OUT]
        y = _view(ys[i], b, n_out)
        keep_z = layers[i, SAVED] == SAVED_Z
        z = _view(zs[i], b, n_out)
        if kind == DENSE:
            w = params[layers[i, W_OFF]:layers[i, W_OFF] + n_in * n_out].reshape(n_in, n_out)
            serial = lin_k.is_serial(b, n_out, n_in)
            if layers[i, B_OFF] >= 0:
                bias = params[layers[i, B_OFF]:layers[i, B_OFF] + n_out]
                if serial and keep_z:
                    lin_k.linear_forward_serial(h, w, bias, code, alphas[i], y, z)
                elif serial:
                    lin_k.linear_forward_serial(h, w, bias, code, alphas[i], y, None)
                elif keep_z:
                    lin_k.linear_forward(h, w, bias, code, alphas[i], y, z)
                else:
                    lin_k.linear_forward(h, w, bias, code, alphas[i], y, None)
            else:
                if serial and keep_z:
                    lin_k.linear_forward_serial(h, w, None, code, alphas[i], y, z)
                elif serial:
                    lin_k.linear_forward_serial(h, w, None, code, alphas[i], y, None)
                elif keep_z:
                    lin_k.linear_forward(h, w, None, code, alphas[i], y, z)
                else:
                    lin_k.linear_forward(h, w, None, code, alphas[i], y, None)
        else:
            if keep_z:
                z[:, :] = h
            if b * n_out >= SERIAL_ELEMENTS:
                act_k.activation_forward(h, code, alphas[i], y)
            else:
                act_k.activation_forward_serial(h, code, alphas[i], y)
        h = y
    return h


@njit(cache=True)
def _backward(layers, alphas, params, grads, xb, ys, zs, dxs, dzs, g, b, dummy):
    """Gradients of every layer into ``grads``, from g = dL/d(output); ``dummy`` is any 1-D buffer
    (the first layer's dx is not computed)."""
    for i in range(layers.shape[0] - 1, -1, -1):
        kind, code, n_in, n_out = layers[i, KIND], layers[i, CODE], layers[i, N_IN], layers[i, N_OUT]
        h_in = xb if i == 0 else _view(ys[i - 1], b, n_in)
        saved = g
        if layers[i, SAVED] == SAVED_Y:
            saved = _view(ys[i], b, n_out)
        elif layers[i, SAVED] == SAVED_Z:
            saved = _view(zs[i], b, n_out)
        need_dx = i > 0
        dx = _view(dxs[i], b, n_in) if need_dx else _view(dummy, 0, n_in)
        if kind == DENSE:
            w = params[layers[i, W_OFF]:layers[i, W_OFF] + n_in * n_out].reshape(n_in, n_out)
            dw = grads[layers[i, W_OFF]:layers[i, W_OFF] + n_in * n_out].reshape(n_in, n_out)
            dz_is_dy = code == LINEAR
            dz = g if dz_is_dy else _view(dzs[i], b, n_out)
            serial = lin_k.backward_is_serial(b, n_in, n_out, need_dx)
            if layers[i, B_OFF] >= 0:
                db = grads[layers[i, B_OFF]:layers[i, B_OFF] + n_out]
                if serial:
                    lin_k.linear_backward_serial(g, h_in, w, saved, code, alphas[i], dz, dz_is_dy, dx, need_dx, dw, db)
                else:
                    lin_k.linear_backward(g, h_in, w, saved, code, alphas[i], dz, dz_is_dy, dx, need_dx, dw, db)
            else:
                if serial:
                    lin_k.linear_backward_serial(g, h_in, w, saved, code, alphas[i], dz, dz_is_dy, dx, need_dx, dw, None)
                else:
                    lin_k.linear_backward(g, h_in, w, saved, code, alphas[i], dz, dz_is_dy, dx, need_dx, dw, None)
        elif need_dx:
            if b * n_out >= SERIAL_ELEMENTS:
                act_k.activation_backward(g, saved, code, alphas[i], dx)
            else:
                act_k.activation_backward_serial(g, saved, code, alphas[i], dx)
        g = dx


@njit(cache=True)
def _clip_norm(a, max_norm):
    """kernels.clip_grad_norm on one array (PyTorch's formula)."""
    norm = math.sqrt(opt_k.sum_of_squares(a))
    coef = max_norm / (norm + 1e-6)
    if not coef >= 1.0:
        opt_k.scale_(a, coef)


@njit(cache=True)
def _optimize(params, grads, segments, opt, hyper, lr, t, s1, s2, s3, clip):
    """Clip (clip = [clipvalue, clipnorm, global_clipnorm], 0 for off), then one optimizer step.
    hyper = [momentum|beta1|rho, beta2, eps, weight_decay, nesterov|amsgrad|centered]."""
    if clip[0] > 0:
        opt_k.clip_value_(grads, clip[0])
    if clip[1] > 0:
        for s in range(segments.shape[0]):
            _clip_norm(grads[segments[s, 0]:segments[s, 1]], clip[1])
    if clip[2] > 0:
        _clip_norm(grads, clip[2])
    wd = hyper[3]
    flag = hyper[4] != 0
    if opt == OPT_ADAM:
        if flag:
            opt_k.adam_update(params, grads, s1, s2, s3, t, lr, hyper[0], hyper[1], hyper[2], wd, True)
        else:
            opt_k.adam_update(params, grads, s1, s2, None, t, lr, hyper[0], hyper[1], hyper[2], wd, True)
        return
    if wd != 0:  # Keras's decoupled weight decay
        opt_k.scale_(params, 1.0 - lr * wd)
    if opt == OPT_SGD:
        if hyper[0] > 0:
            opt_k.sgd_update(params, grads, s1, lr, hyper[0], flag, 0.0)
        else:
            opt_k.sgd_update(params, grads, None, lr, 0.0, False, 0.0)
    else:
        mu = hyper[5]
        if flag and mu > 0:
            opt_k.rmsprop_update(params, grads, s1, s2, s3, lr, hyper[0], hyper[2], 0.0, mu)
        elif flag:
            opt_k.rmsprop_update(params, grads, s1, s2, None, lr, hyper[0], hyper[2], 0.0, 0.0)
        elif mu > 0:
            opt_k.rmsprop_update(params, grads, s1, None, s3, lr, hyper[0], hyper[2], 0.0, mu)
        else:
            opt_k.rmsprop_update(params, grads, s1, None, None, lr, hyper[0], hyper[2], 0.0, 0.0)


@njit(cache=True)
def _correct(out, labels, targets, sparse):
    count = 0
    for r in range(out.shape[0]):
        best = 0
        for c in range(1, out.shape[1]):
            if out[r, c] > out[r, best]:
                best = c
        if sparse:
            truth = labels[r]
        else:
            truth = 0
            for c in range(1, targets.shape[1]):
                if targets[r, c] > targets[r, truth]:
                    truth = c
        count += best == truth
    return count


@njit(cache=True)
def train_steps(x, labels, targets, order, first, last, batch, layers, alphas, params, grads, segments,
                ys, zs, dxs, dzs, gbuf, xbuf, lbuf, tbuf, loss_kind, opt, hyper, lrs, t0, s1, s2, s3, clip, stats):
    """Steps [first, last) of an epoch over x[order]; stats += (sum of batch losses x rows, correct)."""
    n = order.shape[0]
    n_in = x.shape[1]
    n_out = layers[layers.shape[0] - 1, N_OUT]
    for step in range(first, last):
        lo = step * batch
        b = min(n, lo + batch) - lo
        xb = _view(xbuf, b, n_in)
        gather_rows(x, order, lo, xb)
        if loss_kind == SPARSE_CE:
            lb = lbuf[:b]
            for r in range(b):
                lb[r] = labels[order[lo + r]]
        else:
            gather_rows(targets, order, lo, _view(tbuf, b, n_out))
        out = _forward(layers, alphas, params, xb, ys, zs, b)
        g = _view(gbuf, b, n_out)
        if loss_kind == SPARSE_CE:
            stats[1] += _correct(out, lbuf[:b], tbuf.reshape(-1, n_out), True)
            if b * n_out >= SERIAL_ELEMENTS:
                loss = loss_k.softmax_cross_entropy(out, lbuf[:b], None, g)
            else:
                loss = loss_k.softmax_cross_entropy_serial(out, lbuf[:b], None, g)
        else:
            tb = _view(tbuf, b, n_out)
            stats[1] += _correct(out, lbuf, tb, False)
            if loss_kind == DENSE_CE:
                if b * n_out >= SERIAL_ELEMENTS:
                    loss = loss_k.softmax_cross_entropy(out, None, tb, g)
                else:
                    loss = loss_k.softmax_cross_entropy_serial(out, None, tb, g)
            else:
                loss = loss_k.mse_loss(out, tb, g)
        stats[0] += loss * b
        _backward(layers, alphas, params, grads, xb, ys, zs, dxs, dzs, g, b, xbuf)
        _optimize(params, grads, segments, opt, hyper, lrs[step - first], t0 + step - first + 1, s1, s2, s3, clip)
