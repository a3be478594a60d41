"""Grid-stride elementwise kernels over flat arrays: activations and the optimizer updates.

Each thread handles elements i, i + G, i + 2G, ... (G threads in the grid), so consecutive threads
touch consecutive addresses (coalesced) and one launch of a fixed grid covers any size. The
optimizers read and write every array once; their scalars arrive already rounded to the array
dtype (the same rounding as the CPU kernels), and the arithmetic is the CPU kernels', line for line.
"""
from __future__ import annotations

import math

from numba import cuda

from . import _act


@cuda.jit
def activation_forward(z, code, alpha, y):
    """y = act(z) elementwise (y may be z)."""
    for i in range(cuda.grid(1), z.size, cuda.gridsize(1)):
        y[i] = _act.forward(z[i], code, alpha)


@cuda.jit
def activation_backward(dy, saved, code, alpha, dz):
    """dz = dy * act'(saved) elementwise (dz may be dy)."""
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        dz[i] = _act.derivative(dy[i], saved[i], code, alpha)


@cuda.jit
def sgd_update(p, g, v, has_velocity, lr, mu, wd, nesterov):
    """g' = g + wd p;  v = mu v + g';  p -= lr (g' + mu v) (Nesterov) or lr v;  p -= lr g' without v."""
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        if not has_velocity:
            p[i] -= lr * (g[i] + wd * p[i])
        elif nesterov:
            gi = g[i] + wd * p[i]
            vi = mu * v[i] + gi
            v[i] = vi
            p[i] -= lr * (gi + mu * vi)
        else:
            vi = mu * v[i] + g[i] + wd * p[i]
            v[i] = vi
            p[i] -= lr * vi


@cuda.jit
def adam_update(p, g, m, v, vmax, amsgrad, b1, b2, c1, c2, step_size, inv_sqrt_bc2, eps, wd_l2, shrink):
    """(AdamW) p *= 1 - lr wd, (Adam) g' = g + wd p; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
    amsgrad: vmax = max(vmax, v); p -= lr / (1 - b1^t) * m / (sqrt(v or vmax) / sqrt(1 - b2^t) + eps)."""
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        pi = p[i] * shrink
        gi = g[i] + wd_l2 * pi
        mi = b1 * m[i] + c1 * gi
        vi = b2 * v[i] + c2 * gi * gi
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vi = max(vmax[i], vi)
            vmax[i] = vi
        p[i] = pi - step_size * mi / (math.sqrt(vi) * inv_sqrt_bc2 + eps)


@cuda.jit
def rmsprop_update(p, g, s, a, buf, centered, use_buf, lr, rho, one_minus_rho, eps, wd, mu):
    """s = rho s + (1 - rho) g'^2 (centered: a = rho a + (1 - rho) g', minus a^2);
    p -= lr g' / (sqrt(s) + eps), or through the momentum buffer."""
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + wd * p[i]
        si = rho * s[i] + one_minus_rho * gi * gi
        s[i] = si
        if centered:
            ai = rho * a[i] + one_minus_rho * gi
            a[i] = ai
            si = si - ai * ai
        step = gi / (math.sqrt(si) + eps)
        if use_buf:
            bi = mu * buf[i] + step
            buf[i] = bi
            p[i] -= lr * bi
        else:
            p[i] -= lr * step


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
        x = a[i]
        a[i] = hi if x > hi else (lo if x < lo else x)
