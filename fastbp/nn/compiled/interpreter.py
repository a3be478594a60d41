"""The compiled interpreter: whole training steps of a lowered model, on the numba backend.

``train_steps`` runs a chunk of steps (gather, forward, loss, backward, clipping, optimizer) of a
model lowered to a node table (:mod:`.lowering`) without returning to Python: the nodes forward
in order, then backward in reverse, adding gradients where a slot feeds several nodes. It calls the numba
backend's :mod:`~fastbp.backends.numba_cpu.dispatch`, the same functions and so the same
serial/parallel choices ``fastbp.kernels`` makes: the weights after a step are the Python loop's.
Every buffer lives in a few flat arrays, allocated once.
"""
import math

import numpy as np
from numba import njit, prange, uint64

from ...activations import LINEAR
from ...backends._cpu.tiling import GATHER_ROWS, SERIAL_ELEMENTS
from ...backends.numba_cpu import dispatch as d
from ...backends.numba_cpu import dropout as norm_k_drop
from ...backends.numba_cpu import normalization as norm_k
from ...backends.numba_cpu import optim as opt_k
from ...backends.numba_cpu._formulas import F

# node table columns: the kind of layer, its activation code, the width of its (first) input and
# of its output, where its weights are (kernel or gamma, bias or beta: offsets in the flat
# parameter buffer, -1 for none; a batch normalization's moving statistics: an offset in the flat
# state buffer), what the backward pass keeps (y or z), and its inputs: INPUTS[IN_START:IN_START +
# IN_COUNT] are the slots it reads (0: the batch, i + 1: node i's output)
KIND, CODE, N_IN, N_OUT, W_OFF, B_OFF, SAVED, IN_START, IN_COUNT, S_OFF = range(10)
DENSE, ACTIVATION, DROPOUT, LAYERNORM, BATCHNORM, ADD = range(6)
SAVED_NONE, SAVED_Y, SAVED_Z = 0, 1, 2
# the float table's columns: the activation's alpha or the normalization's epsilon or the dropout
# rate; PyTorch's momentum (1 - Keras's); dropout's 1 / (1 - rate) before its rounding to the dtype
ALPHA, EPS, RATE, MOMENTUM, SCALE = 0, 0, 0, 1, 2
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
def _input(xb, ys, slot, b, width):
    """The (b, width) array of a slot: the batch (slot 0) or an earlier node's output."""
    return xb if slot == 0 else _view(ys[slot], b, width)


@njit(cache=True)
def _copy(src, dst):
    for r in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[r, j] = src[r, j]


@njit(cache=True)
def _add_into(dst, src):
    """dst += src (NumPy's elementwise order)."""
    for r in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[r, j] += src[r, j]


@njit(cache=True)
def _dropout_key(seed, step):
    """mix64 of the layer's seed for step ``step``: seed + (step + 1) golden (the Dropout layer's
    step_seed, then the key :func:`fastbp.kernels.dropout_forward` derives from a seed)."""
    return F.mix64((seed + uint64(step + 1) * F.GOLDEN_GAMMA) & F.MASK64)


@njit(cache=True)
def _norm_stats(aux, i, rows):
    """A normalization node's saved mean and rstd (``rows`` each)."""
    return aux[i][:rows], aux[i][rows:2 * rows]


@njit(cache=True)
def _forward(nodes, inputs, floats, seeds, thresholds, params, state, xb, ys, zs, aux, masks, b, t):
    """Every node's output for the batch xb (b rows) at training step t; returns the last one."""
    for i in range(nodes.shape[0]):
        kind, code, n_in, n_out = nodes[i, KIND], nodes[i, CODE], nodes[i, N_IN], nodes[i, N_OUT]
        y = _view(ys[i + 1], b, n_out)
        h = _input(xb, ys, inputs[nodes[i, IN_START]], b, n_in)
        w_off, b_off = nodes[i, W_OFF], nodes[i, B_OFF]
        if kind == DENSE:
            keep_z = nodes[i, SAVED] == SAVED_Z
            w = params[w_off:w_off + n_in * n_out].reshape(n_in, n_out)
            bo = max(b_off, 0)
            d.linear_forward_masked(h, w, params[bo:bo + n_out], b_off >= 0, code, floats[i, ALPHA], y,
                                    _view(zs[i], b if keep_z else 0, n_out), keep_z)
        elif kind == ACTIVATION:
            if nodes[i, SAVED] == SAVED_Z:
                _copy(h, _view(zs[i], b, n_out))
            d.activation_forward(h, code, floats[i, ALPHA], y)
        elif kind == DROPOUT:
            if floats[i, RATE] == 0:
                _copy(h, y)
            else:
                norm_k_drop.dropout_forward(h.reshape(-1), _dropout_key(seeds[i], t), thresholds[i],
                                            y.dtype.type(floats[i, SCALE]), y.reshape(-1),
                                            masks[i][:b * n_in])
        elif kind == ADD:
            _copy(h, y)
            for k in range(1, nodes[i, IN_COUNT]):
                _add_into(y, _input(xb, ys, inputs[nodes[i, IN_START] + k], b, n_in))
        else:
            g, be = norm_k.affine_flags(params[max(w_off, 0):max(w_off, 0) + n_in], w_off >= 0,
                                        params[max(b_off, 0):max(b_off, 0) + n_in], b_off >= 0, n_in)
            if kind == LAYERNORM:
                mean, rstd = _norm_stats(aux, i, b)
                norm_k.layernorm_forward_core(h, g, be, floats[i, EPS], y, mean, rstd)
            else:
                mean, rstd = _norm_stats(aux, i, n_in)
                s_off = nodes[i, S_OFF]
                norm_k.batchnorm_forward_core(h, g, be, floats[i, EPS], state[s_off:s_off + n_in],
                                              state[s_off + n_in:s_off + 2 * n_in], True, floats[i, MOMENTUM], True,
                                              False, y, mean, rstd)
    return _view(ys[nodes.shape[0]], b, nodes[nodes.shape[0] - 1, N_OUT])


