"""Normalization kernels: layer normalization (statistics of each row) and batch normalization
(of each column), forward and backward.

Statistics and sums are float64 and deterministic (fixed grids, fixed orders, no atomics):

* A row's statistics (layer normalization) come from a block of (row_threads, rows_per_block)
  threads, as in :mod:`.rows`: the ``row_threads`` threads of a row stride along it and combine
  their values through a fixed tree in shared memory. Two passes: the mean, then the squared
  deviations from it (no E[x^2] - E[x]^2). The backward's two row means (of g = dy gamma and of
  g xhat) likewise.
* A column's statistics (batch normalization) follow the CPU kernels: stage 1 takes (mean, M2) of
  each fixed chunk of ``col_chunk`` rows by two passes over the chunk (one thread per column and
  chunk); stage 2 merges the chunks in order by Chan's formula (``F.chan_merge``), one thread per
  column. Column sums (dgamma, dbeta, and the batch-norm backward's sums of dy and dy xhat) add
  the rows of each chunk in order (stage 1) and the chunks in order (stage 2).
* Normalizing and the batch-norm dx are elementwise (grid-stride) over the (m, n) elements.

gamma, beta and the other optional arrays arrive with a flag (``has_gamma``, ...) and a typed
stand-in that is never read or written where the flag is False.
"""
from __future__ import annotations

import collections
import functools

import numpy as np
from numba import cuda, float64

from ._formulas import F
from ._jit import device_function

RowKernels = collections.namedtuple("RowKernels", "layernorm_forward layernorm_backward_dx")


@functools.lru_cache(maxsize=None)
def row_kernels(row_threads: int, rows_per_block: int) -> RowKernels:
    """The layer-norm kernels for blocks of (row_threads, rows_per_block) threads (row_threads a
    power of 2). Every thread of a block reaches every barrier (threads past the last row sum
    zeros)."""
    rt, rb = row_threads, rows_per_block

    @device_function
    def row_sum(buf, ty, tx, value):
        """The sum of ``value`` over the row's threads, by a fixed tree; every thread gets it."""
        buf[ty, tx] = value
        cuda.syncthreads()
        s = rt // 2
        while s > 0:
            if tx < s:
                buf[ty, tx] += buf[ty, tx + s]
            cuda.syncthreads()
            s //= 2
        result = buf[ty, 0]
        cuda.syncthreads()
        return result

    @cuda.jit
    def layernorm_forward(x, gamma, beta, has_gamma, has_beta, eps, y, mean, rstd):
        """Per row i: mean_i, rstd_i = 1 / sqrt(var_i + eps) (biased variance, two passes),
        y = (x - mean_i) rstd_i gamma + beta."""
        buf = cuda.shared.array((rb, rt), np.float64)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        i = cuda.blockIdx.x * rb + ty
        m, n = x.shape
        live = i < m
        s = 0.0
        if live:
            for j in range(tx, n, rt):
                s += float64(x[i, j])
        s = row_sum(buf, ty, tx, s)
        mu = s / n
        q = 0.0
        if live:
            for j in range(tx, n, rt):
                d = float64(x[i, j]) - mu
                q += d * d
        q = row_sum(buf, ty, tx, q)
        if live:
            r = F.inverse_std(q / n, eps)
            for j in range(tx, n, rt):
                gj = float64(gamma[j]) if has_gamma else 1.0
                bj = float64(beta[j]) if has_beta else 0.0
                y[i, j] = F.normalize(x[i, j], mu, r, gj, bj)
            if tx == 0:
                mean[i] = mu
                rstd[i] = r

    @cuda.jit
    def layernorm_backward_dx(dy, x, gamma, has_gamma, mean, rstd, dx):
        """Per row i, with g = dy gamma and xhat = (x - mean_i) rstd_i:
        dx = rstd_i (g - mean_j(g) - xhat mean_j(g xhat))."""
        buf = cuda.shared.array((rb, rt), np.float64)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        i = cuda.blockIdx.x * rb + ty
        m, n = x.shape
        live = i < m
        mu = 0.0
        r = 0.0
        a = 0.0
        t = 0.0
        if live:
            mu = float64(mean[i])
            r = float64(rstd[i])
            for j in range(tx, n, rt):
                gj = float64(dy[i, j]) * (float64(gamma[j]) if has_gamma else 1.0)
                a += gj
                t += gj * F.standardize(x[i, j], mu, r)
        a = row_sum(buf, ty, tx, a)
        t = row_sum(buf, ty, tx, t)
        if live:
            a /= n
            t /= n
            for j in range(tx, n, rt):
                gj = float64(dy[i, j]) * (float64(gamma[j]) if has_gamma else 1.0)
                dx[i, j] = F.normalize_grad(gj, F.standardize(x[i, j], mu, r), r, a, t)

    return RowKernels(layernorm_forward, layernorm_backward_dx)


