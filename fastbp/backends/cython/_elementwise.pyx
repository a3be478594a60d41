# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Elementwise kernels over flat (1-D, C-contiguous) views: activations, the optimizer updates,
norms and clipping, on the scalar formulas of ``_formulas.pxd`` (generated from
fastbp/formulas.py). The caller passes the chunk size (fastbp.backends._cpu.tiling: ``even_chunk``
for elementwise passes, the fixed ``CHUNK`` for reductions), so every reduction sums the same
chunks in the same order as the numba kernels, whatever the thread count. Outputs never alias
inputs (the public layer serves the documented in-place uses).
"""
import numpy as np

from cython.parallel cimport prange
from libc.math cimport sqrt

from . cimport _formulas as F
from ._common cimport rowwise_derivative, rowwise_forward
from ._formulas cimport FORMULAS_DIGEST, LINEAR, RELU, SIGMOID, floating


def formulas_digest():
    """The digest of the formula sources this module was generated from (see _codegen.py)."""
    return FORMULAS_DIGEST.decode()


cdef void _forward_chunk(floating* z, int code, double alpha, floating* y, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    if code == LINEAR:
        for i in range(lo, hi):
            y[i] = z[i]
    elif code == RELU:
        for i in range(lo, hi):
            y[i] = F.relu(z[i])
    elif code == SIGMOID:  # (written out: the loop vectorizes, exponential included)
        for i in range(lo, hi):
            y[i] = <floating>F.sigmoid(z[i])
    else:
        for i in range(lo, hi):
            y[i] = <floating>F.act_forward(z[i], code, alpha)


cdef void _backward_chunk(floating* dy, floating* s, int code, double alpha, floating* dz, Py_ssize_t lo,
                          Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    if code == LINEAR:
        for i in range(lo, hi):
            dz[i] = dy[i]
    elif code == RELU:
        for i in range(lo, hi):
            dz[i] = F.relu_derivative(dy[i], s[i])
    else:
        for i in range(lo, hi):
            dz[i] = <floating>F.act_derivative(dy[i], s[i], code, alpha)


def activation_forward(const floating[::1] z, int code, double alpha, floating[::1] y, Py_ssize_t size,
                       int num_threads):
    """y = act(z) elementwise, in chunks of ``size`` elements."""
    cdef Py_ssize_t n = z.shape[0], c
    if n == 0:
        return
    for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
        _forward_chunk(<floating*>&z[0], code, alpha, &y[0], c * size, min(n, (c + 1) * size))


def activation_backward(const floating[::1] dy, const floating[::1] saved, int code, double alpha, floating[::1] dz,
                        Py_ssize_t size, int num_threads):
    """dz = dy * act'(saved) elementwise, in chunks of ``size`` elements."""
    cdef Py_ssize_t n = dy.shape[0], c
    if n == 0:
        return
    for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
        _backward_chunk(<floating*>&dy[0], <floating*>&saved[0], code, alpha, &dz[0], c * size, min(n, (c + 1) * size))


def rowwise_activation(const floating[:, ::1] z, const floating[:, ::1] saved, int code, floating[:, ::1] out, bint forward,
                       int num_threads):
    """softmax / log_softmax along rows: out = f(z) (forward), or out = derivative from dy = z and
    y = saved (backward)."""
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
    if not has_velocity:
        for i in range(lo, hi):
            p[i] = F.sgd_step(p[i], g[i], lr, wd)
    elif nesterov:
        for i in range(lo, hi):
            p[i], v[i] = F.sgd_nesterov_step(p[i], g[i], v[i], lr, mu, wd)
    else:
        for i in range(lo, hi):
            p[i], v[i] = F.sgd_momentum_step(p[i], g[i], v[i], lr, mu, wd)


def sgd_update(floating[::1] p, const floating[::1] g, floating[::1] v, bint has_velocity, double lr, double momentum,
               bint nesterov, double weight_decay, Py_ssize_t size, int num_threads):
    """g' = g + wd p;  v = mu v + g';  p -= lr (g' + mu v) (Nesterov) or lr v;  p -= lr g' without v."""
    cdef Py_ssize_t n = p.shape[0], c
    if n == 0:
        return
    for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
        _sgd_chunk(&p[0], <floating*>&g[0], &v[0], has_velocity, <floating>lr, <floating>momentum, <floating>weight_decay,
                   nesterov, c * size, min(n, (c + 1) * size))


