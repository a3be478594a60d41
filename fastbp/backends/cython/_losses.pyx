# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Loss kernels: value and gradient in one pass, reductions in fixed chunks summed in order
(the same algorithm as ``numba_cpu/losses.py``: 64-row chunks for cross-entropy, 2^14-element
chunks for MSE, float64 accumulation)."""
import numpy as np

from cython.parallel cimport prange
from libc.math cimport exp, log

from ._common cimport floating

cdef Py_ssize_t CE_ROWS = 64
cdef Py_ssize_t MSE_CHUNK = 1 << 14


cdef double _ce_rows(const floating[:, ::1] logits, Py_ssize_t* labels, floating* targets, floating* dlogits,
                     double* e, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """Sum over rows [r0, r1) of the per-row loss (double); writes those rows of dlogits when it is
    not NULL (dlogits may be logits). Each exp(x - max) is computed once, kept in e (classes doubles)."""
    cdef Py_ssize_t classes = logits.shape[1], i, j, lab
    cdef double inv_batch = 1.0 / logits.shape[0], total = 0.0, m, s, log_s, inv_s, t_sum, tj, ej
    cdef floating* row
    cdef floating* out
    cdef floating* t
    for i in range(r0, r1):
        row = <floating*>&logits[i, 0]
        m = row[0]
        for j in range(1, classes):
            if row[j] > m:
                m = row[j]
        s = 0.0
        for j in range(classes):
            ej = exp(row[j] - m)
            e[j] = ej
            s += ej
        log_s = log(s)
        inv_s = 1.0 / s
        if labels != NULL:
            lab = labels[i]
            total += log_s - (row[lab] - m)
            if dlogits != NULL:
                out = dlogits + i * classes
                for j in range(classes):
                    out[j] = <floating>(e[j] * inv_s * inv_batch)
                out[lab] = <floating>(out[lab] - inv_batch)
        else:
            t = targets + i * classes
            t_sum = 0.0
            for j in range(classes):
                tj = t[j]
                t_sum += tj
                total += tj * (log_s - (row[j] - m))
            if dlogits != NULL:
                out = dlogits + i * classes
                for j in range(classes):
                    out[j] = <floating>((e[j] * inv_s * t_sum - t[j]) * inv_batch)
    return total


def softmax_cross_entropy(const floating[:, ::1] logits, const Py_ssize_t[::1] labels, const floating[:, ::1] targets,
                          floating[:, ::1] dlogits, int num_threads):
    """Mean softmax cross-entropy over labels (or probability targets when labels is None) and its
    gradient into dlogits (when not None); returns the loss."""
    cdef Py_ssize_t batch = logits.shape[0], n_chunks = (batch + CE_ROWS - 1) // CE_ROWS, c
    cdef double[::1] partial = np.zeros(n_chunks, np.float64)
    cdef double[:, ::1] exps = np.empty((n_chunks, logits.shape[1]), np.float64)
    cdef Py_ssize_t* lp = NULL if labels is None else <Py_ssize_t*>&labels[0]
    cdef floating* tp = NULL if targets is None else <floating*>&targets[0, 0]
    cdef floating* gp = NULL if dlogits is None else &dlogits[0, 0]
    cdef double total = 0.0
    if n_chunks == 1:
        with nogil:
            partial[0] = _ce_rows(logits, lp, tp, gp, &exps[0, 0], 0, batch)
    else:
        for c in prange(n_chunks, nogil=True, num_threads=num_threads, schedule="static"):
            partial[c] = _ce_rows(logits, lp, tp, gp, &exps[c, 0], c * CE_ROWS, min(batch, (c + 1) * CE_ROWS))
    for c in range(n_chunks):
        total += partial[c]
    return total / batch


def mse_loss(const floating[::1] pred, const floating[::1] target, floating[::1] dpred, int num_threads):
    """mean((pred - target)^2), and dpred = 2 (pred - target) / n when dpred is not None (it may be pred)."""
    cdef Py_ssize_t n = pred.shape[0], n_chunks = (n + MSE_CHUNK - 1) // MSE_CHUNK, c, j
    cdef double[::1] partial = np.zeros(n_chunks, np.float64)
    cdef bint grad = dpred is not None
    cdef floating* gp = &dpred[0] if grad else NULL
    cdef double scale = 2.0 / n, acc, d, total = 0.0
    for c in prange(n_chunks, nogil=True, num_threads=num_threads, schedule="static"):
        acc = 0.0
        for j in range(c * MSE_CHUNK, min(n, (c + 1) * MSE_CHUNK)):
            d = <double>pred[j] - <double>target[j]
            acc = acc + d * d
            if grad:
                gp[j] = <floating>(scale * d)
        partial[c] = acc
    for c in range(n_chunks):
        total += partial[c]
    return total / n
