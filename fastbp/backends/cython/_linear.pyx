# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Dense layer kernels: the product by BLAS on tiles (the BLAS ``use_blas`` names), bias +
activation (+ derivative, + bias gradient) fused around it, all tiles in one OpenMP ``prange``.

The same algorithm as ``numba_cpu/linear.py``: the caller passes the tile plan and the bias-gradient
chunk from fastbp.backends._cpu.tiling (the shape only), every tile is one single-threaded BLAS
call followed by its epilogue on the same thread, and the bias gradient sums fixed chunks in
order, so results are bitwise identical for any thread count. The scalar formulas are
``_formulas.pxd``'s (generated from fastbp/formulas.py). Arguments are checked by
:mod:`fastbp.kernels` before they get here; outputs never alias inputs, except dz, which is dy
itself (dz_is_dy, nothing written) for the linear activation.
"""
import numpy as np

from cython.parallel cimport prange

from . cimport _formulas as F
from ._common cimport rowwise_derivative, rowwise_forward
from ._formulas cimport FORMULAS_DIGEST, LINEAR, RELU, SIGMOID, floating


def formulas_digest():
    """The digest of the formula sources this module was generated from (see _codegen.py)."""
    return FORMULAS_DIGEST.decode()

# the Fortran ?gemm the kernels call, set by use_blas() when this module loads (fastbp's own
# OpenBLAS, else SciPy's cython_blas; not cimported, so that loading this module does not import
# scipy.linalg)
ctypedef void (*sgemm_t)(char*, char*, int*, int*, int*, float*, float*, int*, float*, int*, float*, float*,
                         int*) noexcept nogil
ctypedef void (*dgemm_t)(char*, char*, int*, int*, int*, double*, double*, int*, double*, int*, double*, double*,
                         int*) noexcept nogil
cdef sgemm_t _sgemm = NULL
cdef dgemm_t _dgemm = NULL


def use_blas(size_t sgemm_address, size_t dgemm_address):
    """Call the Fortran sgemm/dgemm at these addresses (32-bit integers) from now on."""
    global _sgemm, _dgemm
    if sgemm_address == 0 or dgemm_address == 0:
        raise ValueError("use_blas: null function address")
    _sgemm = <sgemm_t>sgemm_address
    _dgemm = <dgemm_t>dgemm_address


def _use_default_blas():
    """fastbp's own one-thread OpenBLAS, else SciPy's cython_blas (fastbp.backends._cpu.openblas)."""
    from .._cpu.openblas import gemm_addresses, scipy_gemm_addresses

    own = gemm_addresses()
    use_blas(*(own[:2] if own is not None else scipy_gemm_addresses()))


_use_default_blas()  # before any kernel of this module can run


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k, floating* a, int lda,
                      floating* b, int ldb, floating* c, int ldc) noexcept nogil:
    """c (m x n, row-major, leading dimension ldc) = op(a) @ op(b), all row-major: a is (m, k), or
    (k, m) with trans_a; b is (k, n), or (n, k) with trans_b. BLAS is column-major, so it computes
    c.T = op(b).T @ op(a).T from the same memory."""
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    cdef floating one = 1.0
    cdef floating zero = 0.0
    if m == 0 or n == 0:
        return
    if floating is float:
        _sgemm(&ta, &tb, &n, &m, &k, &one, b, &ldb, a, &lda, &zero, c, &ldc)
    else:
        _dgemm(&ta, &tb, &n, &m, &k, &one, b, &ldb, a, &lda, &zero, c, &ldc)


cdef void _forward_tile(const floating[:, ::1] x, const floating[:, ::1] w, floating* b, int code, double alpha,
                        floating* y, floating* z, int r0, int r1, int c0, int c1) noexcept nogil:
    """Rows [r0, r1) x columns [c0, c1) of y = act(x @ w + b) (z = x @ w + b when z is not NULL)."""
    cdef int k = x.shape[1], n = w.shape[1], i
    cdef floating* out = z if z != NULL else y
    gemm(False, False, r1 - r0, c1 - c0, k, <floating*>&x[r0, 0], k, <floating*>&w[0, c0], n, out + r0 * n + c0, n)
    for i in range(r0, r1):
        _epilogue_row(out + i * n, b, code, alpha, y + i * n, z + i * n if z != NULL else NULL, c0, c1)
        if F.is_rowwise(code):  # (whole rows per tile)
            rowwise_forward(y + i * n, y + i * n, n, code)


cdef inline void _epilogue_row(floating* acc, floating* b, int code, double alpha, floating* y, floating* z,
                               int c0, int c1) noexcept nogil:
    """Columns [c0, c1) of one row: v = acc + b; z = v (z not NULL); y = act(v) (v for softmax)."""
    cdef int j
    cdef floating v
    if z != NULL or b == NULL or (code != RELU and code != SIGMOID):
        for j in range(c0, c1):
            v = acc[j]
            if b != NULL:
                v = v + b[j]
            if z != NULL:
                z[j] = v
            if code == LINEAR or F.is_rowwise(code):
                y[j] = v
            elif code == RELU:
                y[j] = F.relu(v)
            else:
                y[j] = <floating>F.act_forward(v, code, alpha)
    elif code == RELU:  # the common cases, vectorized: y = relu(acc + b) or sigmoid(acc + b) in place
        for j in range(c0, c1):
            y[j] = F.relu(acc[j] + b[j])
    else:
        for j in range(c0, c1):
            y[j] = <floating>F.sigmoid(acc[j] + b[j])


def linear_forward(const floating[:, ::1] x, const floating[:, ::1] w, const floating[::1] b, int code, double alpha,
                   floating[:, ::1] y, floating[:, ::1] z, int rb, int cb, int num_threads):
    """y = act(x @ w + b) (b, z may be None) in tiles of rb rows x cb columns."""
    cdef int m = x.shape[0], n = w.shape[1]
    cdef floating* bp = NULL if b is None else <floating*>&b[0]
    cdef floating* zp = NULL
    cdef floating* yp
    cdef int row_tiles, col_tiles, t
    if m == 0:
        return
    yp = &y[0, 0]
    if z is not None:
        zp = &z[0, 0]
    row_tiles = (m + rb - 1) // rb
    col_tiles = (n + cb - 1) // cb
    if row_tiles * col_tiles == 1:
        with nogil:
            _forward_tile(x, w, bp, code, alpha, yp, zp, 0, m, 0, n)
        return
    for t in prange(row_tiles * col_tiles, nogil=True, num_threads=num_threads, schedule="static"):
        _forward_tile(x, w, bp, code, alpha, yp, zp, (t // col_tiles) * rb, min(m, (t // col_tiles + 1) * rb),
                      (t % col_tiles) * cb, min(n, (t % col_tiles + 1) * cb))


cdef void _dz_chunk(const floating[:, ::1] dy, floating* saved, int code, double alpha, floating* dz, bint dz_is_dy,
                    double* db_part, int r0, int r1) noexcept nogil:
    """dz = dy * f'(.) on rows [r0, r1), and the chunk's column sums into db_part (when not NULL)."""
    cdef int n = dy.shape[1], i, j
    cdef floating* dyr
    cdef floating* dzr
    for i in range(r0, r1):
        dyr = <floating*>&dy[i, 0]
        dzr = dz + i * n
        if code == LINEAR:
            if not dz_is_dy:
                for j in range(n):
                    dzr[j] = dyr[j]
        elif code == RELU:
            for j in range(n):
                dzr[j] = F.relu_derivative(dyr[j], saved[i * n + j])
        elif F.is_rowwise(code):
            rowwise_derivative(dyr, saved + i * n, dzr, n, code)
        else:
            for j in range(n):
                dzr[j] = <floating>F.act_derivative(dyr[j], saved[i * n + j], code, alpha)
    if db_part != NULL:
        for j in range(n):
            db_part[j] = 0
        for i in range(r0, r1):
            dzr = dz + i * n
            for j in range(n):
                db_part[j] += dzr[j]


def linear_backward(const floating[:, ::1] dy, const floating[:, ::1] x, const floating[:, ::1] w,
                    const floating[:, ::1] saved, int code,
                    double alpha, floating[:, ::1] dz, bint dz_is_dy, floating[:, ::1] dx, floating[:, ::1] dw,
                    floating[::1] db, int db_rows, int rb_dw, int n_dw, int cb_dx, int n_dx, int num_threads):
    """dz = dy * f'(saved) (saved: y or z; dy for linear), db = column sums of dz in chunks of
    db_rows rows (db may be None), dw = x.T @ dz in n_dw tiles of rb_dw rows, dx = dz @ w.T in
    n_dx tiles of cb_dx columns (dx may be None when n_dx is 0). The tile plan is
    fastbp.backends._cpu.tiling.plan_backward's."""
    cdef int m = x.shape[0], k = x.shape[1], n = w.shape[1]
    cdef int n_chunks = (m + db_rows - 1) // db_rows, c, t, j, k0
    cdef bint want_db = db is not None
    cdef double[:, ::1] db_part = np.empty((n_chunks if want_db else 0, n), np.float64)
    cdef double acc
    cdef floating* sp = <floating*>&saved[0, 0] if m else NULL
    cdef floating* dzp = &dz[0, 0] if m else NULL
    if code != LINEAR or not dz_is_dy or want_db:
        if n_chunks == 1:
            with nogil:
                _dz_chunk(dy, sp, code, alpha, dzp, dz_is_dy, &db_part[0, 0] if want_db else NULL, 0, m)
        else:
            for c in prange(n_chunks, nogil=True, num_threads=num_threads, schedule="static"):
                _dz_chunk(dy, sp, code, alpha, dzp, dz_is_dy, &db_part[c, 0] if want_db else NULL,
                          c * db_rows, min(m, (c + 1) * db_rows))
    if want_db:
        for j in range(n):
            acc = 0.0
            for c in range(n_chunks):
                acc += db_part[c, j]
            db[j] = <floating>acc
    if m == 0:
        dw[:, :] = 0
        return
    if n_dw == 1:
        with nogil:
            gemm(True, False, k, n, m, <floating*>&x[0, 0], k, dzp, n, &dw[0, 0], n)
    else:
        for t in prange(n_dw, nogil=True, num_threads=num_threads, schedule="static"):
            k0 = t * rb_dw
            gemm(True, False, min(k, k0 + rb_dw) - k0, n, m, <floating*>&x[0, k0], k, dzp, n, &dw[k0, 0], n)
    if n_dx == 1:
        with nogil:
            gemm(False, True, m, k, n, dzp, n, <floating*>&w[0, 0], n, &dx[0, 0], k)
    elif n_dx > 1:
        for t in prange(n_dx, nogil=True, num_threads=num_threads, schedule="static"):
            k0 = t * cb_dx
            gemm(False, True, m, min(k, k0 + cb_dx) - k0, n, dzp, n, <floating*>&w[k0, 0], n, &dx[0, k0], k)
