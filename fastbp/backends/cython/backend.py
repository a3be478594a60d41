"""The cython backend: the kernel protocol of :mod:`fastbp.backends` over the compiled extension.

Needs no Numba: only NumPy, SciPy and the compiled modules ``_linear``, ``_elementwise``,
``_losses``, ``_normalization`` and ``_dropout``. The products call fastbp's own one-thread
OpenBLAS (:mod:`.._cpu.openblas`, shared with the numba backend), else SciPy's ``cython_blas``
pinned to one thread (:mod:`.._cpu.blas_threads`). Tile plans and chunk sizes come from
:mod:`.._cpu.tiling` (shape only, shared with the numba backend), so results are bitwise
identical for any thread count, and the kernels' own OpenMP loops use :func:`get_num_threads`
threads (one fewer while Numba compiles in a background worker, :mod:`.._cpu.threads`). The
scalar formulas are compiled from fastbp/formulas.py (``_codegen.py``); an extension built from
other formulas than the installed ones does not load. Outputs never alias inputs (the public
layer serves the documented in-place uses).
"""
from __future__ import annotations

import functools
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
    _norm = _kernels("_normalization")
    _drop = _kernels("_dropout")
    from . import _losses as _loss
except ImportError as exc:  # an sdist checkout without a build, or a failed build
    raise ImportError(f"the compiled extension is missing ({exc}); build it with `pip install .` "
                      "or `python setup.py build_ext --inplace`") from None


def _check_formulas():
    from pathlib import Path

    from ._codegen import sources_digest

    try:
        current = sources_digest(Path(__file__).resolve().parents[2])
    except OSError:  # the sources are not installed beside the extension: nothing to compare
        return
    for module in (_ew, _lin, _loss, _norm, _drop):
        if module.formulas_digest() != current:
            raise ImportError(f"the compiled extension {module.__name__} was built from other formulas than "
                              "fastbp/formulas.py now holds; rebuild it (`pip install .`, or "
                              "`python setup.py build_ext --inplace`)")


_check_formulas()

#: which build of the elementwise and layer kernels runs here ("avx2" or "baseline")
SIMD = "avx2" if _ew.__name__.endswith("_avx2") else "baseline"

from ...formulas import is_rowwise as _is_rowwise  # noqa: E402
from ...formulas import nan_max as _nan_max  # noqa: E402
from .._cpu import tiling as _tiling  # noqa: E402
from .._cpu.threads import compiling_in_background as _compiling  # noqa: E402
from .._cpu.openblas import blas_pin as _blas_pin  # noqa: E402
from .._cpu.openblas import gemm_addresses as _gemm_addresses  # noqa: E402

_own = _gemm_addresses()  # (the kernels' module took the same BLAS when it loaded: _linear.pyx)
#: where the products run: fastbp's own OpenBLAS (one thread), else SciPy's BLAS
BLAS_SOURCE = _own[2] if _own is not None else "SciPy cython_blas"
_one_blas_thread = _blas_pin()
_even = _tiling.even_chunk

NAME, DEVICE = "cython", "cpu"
empty = np.empty


def copy_(dst, src):
    np.copyto(dst, src)


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


def _threads() -> int:
    """The threads of the next OpenMP loop: the set count, one fewer while Numba compiles in the
    background (results do not depend on it)."""
    return _num_threads - 1 if _num_threads > 1 and _compiling[0] else _num_threads


def _flat(a):
    return a.reshape(-1)


def linear_forward(x, w, b, code, alpha, y, z):
    m, k = x.shape
    n = w.shape[1]
    rb, cb = _tiling.tile_shape(m, n, k, _is_rowwise(code))
    with _one_blas_thread:
        _lin.linear_forward(x, w, b, code, alpha, y, z, rb, cb, _threads())


def linear_backward(dy, x, w, saved, code, alpha, dz, dx, dw, db):
    m, k = x.shape
    n = w.shape[1]
    rb_dw, n_dw, cb_dx, n_dx = _tiling.plan_backward(m, k, n, dx is not None)
    with _one_blas_thread:
        _lin.linear_backward(dy, x, w, dy if saved is None else saved, code, alpha, dy if dz is None else dz,
                             dz is None, dx, dw, db, _tiling.DB_ROWS, rb_dw, n_dw, cb_dx, n_dx, _threads())


def activation_forward(z, code, alpha, y):
    if _is_rowwise(code):
        _ew.rowwise_activation(z, z, code, y, True, _threads())
    else:
        _ew.activation_forward(_flat(z), code, alpha, _flat(y), _even(z.size), _threads())


