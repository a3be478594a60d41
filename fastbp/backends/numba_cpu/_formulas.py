"""The formulas of :mod:`fastbp.formulas` as ``@njit(inline="always")`` functions (``F.relu``, ...),
inlined into the kernels at Numba's IR level; the bit casts are LLVM bitcasts (they vectorize)."""
from llvmlite import ir
from numba import float64, njit, types
from numba.core.extending import intrinsic

from .._formulas import compile_formulas


@intrinsic
def _bits_of(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.uint64(types.float64), codegen


@intrinsic
def _float_of(typingctx, b):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.uint64), codegen


@njit(inline="always")
def bits_of(x):
    return _bits_of(float64(x))


@njit(inline="always")
def float_of(b):
    return _float_of(b)


F = compile_formulas(njit(inline="always"), "fastbp.backends.numba_cpu.formulas",
                     {"bits_of": bits_of, "float_of": float_of})
