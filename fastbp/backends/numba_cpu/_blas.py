"""BLAS ``?gemm`` callable from ``@njit`` code on sub-matrices, with leading dimensions.

NumPy's ``np.dot`` inside ``@njit`` only takes whole (or copied) arrays. The kernels here need
products of tiles of larger arrays, without copies, so they call the same BLAS entry point that
Numba's ``np.dot`` calls (``numba_xxgemm`` in Numba's helper library, which forwards to SciPy's
``cython_blas``). The symbol is resolved by name at load time, so functions using it can be
cached on disk.
"""
from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.linalg import check_blas_return, ensure_blas, get_blas_kind

_ll_char = ir.IntType(8)
_ll_void_p = _ll_char.as_pointer()


@intrinsic
def _xgemm_colmajor(typingctx, transa, transb, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
    """Column-major C[m,n] = alpha op(A)[m,k] op(B)[k,n] + beta C; A, B, C start at the given
    element offsets of the arrays a, b, c (which must share a float dtype)."""
    if not all(isinstance(t, types.Array) for t in (a, b, c)) or not (a.dtype == b.dtype == c.dtype):
        return None
    ensure_blas()
    dtype = c.dtype
    kind = get_blas_kind(dtype, "gemm")
    sig = types.void(transa, transb, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc)

    def codegen(context, builder, signature, args):
        (ta, tb, m_, n_, k_, alpha_, a_, aoff, lda_, b_, boff, ldb_, beta_, c_, coff, ldc_) = args
        argtys = signature.args
        intp = context.get_value_type(types.intp)
        fnty = ir.FunctionType(ir.IntType(32), [_ll_char, _ll_char, _ll_char, intp, intp, intp,
                                                _ll_void_p, _ll_void_p, intp, _ll_void_p, intp,
                                                _ll_void_p, _ll_void_p, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")

        def as_intp(val, ty):
            return context.cast(builder, val, ty, types.intp)

        def data_ptr(arrty, arr, off, offty):
            ary = context.make_array(arrty)(context, builder, arr)
            return builder.bitcast(builder.gep(ary.data, [as_intp(off, offty)]), _ll_void_p)

        def trans_char(flag, flagty):
            is_t = context.cast(builder, flag, flagty, types.boolean)
            return builder.select(is_t, ir.Constant(_ll_char, ord("t")), ir.Constant(_ll_char, ord("n")))

        alpha_slot = cgutils.alloca_once_value(builder, context.cast(builder, alpha_, argtys[5], dtype))
        beta_slot = cgutils.alloca_once_value(builder, context.cast(builder, beta_, argtys[12], dtype))
        res = builder.call(fn, (
            ir.Constant(_ll_char, ord(kind)), trans_char(ta, argtys[0]), trans_char(tb, argtys[1]),
            as_intp(m_, argtys[2]), as_intp(n_, argtys[3]), as_intp(k_, argtys[4]),
            builder.bitcast(alpha_slot, _ll_void_p), data_ptr(argtys[6], a_, aoff, argtys[7]), as_intp(lda_, argtys[8]),
            data_ptr(argtys[9], b_, boff, argtys[10]), as_intp(ldb_, argtys[11]),
            builder.bitcast(beta_slot, _ll_void_p), data_ptr(argtys[13], c_, coff, argtys[14]), as_intp(ldc_, argtys[15]),
        ))
        check_blas_return(context, builder, res)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def gemm(trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
    """Row-major C[m,n] = alpha op(A) op(B) + beta C on sub-matrices.

    A tile of a C-ordered 2-D array ``arr`` starting at row r, column j has offset
    ``r * arr.shape[1] + j`` and leading dimension ``arr.shape[1]``. op(A) is A or A.T
    (``trans_a``), where A is stored as the (m, k) (or, transposed, (k, m)) tile. Empty products
    do nothing (C is left as it is, so callers handle k == 0 themselves).
    """
    if m > 0 and n > 0 and k > 0:
        # row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T
        _xgemm_colmajor(trans_b, trans_a, n, m, k, alpha, b, b_off, ldb, a, a_off, lda, beta, c, c_off, ldc)
