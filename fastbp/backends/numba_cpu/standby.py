"""The automatic CPU backend on a machine whose Numba code is not compiled yet.

The same protocol as :mod:`.backend` (the numba backend), which each kernel here calls first.
Where Numba has no code for the call's signature yet (in memory or in its disk cache), the
kernel instead runs on the cython backend (compiled ahead of time: no wait; on one thread fewer
while the worker compiles, see :mod:`.._cpu.threads`) and hands the
signature to the background compiler (:mod:`.background`); once that is done, the same call
runs Numba's code. So a fresh install's first call returns at once, and a warm one runs as fast
as the numba backend does (a call whose signature is compiled takes Numba's fast path straight
away).

The two backends give the same bits wherever no transcendental function is involved (the tile
plans, chunk sizes, reduction orders and BLAS are shared: ``tests/test_cpu_bitwise.py``); exp,
log, tanh and erf come from Numba's and the C library's math, which may differ in the last bit.

:mod:`fastbp._backend` hands this module out instead of the numba backend's when the backend is
chosen automatically, background compilation is on and the cython backend is available; asking
for ``"numba"`` by name (``backend=``, ``use_backend``, ``FASTBP_BACKEND``) gets Numba, compiling
on first call as always.
"""
from __future__ import annotations

from ..cython import backend as _spare
from . import backend as _numba
from . import dispatch as _d
from . import dropout as _drop
from . import normalization as _norm
from . import optim as _opt
from .background import _LOCAL, NotReady, submit, watch

NAME, DEVICE = "numba", "cpu"
empty, copy_ = _numba.empty, _numba.copy_
set_num_threads, get_num_threads, threading_layer = _numba.set_num_threads, _numba.get_num_threads, \
    _numba.threading_layer
BLAS_SOURCE = _numba.BLAS_SOURCE
BLAS_IS_PRIVATE = _numba.BLAS_IS_PRIVATE

#: the dispatchers the numba backend's kernels call (each call is one of them, once, before any
#: side effect, or one per array for the list kernels, which are served here array by array)
DISPATCHERS = tuple(watch(f) for f in (
    _d.linear_forward, _d.linear_backward, _d.activation_forward, _d.activation_backward,
    _d.softmax_cross_entropy, _d.mse_loss, _d.sigmoid_cross_entropy, _opt.sgd_update, _opt.adam_update,
    _opt.rmsprop_update, _opt.sum_of_squares, _opt.max_abs, _opt.scale_, _opt.clip_value_,
    _norm.layernorm_forward, _norm.layernorm_backward, _norm.batchnorm_forward, _norm.batchnorm_backward,
    _drop.dropout_forward, _drop.dropout_backward))


def _served(name):
    """Kernel ``name``: Numba's when its code exists, else the cython backend's, with the missing
    signature submitted for background compilation."""
    fast, spare = getattr(_numba, name), getattr(_spare, name)

    def kernel(*args):
        _LOCAL.active = True
        try:
            return fast(*args)
        except NotReady as missing:
            submit(missing.dispatcher, missing.sig, name)
        finally:
            _LOCAL.active = False
        return spare(*args)

    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = f"The numba backend's {name}, or the cython backend's while Numba compiles it."
    return kernel


def _array_by_array(name):
    """An in-place list kernel served one array at a time (it must not run twice on an array when
    Numba's code turns out to be missing half way through the list)."""
    one = _served(name)

    def kernel(arrays, *args):
        for a in arrays:
            one([a], *args)

    kernel.__name__ = kernel.__qualname__ = name
    return kernel


linear_forward = _served("linear_forward")
linear_backward = _served("linear_backward")
activation_forward = _served("activation_forward")
activation_backward = _served("activation_backward")
softmax_cross_entropy = _served("softmax_cross_entropy")
mse_loss = _served("mse_loss")
sigmoid_cross_entropy = _served("sigmoid_cross_entropy")
sgd_update = _served("sgd_update")
adam_update = _served("adam_update")
rmsprop_update = _served("rmsprop_update")
sum_of_squares = _served("sum_of_squares")
max_abs = _served("max_abs")
layernorm_forward = _served("layernorm_forward")
layernorm_backward = _served("layernorm_backward")
batchnorm_forward = _served("batchnorm_forward")
batchnorm_backward = _served("batchnorm_backward")
dropout_forward = _served("dropout_forward")
dropout_backward = _served("dropout_backward")
scale_ = _array_by_array("scale_")
clip_value_ = _array_by_array("clip_value_")
