"""The formulas of :mod:`fastbp.formulas` as CUDA device functions (``F.relu``, ...), inlined into
the kernels (see :mod:`._jit`); the bit casts are libdevice's (on Numba's CUDA simulator, the
formulas' own Python ones)."""
from numba import float64, int64, uint64

from .. import _formulas
from ... import formulas as _source
from ._jit import SIMULATOR, device_function

if SIMULATOR:
    _primitives = {name: device_function(getattr(_source, name)) for name in _source.PRIMITIVES}
else:
    from numba.cuda import libdevice

    @device_function
    def _bits_of(x):
        return uint64(libdevice.double_as_longlong(float64(x)))

    @device_function
    def _float_of(b):
        return libdevice.longlong_as_double(int64(b))

    _primitives = {"bits_of": _bits_of, "float_of": _float_of}

F = _formulas.compile_formulas(device_function, "fastbp.backends.cuda.formulas", _primitives)
