"""Device arrays: recognising them, and taking them without a copy.

fastbp accepts, for the ``cuda`` backend, any array that lives on an NVIDIA GPU:

* Numba device arrays (``numba.cuda.to_device``, ``cuda.device_array``), and the CUDA simulator's
  arrays when ``NUMBA_ENABLE_CUDASIM=1``;
* any object with ``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA tensors, ...), viewed
  with ``numba.cuda.as_cuda_array`` (no copy; the view keeps the owner alive);
* any object with ``__dlpack__`` whose ``__dlpack_device__`` is a CUDA device, taken through
  CuPy's ``from_dlpack`` (no copy) when CuPy is installed.

Nothing here imports ``numba.cuda`` until a device array is actually seen, so the CPU path pays
nothing for it.
"""
from __future__ import annotations

import numpy as np

_DLPACK_CUDA_DEVICES = (2, 13)  # kDLCUDA, kDLCUDAManaged


def _is_simulator_array(a) -> bool:
    return type(a).__name__ == "FakeCUDAArray"


def is_device_array(a) -> bool:
    """True for an array on an NVIDIA GPU (see the module docstring for what counts)."""
    if isinstance(a, np.ndarray):
        return False
    if hasattr(a, "__cuda_array_interface__") or _is_simulator_array(a):
        return True
    dev = getattr(a, "__dlpack_device__", None)
    if dev is None:
        return False
    try:
        return dev()[0] in _DLPACK_CUDA_DEVICES
    except Exception:  # a broken protocol implementation: not ours to take
        return False


def as_device_array(fn: str, name: str, a):
    """A Numba device array viewing ``a`` (no copy); TypeError when that is impossible."""
    if _is_simulator_array(a):
        return a
    from numba import cuda

    if hasattr(a, "__cuda_array_interface__"):
        return a if _is_numba_device_array(a) else cuda.as_cuda_array(a)
    try:
        import cupy
    except ImportError:
        raise TypeError(f"{fn}: {name} is a DLPack CUDA array without __cuda_array_interface__; "
                        "install CuPy to pass it without a copy, or pass a Numba/CuPy/PyTorch CUDA array") from None
    return cuda.as_cuda_array(cupy.from_dlpack(a))


def _is_numba_device_array(a) -> bool:
    from numba.cuda.cudadrv.devicearray import DeviceNDArrayBase

    return isinstance(a, DeviceNDArrayBase)


def is_c_contiguous(a) -> bool:
    return a.flags.c_contiguous if isinstance(a, np.ndarray) else a.is_c_contiguous()


def is_writeable(a) -> bool:
    if isinstance(a, np.ndarray):
        return a.flags.writeable
    cai = getattr(a, "__cuda_array_interface__", None)
    return not (cai and cai["data"][1])  # (pointer, read_only)


def extent(a) -> tuple[int, int]:
    """[first byte, one past the last byte] that ``a`` can touch, for overlap checks."""
    iface = getattr(a, "__cuda_array_interface__", None) or a.__array_interface__
    start = iface["data"][0]
    if a.size == 0:
        return start, start
    itemsize = a.dtype.itemsize
    strides = a.strides
    lo = hi = start
    for n, s in zip(a.shape, strides):
        if s < 0:
            lo += (n - 1) * s
        else:
            hi += (n - 1) * s
    return lo, hi + itemsize


def may_share_memory(a, b) -> bool:
    """Whether ``a`` and ``b`` can touch a common byte (bounds only, like numpy.may_share_memory)."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.may_share_memory(a, b)
    if isinstance(a, np.ndarray) != isinstance(b, np.ndarray) and not (_is_simulator_array(a) or _is_simulator_array(b)):
        return False  # host and device memory never overlap
    (alo, ahi), (blo, bhi) = extent(a), extent(b)
    return alo < bhi and blo < ahi and a.size > 0 and b.size > 0


def data_pointer(a) -> int:
    iface = getattr(a, "__cuda_array_interface__", None) or a.__array_interface__
    return iface["data"][0]
