# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Normalization kernels: layer normalization (statistics of each row) and batch normalization
(of each column), forward and backward: the same algorithm as ``numba_cpu/normalization.py``, on
the scalar formulas of ``_formulas.pxd`` (generated from fastbp/formulas.py).

Statistics and sums are double. A row's statistics take two passes over the row (mean, then the
squared deviations from it). A column's statistics are merged from fixed chunks of ``norm_rows``
rows (the caller passes fastbp.backends._cpu.tiling's NORM_ROWS), each chunk's (mean, M2) by two
passes over the chunk, the chunks combined in order by Chan's formula. Column sums (dgamma,
dbeta) add the same fixed chunks of rows in order. Every element's operations and their order
are those of the numba kernels, so the bits are theirs, on any thread count. ``num_threads`` 1
runs on the calling thread (the caller passes 1 below SERIAL_ELEMENTS, as the numba dispatch
does). gamma and beta become double arrays (ones and zeros when None) before any loop. Outputs
never alias inputs.
"""
import numpy as np

from cython.parallel cimport prange

from . cimport _formulas as F
from ._formulas cimport FORMULAS_DIGEST, floating


def formulas_digest():
    """The digest of the formula sources this module was generated from (see _codegen.py)."""
    return FORMULAS_DIGEST.decode()


cdef double[::1] _affine(a, Py_ssize_t n, double fill):
    """``a`` (n elements, or None) as a double array; ``fill`` everywhere when it is None (the
    numba kernels' ``affine``: float32 widens exactly)."""
    if a is None:
        return np.full(n, fill, np.float64)
    return np.ascontiguousarray(a, dtype=np.float64)


cdef void _column_sums(double* part, Py_ssize_t chunks, Py_ssize_t n, double* out) noexcept nogil:
    """out[j] = sum over chunks c of part[c, j], in chunk order (double)."""
    cdef Py_ssize_t j, c
    cdef double total
    for j in range(n):
        total = 0.0
        for c in range(chunks):
            total += part[c * n + j]
        out[j] = total


# --------------------------------------------------------------------------- layer normalization

cdef inline double _lanes(double* s) noexcept nogil:
    """The row sums' fixed combination of their eight lanes (numba's ``_lanes``)."""
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))


cdef void _row_moments(floating* x, Py_ssize_t n, double* mean, double* m2) noexcept nogil:
    """The mean and M2 of a row by two passes, each sum in eight lanes (lane l adds the columns
    j = l (mod 8) in order): numba's ``row_moments``, the same bits."""
    cdef Py_ssize_t j, l
    cdef double s[8]
    cdef double mu, d
    for l in range(8):
        s[l] = 0.0
    for j in range(0, n - 7, 8):
        for l in range(8):
            s[l] += x[j + l]
    for j in range(n - n % 8, n):
        s[j % 8] += x[j]
    mu = _lanes(s) / n
    for l in range(8):
        s[l] = 0.0
    for j in range(0, n - 7, 8):
        for l in range(8):
            d = x[j + l] - mu
            s[l] += d * d
    for j in range(n - n % 8, n):
        d = x[j] - mu
        s[j % 8] += d * d
    mean[0] = mu
    m2[0] = _lanes(s)


cdef void _row_grad_sums(floating* dy, floating* x, double* g, Py_ssize_t n, double mu, double r, double* a,
                         double* t) noexcept nogil:
    """(sum_j g_j, sum_j g_j xhat_j) of a row, g_j = dy_j gamma_j, in eight lanes (numba's
    ``_row_grad_sums``)."""
    cdef Py_ssize_t j, l
    cdef double sa[8]
    cdef double st[8]
    cdef double gj
    for l in range(8):
        sa[l] = 0.0
        st[l] = 0.0
    for j in range(0, n - 7, 8):
        for l in range(8):
            gj = <double>dy[j + l] * g[j + l]
            sa[l] += gj
            st[l] += gj * F.standardize(x[j + l], mu, r)
    for j in range(n - n % 8, n):
        gj = <double>dy[j] * g[j]
        sa[j % 8] += gj
        st[j % 8] += gj * F.standardize(x[j], mu, r)
    a[0] = _lanes(sa)
    t[0] = _lanes(st)


