"""Row-wise kernels: softmax and log_softmax (forward and derivative) and softmax cross-entropy.

A block of (row_threads, rows_per_block) threads handles ``rows_per_block`` rows; the
``row_threads`` threads of a row stride along it and combine their values through a tree in
shared memory (float64), so each row's max and sums come out in one fixed order. Every thread of a
block reaches every barrier (threads past the last row work on neutral values). Outputs may be
the inputs (each thread writes only elements it has read, after the row's reductions).
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float64

from ._jit import device_function

from ...activations import SOFTMAX
from ._formulas import F


@functools.lru_cache(maxsize=None)
def kernels(row_threads: int, rows_per_block: int):
    rt, rb = row_threads, rows_per_block

    @device_function
    def row_reduce(buf, ty, tx, value, take_max):
        buf[ty, tx] = value
        cuda.syncthreads()
        s = rt // 2
        while s > 0:
            if tx < s:
                other = buf[ty, tx + s]
                if take_max:
                    if other > buf[ty, tx] or other != other:
                        buf[ty, tx] = other
                else:
                    buf[ty, tx] += other
            cuda.syncthreads()
            s //= 2
        result = buf[ty, 0]
        cuda.syncthreads()
        return result

    @device_function
    def row_max(z, i, live, ty, tx, buf):
        n = z.shape[1]
        best = -math.inf
        if live:
            for j in range(tx, n, rt):
                x = float64(z[i, j])
                if x > best or x != x:
                    best = x
        return row_reduce(buf, ty, tx, best, True)

    @cuda.jit
    def softmax_forward(z, y, code):
        """y = softmax(z) or log_softmax(z) along each row (y may be z)."""
        buf = cuda.shared.array((rb, rt), np.float64)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        i = cuda.blockIdx.x * rb + ty
        m, n = z.shape
        live = i < m
        mx = row_max(z, i, live, ty, tx, buf)
        total = 0.0
        if live:
            for j in range(tx, n, rt):
                total += math.exp(float64(z[i, j]) - mx)
        total = row_reduce(buf, ty, tx, total, False)
        if live:
            if code == SOFTMAX:
                inv = 1.0 / total
                for j in range(tx, n, rt):
                    y[i, j] = F.softmax_term(z[i, j], mx, inv)
            else:
                lse = mx + math.log(total)
                for j in range(tx, n, rt):
                    y[i, j] = F.log_softmax_term(z[i, j], lse)

    @cuda.jit
    def softmax_backward(dy, y, dz, code):
        """softmax: dz = y (dy - sum(dy y)); log_softmax: dz = dy - exp(y) sum(dy) (dz may be dy)."""
        buf = cuda.shared.array((rb, rt), np.float64)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        i = cuda.blockIdx.x * rb + ty
        m, n = dy.shape
        live = i < m
        acc = 0.0
        if live:
            for j in range(tx, n, rt):
                if code == SOFTMAX:
                    acc += float64(dy[i, j]) * float64(y[i, j])
                else:
                    acc += float64(dy[i, j])
        acc = row_reduce(buf, ty, tx, acc, False)
        if live:
            for j in range(tx, n, rt):
                if code == SOFTMAX:
                    dz[i, j] = F.softmax_derivative_term(dy[i, j], y[i, j], acc)
                else:
                    dz[i, j] = F.log_softmax_derivative_term(dy[i, j], y[i, j], acc)

    @cuda.jit
    def cross_entropy(logits, labels, targets, has_labels, dlogits, need_grad, row_loss, bad):
        """row_loss[i] = logsumexp(z_i) - z_i,label (or sum_j t_ij (logsumexp(z_i) - z_ij));
        dlogits = (softmax(z) - onehot) / batch (or (softmax(z) sum_j t_ij - t) / batch).
        Labels outside [0, classes) are recorded in bad = [max too large, min negative]
        (integer atomics: the recorded values do not depend on timing)."""
        buf = cuda.shared.array((rb, rt), np.float64)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        i = cuda.blockIdx.x * rb + ty
        m, n = logits.shape
        live = i < m
        inv_batch = 1.0 / m
        mx = row_max(logits, i, live, ty, tx, buf)
        s = 0.0
        if live:
            for j in range(tx, n, rt):
                s += math.exp(float64(logits[i, j]) - mx)
        s = row_reduce(buf, ty, tx, s, False)
        log_s = 0.0
        inv_s = 0.0
        if live:  # (rows past the end have s = 0)
            log_s = math.log(s)
            inv_s = 1.0 / s
        lab = 0
        z_lab = 0.0
        t_sum = 0.0
        part = 0.0
        if live:
            if has_labels:
                lab = labels[i]
                if lab >= n:
                    cuda.atomic.max(bad, 0, np.int64(lab))
                    lab = 0
                elif lab < 0:
                    cuda.atomic.min(bad, 1, np.int64(lab))
                    lab = 0
                z_lab = float64(logits[i, lab])  # read before the barrier: dlogits may be logits
            else:
                for j in range(tx, n, rt):
                    tj = float64(targets[i, j])
                    t_sum += tj
                    part += tj * F.cross_entropy_term(logits[i, j], mx, log_s)
        t_sum = row_reduce(buf, ty, tx, t_sum, False)
        part = row_reduce(buf, ty, tx, part, False)
        if live:
            if has_labels:
                if tx == 0:
                    row_loss[i] = F.cross_entropy_term(z_lab, mx, log_s)
                if need_grad:
                    for j in range(tx, n, rt):
                        dlogits[i, j] = F.cross_entropy_grad(math.exp(float64(logits[i, j]) - mx), inv_s, 1.0,
                                                             1.0 if j == lab else 0.0, inv_batch)
            else:
                if tx == 0:
                    row_loss[i] = part
                if need_grad:
                    for j in range(tx, n, rt):
                        dlogits[i, j] = F.cross_entropy_grad(math.exp(float64(logits[i, j]) - mx), inv_s, t_sum,
                                                             targets[i, j], inv_batch)

    return softmax_forward, softmax_backward, cross_entropy
