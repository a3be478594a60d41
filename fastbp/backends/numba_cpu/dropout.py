"""Dropout kernels: the mask drawn from the counter-based generator of :mod:`fastbp.formulas`
(a pure function of (key, element index), so the chunking cannot change it), applied in the
same pass; elementwise over flat chunks (:func:`.._cpu.tiling.even_chunk`)."""
from numba import njit, prange, uint64

from .._cpu.tiling import LIGHT_SERIAL_ELEMENTS, even_chunk
from ._formulas import F


@njit(cache=True, inline="always")
def _forward_span(x, key, threshold, scale, y, mask, lo, hi):
    for i in range(lo, hi):
        keep = F.dropout_keep(key, uint64(i), threshold)
        mask[i] = keep
        y[i] = F.dropout_value(x[i], keep, scale)


@njit(cache=True, inline="always")
def _backward_span(dy, mask, scale, dx, lo, hi):
    for i in range(lo, hi):
        dx[i] = F.dropout_value(dy[i], mask[i] != 0, scale)


@njit(cache=True, parallel=True)
def _forward_parallel(x, key, threshold, scale, y, mask):
    size = even_chunk(x.size)
    for c in prange(-(-x.size // size)):
        _forward_span(x, key, threshold, scale, y, mask, c * size, min(x.size, (c + 1) * size))


@njit(cache=True, parallel=True)
def _backward_parallel(dy, mask, scale, dx):
    size = even_chunk(dy.size)
    for c in prange(-(-dy.size // size)):
        _backward_span(dy, mask, scale, dx, c * size, min(dy.size, (c + 1) * size))


@njit(cache=True)
def dropout_forward(x, key, threshold, scale, y, mask):
    """Flat (1-D) arrays: mask[i] = keep_i = dropout_keep(key, i, threshold) (0 or 1);
    y[i] = x[i] scale where kept, x[i] 0 where dropped. key, threshold: uint64; scale: x's dtype."""
    if x.size >= LIGHT_SERIAL_ELEMENTS:
        _forward_parallel(x, key, threshold, scale, y, mask)
    else:
        _forward_span(x, key, threshold, scale, y, mask, 0, x.size)


@njit(cache=True)
def dropout_backward(dy, mask, scale, dx):
    """Flat arrays: dx[i] = dy[i] scale where mask[i] != 0, dy[i] 0 elsewhere."""
    if dy.size >= LIGHT_SERIAL_ELEMENTS:
        _backward_parallel(dy, mask, scale, dx)
    else:
        _backward_span(dy, mask, scale, dx, 0, dy.size)
