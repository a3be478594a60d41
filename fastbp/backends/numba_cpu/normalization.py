"""Normalization kernels: layer normalization (statistics of each row) and batch normalization
(of each column), forward and backward.

Statistics and sums are float64. A row's statistics take two passes over the row (mean, then the
squared deviations from it: no E[x^2] - E[x]^2), which stays in cache. A column's statistics are
merged from fixed chunks of NORM_ROWS rows, each chunk's (mean, M2) by two passes over the chunk
while it is in cache, the chunks combined in order by Chan's formula: one pass over x. Column
sums (dgamma, dbeta) add fixed chunks of rows in order. Everything depends on the shape only:
the same bits on any thread count. gamma and beta arrive as float64 arrays (ones and zeros when
absent, see :func:`affine`), so no optional value reaches a parallel loop. Each public kernel
is a wrapper that turns its optional (None) arguments into arrays and flags for a ``*_core``
function, which the compiled training loop (:mod:`fastbp.nn.compiled`) calls directly with its
own arrays and flags: the same code, the same bits.
"""
import numpy as np
from numba import float64, njit, prange

from .._cpu.tiling import NORM_ROWS, SERIAL_ELEMENTS
from ._formulas import F


@njit(cache=True, error_model="numpy")
def affine_flags(gamma, use_gamma, beta, use_beta, n):
    """(gamma, beta) as float64 arrays of n elements: ones and zeros where not used."""
    g = np.ones(n, np.float64)
    b = np.zeros(n, np.float64)
    if use_gamma:
        for j in range(n):
            g[j] = gamma[j]
    if use_beta:
        for j in range(n):
            b[j] = beta[j]
    return g, b


@njit(cache=True, error_model="numpy")
def affine(gamma, beta, n):
    """(gamma, beta) as float64 arrays of n elements: ones and zeros where absent (None)."""
    g = np.ones(n, np.float64)
    b = np.zeros(n, np.float64)
    if gamma is not None:
        for j in range(n):
            g[j] = gamma[j]
    if beta is not None:
        for j in range(n):
            b[j] = beta[j]
    return g, b


@njit(cache=True, error_model="numpy")
def _or_empty(a, like):
    """(a, True), or (an empty array of like's dtype, False) when a is None."""
    if a is None:
        return np.empty(0, like.dtype), False
    return a.reshape(-1), True


# --------------------------------------------------------------------------- layer normalization

@njit(cache=True, inline="always", error_model="numpy")
def _lanes(s0, s1, s2, s3, s4, s5, s6, s7):
    """The row sums' fixed combination of their eight lanes."""
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(cache=True, inline="always", error_model="numpy")
def row_moments(x, i):
    """(mean, M2) of row i, float64, by two passes. Each sum runs in eight lanes, lane l adding
    the columns j = l (mod 8) in order, the lanes combined by :func:`_lanes` (eight independent
    chains of additions: vectorized, where one chain is bound by the adder's latency)."""
    n = x.shape[1]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    for j in range(0, n - 7, 8):
        s0 += float64(x[i, j])
        s1 += float64(x[i, j + 1])
        s2 += float64(x[i, j + 2])
        s3 += float64(x[i, j + 3])
        s4 += float64(x[i, j + 4])
        s5 += float64(x[i, j + 5])
        s6 += float64(x[i, j + 6])
        s7 += float64(x[i, j + 7])
    t = n - n % 8
    for j in range(t, n):  # the last n % 8 columns: lanes 0 .. n % 8 - 1
        v = float64(x[i, j])
        if j == t:
            s0 += v
        elif j == t + 1:
            s1 += v
        elif j == t + 2:
            s2 += v
        elif j == t + 3:
            s3 += v
        elif j == t + 4:
            s4 += v
        elif j == t + 5:
            s5 += v
        else:
            s6 += v
    mu = _lanes(s0, s1, s2, s3, s4, s5, s6, s7) / n
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    for j in range(0, n - 7, 8):
        d0 = float64(x[i, j]) - mu
        d1 = float64(x[i, j + 1]) - mu
        d2 = float64(x[i, j + 2]) - mu
        d3 = float64(x[i, j + 3]) - mu
        d4 = float64(x[i, j + 4]) - mu
        d5 = float64(x[i, j + 5]) - mu
        d6 = float64(x[i, j + 6]) - mu
        d7 = float64(x[i, j + 7]) - mu
        s0 += d0 * d0
        s1 += d1 * d1
        s2 += d2 * d2
        s3 += d3 * d3
        s4 += d4 * d4
        s5 += d5 * d5
        s6 += d6 * d6
        s7 += d7 * d7
    for j in range(t, n):
        d = float64(x[i, j]) - mu
        if j == t:
            s0 += d * d
        elif j == t + 1:
            s1 += d * d
        elif j == t + 2:
            s2 += d * d
        elif j == t + 3:
            s3 += d * d
        elif j == t + 4:
            s4 += d * d
        elif j == t + 5:
            s5 += d * d
        else:
            s6 += d * d
    return mu, _lanes(s0, s1, s2, s3, s4, s5, s6, s7)


