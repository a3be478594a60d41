"""The cython backend: the kernel protocol of :mod:`fastbp.backends` over the compiled extension.

Needs no Numba: only NumPy, SciPy and the compiled modules ``_linear``, ``_elementwise`` and
``_losses``. The products call fastbp's own one-thread OpenBLAS (:mod:`fastbp._openblas`, shared
with the numba backend), else SciPy's ``cython_blas`` pinned to one thread
(:mod:`fastbp._blas_threads`). Tile plans come from :mod:`fastbp._tiling` (shape only, shared
with the numba backend), so results are bitwise identical for any thread count, and the kernels'
own OpenMP loops use :func:`get_num_threads` threads.
"""
from __future__ import annotations

import importlib
import os

import numpy as np


def _cpu_has_avx2_fma() -> bool:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # another NumPy layout: the baseline build
        return False
    return bool(features.get("AVX2") and features.get("FMA3"))


def _kernels(name: str):
    """The AVX2 + FMA build of kernel module ``name`` on a CPU with both (when it was built),
    else the baseline build. ``FASTBP_CYTHON_SIMD=baseline`` forces the baseline."""
    if os.environ.get("FASTBP_CYTHON_SIMD", "auto") != "baseline" and _cpu_has_avx2_fma():
        try:
            return importlib.import_module(f".{name}_avx2", __package__)
        except ImportError:
            pass
    return importlib.import_module(f".{name}", __package__)


try:
    _ew = _kernels("_elementwise")
    _lin = _kernels("_linear")
    from . import _losses as _loss
except ImportError as exc:  # an sdist checkout without a build, or a failed build
    raise ImportError(f"the compiled extension is missing ({exc}); build it with `pip install .` "
                      "or `python setup.py build_ext --inplace`") from None

#: which build of the elementwise and layer kernels runs here ("avx2" or "baseline")
SIMD = "avx2" if _ew.__name__.endswith("_avx2") else "baseline"

from ... import _tiling
from ..._openblas import blas_pin as _blas_pin
from ..._openblas import gemm_addresses as _gemm_addresses

_own = _gemm_addresses()
if _own is not None:
    _lin.use_blas(_own[0], _own[1])
#: where the products run: fastbp's own OpenBLAS (one thread), else SciPy's BLAS
BLAS_SOURCE = _own[2] if _own is not None else "SciPy cython_blas"
_one_blas_thread = _blas_pin()
from ...activations import LINEAR as _LINEAR
from ...activations import SOFTMAX as _SOFTMAX

NAME, DEVICE = "cython", "cpu"
empty = np.empty


def _default_threads() -> int:
    """OpenMP's default (OMP_NUM_THREADS, else the cores this process may use); 1 in a serial build."""
    from . import _buildinfo

    return _buildinfo.openmp_max_threads() if _buildinfo.openmp_enabled() else 1


_num_threads = _default_threads()


def set_num_threads(n: int) -> None:
    """Threads of the extension's OpenMP loops (process-wide)."""
    global _num_threads
    _num_threads = int(n)


def get_num_threads() -> int:
    return _num_threads


def _flat(a):
    return a.reshape(-1)



def linear_forward(x, w, b, code, alpha, y, z):
    m, k = x.shape
    n = w.shape[1]
    rb, cb = _tiling.tile_shape(m, n, k, code >= _SOFTMAX)
    with _one_blas_thread:
        _lin.linear_forward(x, w, b, code, alpha, y, z, rb, cb, _num_threads)


def linear_backward(dy, x, w, saved, code, alpha, dz, dx, dw, db):
    if dz is dy and code >= _SOFTMAX:  # row-wise derivative in place: through scratch (it reads dy twice)
        scratch = np.empty_like(dz)
        linear_backward(dy, x, w, saved, code, alpha, scratch, dx, dw, db)
        dy[...] = scratch
        return
    m, k = x.shape
    n = w.shape[1]
    rb_dw, n_dw, cb_dx, n_dx = _tiling.plan_backward(m, k, n, dx is not None)
    with _one_blas_thread:
        _lin.linear_backward(dy, x, w, dy if saved is None else saved, code, alpha, dz, dz is dy, dx, dw, db,
                             rb_dw, n_dw, cb_dx, n_dx, _num_threads)


def activation_forward(z, code, alpha, y):
    if code >= _SOFTMAX:
        _ew.rowwise_activation(z, z, code, y, True, _num_threads)
    else:
        _ew.activation_forward(_flat(z), code, alpha, _flat(y), _num_threads)


def activation_backward(dy, saved, code, alpha, dz):
    if code >= _SOFTMAX:
        out = np.empty_like(dz) if dz is dy else dz  # (the row's sum is read before any write, but
        _ew.rowwise_activation(dy, saved, code, out, False, _num_threads)  # keep the kernel alias-free)
        if out is not dz:
            dz[...] = out
    else:
        _ew.activation_backward(_flat(dy), _flat(dy if saved is None else saved), code, alpha, _flat(dz),
                                _num_threads)


def softmax_cross_entropy(logits, labels, targets, dlogits):
    return _loss.softmax_cross_entropy(logits, labels, targets, dlogits, _num_threads)


def mse_loss(pred, target, dpred):
    return _loss.mse_loss(_flat(pred), _flat(target), None if dpred is None else _flat(dpred), _num_threads)


def sgd_update(p, g, velocity, lr, momentum, nesterov, weight_decay):
    has_v = velocity is not None
    _ew.sgd_update(_flat(p), _flat(g), _flat(velocity if has_v else p), has_v, lr, momentum, nesterov,
                   weight_decay, _num_threads)


def adam_update(p, g, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    amsgrad = vmax is not None
    _ew.adam_update(_flat(p), _flat(g), _flat(m), _flat(v), _flat(vmax if amsgrad else v), amsgrad, step, lr,
                    beta1, beta2, eps, weight_decay, decoupled, _num_threads)


def rmsprop_update(p, g, sq_avg, grad_avg, momentum_buf, lr, rho, eps, weight_decay, momentum):
    centered = grad_avg is not None
    use_buf = momentum_buf is not None
    _ew.rmsprop_update(_flat(p), _flat(g), _flat(sq_avg), _flat(grad_avg if centered else sq_avg),
                       _flat(momentum_buf if use_buf else sq_avg), centered, use_buf, lr, rho, eps, weight_decay,
                       momentum, _num_threads)


def sum_of_squares(arrays):
    return float(sum(_ew.sum_of_squares(_flat(a), _num_threads) for a in arrays))


def max_abs(arrays):
    best = 0.0
    for a in arrays:
        peak = _ew.max_abs(_flat(a), _num_threads)
        if peak > best or peak != peak:
            best = peak
    return best


def scale_(arrays, factor):
    for a in arrays:
        _ew.scale_(_flat(a), factor, _num_threads)


def clip_value_(arrays, clip):
    for a in arrays:
        _ew.clip_value_(_flat(a), clip, _num_threads)
