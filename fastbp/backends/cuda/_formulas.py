"""The formulas of :mod:`fastbp.formulas` as CUDA device functions (``F.relu``, ...), inlined into
the kernels (see :mod:`._jit`)."""
from .._formulas import compile_formulas
from ._jit import device_function

F = compile_formulas(device_function, "fastbp.backends.cuda.formulas")
