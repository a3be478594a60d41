"""Loss kernels: value and gradient in one pass, reductions in fixed chunks summed in order."""
import math

import numpy as np
from numba import float64, njit, prange

from .._cpu.tiling import CE_ROWS, MSE_CHUNK, ordered_sum
from ._formulas import F


@njit(cache=True)
def _ce_rows(logits, labels, targets, dlogits, r0, r1):
    """Sum over rows [r0, r1) of the per-row loss (float64); writes those rows of dlogits when it is
    not None (a one-hot row for a label). Each exp(x - max) is computed once and kept in float64."""
    batch, classes = logits.shape
    inv_batch = 1.0 / batch
    e = np.empty(classes, np.float64)
    total = 0.0
    for i in range(r0, r1):
        row = logits[i]
        m = row[0]
        for j in range(1, classes):
            if row[j] > m:
                m = row[j]
        m = float64(m)
        s = 0.0
        for j in range(classes):
            ej = math.exp(float64(row[j]) - m)
            e[j] = ej
            s += ej
        log_s = math.log(s)
        inv_s = 1.0 / s
        if labels is not None:
            lab = labels[i]
            total += F.cross_entropy_term(row[lab], m, log_s)
            if dlogits is not None:
                out = dlogits[i]
                for j in range(classes):
                    out[j] = F.cross_entropy_grad(e[j], inv_s, 1.0, 1.0 if j == lab else 0.0, inv_batch)
        if targets is not None:  # (not "else": Numba prunes a branch only on its own variable)
            t = targets[i]
            t_sum = 0.0
            for j in range(classes):
                tj = float64(t[j])
                t_sum += tj
                total += tj * F.cross_entropy_term(row[j], m, log_s)
            if dlogits is not None:
                out = dlogits[i]
                for j in range(classes):
                    out[j] = F.cross_entropy_grad(e[j], inv_s, t_sum, t[j], inv_batch)
    return total


@njit(cache=True, parallel=True)
def softmax_cross_entropy(logits, labels, targets, dlogits):
    """Mean softmax cross-entropy (labels, or probability targets when labels is None) and its
    gradient (when dlogits is not None); returns the loss."""
    batch = logits.shape[0]
    n_chunks = -(-batch // CE_ROWS)
    partial = np.empty(n_chunks, np.float64)
    for c in prange(n_chunks):
        partial[c] = _ce_rows(logits, labels, targets, dlogits, c * CE_ROWS, min(batch, (c + 1) * CE_ROWS))
    return ordered_sum(partial) / batch


@njit(cache=True)
def softmax_cross_entropy_serial(logits, labels, targets, dlogits):
    """softmax_cross_entropy on the calling thread (same chunked sum, so the same bits)."""
    batch = logits.shape[0]
    partial = np.empty(-(-batch // CE_ROWS), np.float64)
    for c in range(partial.size):
        partial[c] = _ce_rows(logits, labels, targets, dlogits, c * CE_ROWS, min(batch, (c + 1) * CE_ROWS))
    return ordered_sum(partial) / batch


#: the elementwise losses of _mean_of_terms
SQUARED_ERROR, BINARY_CROSS_ENTROPY = 0, 1


@njit(cache=True)
def _terms_chunk(kind, xf, tf, gf, scale, lo, hi, need_grad):
    """sum over [lo, hi) of the loss terms (float64): (x - t)^2 for SQUARED_ERROR,
    max(x, 0) - x t + log1p(exp(-|x|)) for BINARY_CROSS_ENTROPY; when need_grad, writes the
    gradient on the way: scale (x - t) or scale (sigmoid(x) - t)."""
    acc = 0.0
    for j in range(lo, hi):
        if kind == SQUARED_ERROR:
            term = F.squared_error(xf[j], tf[j])
            if need_grad:
                gf[j] = F.squared_error_grad(xf[j], tf[j], scale)
        elif need_grad:
            term, gj = F.binary_cross_entropy_term_grad(xf[j], tf[j], scale)
            gf[j] = gj
        else:
            term = F.binary_cross_entropy_term(xf[j], tf[j])
        acc += term
    return acc


@njit(cache=True, parallel=True)
def _mean_of_terms(kind, xf, tf, gf, scale, need_grad):
    """The mean of the loss terms over all n elements (fixed chunks of MSE_CHUNK summed in order),
    the gradient into gf when need_grad (gf: any 1-D array of the dtype otherwise)."""
    n = xf.size
    n_chunks = -(-n // MSE_CHUNK)
    partial = np.empty(n_chunks, np.float64)
    for c in prange(n_chunks):
        partial[c] = _terms_chunk(kind, xf, tf, gf, scale, c * MSE_CHUNK, min(n, (c + 1) * MSE_CHUNK), need_grad)
    return ordered_sum(partial) / n


@njit(cache=True)
def mse_loss(pred, target, dpred):
    """mean((pred - target)^2) and dpred = 2 (pred - target) / n when dpred is not None.

    (The None test stays out of the parallel loop: an Optional value used inside a prange loop is
    not passed to the parallel worker reliably.)"""
    pf, tf = pred.reshape(-1), target.reshape(-1)
    if dpred is None:  # (pred may be read-only: never the gradient's stand-in)
        return _mean_of_terms(SQUARED_ERROR, pf, tf, np.empty(0, pf.dtype), 0.0, False)
    return _mean_of_terms(SQUARED_ERROR, pf, tf, dpred.reshape(-1), 2.0 / pf.size, True)


@njit(cache=True)
def sigmoid_cross_entropy(logits, targets, dlogits):
    """mean of max(z, 0) - z t + log1p(exp(-|z|)) over all n elements, and dlogits = (sigmoid(z) -
    t) / n when dlogits is not None (the same chunks as mse_loss)."""
    zf, tf = logits.reshape(-1), targets.reshape(-1)
    if dlogits is None:
        return _mean_of_terms(BINARY_CROSS_ENTROPY, zf, tf, np.empty(0, zf.dtype), 0.0, False)
    return _mean_of_terms(BINARY_CROSS_ENTROPY, zf, tf, dlogits.reshape(-1), 1.0 / zf.size, True)
