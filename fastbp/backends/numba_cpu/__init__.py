"""The ``numba`` backend: ``@njit`` CPU kernels, importable and callable from your own ``@njit`` code.

Every kernel takes its outputs as arguments (allocate them once, outside your loop), activations as
integer codes from :mod:`fastbp.activations`, and ``None`` for an absent optional array::

    from numba import njit
    from fastbp import activations as A
    from fastbp.backends.numba_cpu import linear_forward, softmax_cross_entropy

    @njit
    def loss_of(x, w, b, labels, y):
        linear_forward(x, w, b, A.LINEAR, 0.0, y, None)
        return softmax_cross_entropy(y, labels, None, None)

These raw kernels do no validation: shapes, dtypes and contiguity are the caller's promise (the
public functions in :mod:`fastbp.kernels` check them). Their BLAS must run single-threaded
(two thread pools would fight): fastbp's own OpenBLAS always does, and then
``with fastbp.backends.numba_cpu.single_threaded_blas:`` costs and does nothing; with SciPy's
BLAS instead (``FASTBP_BLAS=scipy``) it pins that one. Put it around your outermost call so the
code runs right either way.

Each of these picks its serial or parallel kernel from the shape (:mod:`.dispatch`).
"""
from . import _cache

_cache.install()  # before any cache=True kernel of fastbp is decorated

from .._cpu.openblas import blas_pin as _blas_pin  # noqa: E402
from .dispatch import (  # noqa: E402
    activation_backward,
    activation_forward,
    linear_backward,
    linear_forward,
    mse_loss,
    sigmoid_cross_entropy,
    softmax_cross_entropy,
)
from .optim import adam_update, clip_value_, max_abs, rmsprop_update, scale_, sgd_update, sum_of_squares  # noqa: E402

__all__ = [
    "linear_forward", "linear_backward", "activation_forward", "activation_backward",
    "softmax_cross_entropy", "mse_loss", "sigmoid_cross_entropy", "sgd_update", "adam_update", "rmsprop_update",
    "sum_of_squares", "max_abs", "scale_", "clip_value_", "single_threaded_blas",
]

#: ``with single_threaded_blas:`` around calls of these kernels keeps their BLAS on one thread
single_threaded_blas = _blas_pin()