@njit(cache=True, inline="always", error_model="numpy")
def _layernorm_row(x, g, b, eps, y, mean, rstd, i):
    n = x.shape[1]
    mu, q = row_moments(x, i)
    r = F.inverse_std(q / n, eps)
    for j in range(n):
        y[i, j] = F.normalize(x[i, j], mu, r, g[j], b[j])
    mean[i] = mu
    rstd[i] = r


@njit(cache=True, parallel=True, error_model="numpy")
def _layernorm_forward_parallel(x, g, b, eps, y, mean, rstd):
    for i in prange(x.shape[0]):
        _layernorm_row(x, g, b, eps, y, mean, rstd, i)


@njit(cache=True, error_model="numpy")
def layernorm_forward(x, gamma, beta, eps, y, mean, rstd):
    """Per row i: mean_i, var_i (biased), rstd_i = 1 / sqrt(var_i + eps),
    y = (x - mean_i) rstd_i gamma + beta; gamma, beta may be None."""
    g, b = affine(gamma, beta, x.shape[1])
    layernorm_forward_core(x, g, b, eps, y, mean, rstd)


@njit(cache=True, error_model="numpy")
def layernorm_forward_core(x, g, b, eps, y, mean, rstd):
    """layernorm_forward with gamma and beta as float64 arrays (:func:`affine`)."""
    if x.size >= SERIAL_ELEMENTS:
        _layernorm_forward_parallel(x, g, b, eps, y, mean, rstd)
    else:
        for i in range(x.shape[0]):
            _layernorm_row(x, g, b, eps, y, mean, rstd, i)


@njit(cache=True, inline="always", error_model="numpy")
def _layernorm_backward_chunk(dy, x, g, mean, rstd, dx, want_dx, part_g, part_b, c):
    """Rows [c NORM_ROWS, ...) of dx, and their column sums of dy xhat and dy into part_g[c],
    part_b[c]."""
    m, n = x.shape
    pg, pb = part_g[c], part_b[c]
    for j in range(n):
        pg[j] = 0.0
        pb[j] = 0.0
    for i in range(c * NORM_ROWS, min(m, (c + 1) * NORM_ROWS)):
        mu = float64(mean[i])
        r = float64(rstd[i])
        for j in range(n):
            d = float64(dy[i, j])
            pg[j] += d * F.standardize(x[i, j], mu, r)
            pb[j] += d
        if want_dx:
            a, t = _row_grad_sums(dy, x, g, i, mu, r)
            a /= n
            t /= n
            for j in range(n):
                dx[i, j] = F.normalize_grad(float64(dy[i, j]) * g[j], F.standardize(x[i, j], mu, r), r, a, t)


