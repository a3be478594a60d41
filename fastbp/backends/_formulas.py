"""Compile every formula of :mod:`fastbp.formulas` for one target (minitorch's pattern: one helper,
jitted per target).

``compile_formulas(jit)`` returns a module whose attributes are the formulas, each passed through
``jit`` (``numba.njit(inline="always")`` for the numba backend, ``cuda.jit(device=True)`` for the
cuda backend). A formula that calls another formula calls that one's compiled version: each is
compiled from a copy of the function whose globals name the compiled formulas. The result is a
real module, so ``@njit`` and ``@cuda.jit`` code reads ``F.relu`` as a compile-time constant.
"""
from __future__ import annotations

import types

from .. import formulas as _source


def _to_float64(x):
    return float64(x)


def compile_formulas(jit, name: str, primitives: dict) -> types.ModuleType:
    """Every function in ``fastbp.formulas.__all__`` compiled with ``jit``, as module ``name``.

    ``float(x)`` in a formula means a conversion to float64 (as in Python and in the Cython
    translation); Numba types ``float()`` of a float32 as float32, so the compiled copies call
    ``numba.float64`` instead. The 64-bit word constants (``BITS_CONSTANTS``) become ``uint64``
    (a Python int below 2^63 would be typed int64, and int64 op uint64 is float64 in Numba).
    ``primitives`` maps each name in ``PRIMITIVES`` (the bit casts) to the target's own function."""
    import numpy as np
    from numba import float64

    module = types.ModuleType(name, f"fastbp.formulas compiled by {jit!r}")
    namespace = dict(vars(_source))  # constants and math; the formulas are replaced below
    namespace.update({c: np.uint64(getattr(_source, c)) for c in _source.BITS_CONSTANTS})
    namespace["float"] = jit(types.FunctionType(_to_float64.__code__, {"float64": float64}, "float"))
    for fname in _source.__all__:
        if fname in _source.PRIMITIVES:
            namespace[fname] = primitives[fname]
            setattr(module, fname, primitives[fname])
            continue
        fn = getattr(_source, fname)
        copy = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
        copy.__qualname__, copy.__doc__, copy.__module__ = fn.__qualname__, fn.__doc__, fn.__module__
        compiled = jit(copy)
        namespace[fname] = compiled
        setattr(module, fname, compiled)
    for cname, value in vars(_source).items():  # constants (upper case) travel along
        if cname.isupper():
            setattr(module, cname, namespace[cname])
    return module