@njit(cache=True)
def _backward(nodes, inputs, adds, needs, floats, thresholds, params, grads, xb, ys, gs, zs, dzs, aux, masks,
              temps, b):
    """Gradients of every trainable weight into ``grads``, from the loss's gradient in the last
    slot's buffer of ``gs``: the nodes in reverse; a node writes the gradient of each input slot
    that needs one (``needs``) into its buffer in ``gs``, or, where an earlier-run node wrote it
    already (``adds``), into a scratch buffer in ``temps`` that is then added."""
    last = nodes.shape[0] - 1
    for i in range(last, -1, -1):
        if not needs[i + 1] and i != last:
            continue
        kind, code, n_in, n_out = nodes[i, KIND], nodes[i, CODE], nodes[i, N_IN], nodes[i, N_OUT]
        start, count = nodes[i, IN_START], nodes[i, IN_COUNT]
        g = _view(gs[i + 1], b, n_out)
        s0 = inputs[start]
        h_in = _input(xb, ys, s0, b, n_in)
        need_dx = needs[s0]
        dx = _view(temps[start] if adds[start] else gs[s0], b if need_dx else 0, n_in)
        w_off, b_off = nodes[i, W_OFF], nodes[i, B_OFF]
        if kind == DENSE:
            saved = g
            if nodes[i, SAVED] == SAVED_Y:
                saved = _view(ys[i + 1], b, n_out)
            elif nodes[i, SAVED] == SAVED_Z:
                saved = _view(zs[i], b, n_out)
            w = params[w_off:w_off + n_in * n_out].reshape(n_in, n_out)
            dw = grads[w_off:w_off + n_in * n_out].reshape(n_in, n_out)
            dz_is_dy = code == LINEAR
            dz = g if dz_is_dy else _view(dzs[i], b, n_out)
            bo = max(b_off, 0)
            d.linear_backward_masked(g, h_in, w, saved, code, floats[i, ALPHA], dz, dz_is_dy, dx, need_dx, dw,
                                     grads[bo:bo + n_out], b_off >= 0)
        elif kind == ACTIVATION:
            if need_dx:
                saved = g
                if nodes[i, SAVED] == SAVED_Y:
                    saved = _view(ys[i + 1], b, n_out)
                elif nodes[i, SAVED] == SAVED_Z:
                    saved = _view(zs[i], b, n_out)
                d.activation_backward(g, saved, code, floats[i, ALPHA], dx)
        elif kind == DROPOUT:
            if need_dx:
                if floats[i, RATE] == 0:
                    _copy(g, dx)
                else:
                    norm_k_drop.dropout_backward(g.reshape(-1), masks[i][:b * n_in], dx.dtype.type(floats[i, SCALE]),
                                                 dx.reshape(-1))
        elif kind == ADD:
            for k in range(count):
                slot = inputs[start + k]
                if needs[slot]:
                    _copy(g, _view(temps[start + k] if adds[start + k] else gs[slot], b, n_in))
        else:
            gamma, _ = norm_k.affine_flags(params[max(w_off, 0):max(w_off, 0) + n_in], w_off >= 0,
                                           params[0:0], False, n_in)
            dgamma = grads[max(w_off, 0):max(w_off, 0) + n_in]
            dbeta = grads[max(b_off, 0):max(b_off, 0) + n_in]
            if kind == LAYERNORM:
                mean, rstd = _norm_stats(aux, i, b)
                norm_k.layernorm_backward_core(g, h_in, gamma, mean, rstd, dx, need_dx, dgamma, w_off >= 0, dbeta,
                                               b_off >= 0)
            else:
                mean, rstd = _norm_stats(aux, i, n_in)
                norm_k.batchnorm_backward_core(g, h_in, gamma, mean, rstd, dx, need_dx, dgamma, w_off >= 0, dbeta,
                                               b_off >= 0)
        for k in range(count):
            if adds[start + k]:
                _add_into(_view(gs[inputs[start + k]], b, n_in), _view(temps[start + k], b, n_in))


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
def _regularize(nodes, reg, params, grads, b):
    """Each Dense node's L2 gradient c(b) kernel added to its gradient (c(b) = reg[i, CONST] +
    reg[i, PER_ROW] / b); returns the penalty sum_i c_i(b) / 2 sum(kernel_i^2), in node order."""
    penalty = 0.0
    for i in range(nodes.shape[0]):
        if nodes[i, KIND] != DENSE or (reg[i, REG_CONST] == 0.0 and reg[i, REG_PER_ROW] == 0.0):
            continue
        c = reg[i, REG_CONST] + reg[i, REG_PER_ROW] / b
        lo = nodes[i, W_OFF]
        hi = lo + nodes[i, N_IN] * nodes[i, N_OUT]
        penalty += 0.5 * c * opt_k.l2_penalty_gradient_(grads[lo:hi], params[lo:hi], c)
    return penalty