@njit(cache=True, inline="always", error_model="numpy")
def _row_grad_sums(dy, x, g, i, mu, r):
    """(sum_j g_j, sum_j g_j xhat_j) of row i, g_j = dy_j gamma_j, in eight lanes as
    :func:`row_moments` sums."""
    n = x.shape[1]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = 0.0
    for j in range(0, n - 7, 8):
        g0 = float64(dy[i, j]) * g[j]
        g1 = float64(dy[i, j + 1]) * g[j + 1]
        g2 = float64(dy[i, j + 2]) * g[j + 2]
        g3 = float64(dy[i, j + 3]) * g[j + 3]
        g4 = float64(dy[i, j + 4]) * g[j + 4]
        g5 = float64(dy[i, j + 5]) * g[j + 5]
        g6 = float64(dy[i, j + 6]) * g[j + 6]
        g7 = float64(dy[i, j + 7]) * g[j + 7]
        a0 += g0
        a1 += g1
        a2 += g2
        a3 += g3
        a4 += g4
        a5 += g5
        a6 += g6
        a7 += g7
        t0 += g0 * F.standardize(x[i, j], mu, r)
        t1 += g1 * F.standardize(x[i, j + 1], mu, r)
        t2 += g2 * F.standardize(x[i, j + 2], mu, r)
        t3 += g3 * F.standardize(x[i, j + 3], mu, r)
        t4 += g4 * F.standardize(x[i, j + 4], mu, r)
        t5 += g5 * F.standardize(x[i, j + 5], mu, r)
        t6 += g6 * F.standardize(x[i, j + 6], mu, r)
        t7 += g7 * F.standardize(x[i, j + 7], mu, r)
    t = n - n % 8
    for j in range(t, n):
        gj = float64(dy[i, j]) * g[j]
        gx = gj * F.standardize(x[i, j], mu, r)
        if j == t:
            a0 += gj
            t0 += gx
        elif j == t + 1:
            a1 += gj
            t1 += gx
        elif j == t + 2:
            a2 += gj
            t2 += gx
        elif j == t + 3:
            a3 += gj
            t3 += gx
        elif j == t + 4:
            a4 += gj
            t4 += gx
        elif j == t + 5:
            a5 += gj
            t5 += gx
        else:
            a6 += gj
            t6 += gx
    return _lanes(a0, a1, a2, a3, a4, a5, a6, a7), _lanes(t0, t1, t2, t3, t4, t5, t6, t7)


@njit(cache=True, parallel=True, error_model="numpy")
def _layernorm_backward_parallel(dy, x, g, mean, rstd, dx, want_dx, part_g, part_b):
    for c in prange(part_g.shape[0]):
        _layernorm_backward_chunk(dy, x, g, mean, rstd, dx, want_dx, part_g, part_b, c)


@njit(cache=True, error_model="numpy")
def column_sums(part, out):
    """out[j] = sum over chunks c of part[c, j], in chunk order."""
    for j in range(out.shape[0]):
        total = 0.0
        for c in range(part.shape[0]):
            total += part[c, j]
        out[j] = total


@njit(cache=True, error_model="numpy")
def layernorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    """dx = rstd_i (g - mean_j(g) - xhat mean_j(g xhat)), g = dy gamma; dgamma = sum_i dy xhat;
    dbeta = sum_i dy. gamma, dx, dgamma, dbeta may be None."""
    g, _ = affine(gamma, None, x.shape[1])
    work = dx if dx is not None else np.empty((0, x.shape[1]), x.dtype)
    dg, want_dg = _or_empty(dgamma, x)
    db, want_db = _or_empty(dbeta, x)
    layernorm_backward_core(dy, x, g, mean, rstd, work, dx is not None, dg, want_dg, db, want_db)


