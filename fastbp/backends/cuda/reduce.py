"""Deterministic reductions: fixed grids, a fixed tree per block, a fixed-order second stage.

No float atomics anywhere: every sum is taken in an order that depends on the shapes and the
launch geometry only, so repeated runs give bitwise-identical results. Partial sums are float64.

* :func:`column_kernels` — the bias gradient: stage 1 sums ``col_chunk`` rows of every column per
  block (and, fused, writes dz = dy * act'(.)); stage 2 adds the chunks of each column in order.
* :func:`flat_kernels` — sums over all elements (squares, squared differences, max |a|): stage 1
  runs a fixed grid, each thread striding over the array, each block reducing its threads by a
  tree in shared memory; stage 2 is one block doing the same over the per-block partials.
"""
from __future__ import annotations

import collections
import functools
import math

import numpy as np
from numba import cuda, float64

from ._jit import device_function

from ...activations import LINEAR
from ._formulas import F


@functools.lru_cache(maxsize=None)
def block_tree(threads: int):
    """Device functions reducing one value per thread of a 1-D block (``threads`` a power of 2)
    through the float64 shared array ``buf``, in a fixed tree; every thread gets the result:
    ``block_sum`` and ``block_max`` (max, with NaN winning once seen, like the CPU kernels)."""

    def tree(combine):
        @device_function
        def reduce(buf, tid, value):
            buf[tid] = value
            cuda.syncthreads()
            s = threads // 2
            while s > 0:
                if tid < s:
                    buf[tid] = combine(buf[tid], buf[tid + s])
                cuda.syncthreads()
                s //= 2
            result = buf[0]
            cuda.syncthreads()
            return result
        return reduce

    return tree(_add), tree(_nan_max)


@device_function
def _add(a, b):
    return a + b


@device_function
def _nan_max(a, b):
    """max(a, b), b when it is NaN."""
    return b if b > a or b != b else a


FlatKernels = collections.namedtuple(
    "FlatKernels", "sum_squares_stage1 max_abs_stage1 mse_stage1 bce_stage1 sum_stage2 max_stage2")


@device_function
def _add_square(acc, x, t, g, scale, need_grad, i):
    return acc + F.square(x[i])


@device_function
def _max_abs(acc, x, t, g, scale, need_grad, i):
    return F.abs_max(acc, x[i])


@device_function
def _add_squared_error(acc, x, t, g, scale, need_grad, i):
    """(x - t)^2; g = scale (x - t) where asked (scale = 2 / n)."""
    if need_grad:
        g[i] = F.squared_error_grad(x[i], t[i], scale)
    return acc + F.squared_error(x[i], t[i])


@device_function
def _add_binary_cross_entropy(acc, x, t, g, scale, need_grad, i):
    """The binary cross-entropy term of logit x and target t; g = scale (sigmoid(x) - t) where
    asked (scale = 1 / n)."""
    if need_grad:
        term, grad = F.binary_cross_entropy_term_grad(x[i], t[i], scale)
        g[i] = grad
    else:
        term = F.binary_cross_entropy_term(x[i], t[i])
    return acc + term


@functools.lru_cache(maxsize=None)
def flat_kernels(threads: int):
    """Kernels over flat arrays writing one float64 partial per block (see the module docstring).
    Every stage 1 takes (x, t, g, scale, need_grad, partial): the array, the targets and the
    gradient the losses use (any arrays of the dtype for the others), the gradient's scale."""
    block_sum, block_max = block_tree(threads)

    def stage1(accumulate, block_reduce):
        @cuda.jit
        def kernel(x, t, g, scale, need_grad, partial):
            """partial[block] = this block's elements accumulated, reduced over its threads."""
            buf = cuda.shared.array(threads, np.float64)
            tid = cuda.threadIdx.x
            acc = 0.0
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                acc = accumulate(acc, x, t, g, scale, need_grad, i)
            total = block_reduce(buf, tid, acc)
            if tid == 0:
                partial[cuda.blockIdx.x] = total
        return kernel

    def stage2(combine, block_reduce):
        @cuda.jit
        def kernel(partial, out, slot):
            """out[slot] = partial reduced, one block, fixed order."""
            buf = cuda.shared.array(threads, np.float64)
            tid = cuda.threadIdx.x
            acc = 0.0
            for i in range(tid, partial.size, threads):
                acc = combine(acc, partial[i])
            total = block_reduce(buf, tid, acc)
            if tid == 0:
                out[slot] = total
        return kernel

    return FlatKernels(stage1(_add_square, block_sum), stage1(_max_abs, block_max),
                       stage1(_add_squared_error, block_sum), stage1(_add_binary_cross_entropy, block_sum),
                       stage2(_add, block_sum), stage2(_nan_max, block_max))


@functools.lru_cache(maxsize=None)
def column_kernels(threads: int, code: int):
    """Stage 1 and 2 of the bias gradient, stage 1 fused with dz = dy * act'(saved) (``code``:
    an elementwise activation, a compile-time constant)."""
    derivative = F.act_derivative

    @cuda.jit
    def dz_colsum_stage1(dy, saved, alpha, dz, write_dz, need_sum, chunk, partial):
        """Rows [c chunk, (c + 1) chunk) of column j: dz = dy * act'(saved), and its column sum."""
        m, n = dy.shape
        j = cuda.blockIdx.x * threads + cuda.threadIdx.x
        c = cuda.blockIdx.y
        if j >= n:
            return
        acc = 0.0
        for i in range(c * chunk, min(m, (c + 1) * chunk)):
            v = dy[i, j]
            if code != LINEAR:
                v = derivative(dy[i, j], saved[i, j], code, alpha)
            if write_dz:
                dz[i, j] = v
            acc += float64(dz[i, j]) if write_dz else float64(v)
        if need_sum:
            partial[c, j] = acc

    @cuda.jit
    def colsum_stage2(partial, db):
        j = cuda.grid(1)
        if j < db.size:
            acc = 0.0
            for c in range(partial.shape[0]):
                acc += partial[c, j]
            db[j] = acc

    return dz_colsum_stage1, colsum_stage2


def grid_1d(n: int, threads: int, max_blocks: int) -> int:
    """Blocks of a grid-stride launch over n elements: a function of n and the geometry only."""
    return max(1, min(max_blocks, math.ceil(n / threads)))