def activation_backward(dy, saved, code, alpha, dz):
    if _is_rowwise(code):
        _ew.rowwise_activation(dy, saved, code, dz, False, _threads())
    else:
        _ew.activation_backward(_flat(dy), _flat(dy if saved is None else saved), code, alpha, _flat(dz),
                                _even(dy.size), _threads())


def softmax_cross_entropy(logits, labels, targets, dlogits):
    return _loss.softmax_cross_entropy(logits, labels, targets, dlogits, _tiling.CE_ROWS, _threads())


def mse_loss(pred, target, dpred):
    return _loss.mse_loss(_flat(pred), _flat(target), None if dpred is None else _flat(dpred), _tiling.MSE_CHUNK,
                          _num_threads)


def sigmoid_cross_entropy(logits, targets, dlogits):
    return _loss.sigmoid_cross_entropy(_flat(logits), _flat(targets), None if dlogits is None else _flat(dlogits),
                                       _tiling.MSE_CHUNK, _threads())


def sgd_update(p, g, velocity, lr, momentum, nesterov, weight_decay):
    has_v = velocity is not None
    _ew.sgd_update(_flat(p), _flat(g), _flat(velocity if has_v else p), has_v, lr, momentum, nesterov,
                   weight_decay, _even(p.size), _threads())


def adam_update(p, g, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    amsgrad = vmax is not None
    _ew.adam_update(_flat(p), _flat(g), _flat(m), _flat(v), _flat(vmax if amsgrad else v), amsgrad, step, lr,
                    beta1, beta2, eps, weight_decay, decoupled, _even(p.size), _threads())


def rmsprop_update(p, g, sq_avg, grad_avg, momentum_buf, lr, rho, eps, weight_decay, momentum):
    centered = grad_avg is not None
    use_buf = momentum_buf is not None
    _ew.rmsprop_update(_flat(p), _flat(g), _flat(sq_avg), _flat(grad_avg if centered else sq_avg),
                       _flat(momentum_buf if use_buf else sq_avg), centered, use_buf, lr, rho, eps, weight_decay,
                       momentum, _even(p.size), _threads())


def sum_of_squares(arrays):
    return float(sum(_tiling.ordered_sum(_ew.sum_of_squares(_flat(a), _tiling.CHUNK, _threads())) for a in arrays))


def max_abs(arrays):
    peaks = (functools.reduce(_nan_max, _ew.max_abs(_flat(a), _tiling.CHUNK, _threads()), 0.0) for a in arrays)
    return float(functools.reduce(_nan_max, peaks, 0.0))


def scale_(arrays, factor):
    for a in arrays:
        _ew.scale_(_flat(a), factor, _even(a.size), _threads())


def clip_value_(arrays, clip):
    for a in arrays:
        _ew.clip_value_(_flat(a), clip, _even(a.size), _threads())


def _parallel_threads(size: int, serial_below: int = _tiling.SERIAL_ELEMENTS) -> int:
    """The threads of a normalization or dropout loop over ``size`` elements: 1 (the calling
    thread) below ``serial_below``, as the numba kernels choose (results do not depend on it)."""
    return _threads() if size >= serial_below else 1


def layernorm_forward(x, gamma, beta, eps, y, mean, rstd):
    _norm.layernorm_forward(x, gamma, beta, eps, y, mean, rstd, _parallel_threads(x.size))


def layernorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    _norm.layernorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, _tiling.NORM_ROWS,
                             _parallel_threads(x.size))


def batchnorm_forward(x, gamma, beta, eps, running_mean, running_var, momentum, training, unbiased, y, mean, rstd):
    _norm.batchnorm_forward(x, gamma, beta, eps, running_mean, running_var, momentum, training, unbiased, y, mean,
                            rstd, _tiling.NORM_ROWS, _parallel_threads(x.size))


def batchnorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    _norm.batchnorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, _tiling.NORM_ROWS,
                             _parallel_threads(x.size))


def dropout_forward(x, key, threshold, scale, y, mask):
    _drop.dropout_forward(_flat(x), key, threshold, scale, _flat(y), _flat(mask), _even(x.size),
                          _parallel_threads(x.size, _tiling.LIGHT_SERIAL_ELEMENTS))


def dropout_backward(dy, mask, scale, dx):
    _drop.dropout_backward(_flat(dy), _flat(mask), scale, _flat(dx), _even(dy.size),
                           _parallel_threads(dy.size, _tiling.LIGHT_SERIAL_ELEMENTS))
