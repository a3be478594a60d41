"""Dense layer kernels: the product by BLAS on tiles, bias + activation (+ derivative, + bias
gradient) fused around it, all tiles in one ``prange``.

Tiles come from :mod:`.._cpu.tiling` (the shape only, never the thread count), and every tile is
one single-threaded BLAS call followed by its epilogue on the same thread while the tile is in
cache: results are bitwise identical for any number of threads. Outputs never alias inputs,
except dz, which is dy itself (dz_is_dy, nothing written) for the linear activation.
"""
import numpy as np
from numba import njit, prange

from ...activations import LINEAR, RELU, SIGMOID
from .._cpu.tiling import DB_ROWS, SERIAL_ELEMENTS, tile_shape
from .._cpu.tiling import plan_backward as _plan_backward
from ._blas import gemm
from ._formulas import F
from .activation import rowwise_derivative, rowwise_forward


@njit(cache=True, error_model="numpy")
def is_serial(m, n, k):
    """True when the forward (m, n, k) product is a single tile (run on the calling thread)."""
    rb, cb = tile_shape(m, n, k, False)
    return rb >= m and cb >= n


@njit(cache=True, inline="always", error_model="numpy")
def _forward_tile(x, w, b, code, alpha, y, z, r0, r1, c0, c1):
    k = x.shape[1]
    n = w.shape[1]
    gemm(False, False, r1 - r0, c1 - c0, k, 1.0, x, r0 * k, k, w, c0, n, 0.0, y, r0 * n + c0, n)
    for i in range(r0, r1):
        yr = y[i, c0:c1]
        if b is not None:
            br = b[c0:c1]
            for j in range(yr.size):
                yr[j] += br[j]
        if z is not None:
            zr = z[i, c0:c1]
            for j in range(yr.size):
                zr[j] = yr[j]
        if code == LINEAR:
            pass
        elif code == RELU:
            for j in range(yr.size):
                yr[j] = F.relu(yr[j])
        elif code == SIGMOID:  # (written out: the loop vectorizes, exponential included)
            for j in range(yr.size):
                yr[j] = F.sigmoid(yr[j])
        elif F.is_rowwise(code):  # (whole rows per tile)
            rowwise_forward(y, y, i, code)
        else:
            for j in range(yr.size):
                yr[j] = F.act_forward(yr[j], code, alpha)