@njit(cache=True)
def grad_step(x, labels, targets, order, lo, b, t, nodes, inputs, adds, needs, floats, seeds, thresholds, params,
              grads, state, ys, gs, zs, dzs, aux, masks, temps, xbuf, lbuf, tbuf, loss_kind, loss_weight):
    """The gradient of the batch x[order[lo:lo + b]] (b >= 1) at training step t into ``grads``:
    gather, forward, loss, backward (batch normalization's moving statistics in ``state`` are
    updated on the way). The loss and its gradient are scaled by ``loss_weight``. Returns (the
    scaled mean loss, the number of correct predictions)."""
    n_in = x.shape[1]
    n_out = nodes[nodes.shape[0] - 1, N_OUT]
    xb = _view(xbuf, b, n_in)
    gather_rows(x, order, lo, xb)
    if loss_kind == SPARSE_CE:
        lb = lbuf[:b]
        for r in range(b):
            lb[r] = labels[order[lo + r]]
    else:
        gather_rows(targets, order, lo, _view(tbuf, b, n_out))
    out = _forward(nodes, inputs, floats, seeds, thresholds, params, state, xb, ys, zs, aux, masks, b, t)
    g = _view(gs[nodes.shape[0]], b, n_out)
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
    _backward(nodes, inputs, adds, needs, floats, thresholds, params, grads, xb, ys, gs, zs, dzs, aux, masks, temps, b)
    return loss, correct


@njit(cache=True)
def apply_step(nodes, reg, regularized, params, grads, segments, opt, hyper, lr, t, s1, s2, s3, clip, b):
    """The update after a batch of ``b`` rows whose gradient is in ``grads``: the regularizers'
    gradients added (``regularized``), clipping, the optimizer's step number ``t`` at rate ``lr``.
    Returns the penalty times b (0 without regularizers)."""
    penalty = 0.0
    if regularized:
        penalty = _regularize(nodes, reg, params, grads, b) * b
    _optimize(params, grads, segments, opt, hyper, lr, t, s1, s2, s3, clip)
    return penalty


@njit(cache=True)
def train_steps(x, labels, targets, order, first, last, batch, nodes, inputs, adds, needs, floats, seeds, thresholds,
                params, grads, state, segments, ys, gs, zs, dzs, aux, masks, temps, xbuf, lbuf, tbuf, loss_kind,
                loss_weight, reg, regularized, opt, hyper, lrs, t0, s1, s2, s3, clip, stats, stop_nonfinite):
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
        loss, correct = grad_step(x, labels, targets, order, lo, b, t0 + step - first, nodes, inputs, adds, needs,
                                  floats, seeds, thresholds, params, grads, state, ys, gs, zs, dzs, aux, masks, temps,
                                  xbuf, lbuf, tbuf, loss_kind, loss_weight)
        stats[0] += loss * b
        stats[1] += correct
        penalty = apply_step(nodes, reg, regularized, params, grads, segments, opt, hyper, lrs[step - first],
                             t0 + step - first + 1, s1, s2, s3, clip, b)
        stats[0] += penalty
        stats[2] += penalty
        if stop_nonfinite and not math.isfinite(stats[0]):
            return step + 1
    return last
