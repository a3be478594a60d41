"""Optimizer, norm and clipping kernels: one pass over memory, in place, scalars rounded once to the
array dtype; the per-element formulas are :mod:`fastbp.formulas`'.

Every loop body sits directly in a ``prange`` over chunks of the flattened arrays: that is where
Numba tells LLVM the arrays do not alias, so the loops vectorize (the same loop in a serial
function does not). Elementwise kernels cut the arrays into ``even_chunk`` pieces (equal, an even
number); reductions into fixed CHUNK pieces summed in order.
"""
import math

import numpy as np
from numba import njit, prange

from .._cpu.tiling import CHUNK, SERIAL_ELEMENTS, even_chunk, ordered_sum
from ._formulas import F


@njit(cache=True, parallel=True)
def sgd_update(p, g, velocity, lr, momentum, nesterov, weight_decay):
    """g' = g + wd p;  v = mu v + g';  p -= lr (g' + mu v) (Nesterov) or lr v;  p -= lr g' without v."""
    pf = p.reshape(-1)
    gf = g.reshape(-1)
    vf = pf if velocity is None else velocity.reshape(-1)
    tp = pf.dtype.type
    lr_, mu, wd = tp(lr), tp(momentum), tp(weight_decay)
    n = pf.size
    size = even_chunk(n)
    for c in prange(-(-n // size)):
        lo = c * size
        hi = min(n, lo + size)
        ps, gs, vs = pf[lo:hi], gf[lo:hi], vf[lo:hi]
        if velocity is None:
            for j in range(ps.size):
                ps[j] = F.sgd_step(ps[j], gs[j], lr_, wd)
        elif nesterov:
            for j in range(ps.size):
                ps[j], vs[j] = F.sgd_nesterov_step(ps[j], gs[j], vs[j], lr_, mu, wd)
        else:
            for j in range(ps.size):
                ps[j], vs[j] = F.sgd_momentum_step(ps[j], gs[j], vs[j], lr_, mu, wd)


@njit(cache=True, parallel=True)
def adam_update(p, g, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """PyTorch's Adam/AdamW: (AdamW) p *= 1 - lr wd, (Adam) g' = g + wd p; m, v moving averages;
    p -= lr / (1 - b1^t) * m / (sqrt(v or vmax) / sqrt(1 - b2^t) + eps)."""
    pf, gf, mf, vf = p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1)
    xf = vf if vmax is None else vmax.reshape(-1)
    tp = pf.dtype.type
    b1, b2 = tp(beta1), tp(beta2)
    c1, c2 = tp(1.0 - beta1), tp(1.0 - beta2)
    step_size = tp(lr / F.bias_correction(beta1, step))
    inv_sqrt_bc2 = tp(1.0 / math.sqrt(F.bias_correction(beta2, step)))
    eps_ = tp(eps)
    wd_l2 = tp(0.0 if decoupled else weight_decay)
    shrink = tp(1.0 - lr * weight_decay if decoupled else 1.0)
    n = pf.size
    size = even_chunk(n)
    for c in prange(-(-n // size)):
        lo = c * size
        hi = min(n, lo + size)
        ps, gs, ms, vs, xs = pf[lo:hi], gf[lo:hi], mf[lo:hi], vf[lo:hi], xf[lo:hi]
        if vmax is None:
            for j in range(ps.size):
                pj, mj, vj = F.adam_moments(ps[j], gs[j], ms[j], vs[j], shrink, wd_l2, b1, c1, b2, c2)
                ms[j] = mj
                vs[j] = vj
                ps[j] = F.adam_param(pj, mj, vj, step_size, inv_sqrt_bc2, eps_)
        else:
            for j in range(ps.size):
                pj, mj, vj = F.adam_moments(ps[j], gs[j], ms[j], vs[j], shrink, wd_l2, b1, c1, b2, c2)
                ms[j] = mj
                vs[j] = vj
                xj = F.running_max(xs[j], vj)
                xs[j] = xj
                ps[j] = F.adam_param(pj, mj, xj, step_size, inv_sqrt_bc2, eps_)


@njit(cache=True, parallel=True)
def rmsprop_update(p, g, sq_avg, grad_avg, momentum_buf, lr, rho, eps, weight_decay, momentum):
    """PyTorch's RMSprop: s = rho s + (1 - rho) g'^2 (centered: minus a^2, a the mean of g');
    p -= lr g' / (sqrt(s) + eps), or through the momentum buffer."""
    pf, gf, sf = p.reshape(-1), g.reshape(-1), sq_avg.reshape(-1)
    af = sf if grad_avg is None else grad_avg.reshape(-1)
    bf = sf if momentum_buf is None else momentum_buf.reshape(-1)
    tp = pf.dtype.type
    lr_, r, cr, e, wd, mu = tp(lr), tp(rho), tp(1.0 - rho), tp(eps), tp(weight_decay), tp(momentum)
    centered = grad_avg is not None
    use_buf = momentum_buf is not None
    n = pf.size
    size = even_chunk(n)
    for c in prange(-(-n // size)):
        lo = c * size
        hi = min(n, lo + size)
        ps, gs, ss, as_, bs = pf[lo:hi], gf[lo:hi], sf[lo:hi], af[lo:hi], bf[lo:hi]
        for j in range(ps.size):
            gj, sj = F.rmsprop_square(ps[j], gs[j], ss[j], wd, r, cr)
            ss[j] = sj
            if centered:
                aj = F.moving_average(as_[j], gj, r, cr)
                as_[j] = aj
                sj = sj - aj * aj
            step = F.rmsprop_direction(gj, sj, e)
            if use_buf:
                step = F.momentum_buffer(bs[j], step, mu)
                bs[j] = step
            ps[j] = F.descend(ps[j], lr_, step)


@njit(cache=True, parallel=True)
def _chunk_partials(a, squares):
    """Over each fixed chunk of CHUNK elements of a (float64): the sum of a^2 (``squares``), else
    max |a| (NaN where an element is NaN)."""
    af = a.reshape(-1)
    partial = np.zeros(-(-af.size // CHUNK), np.float64)
    for c in prange(partial.size):
        acc = 0.0
        for x in af[c * CHUNK:(c + 1) * CHUNK]:
            if squares:
                acc += F.square(x)
            else:
                acc = F.abs_max(acc, x)
        partial[c] = acc
    return partial


@njit(cache=True)
def sum_of_squares(a):
    """sum(a^2) accumulated in float64, in fixed chunks summed in order."""
    return ordered_sum(_chunk_partials(a, True))


@njit(cache=True)
def max_abs(a):
    """max |a| (NaN if any element is NaN; 0 for an empty array)."""
    best = 0.0
    for peak in _chunk_partials(a, False):
        best = F.nan_max(best, peak)
    return best


@njit(cache=True, parallel=True)
def scale_(a, factor):
    """a *= factor, in place."""
    af = a.reshape(-1)
    f = af.dtype.type(factor)
    n = af.size
    size = even_chunk(n)
    for c in prange(-(-n // size)):
        xs = af[c * size:min(n, (c + 1) * size)]
        for j in range(xs.size):
            xs[j] *= f


@njit(cache=True, parallel=True)
def clip_value_(a, clip):
    """a = clamp(a, -clip, clip), in place (NaN stays NaN)."""
    af = a.reshape(-1)
    hi_ = af.dtype.type(clip)
    lo_ = -hi_
    n = af.size
    size = even_chunk(n)
    for c in prange(-(-n // size)):
        xs = af[c * size:min(n, (c + 1) * size)]
        for j in range(xs.size):
            xs[j] = F.clamp(xs[j], lo_, hi_)


@njit(cache=True, inline="always")
def _l2_chunk(gf, pf, c, lo, hi):
    """g = g + c p over [lo, hi), returning sum(p^2) over it (float64)."""
    acc = 0.0
    for j in range(lo, hi):
        acc += F.square(pf[j])
        gf[j] = F.l2_gradient(gf[j], pf[j], c)
    return acc


@njit(cache=True, parallel=True)
def _l2_penalty_gradient_parallel(gf, pf, c, partial):
    n = gf.size
    for k in prange(partial.size):
        partial[k] = _l2_chunk(gf, pf, c, k * CHUNK, min(n, (k + 1) * CHUNK))


@njit(cache=True)
def l2_penalty_gradient_(g, p, c):
    """g = g + c p in place (the gradient of the L2 penalty c / 2 sum(p^2), c rounded once to the
    arrays' dtype), returning sum(p^2) in float64: one pass, in sum_of_squares's chunks summed in
    order (so the same bits as sum_of_squares(p)); on the calling thread below SERIAL_ELEMENTS."""
    gf = g.reshape(-1)
    pf = p.reshape(-1)
    c_ = gf.dtype.type(c)
    partial = np.empty(-(-gf.size // CHUNK), np.float64)
    if gf.size >= SERIAL_ELEMENTS:
        _l2_penalty_gradient_parallel(gf, pf, c_, partial)
    else:
        for k in range(partial.size):
            partial[k] = _l2_chunk(gf, pf, c_, k * CHUNK, min(gf.size, (k + 1) * CHUNK))
    return ordered_sum(partial)