# --------------------------------------------------------------- column reductions (fixed chunks)
#
# Stage 1 runs on a grid of (ceil(n / threads), chunks) blocks of ``threads`` threads: thread j of
# block (bx, c) handles column bx * threads + j over rows [c chunk, min(m, (c + 1) chunk)).
# Stage 2 runs on ceil(n / threads) blocks: one thread per column, the chunks in order.

@device_function
def _chunk_rows(c, chunk, m):
    """The rows [r0, r1) of chunk c."""
    r0 = c * chunk
    return r0, min(m, r0 + chunk)


@cuda.jit
def moments_stage1(x, chunk, cmean, cm2):
    """cmean[c, j], cm2[c, j]: the mean and M2 (sum of squared deviations) of column j over the
    rows of chunk c, by two passes over them."""
    m, n = x.shape
    j = cuda.grid(1)
    c = cuda.blockIdx.y
    if j >= n:
        return
    r0, r1 = _chunk_rows(c, chunk, m)
    s = 0.0
    for i in range(r0, r1):
        s += float64(x[i, j])
    mu = s / (r1 - r0)
    q = 0.0
    for i in range(r0, r1):
        d = float64(x[i, j]) - mu
        q += d * d
    cmean[c, j] = mu
    cm2[c, j] = q


@cuda.jit
def batch_statistics(cmean, cm2, chunks, chunk, m, eps, training, unbiased, running_mean, running_var, has_running,
                     momentum, mean, rstd, mean64, rstd64):
    """Per column j. Training: the chunks' moments merged in order by Chan's formula, rstd from
    the biased variance M2 / m, and (has_running) the running statistics updated, the variance
    M2 / (m - 1) when ``unbiased``. Otherwise mean and rstd from the running statistics. Writes
    mean, rstd (the dtype) and mean64, rstd64 (float64, what the normalization uses)."""
    n = mean.shape[0]
    j = cuda.grid(1)
    if j >= n:
        return
    if training:
        count = 0.0
        mu = 0.0
        q = 0.0
        for c in range(chunks):
            r0, r1 = _chunk_rows(c, chunk, m)
            rows = float64(r1 - r0)
            mu, q = F.chan_merge(count, mu, q, rows, cmean[c, j], cm2[c, j])
            count += rows
        r = F.inverse_std(q / m, eps)
        if has_running:
            var = q / (m - 1) if unbiased else q / m
            running_mean[j] = F.running_update(running_mean[j], mu, momentum)
            running_var[j] = F.running_update(running_var[j], var, momentum)
    else:
        mu = float64(running_mean[j])
        r = F.inverse_std(float64(running_var[j]), eps)
    mean64[j] = mu
    rstd64[j] = r
    mean[j] = mu
    rstd[j] = r


@cuda.jit
def layernorm_sums_stage1(dy, x, mean, rstd, chunk, need_g, need_b, part_g, part_b):
    """part_g[c, j] = sum of dy xhat and part_b[c, j] = sum of dy over the rows of chunk c
    (xhat = (x - mean_i) rstd_i, the row statistics)."""
    m, n = x.shape
    j = cuda.grid(1)
    c = cuda.blockIdx.y
    if j >= n:
        return
    r0, r1 = _chunk_rows(c, chunk, m)
    sg = 0.0
    sb = 0.0
    for i in range(r0, r1):
        d = float64(dy[i, j])
        if need_g:
            sg += d * F.standardize(x[i, j], float64(mean[i]), float64(rstd[i]))
        sb += d
    if need_g:
        part_g[c, j] = sg
    if need_b:
        part_b[c, j] = sb


