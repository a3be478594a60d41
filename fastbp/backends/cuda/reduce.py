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
    through the float64 shared array ``buf``; every thread gets the result."""

    @device_function
    def block_sum(buf, tid, value):
        buf[tid] = value
        cuda.syncthreads()
        s = threads // 2
        while s > 0:
            if tid < s:
                buf[tid] += buf[tid + s]
            cuda.syncthreads()
            s //= 2
        total = buf[0]
        cuda.syncthreads()
        return total

    @device_function
    def block_max(buf, tid, value):
        """max, with NaN winning once seen (like the CPU kernels)."""
        buf[tid] = value
        cuda.syncthreads()
        s = threads // 2
        while s > 0:
            if tid < s:
                other = buf[tid + s]
                if other > buf[tid] or other != other:
                    buf[tid] = other
            cuda.syncthreads()
            s //= 2
        best = buf[0]
        cuda.syncthreads()
        return best

    return block_sum, block_max


FlatKernels = collections.namedtuple(
    "FlatKernels", "sum_squares_stage1 max_abs_stage1 mse_stage1 bce_stage1 sum_stage2 max_stage2")


@functools.lru_cache(maxsize=None)
def flat_kernels(threads: int):
    """Kernels over flat arrays writing one float64 partial per block (see the module docstring)."""
    block_sum, block_max = block_tree(threads)

    @cuda.jit
    def sum_squares_stage1(a, partial):
        buf = cuda.shared.array(threads, np.float64)
        tid = cuda.threadIdx.x
        acc = 0.0
        for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
            acc += F.square(a[i])
        total = block_sum(buf, tid, acc)
        if tid == 0:
            partial[cuda.blockIdx.x] = total

    @cuda.jit
    def max_abs_stage1(a, partial):
        buf = cuda.shared.array(threads, np.float64)
        tid = cuda.threadIdx.x
        acc = 0.0
        for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
            acc = F.abs_max(acc, a[i])
        best = block_max(buf, tid, acc)
        if tid == 0:
            partial[cuda.blockIdx.x] = best

    @cuda.jit
    def mse_stage1(pred, target, dpred, scale, need_grad, partial):
        """partial[block] = sum of (pred - target)^2 over this block's elements;
        dpred = scale * (pred - target) where asked (scale = 2 / n)."""
        buf = cuda.shared.array(threads, np.float64)
        tid = cuda.threadIdx.x
        acc = 0.0
        for i in range(cuda.grid(1), pred.size, cuda.gridsize(1)):
            acc += F.squared_error(pred[i], target[i])
            if need_grad:
                dpred[i] = F.squared_error_grad(pred[i], target[i], scale)
        total = block_sum(buf, tid, acc)
        if tid == 0:
            partial[cuda.blockIdx.x] = total

    @cuda.jit
    def bce_stage1(logits, targets, dlogits, scale, need_grad, partial):
        """partial[block] = sum of the binary cross-entropy terms over this block's elements;
        dlogits = scale * (sigmoid(z) - t) where asked (scale = 1 / n)."""
        buf = cuda.shared.array(threads, np.float64)
        tid = cuda.threadIdx.x
        acc = 0.0
        for i in range(cuda.grid(1), logits.size, cuda.gridsize(1)):
            if need_grad:
                term, grad = F.binary_cross_entropy_term_grad(logits[i], targets[i], scale)
                dlogits[i] = grad
            else:
                term = F.binary_cross_entropy_term(logits[i], targets[i])
            acc += term
        total = block_sum(buf, tid, acc)
        if tid == 0:
            partial[cuda.blockIdx.x] = total

    @cuda.jit
    def sum_stage2(partial, out, slot):
        """out[slot] = sum of partial, one block, fixed order."""
        buf = cuda.shared.array(threads, np.float64)
        tid = cuda.threadIdx.x
        acc = 0.0
        for i in range(tid, partial.size, threads):
            acc += partial[i]
        total = block_sum(buf, tid, acc)
        if tid == 0:
            out[slot] = total

    @cuda.jit
    def max_stage2(partial, out, slot):
        buf = cuda.shared.array(threads, np.float64)
        tid = cuda.threadIdx.x
        acc = 0.0
        for i in range(tid, partial.size, threads):
            x = partial[i]
            if x > acc or x != x:
                acc = x
        best = block_max(buf, tid, acc)
        if tid == 0:
            out[slot] = best

    return FlatKernels(sum_squares_stage1, max_abs_stage1, mse_stage1, bce_stage1, sum_stage2, max_stage2)


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