cdef void _layernorm_row(floating* x, double* g, double* b, double eps, floating* y, floating* mean,
                         floating* rstd, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """Row i (x, y point at the row): its mean and rstd, and y."""
    cdef Py_ssize_t j
    cdef double q, mu, r
    _row_moments(x, n, &mu, &q)
    r = F.inverse_std(q / n, eps)
    for j in range(n):
        y[j] = <floating>F.normalize(x[j], mu, r, g[j], b[j])
    mean[i] = <floating>mu
    rstd[i] = <floating>r


def layernorm_forward(const floating[:, ::1] x, gamma, beta, double eps, floating[:, ::1] y, floating[::1] mean,
                      floating[::1] rstd, int num_threads):
    """Per row i: mean_i, var_i (biased), rstd_i = 1 / sqrt(var_i + eps),
    y = (x - mean_i) rstd_i gamma + beta; gamma, beta may be None."""
    cdef Py_ssize_t m = x.shape[0], n = x.shape[1], i
    cdef double[::1] g = _affine(gamma, n, 1.0)
    cdef double[::1] b = _affine(beta, n, 0.0)
    cdef floating* xp
    cdef floating* yp
    cdef floating* mp
    cdef floating* rp
    cdef double* gp
    cdef double* bp
    if m == 0 or n == 0:
        return
    xp, yp, mp, rp = <floating*>&x[0, 0], &y[0, 0], &mean[0], &rstd[0]
    gp, bp = &g[0], &b[0]
    if num_threads > 1:
        for i in prange(m, nogil=True, num_threads=num_threads, schedule="static"):
            _layernorm_row(xp + i * n, gp, bp, eps, yp + i * n, mp, rp, i, n)
    else:
        with nogil:
            for i in range(m):
                _layernorm_row(xp + i * n, gp, bp, eps, yp + i * n, mp, rp, i, n)


cdef void _layernorm_backward_chunk(floating* dy, floating* x, double* g, floating* mean, floating* rstd,
                                    floating* dx, double* pg, double* pb, Py_ssize_t r0, Py_ssize_t r1,
                                    Py_ssize_t n) noexcept nogil:
    """Rows [r0, r1) of dx (when dx is not NULL), and their column sums of dy xhat and dy into pg,
    pb (the chunk's rows of the partial sums)."""
    cdef Py_ssize_t i, j
    cdef double mu, r, a, t, d, xh, gj
    cdef floating* dyr
    cdef floating* xr
    cdef floating* dxr
    for j in range(n):
        pg[j] = 0.0
        pb[j] = 0.0
    for i in range(r0, r1):
        mu = mean[i]
        r = rstd[i]
        dyr = dy + i * n
        xr = x + i * n
        for j in range(n):
            d = dyr[j]
            pg[j] += d * F.standardize(xr[j], mu, r)
            pb[j] += d
        if dx != NULL:
            _row_grad_sums(dyr, xr, g, n, mu, r, &a, &t)
            a /= n
            t /= n
            dxr = dx + i * n
            for j in range(n):
                dxr[j] = <floating>F.normalize_grad(<double>dyr[j] * g[j], F.standardize(xr[j], mu, r), r, a, t)


def layernorm_backward(const floating[:, ::1] dy, const floating[:, ::1] x, gamma, const floating[::1] mean,
                       const floating[::1] rstd, floating[:, ::1] dx, floating[::1] dgamma, floating[::1] dbeta,
                       Py_ssize_t norm_rows, int num_threads):
    """dx = rstd_i (g - mean_j(g) - xhat mean_j(g xhat)), g = dy gamma; dgamma = sum_i dy xhat;
    dbeta = sum_i dy, over fixed chunks of norm_rows rows. gamma, dx, dgamma, dbeta may be None."""
    cdef Py_ssize_t m = x.shape[0], n = x.shape[1], chunks = (m + norm_rows - 1) // norm_rows, c, j
    cdef double[::1] g = _affine(gamma, n, 1.0)
    cdef double[:, ::1] part_g = np.empty((chunks, n), np.float64)
    cdef double[:, ::1] part_b = np.empty((chunks, n), np.float64)
    cdef double[::1] sums = np.empty(n, np.float64)
    cdef floating* dyp
    cdef floating* xp
    cdef floating* mp
    cdef floating* rp
    cdef floating* dxp = NULL if dx is None else &dx[0, 0]
    cdef double* gp
    cdef double* pgp
    cdef double* pbp
    if n == 0:
        return
    gp = &g[0]
    if m > 0:
        dyp, xp, mp, rp = <floating*>&dy[0, 0], <floating*>&x[0, 0], <floating*>&mean[0], <floating*>&rstd[0]
        pgp, pbp = &part_g[0, 0], &part_b[0, 0]
        if num_threads > 1:
            for c in prange(chunks, nogil=True, num_threads=num_threads, schedule="static"):
                _layernorm_backward_chunk(dyp, xp, gp, mp, rp, dxp, pgp + c * n, pbp + c * n, c * norm_rows,
                                          min(m, (c + 1) * norm_rows), n)
        else:
            with nogil:
                for c in range(chunks):
                    _layernorm_backward_chunk(dyp, xp, gp, mp, rp, dxp, pgp + c * n, pbp + c * n, c * norm_rows,
                                              min(m, (c + 1) * norm_rows), n)
    if dgamma is not None:
        _column_sums(&part_g[0, 0] if chunks > 0 else NULL, chunks, n, &sums[0])
        for j in range(n):
            dgamma[j] = <floating>sums[j]
    if dbeta is not None:
        _column_sums(&part_b[0, 0] if chunks > 0 else NULL, chunks, n, &sums[0])
        for j in range(n):
            dbeta[j] = <floating>sums[j]


# --------------------------------------------------------------------------- batch normalization

cdef void _chunk_moments(floating* x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n, double* mu,
                         double* q) noexcept nogil:
    """mu[j], q[j]: the mean and M2 of column j over rows [r0, r1), by two passes over those rows."""
    cdef Py_ssize_t i, j
    cdef double d
    cdef floating* row
    for j in range(n):
        mu[j] = 0.0
        q[j] = 0.0
    for i in range(r0, r1):
        row = x + i * n
        for j in range(n):
            mu[j] += row[j]
    for j in range(n):
        mu[j] /= r1 - r0
    for i in range(r0, r1):
        row = x + i * n
        for j in range(n):
            d = row[j] - mu[j]
            q[j] += d * d


cdef void _batch_moments(floating* x, Py_ssize_t m, Py_ssize_t n, double* mean, double* m2, Py_ssize_t norm_rows,
                         int num_threads):
    """mean[j] and M2[j] (sum of squared deviations) of each column of x (m rows, m > 0): the
    chunks' moments merged in chunk order by Chan's formula."""
    cdef Py_ssize_t chunks = (m + norm_rows - 1) // norm_rows, c, j
    cdef double[:, ::1] cmean_ = np.empty((chunks, n), np.float64)
    cdef double[:, ::1] cm2_ = np.empty((chunks, n), np.float64)
    cdef double* cmean = &cmean_[0, 0]
    cdef double* cm2 = &cm2_[0, 0]
    cdef double count, mu, q, rows
    if num_threads > 1:
        for c in prange(chunks, nogil=True, num_threads=num_threads, schedule="static"):
            _chunk_moments(x, c * norm_rows, min(m, (c + 1) * norm_rows), n, cmean + c * n, cm2 + c * n)
    else:
        with nogil:
            for c in range(chunks):
                _chunk_moments(x, c * norm_rows, min(m, (c + 1) * norm_rows), n, cmean + c * n, cm2 + c * n)
    with nogil:
        for j in range(n):
            count = 0.0
            mu = 0.0
            q = 0.0
            for c in range(chunks):
                rows = <double>(min(m, (c + 1) * norm_rows) - c * norm_rows)
                mu, q = F.chan_merge(count, mu, q, rows, cmean[c * n + j], cm2[c * n + j])
                count += rows
            mean[j] = mu
            m2[j] = q


cdef void _normalize_rows(floating* x, double* mean, double* rstd, double* g, double* b, floating* y,
                          Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n) noexcept nogil:
    """y[i, j] = (x[i, j] - mean[j]) rstd[j] g[j] + b[j] for rows [r0, r1)."""
    cdef Py_ssize_t i, j
    cdef floating* xr
    cdef floating* yr
    for i in range(r0, r1):
        xr = x + i * n
        yr = y + i * n
        for j in range(n):
            yr[j] = <floating>F.normalize(xr[j], mean[j], rstd[j], g[j], b[j])


def batchnorm_forward(const floating[:, ::1] x, gamma, beta, double eps, floating[::1] running_mean,
                      floating[::1] running_var, double momentum, bint training, bint unbiased, floating[:, ::1] y,
                      floating[::1] mean, floating[::1] rstd, Py_ssize_t norm_rows, int num_threads):
    """Training: the batch's mean_j and biased var_j (running statistics updated when given:
    (1 - momentum) running + momentum stat, the variance unbiased, M2 / (n - 1), when
    ``unbiased``); otherwise the running statistics. rstd_j = 1 / sqrt(var_j + eps),
    y = (x - mean_j) rstd_j gamma + beta. gamma, beta, running_mean, running_var may be None."""
    cdef Py_ssize_t m = x.shape[0], n = x.shape[1], chunks = (m + norm_rows - 1) // norm_rows, c, j
    cdef double[::1] g = _affine(gamma, n, 1.0)
    cdef double[::1] b = _affine(beta, n, 0.0)
    cdef double[::1] mu = np.empty(n, np.float64)
    cdef double[::1] r = np.empty(n, np.float64)
    cdef double[::1] q
    cdef double var
    cdef bint running = running_mean is not None and running_var is not None
    cdef floating* xp
    cdef floating* yp
    cdef double* mup
    cdef double* rp
    cdef double* gp
    cdef double* bp
    if n == 0:
        return
    xp = <floating*>&x[0, 0]
    mup, rp, gp, bp = &mu[0], &r[0], &g[0], &b[0]
    if training:
        q = np.empty(n, np.float64)
        _batch_moments(xp, m, n, mup, &q[0], norm_rows, num_threads)
        for j in range(n):
            r[j] = F.inverse_std(q[j] / m, eps)
        if running:
            for j in range(n):
                var = q[j] / (m - 1) if unbiased else q[j] / m
                running_mean[j] = <floating>F.running_update(running_mean[j], mu[j], momentum)
                running_var[j] = <floating>F.running_update(running_var[j], var, momentum)
    elif running:
        for j in range(n):
            mu[j] = running_mean[j]
            r[j] = F.inverse_std(<double>running_var[j], eps)
    if m > 0:
        yp = &y[0, 0]
        if num_threads > 1:
            for c in prange(chunks, nogil=True, num_threads=num_threads, schedule="static"):
                _normalize_rows(xp, mup, rp, gp, bp, yp, c * norm_rows, min(m, (c + 1) * norm_rows), n)
        else:
            with nogil:
                _normalize_rows(xp, mup, rp, gp, bp, yp, 0, m, n)
    for j in range(n):
        mean[j] = <floating>mu[j]
        rstd[j] = <floating>r[j]


cdef void _batchnorm_sums_chunk(floating* dy, floating* x, double* mean, double* rstd, double* pd, double* px,
                                Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n) noexcept nogil:
    """pd[j], px[j]: sums of dy and dy xhat over rows [r0, r1) (the chunk's rows of the partial sums)."""
    cdef Py_ssize_t i, j
    cdef double d
    cdef floating* dyr
    cdef floating* xr
    for j in range(n):
        pd[j] = 0.0
        px[j] = 0.0
    for i in range(r0, r1):
        dyr = dy + i * n
        xr = x + i * n
        for j in range(n):
            d = dyr[j]
            pd[j] += d
            px[j] += d * F.standardize(xr[j], mean[j], rstd[j])


cdef void _batchnorm_dx_rows(floating* dy, floating* x, double* mean, double* rstd, double* scale, double* mean_dy,
                             double* mean_dyx, floating* dx, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef floating* dyr
    cdef floating* xr
    cdef floating* dxr
    for i in range(r0, r1):
        dyr = dy + i * n
        xr = x + i * n
        dxr = dx + i * n
        for j in range(n):
            dxr[j] = <floating>F.normalize_grad(dyr[j], F.standardize(xr[j], mean[j], rstd[j]), scale[j],
                                                mean_dy[j], mean_dyx[j])


def batchnorm_backward(const floating[:, ::1] dy, const floating[:, ::1] x, gamma, const floating[::1] mean,
                       const floating[::1] rstd, floating[:, ::1] dx, floating[::1] dgamma, floating[::1] dbeta,
                       Py_ssize_t norm_rows, int num_threads):
    """dbeta = sum_i dy; dgamma = sum_i dy xhat; dx = gamma_j rstd_j (dy - dbeta / n - xhat
    dgamma / n), the sums over fixed chunks of norm_rows rows. gamma, dx, dgamma, dbeta may be None."""
    cdef Py_ssize_t m = x.shape[0], n = x.shape[1], chunks = (m + norm_rows - 1) // norm_rows, c, j
    cdef double[::1] g = _affine(gamma, n, 1.0)
    cdef double[::1] mu = np.empty(n, np.float64)
    cdef double[::1] r = np.empty(n, np.float64)
    cdef double[:, ::1] part_dy = np.empty((chunks, n), np.float64)
    cdef double[:, ::1] part_dyx = np.empty((chunks, n), np.float64)
    cdef double[::1] sum_dy = np.empty(n, np.float64)
    cdef double[::1] sum_dyx = np.empty(n, np.float64)
    cdef double[::1] scale
    cdef floating* dyp
    cdef floating* xp
    cdef floating* dxp
    cdef double* mup
    cdef double* rp
    cdef double* pdp
    cdef double* pxp
    if n == 0:
        return
    for j in range(n):
        mu[j] = mean[j]
        r[j] = rstd[j]
    mup, rp = &mu[0], &r[0]
    dyp, xp = <floating*>&dy[0, 0], <floating*>&x[0, 0]  # (no element is read when m is 0)
    if m > 0:
        pdp, pxp = &part_dy[0, 0], &part_dyx[0, 0]
        if num_threads > 1:
            for c in prange(chunks, nogil=True, num_threads=num_threads, schedule="static"):
                _batchnorm_sums_chunk(dyp, xp, mup, rp, pdp + c * n, pxp + c * n, c * norm_rows,
                                      min(m, (c + 1) * norm_rows), n)
        else:
            with nogil:
                for c in range(chunks):
                    _batchnorm_sums_chunk(dyp, xp, mup, rp, pdp + c * n, pxp + c * n, c * norm_rows,
                                          min(m, (c + 1) * norm_rows), n)
    _column_sums(&part_dy[0, 0] if chunks > 0 else NULL, chunks, n, &sum_dy[0])
    _column_sums(&part_dyx[0, 0] if chunks > 0 else NULL, chunks, n, &sum_dyx[0])
    if dgamma is not None:
        for j in range(n):
            dgamma[j] = <floating>sum_dyx[j]
    if dbeta is not None:
        for j in range(n):
            dbeta[j] = <floating>sum_dy[j]
    if dx is not None and m > 0:
        scale = np.empty(n, np.float64)
        for j in range(n):
            scale[j] = g[j] * r[j]
            sum_dy[j] /= m
            sum_dyx[j] /= m
        dxp = &dx[0, 0]
        if num_threads > 1:
            for c in prange(chunks, nogil=True, num_threads=num_threads, schedule="static"):
                _batchnorm_dx_rows(dyp, xp, mup, rp, &scale[0], &sum_dy[0], &sum_dyx[0], dxp, c * norm_rows,
                                   min(m, (c + 1) * norm_rows), n)
        else:
            with nogil:
                _batchnorm_dx_rows(dyp, xp, mup, rp, &scale[0], &sum_dy[0], &sum_dyx[0], dxp, 0, m, n)