@cuda.jit
def column_sums_stage2(part_g, part_b, chunks, dgamma, need_g, dbeta, need_b):
    """dgamma[j] = sum over chunks of part_g[c, j], dbeta likewise from part_b, in chunk order
    (zeros for no chunks: an empty batch)."""
    n = part_g.shape[1]
    j = cuda.grid(1)
    if j >= n:
        return
    sg = 0.0
    sb = 0.0
    for c in range(chunks):
        if need_g:
            sg += part_g[c, j]
        if need_b:
            sb += part_b[c, j]
    if need_g:
        dgamma[j] = sg
    if need_b:
        dbeta[j] = sb


@cuda.jit
def batchnorm_sums_stage1(dy, x, mean, rstd, chunk, part_dy, part_dyx):
    """part_dy[c, j] = sum of dy and part_dyx[c, j] = sum of dy xhat over the rows of chunk c
    (xhat = (x - mean_j) rstd_j, the column statistics)."""
    m, n = x.shape
    j = cuda.grid(1)
    c = cuda.blockIdx.y
    if j >= n:
        return
    r0, r1 = _chunk_rows(c, chunk, m)
    mu = float64(mean[j])
    r = float64(rstd[j])
    sd = 0.0
    sx = 0.0
    for i in range(r0, r1):
        d = float64(dy[i, j])
        sd += d
        sx += d * F.standardize(x[i, j], mu, r)
    part_dy[c, j] = sd
    part_dyx[c, j] = sx


@cuda.jit
def batchnorm_sums_stage2(part_dy, part_dyx, chunks, m, gamma, has_gamma, rstd, dgamma, need_dgamma, dbeta,
                          need_dbeta, need_dx, scale, mean_dy, mean_dyx):
    """Per column j, the chunks in order: dbeta = sum dy, dgamma = sum dy xhat (where asked); for
    dx (need_dx, m > 0): scale = gamma_j rstd_j, mean_dy = sum dy / m, mean_dyx = sum dy xhat / m
    (float64)."""
    n = part_dy.shape[1]
    j = cuda.grid(1)
    if j >= n:
        return
    sd = 0.0
    sx = 0.0
    for c in range(chunks):
        sd += part_dy[c, j]
        sx += part_dyx[c, j]
    if need_dgamma:
        dgamma[j] = sx
    if need_dbeta:
        dbeta[j] = sd
    if need_dx:
        gj = float64(gamma[j]) if has_gamma else 1.0
        scale[j] = gj * float64(rstd[j])
        mean_dy[j] = sd / m
        mean_dyx[j] = sx / m


# ------------------------------------------------------------------------- elementwise (m, n)

@cuda.jit
def batchnorm_normalize(x, mean64, rstd64, gamma, beta, has_gamma, has_beta, y):
    """y[i, j] = (x[i, j] - mean_j) rstd_j gamma_j + beta_j, grid-stride over the m n elements."""
    m, n = x.shape
    for k in range(cuda.grid(1), m * n, cuda.gridsize(1)):
        i = k // n
        j = k - i * n
        gj = float64(gamma[j]) if has_gamma else 1.0
        bj = float64(beta[j]) if has_beta else 0.0
        y[i, j] = F.normalize(x[i, j], mean64[j], rstd64[j], gj, bj)


@cuda.jit
def batchnorm_dx(dy, x, mean, rstd, scale, mean_dy, mean_dyx, dx):
    """dx[i, j] = gamma_j rstd_j (dy - mean_i(dy) - xhat mean_i(dy xhat)), grid-stride."""
    m, n = x.shape
    for k in range(cuda.grid(1), m * n, cuda.gridsize(1)):
        i = k // n
        j = k - i * n
        xh = F.standardize(x[i, j], float64(mean[j]), float64(rstd[j]))
        dx[i, j] = F.normalize_grad(dy[i, j], xh, scale[j], mean_dy[j], mean_dyx[j])
