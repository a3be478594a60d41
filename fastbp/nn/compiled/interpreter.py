"""The compiled interpreter: whole training steps of a lowered model, on the numba backend.

``train_steps`` runs a chunk of steps (gather, forward, loss, backward, clipping, optimizer) of a
model lowered to an op table (:mod:`.lowering`) without returning to Python. It calls the numba
backend's :mod:`~fastbp.backends.numba_cpu.dispatch`, the same functions and so the same
serial/parallel choices ``fastbp.kernels`` makes: the weights after a step are the Python loop's.
Every buffer lives in a few flat arrays, allocated once.
"""
import math

import numpy as np
from numba import njit, prange

from ...activations import LINEAR
from ...backends._cpu.tiling import GATHER_ROWS, SERIAL_ELEMENTS
from ...backends.numba_cpu import dispatch as d
from ...backends.numba_cpu import optim as opt_k
from ...backends.numba_cpu._formulas import F

# layer table columns
KIND, CODE, N_IN, N_OUT, W_OFF, B_OFF, SAVED = range(7)
DENSE, ACTIVATION = 0, 1
SAVED_NONE, SAVED_Y, SAVED_Z = 0, 1, 2
# loss and optimizer codes
SPARSE_CE, DENSE_CE, MSE, BINARY_CE = 0, 1, 2, 3
# regularization table columns: the coefficient for a batch of b rows is CONST + PER_ROW / b
REG_CONST, REG_PER_ROW = 0, 1
OPT_SGD, OPT_ADAM, OPT_RMSPROP = 0, 1, 2


@njit(cache=True)
def _view(buf, rows, cols):
    return buf[:rows * cols].reshape(rows, cols)


