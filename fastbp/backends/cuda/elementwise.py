"""Grid-stride elementwise kernels over flat arrays: activations and the optimizer updates.

Each thread handles elements i, i + G, i + 2G, ... (G threads in the grid), so consecutive threads
touch consecutive addresses (coalesced) and one launch of a fixed grid covers any size. The
optimizers read and write every array once; their scalars arrive already rounded to the array
dtype (the same rounding as the CPU kernels), and the per-element formulas are :mod:`fastbp.formulas`'.
"""
from __future__ import annotations

import math

from numba import cuda

from ._formulas import F


@cuda.jit
def activation_forward(z, code, alpha, y):
    """y = act(z) elementwise (y may be z)."""
    for i in range(cuda.grid(1), z.size, cuda.gridsize(1)):
        y[i] = F.act_forward(z[i], code, alpha)


@cuda.jit
def activation_backward(dy, saved, code, alpha, dz):
    """dz = dy * act'(saved) elementwise (dz may be dy)."""
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        dz[i] = F.act_derivative(dy[i], saved[i], code, alpha)


@cuda.jit
def sgd_update(p, g, v, has_velocity, lr, mu, wd, nesterov):
    """g' = g + wd p;  v = mu v + g';  p -= lr (g' + mu v) (Nesterov) or lr v;  p -= lr g' without v."""
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        if not has_velocity:
            p[i] = F.sgd_step(p[i], g[i], lr, wd)
        elif nesterov:
            p[i], v[i] = F.sgd_nesterov_step(p[i], g[i], v[i], lr, mu, wd)
        else:
            p[i], v[i] = F.sgd_momentum_step(p[i], g[i], v[i], lr, mu, wd)


@cuda.jit
def adam_update(p, g, m, v, vmax, amsgrad, b1, b2, c1, c2, step_size, inv_sqrt_bc2, eps, wd_l2, shrink):
    """(AdamW) p *= 1 - lr wd, (Adam) g' = g + wd p; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
    amsgrad: vmax = max(vmax, v); p -= lr / (1 - b1^t) * m / (sqrt(v or vmax) / sqrt(1 - b2^t) + eps)."""
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        pi, mi, vi = F.adam_moments(p[i], g[i], m[i], v[i], shrink, wd_l2, b1, c1, b2, c2)
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vi = F.running_max(vmax[i], vi)
            vmax[i] = vi
        p[i] = F.adam_param(pi, mi, vi, step_size, inv_sqrt_bc2, eps)


@cuda.jit
def rmsprop_update(p, g, s, a, buf, centered, use_buf, lr, rho, one_minus_rho, eps, wd, mu):
    """s = rho s + (1 - rho) g'^2 (centered: a = rho a + (1 - rho) g', minus a^2);
    p -= lr g' / (sqrt(s) + eps), or through the momentum buffer."""
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi, si = F.rmsprop_square(p[i], g[i], s[i], wd, rho, one_minus_rho)
        s[i] = si
        if centered:
            ai = F.moving_average(a[i], gi, rho, one_minus_rho)
            a[i] = ai
            si = si - ai * ai
        step = F.rmsprop_direction(gi, si, eps)
        if use_buf:
            step = F.momentum_buffer(buf[i], step, mu)
            buf[i] = step
        p[i] = F.descend(p[i], lr, step)


@cuda.jit
def scale_(a, factor):
    """a *= factor, in place."""
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] *= factor


@cuda.jit
def fill_(a, value):
    """a[:] = value."""
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] = value


@cuda.jit
def clip_value_(a, lo, hi):
    """a = clamp(a, lo, hi), in place (NaN stays NaN)."""
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] = F.clamp(a[i], lo, hi)
