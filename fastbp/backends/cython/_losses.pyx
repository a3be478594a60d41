# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Loss kernels: value and gradient in one pass, reductions in fixed chunks summed in order
(the same algorithm as ``numba_cpu/losses.py``; the chunk sizes come from the caller,
fastbp.backends._cpu.tiling's CE_ROWS and MSE_CHUNK; float64 accumulation; the scalar formulas
are ``_formulas.pxd``'s)."""
import numpy as np

from cython.parallel cimport prange
from libc.math cimport exp, log

from . cimport _formulas as F
from ._formulas cimport FORMULAS_DIGEST, floating


def formulas_digest():
    """The digest of the formula sources this module was generated from (see _codegen.py)."""
    return FORMULAS_DIGEST.decode()


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
            total += F.cross_entropy_term(row[lab], m, log_s)
            if dlogits != NULL:
                out = dlogits + i * classes
                for j in range(classes):
                    out[j] = <floating>F.cross_entropy_grad(e[j], inv_s, 1.0, 1.0 if j == lab else 0.0, inv_batch)
        else:
            t = targets + i * classes
            t_sum = 0.0
            for j in range(classes):
                tj = t[j]
                t_sum += tj
                total += tj * F.cross_entropy_term(row[j], m, log_s)
            if dlogits != NULL:
                out = dlogits + i * classes
                for j in range(classes):
                    out[j] = <floating>F.cross_entropy_grad(e[j], inv_s, t_sum, t[j], inv_batch)
    return total


def softmax_cross_entropy(const floating[:, ::1] logits, const Py_ssize_t[::1] labels, const floating[:, ::1] targets,
                          floating[:, ::1] dlogits, Py_ssize_t ce_rows, int num_threads):
    """Mean softmax cross-entropy over labels (or probability targets when labels is None) and its
    gradient into dlogits (when not None), in chunks of ce_rows rows; returns the loss."""
    cdef Py_ssize_t batch = logits.shape[0], n_chunks = (batch + ce_rows - 1) // ce_rows, c
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
            partial[c] = _ce_rows(logits, lp, tp, gp, &exps[c, 0], c * ce_rows, min(batch, (c + 1) * ce_rows))
    for c in range(n_chunks):
        total += partial[c]
    return total / batch


def mse_loss(const floating[::1] pred, const floating[::1] target, floating[::1] dpred, Py_ssize_t chunk,
             int num_threads):
    """mean((pred - target)^2), and dpred = 2 (pred - target) / n when dpred is not None, in chunks
    of ``chunk`` elements."""
    cdef Py_ssize_t n = pred.shape[0], n_chunks = (n + chunk - 1) // chunk, c, j
    cdef double[::1] partial = np.zeros(n_chunks, np.float64)
    cdef bint grad = dpred is not None
    cdef floating* gp = &dpred[0] if grad else NULL
    cdef double scale = 2.0 / n, acc, total = 0.0
    for c in prange(n_chunks, nogil=True, num_threads=num_threads, schedule="static"):
        acc = 0.0
        for j in range(c * chunk, min(n, (c + 1) * chunk)):
            acc = acc + F.squared_error(pred[j], target[j])
            if grad:
                gp[j] = <floating>F.squared_error_grad(pred[j], target[j], scale)
        partial[c] = acc
    for c in range(n_chunks):
        total += partial[c]
    return total / n


def sigmoid_cross_entropy(const floating[::1] logits, const floating[::1] targets, floating[::1] dlogits,
                          Py_ssize_t chunk, int num_threads):
    """mean of max(z, 0) - z t + log1p(exp(-|z|)), and dlogits = (sigmoid(z) - t) / n when dlogits is
    not None, in chunks of ``chunk`` elements (mse_loss's)."""
    cdef Py_ssize_t n = logits.shape[0], n_chunks = (n + chunk - 1) // chunk, c, j
    cdef double[::1] partial = np.zeros(n_chunks, np.float64)
    cdef bint grad = dlogits is not None
    cdef floating* gp = &dlogits[0] if grad else NULL
    cdef double scale = 1.0 / n, acc, term, grad_j, total = 0.0
    for c in prange(n_chunks, nogil=True, num_threads=num_threads, schedule="static"):
        acc = 0.0
        for j in range(c * chunk, min(n, (c + 1) * chunk)):
            if grad:
                term, grad_j = F.binary_cross_entropy_term_grad(logits[j], targets[j], scale)
                gp[j] = <floating>grad_j
            else:
                term = F.binary_cross_entropy_term(logits[j], targets[j])
            acc = acc + term
        partial[c] = acc
    for c in range(n_chunks):
        total += partial[c]
    return total / n
