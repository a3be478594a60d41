"""Dropout kernels: grid-stride elementwise over flat arrays (as :mod:`.elementwise`). The mask is
the counter-based generator of :mod:`fastbp.formulas` (``F.dropout_keep``, a pure function of
(key, flat index), so the same bits as the CPU backends whatever the grid), applied in the same
pass. Every integer reaching ``F.dropout_keep`` is uint64 (int64 op uint64 is float64 in Numba).
"""
from __future__ import annotations

import contextlib
import warnings

from numba import cuda, uint64

from ._formulas import F
from ._jit import SIMULATOR


@cuda.jit
def dropout_forward(x, key, threshold, scale, y, mask):
    """mask[i] = keep_i = dropout_keep(key, i, threshold) (0 or 1); y[i] = x[i] scale where kept,
    x[i] 0 where dropped. key, threshold: uint64; scale: x's dtype."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        keep = F.dropout_keep(key, uint64(i), threshold)
        mask[i] = keep
        y[i] = F.dropout_value(x[i], keep, scale)


@cuda.jit
def dropout_backward(dy, mask, scale, dx):
    """dx[i] = dy[i] scale where mask[i] != 0, dy[i] 0 elsewhere."""
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        dx[i] = F.dropout_value(dy[i], mask[i] != 0, scale)


@contextlib.contextmanager
def words_wrap():
    """A context for launching :func:`dropout_forward`. On the GPU the 64-bit words wrap silently;
    Numba's CUDA simulator runs the generator on NumPy uint64 scalars, whose (intended) wrap-around
    warns "overflow encountered in scalar multiply" for nearly every element: silenced there."""
    if not SIMULATOR:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"overflow encountered in scalar (multiply|add)", RuntimeWarning)
        yield