@njit(cache=True, error_model="numpy")
def layernorm_backward_core(dy, x, g, mean, rstd, dx, want_dx, dgamma, want_dgamma, dbeta, want_dbeta):
    """layernorm_backward with gamma as a float64 array and flags for the outputs to write."""
    m, n = x.shape
    chunks = -(-m // NORM_ROWS)
    part_g = np.empty((chunks, n), np.float64)
    part_b = np.empty((chunks, n), np.float64)
    if x.size >= SERIAL_ELEMENTS:
        _layernorm_backward_parallel(dy, x, g, mean, rstd, dx, want_dx, part_g, part_b)
    else:
        for c in range(chunks):
            _layernorm_backward_chunk(dy, x, g, mean, rstd, dx, want_dx, part_g, part_b, c)
    if want_dgamma:
        column_sums(part_g, dgamma)
    if want_dbeta:
        column_sums(part_b, dbeta)


# --------------------------------------------------------------------------- batch normalization

@njit(cache=True, inline="always", error_model="numpy")
def _chunk_moments(x, c, cmean, cm2):
    """cmean[c, j], cm2[c, j]: the mean and M2 of column j over rows [c NORM_ROWS, ...), by two
    passes over those rows."""
    m, n = x.shape
    r0, r1 = c * NORM_ROWS, min(m, (c + 1) * NORM_ROWS)
    mu, q = cmean[c], cm2[c]
    for j in range(n):
        mu[j] = 0.0
        q[j] = 0.0
    for i in range(r0, r1):
        for j in range(n):
            mu[j] += float64(x[i, j])
    for j in range(n):
        mu[j] /= r1 - r0
    for i in range(r0, r1):
        for j in range(n):
            d = float64(x[i, j]) - mu[j]
            q[j] += d * d


@njit(cache=True, parallel=True, error_model="numpy")
def _chunk_moments_parallel(x, cmean, cm2):
    for c in prange(cmean.shape[0]):
        _chunk_moments(x, c, cmean, cm2)


@njit(cache=True, error_model="numpy")
def batch_moments(x, mean, m2):
    """mean[j] and M2[j] (sum of squared deviations) of each column of x, float64: the chunks'
    moments merged in chunk order by Chan's formula."""
    m, n = x.shape
    chunks = -(-m // NORM_ROWS)
    cmean = np.empty((chunks, n), np.float64)
    cm2 = np.empty((chunks, n), np.float64)
    if x.size >= SERIAL_ELEMENTS:
        _chunk_moments_parallel(x, cmean, cm2)
    else:
        for c in range(chunks):
            _chunk_moments(x, c, cmean, cm2)
    for j in range(n):
        count = 0.0
        mu = 0.0
        q = 0.0
        for c in range(chunks):
            rows = float64(min(m, (c + 1) * NORM_ROWS) - c * NORM_ROWS)
            mu, q = F.chan_merge(count, mu, q, rows, cmean[c, j], cm2[c, j])
            count += rows
        mean[j] = mu
        m2[j] = q


@njit(cache=True, inline="always", error_model="numpy")
def _normalize_rows(x, mean, rstd, g, b, y, r0, r1):
    """y[i, j] = (x[i, j] - mean[j]) rstd[j] g[j] + b[j] for rows [r0, r1)."""
    for i in range(r0, r1):
        for j in range(x.shape[1]):
            y[i, j] = F.normalize(x[i, j], mean[j], rstd[j], g[j], b[j])


@njit(cache=True, parallel=True, error_model="numpy")
def _normalize_parallel(x, mean, rstd, g, b, y):
    m = x.shape[0]
    for c in prange(-(-m // NORM_ROWS)):
        _normalize_rows(x, mean, rstd, g, b, y, c * NORM_ROWS, min(m, (c + 1) * NORM_ROWS))


@njit(cache=True, error_model="numpy")
def batchnorm_forward(x, gamma, beta, eps, running_mean, running_var, momentum, training, unbiased, y, mean,
                      rstd):
    """Training: the batch's mean_j and biased var_j (running statistics updated when given:
    (1 - momentum) running + momentum stat, the variance unbiased, M2 / (n - 1), when
    ``unbiased``); otherwise the running statistics. rstd_j = 1 / sqrt(var_j + eps),
    y = (x - mean_j) rstd_j gamma + beta. gamma, beta, running_mean, running_var may be None."""
    g, b = affine(gamma, beta, x.shape[1])
    rm, use_running = _or_empty(running_mean, x)
    rv, _ = _or_empty(running_var, x)
    batchnorm_forward_core(x, g, b, eps, rm, rv, use_running, momentum, training, unbiased, y, mean, rstd)


@njit(cache=True, error_model="numpy")
def batchnorm_forward_core(x, g, b, eps, running_mean, running_var, use_running, momentum, training, unbiased, y,
                           mean, rstd):
    """batchnorm_forward with gamma and beta as float64 arrays and a flag for the running
    statistics (both used, or neither)."""
    m, n = x.shape
    mu = np.empty(n, np.float64)
    r = np.empty(n, np.float64)
    if training:
        q = np.empty(n, np.float64)
        batch_moments(x, mu, q)
        for j in range(n):
            r[j] = F.inverse_std(q[j] / m, eps)
        if use_running:
            for j in range(n):
                var = q[j] / (m - 1) if unbiased else q[j] / m
                running_mean[j] = F.running_update(running_mean[j], mu[j], momentum)
                running_var[j] = F.running_update(running_var[j], var, momentum)
    elif use_running:
        for j in range(n):
            mu[j] = running_mean[j]
            r[j] = F.inverse_std(float64(running_var[j]), eps)
    if x.size >= SERIAL_ELEMENTS:
        _normalize_parallel(x, mu, r, g, b, y)
    else:
        _normalize_rows(x, mu, r, g, b, y, 0, m)
    for j in range(n):
        mean[j] = mu[j]
        rstd[j] = r[j]


@njit(cache=True, inline="always", error_model="numpy")
def _batchnorm_sums_chunk(dy, x, mean, rstd, part_dy, part_dyx, c):
    """part_dy[c, j], part_dyx[c, j]: sums of dy and dy xhat over rows [c NORM_ROWS, ...)."""
    m, n = x.shape
    pd, px = part_dy[c], part_dyx[c]
    for j in range(n):
        pd[j] = 0.0
        px[j] = 0.0
    for i in range(c * NORM_ROWS, min(m, (c + 1) * NORM_ROWS)):
        for j in range(n):
            d = float64(dy[i, j])
            pd[j] += d
            px[j] += d * F.standardize(x[i, j], mean[j], rstd[j])


@njit(cache=True, parallel=True, error_model="numpy")
def _batchnorm_sums_parallel(dy, x, mean, rstd, part_dy, part_dyx):
    for c in prange(part_dy.shape[0]):
        _batchnorm_sums_chunk(dy, x, mean, rstd, part_dy, part_dyx, c)


@njit(cache=True, inline="always", error_model="numpy")
def _batchnorm_dx_rows(dy, x, mean, rstd, scale, mean_dy, mean_dyx, dx, r0, r1):
    for i in range(r0, r1):
        for j in range(x.shape[1]):
            dx[i, j] = F.normalize_grad(dy[i, j], F.standardize(x[i, j], mean[j], rstd[j]), scale[j], mean_dy[j],
                                        mean_dyx[j])


@njit(cache=True, parallel=True, error_model="numpy")
def _batchnorm_dx_parallel(dy, x, mean, rstd, scale, mean_dy, mean_dyx, dx):
    m = x.shape[0]
    for c in prange(-(-m // NORM_ROWS)):
        _batchnorm_dx_rows(dy, x, mean, rstd, scale, mean_dy, mean_dyx, dx, c * NORM_ROWS,
                           min(m, (c + 1) * NORM_ROWS))


@njit(cache=True, error_model="numpy")
def batchnorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    """dbeta = sum_i dy; dgamma = sum_i dy xhat; dx = gamma_j rstd_j (dy - dbeta / n - xhat
    dgamma / n). gamma, dx, dgamma, dbeta may be None."""
    g, _ = affine(gamma, None, x.shape[1])
    work = dx if dx is not None else np.empty((0, x.shape[1]), x.dtype)
    dg, want_dg = _or_empty(dgamma, x)
    db, want_db = _or_empty(dbeta, x)
    batchnorm_backward_core(dy, x, g, mean, rstd, work, dx is not None, dg, want_dg, db, want_db)


@njit(cache=True, error_model="numpy")
def batchnorm_backward_core(dy, x, g, mean, rstd, dx, want_dx, dgamma, want_dgamma, dbeta, want_dbeta):
    """batchnorm_backward with gamma as a float64 array and flags for the outputs to write."""
    m, n = x.shape
    mu = np.empty(n, np.float64)
    r = np.empty(n, np.float64)
    for j in range(n):
        mu[j] = mean[j]
        r[j] = rstd[j]
    chunks = -(-m // NORM_ROWS)
    part_dy = np.empty((chunks, n), np.float64)
    part_dyx = np.empty((chunks, n), np.float64)
    parallel = x.size >= SERIAL_ELEMENTS
    if parallel:
        _batchnorm_sums_parallel(dy, x, mu, r, part_dy, part_dyx)
    else:
        for c in range(chunks):
            _batchnorm_sums_chunk(dy, x, mu, r, part_dy, part_dyx, c)
    sum_dy = np.empty(n, np.float64)
    sum_dyx = np.empty(n, np.float64)
    column_sums(part_dy, sum_dy)
    column_sums(part_dyx, sum_dyx)
    if want_dgamma:
        for j in range(n):
            dgamma[j] = sum_dyx[j]
    if want_dbeta:
        for j in range(n):
            dbeta[j] = sum_dy[j]
    if want_dx and m > 0:
        scale = np.empty(n, np.float64)
        for j in range(n):
            scale[j] = g[j] * r[j]
            sum_dy[j] /= m
            sum_dyx[j] /= m
        if parallel:
            _batchnorm_dx_parallel(dy, x, mu, r, scale, sum_dy, sum_dyx, dx)
        else:
            _batchnorm_dx_rows(dy, x, mu, r, scale, sum_dy, sum_dyx, dx, 0, m)
