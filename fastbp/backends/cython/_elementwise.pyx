# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Elementwise kernels over flat (1-D, C-contiguous) views: activations, the optimizer updates,
norms and clipping. The same formulas and scalar roundings as ``numba_cpu/optim.py`` and
``numba_cpu/activation.py``; work is split into fixed chunks (CHUNK elements) so every reduction
sums the same chunks in the same order whatever the thread count.
"""
import numpy as np

from cython.parallel cimport prange
from libc.math cimport fabs, sqrt, sqrtf

from ._common cimport RELU, SOFTMAX, act_derivative, act_forward, floating, rowwise_derivative, rowwise_forward

cdef Py_ssize_t CHUNK = 1 << 14


cdef inline Py_ssize_t _chunks(Py_ssize_t n) noexcept nogil:
    """Fixed CHUNK-sized chunks: the reductions (their sums must not move)."""
    return (n + CHUNK - 1) // CHUNK


cdef inline Py_ssize_t _even_chunk(Py_ssize_t n) noexcept nogil:
    """Elements per chunk of an elementwise pass: fastbp._tiling.even_chunk (an even number of
    equal chunks of about CHUNK elements at most, a multiple of 64)."""
    cdef Py_ssize_t chunks = _chunks(n), size
    if chunks <= 1:
        return max(n, 1)
    chunks += chunks % 2
    size = (n + chunks - 1) // chunks
    return size + (64 - size % 64) % 64


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef void _forward_chunk(floating* z, int code, double alpha, floating* y, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating v
    if code == RELU:
        for i in range(lo, hi):
            v = z[i]
            y[i] = v if v > 0 else v * 0 + 0  # +0.0 for negatives (as numba), NaN stays NaN
    else:
        for i in range(lo, hi):
            y[i] = <floating>act_forward(z[i], code, alpha)


cdef void _backward_chunk(floating* dy, floating* s, int code, double alpha, floating* dz, Py_ssize_t lo,
                          Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    if code == RELU:
        for i in range(lo, hi):
            dz[i] = dy[i] if s[i] > 0 else dy[i] * 0
    else:
        for i in range(lo, hi):
            dz[i] = <floating>act_derivative(dy[i], s[i], code, alpha)


def activation_forward(const floating[::1] z, int code, double alpha, floating[::1] y, int num_threads):
    """y = act(z) elementwise (y may be z)."""
    cdef Py_ssize_t size, n = z.shape[0], c
    if n == 0:
        return
    size = _even_chunk(n)
    for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
        _forward_chunk(<floating*>&z[0], code, alpha, &y[0], c * size, min(n, (c + 1) * size))


def activation_backward(const floating[::1] dy, const floating[::1] saved, int code, double alpha, floating[::1] dz,
                        int num_threads):
    """dz = dy * act'(saved) elementwise (dz may be dy)."""
    cdef Py_ssize_t size, n = dy.shape[0], c
    if n == 0:
        return
    size = _even_chunk(n)
    for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
        _backward_chunk(<floating*>&dy[0], <floating*>&saved[0], code, alpha, &dz[0], c * size, min(n, (c + 1) * size))


def rowwise_activation(const floating[:, ::1] z, const floating[:, ::1] saved, int code, floating[:, ::1] out, bint forward,
                       int num_threads):
    """softmax / log_softmax along rows: out = f(z) (forward), or out = derivative from dy = z and
    y = saved (backward); out may be z."""
    cdef Py_ssize_t m = z.shape[0], n = z.shape[1], i
    for i in prange(m, nogil=True, num_threads=num_threads, schedule="static"):
        if forward:
            rowwise_forward(<floating*>&z[i, 0], &out[i, 0], n, code)
        else:
            rowwise_derivative(<floating*>&z[i, 0], <floating*>&saved[i, 0], &out[i, 0], n, code)


