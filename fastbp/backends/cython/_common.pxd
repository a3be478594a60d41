# cython: language_level=3
"""Row loops every Cython kernel shares: softmax and log_softmax along one row and their
derivatives, on the scalar formulas of ``_formulas.pxd`` (generated from fastbp/formulas.py).
The same loops, in the same order, as ``numba_cpu/activation.py``."""
from libc.math cimport exp, log

from . cimport _formulas as F
from ._formulas cimport SOFTMAX, floating


cdef inline void rowwise_forward(floating* z, floating* y, int n, int code) noexcept nogil:
    """One row of y = softmax(z) or log_softmax(z), with double sums (y may be z)."""
    cdef int j
    cdef double m = z[0], total = 0.0, inv, lse
    for j in range(1, n):
        if z[j] > m:
            m = z[j]
    for j in range(n):
        total += exp(<double>z[j] - m)
    if code == SOFTMAX:
        inv = 1.0 / total
        for j in range(n):
            y[j] = <floating>F.softmax_term(z[j], m, inv)
    else:
        lse = m + log(total)
        for j in range(n):
            y[j] = <floating>F.log_softmax_term(z[j], lse)


cdef inline void rowwise_derivative(floating* dy, floating* y, floating* dz, int n, int code) noexcept nogil:
    """One row of dz for softmax (y (dy - sum(dy y))) or log_softmax (dy - exp(y) sum(dy))."""
    cdef int j
    cdef double acc = 0.0
    if code == SOFTMAX:
        for j in range(n):
            acc += <double>dy[j] * <double>y[j]
        for j in range(n):
            dz[j] = <floating>F.softmax_derivative_term(dy[j], y[j], acc)
    else:
        for j in range(n):
            acc += dy[j]
        for j in range(n):
            dz[j] = <floating>F.log_softmax_derivative_term(dy[j], y[j], acc)
