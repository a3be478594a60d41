# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Dropout kernels over flat (1-D, C-contiguous) views: the mask drawn from the counter-based
generator of fastbp/formulas.py (a pure function of (key, element index), so the chunking cannot
change it), applied in the same pass; the same algorithm as ``numba_cpu/dropout.py``, on the
scalar formulas of ``_formulas.pxd``. The caller passes the chunk size (``even_chunk``) and 1
thread below SERIAL_ELEMENTS (run on the calling thread). Outputs never alias inputs.
"""
from cython.parallel cimport prange
from libc.stdint cimport uint8_t, uint64_t

from . cimport _formulas as F
from ._formulas cimport FORMULAS_DIGEST, floating


def formulas_digest():
    """The digest of the formula sources this module was generated from (see _codegen.py)."""
    return FORMULAS_DIGEST.decode()


cdef void _forward_span(floating* x, uint64_t key, uint64_t threshold, floating scale, floating* y, uint8_t* mask,
                        Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef bint keep
    for i in range(lo, hi):
        keep = F.dropout_keep(key, <uint64_t>i, threshold)
        mask[i] = keep
        y[i] = F.dropout_value(x[i], keep, scale)


cdef void _backward_span(floating* dy, uint8_t* mask, floating scale, floating* dx, Py_ssize_t lo,
                         Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(lo, hi):
        dx[i] = F.dropout_value(dy[i], mask[i] != 0, scale)


def dropout_forward(const floating[::1] x, uint64_t key, uint64_t threshold, double scale, floating[::1] y,
                    uint8_t[::1] mask, Py_ssize_t size, int num_threads):
    """mask[i] = keep_i = dropout_keep(key, i, threshold) (0 or 1); y[i] = x[i] scale where kept,
    x[i] 0 where dropped, in chunks of ``size`` elements. scale: a value of x's dtype."""
    cdef Py_ssize_t n = x.shape[0], c
    cdef floating s = <floating>scale
    cdef floating* xp
    cdef floating* yp
    cdef uint8_t* mp
    if n == 0:
        return
    xp, yp, mp = <floating*>&x[0], &y[0], &mask[0]
    if num_threads > 1:
        for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
            _forward_span(xp, key, threshold, s, yp, mp, c * size, min(n, (c + 1) * size))
    else:
        with nogil:
            _forward_span(xp, key, threshold, s, yp, mp, 0, n)


def dropout_backward(const floating[::1] dy, const uint8_t[::1] mask, double scale, floating[::1] dx,
                     Py_ssize_t size, int num_threads):
    """dx[i] = dy[i] scale where mask[i] != 0, dy[i] 0 elsewhere, in chunks of ``size`` elements."""
    cdef Py_ssize_t n = dy.shape[0], c
    cdef floating s = <floating>scale
    cdef floating* dyp
    cdef floating* dxp
    cdef uint8_t* mp
    if n == 0:
        return
    dyp, dxp, mp = <floating*>&dy[0], &dx[0], <uint8_t*>&mask[0]
    if num_threads > 1:
        for c in prange((n + size - 1) // size, nogil=True, num_threads=num_threads, schedule="static"):
            _backward_span(dyp, mp, s, dxp, c * size, min(n, (c + 1) * size))
    else:
        with nogil:
            _backward_span(dyp, mp, s, dxp, 0, n)