cdef void _adam_chunk(floating* p, floating* g, floating* m, floating* v, floating* vmax, bint amsgrad,
                      floating b1, floating b2, floating c1, floating c2, floating step_size, floating inv_sqrt_bc2,
                      floating eps, floating wd_l2, floating shrink, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """One chunk of adam_update (scalars by value and raw pointers: the loop vectorizes)."""
    cdef Py_ssize_t i
    cdef floating pi, mi, vi
    if not amsgrad:
        for i in range(lo, hi):
            pi, mi, vi = F.adam_moments(p[i], g[i], m[i], v[i], shrink, wd_l2, b1, c1, b2, c2)
            m[i] = mi
            v[i] = vi
            p[i] = F.adam_param(pi, mi, vi, step_size, inv_sqrt_bc2, eps)
    else:
        for i in range(lo, hi):
            pi, mi, vi = F.adam_moments(p[i], g[i], m[i], v[i], shrink, wd_l2, b1, c1, b2, c2)
            m[i] = mi
            v[i] = vi
            vi = F.running_max(vmax[i], vi)
            vmax[i] = vi
            p[i] = F.adam_param(pi, mi, vi, step_size, inv_sqrt_bc2, eps)


def adam_update(floating[::1] p, const floating[::1] g, floating[::1] m, floating[::1] v, floating[::1] vmax,
                bint amsgrad, int step, double lr, double beta1, double beta2, double eps, double weight_decay,
                bint decoupled, Py_ssize_t size, int num_threads):
    """(AdamW) p *= 1 - lr wd, (Adam) g' = g + wd p; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
    amsgrad: vmax = max(vmax, v); p -= lr / (1 - b1^t) * m / (sqrt(v or vmax) / sqrt(1 - b2^t) + eps).
    Scalars are rounded once to the array dtype, as in the numba kernel."""
    cdef floating b1 = beta1, b2 = beta2, c1 = 1.0 - beta1, c2 = 1.0 - beta2
    cdef floating step_size = lr / F.bias_correction(beta1, step)
    cdef floating inv_sqrt_bc2 = 1.0 / sqrt(F.bias_correction(beta2, step))
    cdef floating eps_ = eps
    cdef floating wd_l2 = 0.0 if decoupled else weight_decay
    cdef floating shrink = 1.0 - lr * weight_decay if decoupled else 1.0
    cdef Py_ssize_t n = p.shape[0], c
    if n == 0:
        return
    for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
        _adam_chunk(&p[0], <floating*>&g[0], &m[0], &v[0], &vmax[0], amsgrad, b1, b2, c1, c2, step_size, inv_sqrt_bc2, eps_,
                    wd_l2, shrink, c * size, min(n, (c + 1) * size))


cdef void _rmsprop_chunk(floating* p, floating* g, floating* s, floating* a, floating* buf, bint centered,
                         bint use_buf, floating lr, floating r, floating cr, floating e, floating wd, floating mu,
                         Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """One chunk of rmsprop_update."""
    cdef Py_ssize_t i
    cdef floating gi, si, ai, st
    for i in range(lo, hi):
        gi, si = F.rmsprop_square(p[i], g[i], s[i], wd, r, cr)
        s[i] = si
        if centered:
            ai = F.moving_average(a[i], gi, r, cr)
            a[i] = ai
            si = si - ai * ai
        st = F.rmsprop_direction(gi, si, e)
        if use_buf:
            st = F.momentum_buffer(buf[i], st, mu)
            buf[i] = st
        p[i] = F.descend(p[i], lr, st)


def rmsprop_update(floating[::1] p, const floating[::1] g, floating[::1] s, floating[::1] a, floating[::1] buf,
                   bint centered, bint use_buf, double lr, double rho, double eps, double weight_decay,
                   double momentum, Py_ssize_t size, int num_threads):
    """s = rho s + (1 - rho) g'^2 (centered: a = rho a + (1 - rho) g', minus a^2);
    p -= lr g' / (sqrt(s) + eps), or through the momentum buffer."""
    cdef Py_ssize_t n = p.shape[0], c
    if n == 0:
        return
    for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
        _rmsprop_chunk(&p[0], <floating*>&g[0], &s[0], &a[0], &buf[0], centered, use_buf, <floating>lr, <floating>rho,
                       <floating>(1.0 - rho), <floating>eps, <floating>weight_decay, <floating>momentum,
                       c * size, min(n, (c + 1) * size))


cdef _chunk_partials(floating[::1] a, Py_ssize_t chunk, int num_threads, bint squares):
    """Over each fixed chunk of ``chunk`` elements (double): the sum of a^2 (``squares``), else
    max |a| (NaN where an element is NaN)."""
    cdef Py_ssize_t n = a.shape[0], c, i
    partial = np.zeros((n + chunk - 1) // chunk, np.float64)
    cdef double[::1] out = partial
    cdef double acc
    for c in prange(out.shape[0], nogil=True, num_threads=num_threads, schedule="static"):
        acc = 0.0
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            if squares:
                acc = acc + F.square(a[i])
            else:
                acc = F.abs_max(acc, a[i])
        out[c] = acc
    return partial


def sum_of_squares(floating[::1] a, Py_ssize_t chunk, int num_threads):
    """The partial sums of a^2 (double) over fixed chunks of ``chunk`` elements (the caller adds
    them in order)."""
    return _chunk_partials(a, chunk, num_threads, True)


def max_abs(floating[::1] a, Py_ssize_t chunk, int num_threads):
    """max |a| over each fixed chunk (NaN where an element is NaN); the caller combines them."""
    return _chunk_partials(a, chunk, num_threads, False)


def scale_(floating[::1] a, double factor, Py_ssize_t size, int num_threads):
    """a *= factor, in place."""
    cdef floating f = factor
    cdef Py_ssize_t n = a.shape[0], c, i
    for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
        for i in range(c * size, min(n, (c + 1) * size)):
            a[i] = a[i] * f


def clip_value_(floating[::1] a, double clip, Py_ssize_t size, int num_threads):
    """a = clamp(a, -clip, clip), in place (NaN stays NaN)."""
    cdef floating hi = clip, lo = -clip
    cdef Py_ssize_t n = a.shape[0], c, i
    for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
        for i in range(c * size, min(n, (c + 1) * size)):
            a[i] = F.clamp(a[i], lo, hi)