cdef void _sgd_chunk(floating* p, floating* g, floating* v, bint has_velocity, floating lr, floating mu,
                     floating wd, bint nesterov, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """One chunk of sgd_update (scalars by value and raw pointers: the loop vectorizes)."""
    cdef Py_ssize_t i
    cdef floating gi, vi
    if not has_velocity:
        for i in range(lo, hi):
            p[i] = p[i] - lr * (g[i] + wd * p[i])
    elif nesterov:
        for i in range(lo, hi):
            gi = g[i] + wd * p[i]
            vi = mu * v[i] + gi
            v[i] = vi
            p[i] = p[i] - lr * (gi + mu * vi)
    else:
        for i in range(lo, hi):
            vi = mu * v[i] + g[i] + wd * p[i]
            v[i] = vi
            p[i] = p[i] - lr * vi


def sgd_update(floating[::1] p, const floating[::1] g, floating[::1] v, bint has_velocity, double lr, double momentum,
               bint nesterov, double weight_decay, int num_threads):
    """g' = g + wd p;  v = mu v + g';  p -= lr (g' + mu v) (Nesterov) or lr v;  p -= lr g' without v."""
    cdef Py_ssize_t size, n = p.shape[0], c
    if n == 0:
        return
    size = _even_chunk(n)
    for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
        _sgd_chunk(&p[0], <floating*>&g[0], &v[0], has_velocity, <floating>lr, <floating>momentum, <floating>weight_decay,
                   nesterov, c * size, min(n, (c + 1) * size))


cdef void _adam_chunk(floating* p, floating* g, floating* m, floating* v, floating* vmax, bint amsgrad,
                      floating b1, floating b2, floating c1, floating c2, floating step_size, floating inv_sqrt_bc2,
                      floating eps, floating wd_l2, floating shrink, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """One chunk of adam_update (scalars by value and raw pointers: the loop vectorizes)."""
    cdef Py_ssize_t i
    cdef floating pi, gi, mi, vi
    if not amsgrad:
        for i in range(lo, hi):
            pi = p[i] * shrink
            gi = g[i] + wd_l2 * pi
            mi = b1 * m[i] + c1 * gi
            vi = b2 * v[i] + c2 * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = pi - step_size * mi / (_sqrt(vi) * inv_sqrt_bc2 + eps)
    else:
        for i in range(lo, hi):
            pi = p[i] * shrink
            gi = g[i] + wd_l2 * pi
            mi = b1 * m[i] + c1 * gi
            vi = b2 * v[i] + c2 * gi * gi
            m[i] = mi
            v[i] = vi
            vi = vmax[i] if vmax[i] > vi else vi
            vmax[i] = vi
            p[i] = pi - step_size * mi / (_sqrt(vi) * inv_sqrt_bc2 + eps)


def adam_update(floating[::1] p, const floating[::1] g, floating[::1] m, floating[::1] v, floating[::1] vmax,
                bint amsgrad, int step, double lr, double beta1, double beta2, double eps, double weight_decay,
                bint decoupled, int num_threads):
    """(AdamW) p *= 1 - lr wd, (Adam) g' = g + wd p; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
    amsgrad: vmax = max(vmax, v); p -= lr / (1 - b1^t) * m / (sqrt(v or vmax) / sqrt(1 - b2^t) + eps).
    Scalars are rounded once to the array dtype, as in the numba kernel."""
    cdef floating b1 = beta1, b2 = beta2, c1 = 1.0 - beta1, c2 = 1.0 - beta2
    cdef floating step_size = lr / (1.0 - beta1 ** step)
    cdef floating inv_sqrt_bc2 = 1.0 / sqrt(1.0 - beta2 ** step)
    cdef floating eps_ = eps
    cdef floating wd_l2 = 0.0 if decoupled else weight_decay
    cdef floating shrink = 1.0 - lr * weight_decay if decoupled else 1.0
    cdef Py_ssize_t size, n = p.shape[0], c
    if n == 0:
        return
    size = _even_chunk(n)
    for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
        _adam_chunk(&p[0], <floating*>&g[0], &m[0], &v[0], &vmax[0], amsgrad, b1, b2, c1, c2, step_size, inv_sqrt_bc2, eps_,
                    wd_l2, shrink, c * size, min(n, (c + 1) * size))


cdef void _rmsprop_chunk(floating* p, floating* g, floating* s, floating* a, floating* buf, bint centered,
                         bint use_buf, floating lr, floating r, floating cr, floating e, floating wd, floating mu,
                         Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """One chunk of rmsprop_update."""
    cdef Py_ssize_t i
    cdef floating gi, si, ai, st, bi
    for i in range(lo, hi):
        gi = g[i] + wd * p[i]
        si = r * s[i] + cr * gi * gi
        s[i] = si
        if centered:
            ai = r * a[i] + cr * gi
            a[i] = ai
            si = si - ai * ai
        st = gi / (_sqrt(si) + e)
        if use_buf:
            bi = mu * buf[i] + st
            buf[i] = bi
            p[i] = p[i] - lr * bi
        else:
            p[i] = p[i] - lr * st


def rmsprop_update(floating[::1] p, const floating[::1] g, floating[::1] s, floating[::1] a, floating[::1] buf,
                   bint centered, bint use_buf, double lr, double rho, double eps, double weight_decay,
                   double momentum, int num_threads):
    """s = rho s + (1 - rho) g'^2 (centered: a = rho a + (1 - rho) g', minus a^2);
    p -= lr g' / (sqrt(s) + eps), or through the momentum buffer."""
    cdef Py_ssize_t size, n = p.shape[0], c
    if n == 0:
        return
    size = _even_chunk(n)
    for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
        _rmsprop_chunk(&p[0], <floating*>&g[0], &s[0], &a[0], &buf[0], centered, use_buf, <floating>lr, <floating>rho,
                       <floating>(1.0 - rho), <floating>eps, <floating>weight_decay, <floating>momentum,
                       c * size, min(n, (c + 1) * size))


def sum_of_squares(floating[::1] a, int num_threads):
    """sum(a^2) accumulated in double, in fixed chunks summed in order."""
    cdef Py_ssize_t n = a.shape[0], n_chunks = _chunks(n), c, i
    cdef double[::1] partial = np.zeros(max(n_chunks, 1), np.float64)
    cdef double acc, x, total = 0.0
    for c in prange(n_chunks, nogil=True, num_threads=num_threads, schedule="static"):
        acc = 0.0
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            x = a[i]
            acc = acc + x * x
        partial[c] = acc
    for c in range(n_chunks):
        total += partial[c]
    return total


def max_abs(floating[::1] a, int num_threads):
    """max |a| (NaN if any element is NaN; 0 for an empty array)."""
    cdef Py_ssize_t n = a.shape[0], n_chunks = _chunks(n), c, i
    cdef double[::1] partial = np.zeros(max(n_chunks, 1), np.float64)
    cdef double acc, x, best = 0.0
    for c in prange(n_chunks, nogil=True, num_threads=num_threads, schedule="static"):
        acc = 0.0
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            x = fabs(a[i])
            if x > acc or x != x:
                acc = x
        partial[c] = acc
    for c in range(n_chunks):
        if partial[c] > best or partial[c] != partial[c]:
            best = partial[c]
    return best


def scale_(floating[::1] a, double factor, int num_threads):
    """a *= factor, in place."""
    cdef floating f = factor
    cdef Py_ssize_t size, n = a.shape[0], c, i
    size = _even_chunk(n)
    for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
        for i in range(c * size, min(n, (c + 1) * size)):
            a[i] = a[i] * f


def clip_value_(floating[::1] a, double clip, int num_threads):
    """a = clamp(a, -clip, clip), in place (NaN stays NaN)."""
    cdef floating hi = clip, lo = -clip, x
    cdef Py_ssize_t size, n = a.shape[0], c, i
    size = _even_chunk(n)
    for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
        for i in range(c * size, min(n, (c + 1) * size)):
            x = a[i]
            a[i] = hi if x > hi else (lo if x < lo else x)