@njit(cache=True, parallel=True, error_model="numpy")
def linear_forward(x, w, b, code, alpha, y, z):
    """y = act(x @ w + b) (z = x @ w + b kept when z is not None); b and z may be None."""
    m, k = x.shape
    n = w.shape[1]
    rb, cb = tile_shape(m, n, k, F.is_rowwise(code))
    n_rt = -(-m // rb)
    n_ct = -(-n // cb)
    for t in prange(n_rt * n_ct):
        r0 = (t // n_ct) * rb
        c0 = (t % n_ct) * cb
        _forward_tile(x, w, b, code, alpha, y, z, r0, min(m, r0 + rb), c0, min(n, c0 + cb))


@njit(cache=True, error_model="numpy")
def linear_forward_serial(x, w, b, code, alpha, y, z):
    """linear_forward as one tile on the calling thread (small problems: no parallel launch)."""
    _forward_tile(x, w, b, code, alpha, y, z, 0, x.shape[0], 0, w.shape[1])


@njit(cache=True, inline="always", error_model="numpy")
def _dz_chunk(dy, saved, code, alpha, dz, dz_is_dy, db_part, want_db, c, r0, r1):
    """dz = dy * f'(.) on rows [r0, r1) and the chunk's column sums into db_part[c] (float64)."""
    n = dy.shape[1]
    for i in range(r0, r1):
        dzr = dz[i]
        dyr = dy[i]
        if code == LINEAR:
            if not dz_is_dy:
                for j in range(n):
                    dzr[j] = dyr[j]
        elif code == RELU:
            sr = saved[i]
            for j in range(n):
                dzr[j] = F.relu_derivative(dyr[j], sr[j])
        elif F.is_rowwise(code):
            rowwise_derivative(dy, saved, dz, i, code)
        else:
            sr = saved[i]
            for j in range(n):
                dzr[j] = F.act_derivative(dyr[j], sr[j], code, alpha)
    if want_db:
        acc = db_part[c]
        for j in range(n):
            acc[j] = 0
        for i in range(r0, r1):
            dzr = dz[i]
            for j in range(n):
                acc[j] += dzr[j]


@njit(cache=True, inline="always", error_model="numpy")
def _dw_tile(x, dz, dw, t, rb):
    """Rows [t rb, (t + 1) rb) of dw = x.T @ dz (OpenBLAS's small kernels take these)."""
    m, k = x.shape
    n = dz.shape[1]
    k0 = t * rb
    k1 = min(k, k0 + rb)
    gemm(True, False, k1 - k0, n, m, 1.0, x, k0, k, dz, 0, n, 0.0, dw, k0 * n, n)


@njit(cache=True, inline="always", error_model="numpy")
def _dx_tile(dz, w, dx, t, cb):
    """Columns [t cb, (t + 1) cb) of dx = dz @ w.T. Column tiles, not row tiles: each packs only
    its block of w."""
    m, n = dz.shape
    k = w.shape[0]
    k0 = t * cb
    k1 = min(k, k0 + cb)
    gemm(False, True, m, k1 - k0, n, 1.0, dz, 0, n, w, k0 * n, n, 0.0, dx, k0, k)


@njit(cache=True, error_model="numpy")
def backward_is_serial(m, k, n, need_dx):
    """True when both backward products are single tiles and dz is small: run on the calling thread."""
    n_dw, n_dx = _plan_backward(m, k, n, need_dx)[1::2]
    return n_dw <= 1 and n_dx <= 1 and m * n < SERIAL_ELEMENTS


@njit(cache=True, error_model="numpy")
def _finish_db(db_part, db):
    """db = sum of the chunk partial sums, in chunk order (float64 accumulation)."""
    n = db.shape[0]
    for j in range(n):
        acc = 0.0
        for c in range(db_part.shape[0]):
            acc += db_part[c, j]
        db[j] = acc


@njit(cache=True, parallel=True, error_model="numpy")
def linear_backward(dy, x, w, saved, code, alpha, dz, dz_is_dy, dx, need_dx, dw, db):
    """dz = dy * f'(.); dw = x.T @ dz; db = column sums of dz (db may be None); dx = dz @ w.T when
    need_dx (else dx is not touched: pass any 2-D array of the dtype, e.g. empty (0, in)).
    dz may be dy, then dz_is_dy is True; saved is y or z, or dy for linear."""
    m, k = x.shape
    n = w.shape[1]
    n_chunks = -(-m // DB_ROWS)
    want_db = db is not None
    db_part = np.empty((n_chunks if want_db else 0, n), np.float64)
    # (a loop of one iteration runs on this thread: a parallel launch costs microseconds)
    if code != LINEAR or not dz_is_dy or want_db:
        if n_chunks == 1:
            _dz_chunk(dy, saved, code, alpha, dz, dz_is_dy, db_part, want_db, 0, 0, m)
        else:
            for c in prange(n_chunks):
                _dz_chunk(dy, saved, code, alpha, dz, dz_is_dy, db_part, want_db, c, c * DB_ROWS,
                          min(m, (c + 1) * DB_ROWS))
    if want_db:
        _finish_db(db_part, db)
    if m == 0:
        dw[:] = 0
        return
    rb_dw, n_dw, cb_dx, n_dx = _plan_backward(m, k, n, need_dx)
    # two loops, not one: a dx tile costs several dw tiles, and prange hands each thread a
    # contiguous block of iterations, so a shared loop would leave one thread with the dx tiles
    if n_dw == 1:
        _dw_tile(x, dz, dw, 0, rb_dw)
    else:
        for t in prange(n_dw):
            _dw_tile(x, dz, dw, t, rb_dw)
    if n_dx == 1:
        _dx_tile(dz, w, dx, 0, cb_dx)
    elif n_dx > 1:
        for t in prange(n_dx):
            _dx_tile(dz, w, dx, t, cb_dx)


@njit(cache=True, error_model="numpy")
def linear_backward_serial(dy, x, w, saved, code, alpha, dz, dz_is_dy, dx, need_dx, dw, db):
    """linear_backward on the calling thread (small problems: no parallel launch)."""
    m, k = x.shape
    n = w.shape[1]
    n_chunks = -(-m // DB_ROWS)
    want_db = db is not None
    db_part = np.empty((n_chunks if want_db else 0, n), np.float64)
    for c in range(n_chunks):
        _dz_chunk(dy, saved, code, alpha, dz, dz_is_dy, db_part, want_db, c, c * DB_ROWS, min(m, (c + 1) * DB_ROWS))
    if want_db:
        _finish_db(db_part, db)
    if m == 0:
        dw[:] = 0
        return
    gemm(True, False, k, n, m, 1.0, x, 0, k, dz, 0, n, 0.0, dw, 0, n)
    if need_dx:
        gemm(False, True, m, k, n, 1.0, dz, 0, n, w, 0, n, 0.0, dx, 0, k)
