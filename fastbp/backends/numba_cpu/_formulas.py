"""The formulas of :mod:`fastbp.formulas` as ``@njit(inline="always")`` functions (``F.relu``, ...),
inlined into the kernels at Numba's IR level."""
from numba import njit

from .._formulas import compile_formulas

F = compile_formulas(njit(inline="always"), "fastbp.backends.numba_cpu.formulas")
