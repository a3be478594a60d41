"""BLAS ``?gemm`` callable from ``@njit`` code on sub-matrices, with leading dimensions.

NumPy's ``np.dot`` inside ``@njit`` only takes whole (or copied) arrays. The kernels here need
products of tiles of larger arrays, without copies, so they call the Fortran ``sgemm``/``dgemm``
entry point of one BLAS directly, through the symbols ``fastbp_sgemm``/``fastbp_dgemm``
registered with LLVM at import (resolved by name when a function is loaded, so kernels using them
can be cached on disk whichever BLAS provides them).

Which BLAS (``BLAS_SOURCE``):

* ``scipy-openblas32``, the OpenBLAS that SciPy's and NumPy's wheels are built from, as a PyPI
  package (a dependency): fastbp's own copy, pinned to one thread (:mod:`.._cpu.openblas`,
  shared with the cython backend);
* SciPy's ``cython_blas`` (the BLAS Numba's own ``np.dot`` calls) where that package is missing,
  or with ``FASTBP_BLAS=scipy``; it is pinned as :mod:`.._cpu.blas_threads` says.

Both take 32-bit integer sizes (every tile here is far below 2^31 elements per dimension).
"""
from __future__ import annotations

from llvmlite import binding as _llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._cpu.openblas import gemm_addresses

_ll_char = ir.IntType(8)
_ll_int = ir.IntType(32)
_SYMBOLS = {"float32": "fastbp_sgemm", "float64": "fastbp_dgemm"}


def _scipy():
    import scipy
    from numba.extending import get_cython_function_address

    addresses = [get_cython_function_address("scipy.linalg.cython_blas", f"{p}gemm") for p in "sd"]
    return addresses[0], addresses[1], f"SciPy {scipy.__version__} cython_blas"


def _register():
    found = gemm_addresses()
    private = found is not None
    sgemm, dgemm, source = found or _scipy()
    _llvm.add_symbol(_SYMBOLS["float32"], sgemm)
    _llvm.add_symbol(_SYMBOLS["float64"], dgemm)
    return source, private


#: where the kernels' products run, and whether that BLAS is fastbp's own one-thread copy
BLAS_SOURCE, BLAS_IS_PRIVATE = _register()


@intrinsic
def _xgemm_colmajor(typingctx, transa, transb, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
    """Column-major C[m,n] = alpha op(A)[m,k] op(B)[k,n] + beta C; A, B, C start at the given
    element offsets of the arrays a, b, c (which must share a float32 or float64 dtype)."""
    if not all(isinstance(t, types.Array) for t in (a, b, c)) or not (a.dtype == b.dtype == c.dtype):
        return None
    if str(c.dtype) not in _SYMBOLS:
        return None
    dtype = c.dtype
    symbol = _SYMBOLS[str(dtype)]
    sig = types.void(transa, transb, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc)

    def codegen(context, builder, signature, args):
        (ta, tb, m_, n_, k_, alpha_, a_, aoff, lda_, b_, boff, ldb_, beta_, c_, coff, ldc_) = args
        argtys = signature.args
        fl = context.get_value_type(dtype)
        fp, ip, cp = fl.as_pointer(), _ll_int.as_pointer(), _ll_char.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [cp, cp, ip, ip, ip, fp, fp, ip, fp, ip, fp, fp, ip])
        fn = cgutils.get_or_insert_function(builder.module, fnty, symbol)

        def int_slot(val, ty):
            return cgutils.alloca_once_value(builder, context.cast(builder, val, ty, types.int32))

        def float_slot(val, ty):
            return cgutils.alloca_once_value(builder, context.cast(builder, val, ty, dtype))

        def data_ptr(arrty, arr, off, offty):
            ary = context.make_array(arrty)(context, builder, arr)
            return builder.gep(ary.data, [context.cast(builder, off, offty, types.intp)])

        def trans_slot(flag, flagty):
            is_t = context.cast(builder, flag, flagty, types.boolean)
            char = builder.select(is_t, ir.Constant(_ll_char, ord("T")), ir.Constant(_ll_char, ord("N")))
            return cgutils.alloca_once_value(builder, char)

        builder.call(fn, (
            trans_slot(ta, argtys[0]), trans_slot(tb, argtys[1]),
            int_slot(m_, argtys[2]), int_slot(n_, argtys[3]), int_slot(k_, argtys[4]),
            float_slot(alpha_, argtys[5]), data_ptr(argtys[6], a_, aoff, argtys[7]), int_slot(lda_, argtys[8]),
            data_ptr(argtys[9], b_, boff, argtys[10]), int_slot(ldb_, argtys[11]),
            float_slot(beta_, argtys[12]), data_ptr(argtys[13], c_, coff, argtys[14]), int_slot(ldc_, argtys[15]),
        ))
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
