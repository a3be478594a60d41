"""The validation every public kernel shares.

Every error names the kernel and the argument and shows what was expected and what was
received. The rules (documented in the README, tested in ``tests/test_checks.py``):

* Arrays must be :class:`numpy.ndarray` (or a registered device array type); Python lists and
  scalars are refused with ``TypeError`` (a list would silently become float64).
* Float arrays are float32 or float64, one dtype per call (``TypeError`` otherwise: no silent
  casts). Labels are integer arrays (not bool) with values in ``[0, classes)``.
* Read-only inputs that are not C-contiguous (strided, Fortran-ordered, negative-stride views)
  are accepted and copied once to C order, so the result is correct.
* Arrays written in place (optimizer state, parameters) and ``out=`` buffers must have the exact
  shape and dtype, be C-contiguous and writeable, and must not overlap any input, except the
  aliasing a kernel documents (then the buffer must be the very same array).
* An empty batch (0 rows) is allowed where the batch is summed or mapped (the result is empty or
  zero); a loss over an empty batch is undefined and raises ``ValueError``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import _device

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: the dtype of dropout masks
MASK_DTYPE = np.dtype(np.uint8)
_FLOAT_TYPES = (np.float32, np.float64)


def _describe(a) -> str:
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return f"array of shape {a.shape} and dtype {a.dtype}"
    return f"{type(a).__name__}"


def _shape_str(shape) -> str:
    return "(" + ", ".join("?" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def array(fn: str, name: str, a) -> np.ndarray:
    """Require a NumPy array or a device array (TypeError for lists, scalars and other objects);
    a device array comes back as a Numba device array viewing the same memory."""
    if not isinstance(a, np.ndarray):
        if _device.is_device_array(a):
            return _device.as_device_array(fn, name, a)
        hint = f"; wrap it with numpy.asarray({name}, dtype=numpy.float32)" if isinstance(a, (list, tuple, numbers.Number)) else ""
        raise TypeError(f"{fn}: {name} must be a numpy.ndarray; got {type(a).__name__}{hint}")
    return a


def float_type(fn: str, name: str, a, ndim: int | None = None) -> np.ndarray:
    """Require a float32/float64 array (of ``ndim`` dimensions); return it as it is."""
    a = array(fn, name, a)
    if a.dtype.type not in _FLOAT_TYPES:
        raise TypeError(f"{fn}: {name} must have dtype float32 or float64; got {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{fn}: {name} must be {ndim}-D; got {_describe(a)}")
    return a


def float_array(fn: str, name: str, a, ndim: int | None = None) -> np.ndarray:
    """Require a float32/float64 input array (of ``ndim`` dimensions); return it C-contiguous
    (a copy when it was a strided, Fortran-ordered or negative-stride view)."""
    if (type(a) is np.ndarray and a.dtype.type in _FLOAT_TYPES and (ndim is None or a.ndim == ndim)
            and a.flags.c_contiguous):
        return a  # the common case, in one test
    a = float_type(fn, name, a, ndim)
    if isinstance(a, np.ndarray):
        return a if a.flags.c_contiguous else np.ascontiguousarray(a)
    if not a.is_c_contiguous():
        raise ValueError(f"{fn}: {name} must be C-contiguous on the device (fastbp does not copy device arrays); "
                         f"got strides {a.strides}")
    return a


def common_dtype(fn: str, **arrays) -> np.dtype:
    """Require every given (non-None) array to share one dtype; return it."""
    dtype = None
    for a in arrays.values():
        if a is None:
            continue
        if dtype is None:
            dtype = a.dtype
        elif a.dtype != dtype:
            listing = ", ".join(f"{k}: {v.dtype}" for k, v in arrays.items() if v is not None)
            raise TypeError(f"{fn}: all float arrays of one call must share a dtype; got {listing}")
    return dtype


def shape(fn: str, name: str, a, expected: tuple, why: str = "") -> None:
    """Require ``a.shape == expected`` (None in ``expected`` matches any size)."""
    got = a.shape
    if got == expected:
        return
    if len(got) == len(expected):
        for e, s in zip(expected, got):
            if e is not None and e != s:
                break
        else:
            return
    why = f" {why}" if why else ""
    raise ValueError(f"{fn}: {name} must have shape {_shape_str(expected)}{why}; got {a.shape}")


def nonempty_features(fn: str, name: str, size: int, axis_name: str) -> None:
    if size < 1:
        raise ValueError(f"{fn}: {name} must have at least one {axis_name}; got 0")


def _overlaps(a, b) -> bool:
    if a is None or b is None:
        return False
    if type(a) is np.ndarray and type(b) is np.ndarray:
        return np.may_share_memory(a, b)
    return _device.may_share_memory(a, b)


def _same_memory(a, b) -> bool:
    return (_device.data_pointer(a) == _device.data_pointer(b)
            and a.shape == b.shape and a.strides == b.strides)


def writable(fn: str, name: str, a, shape_: tuple, dtype, inputs: dict, may_alias=()) -> np.ndarray:
    """Require an array that the kernel writes: exact shape and dtype, C-contiguous, writeable,
    no overlap with ``inputs`` except the very same array for names in ``may_alias``."""
    return _writable(fn, name, a, shape_, dtype, inputs, may_alias)[0]


def _writable(fn, name, a, shape_, dtype, inputs, may_alias):
    """:func:`writable`, and whether ``a`` is one of the ``may_alias`` inputs (an in-place use)."""
    a = array(fn, name, a)
    if a.dtype != dtype:
        raise TypeError(f"{fn}: {name} must have dtype {np.dtype(dtype)}; got {a.dtype}")
    shape(fn, name, a, tuple(shape_))
    host = type(a) is np.ndarray
    flags = a.flags if host else None
    if not (flags.c_contiguous if host else _device.is_c_contiguous(a)):
        raise ValueError(f"{fn}: {name} must be C-contiguous (it is written in place); got a non-contiguous view "
                         f"with strides {a.strides}")
    if not (flags.writeable if host else _device.is_writeable(a)):
        raise ValueError(f"{fn}: {name} must be writeable; got a read-only array")
    owns = host and flags.owndata
    in_place = False
    for other_name, other in inputs.items():
        if other is None:
            continue
        if host and type(other) is np.ndarray:
            if owns and other is not a and other.flags.owndata:
                continue  # two arrays that own their data are two allocations (cheaper than the overlap test)
            if not np.may_share_memory(a, other):
                continue
        elif not _overlaps(a, other):
            continue
        if other_name in may_alias and _same_memory(a, other):
            in_place = True
            continue
        allowed = f" (only the very same array as {', '.join(may_alias)} is allowed)" if may_alias else ""
        raise ValueError(f"{fn}: {name} must not overlap {other_name}{allowed}")
    return a, in_place


def output(fn: str, name: str, buf, shape_: tuple, dtype, inputs: dict, empty, may_alias=()):
    """Return ``buf`` checked by :func:`writable`, or a new array from ``empty`` when it is None."""
    if buf is None:
        return empty(tuple(shape_), dtype)
    return writable(fn, name, buf, shape_, dtype, inputs, may_alias)


def output_in_place(fn: str, name: str, buf, shape_: tuple, dtype, inputs: dict, empty, may_alias):
    """:func:`output` for a kernel with a documented in-place use (``buf`` may be the very same
    array as an input named in ``may_alias``): returns ``(result, work)``, where ``result`` is what
    the caller gets and ``work`` what the backend writes. They differ only for an in-place call,
    where ``work`` is a fresh buffer to be copied into ``result`` afterwards (backend ``copy_``):
    the kernels of every backend never write an array they read."""
    if buf is None:
        out = empty(tuple(shape_), dtype)
        return out, out
    out, in_place = _writable(fn, name, buf, shape_, dtype, inputs, may_alias)
    return out, (empty(tuple(shape_), dtype) if in_place else out)


def labels(fn: str, name: str, a, batch: int, classes: int) -> np.ndarray:
    """Require integer class labels of shape (batch,) in [0, classes); return them as C-contiguous intp.

    Device labels are returned as they are (C-contiguous, any integer dtype); their range is
    checked by the device kernel that reads them, which raises the same error.
    """
    a = array(fn, name, a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{fn}: {name} must be an integer array of class indices; got dtype {a.dtype}")
    shape(fn, name, a, (batch,), "to match the batch of logits")
    if not isinstance(a, np.ndarray):
        if not a.is_c_contiguous():
            raise ValueError(f"{fn}: {name} must be C-contiguous on the device; got strides {a.strides}")
        return a
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= classes:
            bad = lo if lo < 0 else hi
            raise label_range_error(fn, name, classes, bad)
    return np.ascontiguousarray(a, dtype=np.intp)


def mask_array(fn: str, name: str, a, shape_: tuple):
    """Require a uint8 mask (0: dropped, else kept) of the given shape; return it C-contiguous
    (host views are copied once; device arrays must already be contiguous)."""
    a = array(fn, name, a)
    if a.dtype != MASK_DTYPE:
        raise TypeError(f"{fn}: {name} must have dtype uint8 (the mask dropout_forward returned); got {a.dtype}")
    shape(fn, name, a, tuple(shape_), "(like the array it masks)")
    if isinstance(a, np.ndarray):
        return np.ascontiguousarray(a)
    if not a.is_c_contiguous():
        raise ValueError(f"{fn}: {name} must be C-contiguous on the device; got strides {a.strides}")
    return a


def label_range_error(fn: str, name: str, classes: int, bad) -> ValueError:
    return ValueError(f"{fn}: {name} must lie in [0, {classes}) for {classes} classes; got {bad}")


def same_device(fn: str, device: str, backend_name: str, arrays: dict) -> None:
    """Require every given array to live where the backend runs (host for 'cpu', GPU for 'cuda')."""
    on_gpu = device == "cuda"
    for name, a in arrays.items():
        if a is None or (type(a) is np.ndarray) != on_gpu:
            continue
        if on_gpu:
            raise TypeError(f"{fn}: backend {backend_name!r} takes device arrays; {name} is a host numpy.ndarray "
                            f"(move it with numba.cuda.to_device, or run on a CPU backend)")
        raise TypeError(f"{fn}: backend {backend_name!r} runs on the CPU; {name} is a device array "
                        f"(use backend='cuda', or copy it to the host)")


def disjoint(fn: str, **arrays) -> None:
    """Require that no two of the given (non-None) arrays overlap in memory."""
    items = [(k, v) for k, v in arrays.items() if v is not None]
    for i, (ka, a) in enumerate(items):
        for kb, b in items[i + 1:]:
            if _overlaps(a, b):
                raise ValueError(f"{fn}: {ka} and {kb} must not overlap in memory")


# ----------------------------------------------------------------------------- scalars

def real(fn: str, name: str, value, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """Require a finite real number in the given interval; return it as float."""
    if type(value) is not float and (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)):
        raise TypeError(f"{fn}: {name} must be a real number; got {type(value).__name__}")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
        raise ValueError(f"{fn}: {name} must be finite and in {interval}; got {value!r}")
    return value


def positive(fn: str, name: str, value) -> float:
    return real(fn, name, value, low=0.0, low_open=True)


def nonnegative(fn: str, name: str, value) -> float:
    return real(fn, name, value, low=0.0)


def unit_interval(fn: str, name: str, value) -> float:
    """A decay rate such as beta1, beta2, rho: 0 <= value < 1."""
    return real(fn, name, value, low=0.0, high=1.0, high_open=True)


def integer(fn: str, name: str, value, *, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn}: {name} must be an integer; got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{fn}: {name} must be >= {low}; got {value}")
    return int(value)


def flag(fn: str, name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be True or False; got {value!r}")
    return bool(value)