@njit(cache=True, inline="always")
def _copy_rows(src, order, lo, dst, r0, r1):
    """dst[r] = src[order[lo + r]] for r in [r0, r1), element by element (faster than Numba's
    row-slice assignment)."""
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
            b_off = max(layers[i, B_OFF], 0)
            d.linear_forward_masked(h, w, params[b_off:b_off + n_out], layers[i, B_OFF] >= 0, code, alphas[i], y, z,
                                    keep_z)
        else:
            if keep_z:
                z[:, :] = h
            d.activation_forward(h, code, alphas[i], y)
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
            b_off = max(layers[i, B_OFF], 0)
            d.linear_backward_masked(g, h_in, w, saved, code, alphas[i], dz, dz_is_dy, dx, need_dx, dw,
                                     grads[b_off:b_off + n_out], layers[i, B_OFF] >= 0)
        elif need_dx:
            d.activation_backward(g, saved, code, alphas[i], dx)
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
    hyper = [momentum|beta1|rho, beta2, eps, weight_decay, nesterov|amsgrad|centered,
    rmsprop's momentum|adam's uncorrected_epsilon]."""
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
        eps = F.uncorrected_epsilon(hyper[2], hyper[1], t) if hyper[5] != 0 else hyper[2]
        d.adam_update_masked(params, grads, s1, s2, s3, flag, t, lr, hyper[0], hyper[1], eps, wd, True)
        return
    if wd != 0:  # Keras's decoupled weight decay
        opt_k.scale_(params, 1.0 - lr * wd)
    if opt == OPT_SGD:
        d.sgd_update_masked(params, grads, s1, hyper[0] > 0, lr, hyper[0], flag, 0.0)
    else:
        mu = hyper[5]
        d.rmsprop_update_masked(params, grads, s1, s2, flag, s3, mu > 0, lr, hyper[0], hyper[2], 0.0, mu)


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
def _correct_binary(logits, targets):
    """Keras's binary accuracy summed over rows: per row, the fraction of outputs where
    (logit > 0) equals the 0/1 target."""
    hits = 0
    for r in range(logits.shape[0]):
        for c in range(logits.shape[1]):
            hits += targets[r, c] == (1.0 if logits[r, c] > 0 else 0.0)
    return hits / logits.shape[1]


@njit(cache=True)
def _scale(a, factor):
    """a *= factor (rounded once to a's dtype), on the calling thread."""
    f = a.dtype.type(factor)
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            a[r, c] *= f


@njit(cache=True)
def _regularize(layers, reg, params, grads, b):
    """Each Dense layer's L2 gradient c(b) kernel added to its gradient (c(b) = reg[i, CONST] +
    reg[i, PER_ROW] / b); returns the penalty sum_i c_i(b) / 2 sum(kernel_i^2), in layer order."""
    penalty = 0.0
    for i in range(layers.shape[0]):
        if layers[i, KIND] != DENSE or (reg[i, REG_CONST] == 0.0 and reg[i, REG_PER_ROW] == 0.0):
            continue
        c = reg[i, REG_CONST] + reg[i, REG_PER_ROW] / b
        lo = layers[i, W_OFF]
        hi = lo + layers[i, N_IN] * layers[i, N_OUT]
        penalty += 0.5 * c * opt_k.l2_penalty_gradient_(grads[lo:hi], params[lo:hi], c)
    return penalty


@njit(cache=True)
def grad_step(x, labels, targets, order, lo, b, layers, alphas, params, grads, ys, zs, dxs, dzs, gbuf, xbuf, lbuf,
              tbuf, loss_kind, loss_weight):
    """The gradient of the batch x[order[lo:lo + b]] (b >= 1) into ``grads``: gather, forward, loss,
    backward. The loss and its gradient are scaled by ``loss_weight``. Returns (the scaled mean loss,
    the number of correct predictions)."""
    n_in = x.shape[1]
    n_out = layers[layers.shape[0] - 1, N_OUT]
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
        correct = float(_correct(out, lbuf[:b], tbuf.reshape(-1, n_out), True))
        loss = d.softmax_cross_entropy(out, lbuf[:b], None, g)
    else:
        tb = _view(tbuf, b, n_out)
        if loss_kind == BINARY_CE:
            correct = _correct_binary(out, tb)
            loss = d.sigmoid_cross_entropy(out, tb, g)
        else:
            correct = float(_correct(out, lbuf, tb, False))
            if loss_kind == DENSE_CE:
                loss = d.softmax_cross_entropy(out, None, tb, g)
            else:
                loss = d.mse_loss(out, tb, g)
    if loss_weight != 1.0:
        _scale(g, loss_weight)
        loss *= loss_weight
    _backward(layers, alphas, params, grads, xb, ys, zs, dxs, dzs, g, b, xbuf)
    return loss, correct


@njit(cache=True)
def apply_step(layers, reg, regularized, params, grads, segments, opt, hyper, lr, t, s1, s2, s3, clip, b):
    """The update after a batch of ``b`` rows whose gradient is in ``grads``: the regularizers'
    gradients added (``regularized``), clipping, the optimizer's step number ``t`` at rate ``lr``.
    Returns the penalty times b (0 without regularizers)."""
    penalty = 0.0
    if regularized:
        penalty = _regularize(layers, reg, params, grads, b) * b
    _optimize(params, grads, segments, opt, hyper, lr, t, s1, s2, s3, clip)
    return penalty


@njit(cache=True)
def train_steps(x, labels, targets, order, first, last, batch, layers, alphas, params, grads, segments,
                ys, zs, dxs, dzs, gbuf, xbuf, lbuf, tbuf, loss_kind, loss_weight, reg, regularized, opt, hyper, lrs,
                t0, s1, s2, s3, clip, stats, stop_nonfinite):
    """Steps [first, last) of an epoch over x[order] (:func:`grad_step`, then :func:`apply_step`);
    stats += (sum of batch losses x rows, correct, the penalties' part of that sum). Returns the step
    after the last one run: ``last``, or earlier when ``stop_nonfinite`` and the running loss sum
    stats[0] became NaN or infinite (the step that made it so is completed, optimizer update
    included: Keras's TerminateOnNaN stops there).
    The loss is scaled by loss_weight (its gradient too); ``regularized``: reg holds L2 terms."""
    n = order.shape[0]
    for step in range(first, last):
        lo = step * batch
        b = min(n, lo + batch) - lo
        loss, correct = grad_step(x, labels, targets, order, lo, b, layers, alphas, params, grads, ys, zs, dxs, dzs,
                                  gbuf, xbuf, lbuf, tbuf, loss_kind, loss_weight)
        stats[0] += loss * b
        stats[1] += correct
        penalty = apply_step(layers, reg, regularized, params, grads, segments, opt, hyper, lrs[step - first],
                             t0 + step - first + 1, s1, s2, s3, clip, b)
        stats[0] += penalty
        stats[2] += penalty
        if stop_nonfinite and not math.isfinite(stats[0]):
            return step + 1
    return last
