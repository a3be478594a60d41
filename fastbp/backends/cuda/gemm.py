"""Tiled matrix products with register blocking and a fused epilogue.

``out = epilogue(op(a) @ op(b))`` where op transposes when asked, for the three products of a
dense layer: x @ w (forward), x.T @ dz (dw), dz @ w.T (dx).

A block computes a (bm, bn) tile of ``out``. Per step of bk along the inner dimension it stages an
(bm, bk) tile of op(a) and a (bk, bn) tile of op(b) in shared memory (global reads coalesced for
either layout: consecutive threads read consecutive addresses), then each thread multiplies them
into its (tm, tn) accumulators held in registers. Thread (tx, ty) owns rows ty + i * (bm / tm) and
columns tx + j * (bn / tn) of the tile: a warp reads consecutive shared words of the b tile (no bank
conflicts) and writes consecutive columns of ``out`` (coalesced). The a tile is stored transposed
with a row padding that keeps its staging stores conflict-free. Edges are handled by zero-filling
the staged tiles and masking the stores, so any shape works with any tile.

Epilogue: ``v = acc + bias[j]``; optionally ``preact[i, j] = v``; ``out[i, j] = act(v)``
(:mod:`._act`). Accumulation is in the array dtype, one fixed order per tile geometry.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from . import _act
from .config import GemmTiles


@functools.lru_cache(maxsize=None)
def kernel(dtype: np.dtype, tiles: GemmTiles, trans_a: bool, trans_b: bool, code: int):
    """The compiled kernel for one dtype, tile geometry, pair of transposes and activation code
    (a compile-time constant, so the epilogue is only that activation).

    Signature: ``(a, b, bias, preact, out, m, n, k, alpha, has_bias, has_preact)``: out is
    (m, n); op(a) is (m, k): a is (m, k), or (k, m) with ``trans_a``; op(b) is (k, n): b is (k, n),
    or (n, k) with ``trans_b``. Launch with :func:`launch`.
    """
    dt = np.dtype(dtype).type
    bm, bn, bk, tm, tn = tiles.bm, tiles.bn, tiles.bk, tiles.tm, tiles.tn
    ntx, nty = tiles.threads
    nthreads = ntx * nty
    a_rounds = bm * bk // nthreads
    b_rounds = bk * bn // nthreads
    a_cols = bm + (4 if dt is np.float32 else 2)  # padded rows keep a's transposed staging stores off one bank
    act = _act.forward

    @cuda.jit
    def gemm(a, b, bias, preact, out, m, n, k, alpha, has_bias, has_preact):
        a_tile = cuda.shared.array((bk, a_cols), dt)
        b_tile = cuda.shared.array((bk, bn), dt)
        acc = cuda.local.array((tm, tn), dt)
        a_reg = cuda.local.array(tm, dt)
        b_reg = cuda.local.array(tn, dt)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * ntx + tx
        row0 = cuda.blockIdx.y * bm
        col0 = cuda.blockIdx.x * bn
        for i in range(tm):
            for j in range(tn):
                acc[i, j] = 0
        for k0 in range(0, k, bk):
            for r in range(a_rounds):
                idx = tid + r * nthreads
                if trans_a:  # a is (k, m): consecutive threads walk along m
                    ii = idx % bm
                    kk = idx // bm
                    gi = row0 + ii
                    gk = k0 + kk
                    v = a[gk, gi] if gi < m and gk < k else dt(0)
                else:  # a is (m, k): consecutive threads walk along k
                    kk = idx % bk
                    ii = idx // bk
                    gi = row0 + ii
                    gk = k0 + kk
                    v = a[gi, gk] if gi < m and gk < k else dt(0)
                a_tile[kk, ii] = v
            for r in range(b_rounds):
                idx = tid + r * nthreads
                if trans_b:  # b is (n, k): consecutive threads walk along k
                    kk = idx % bk
                    jj = idx // bk
                    gj = col0 + jj
                    gk = k0 + kk
                    v = b[gj, gk] if gj < n and gk < k else dt(0)
                else:  # b is (k, n): consecutive threads walk along n
                    jj = idx % bn
                    kk = idx // bn
                    gj = col0 + jj
                    gk = k0 + kk
                    v = b[gk, gj] if gj < n and gk < k else dt(0)
                b_tile[kk, jj] = v
            cuda.syncthreads()
            for kk in range(bk):
                for i in range(tm):
                    a_reg[i] = a_tile[kk, ty + i * nty]
                for j in range(tn):
                    b_reg[j] = b_tile[kk, tx + j * ntx]
                for i in range(tm):
                    for j in range(tn):
                        acc[i, j] += a_reg[i] * b_reg[j]
            cuda.syncthreads()
        for i in range(tm):
            gi = row0 + ty + i * nty
            if gi < m:
                for j in range(tn):
                    gj = col0 + tx + j * ntx
                    if gj < n:
                        v = acc[i, j]
                        if has_bias:
                            v += bias[gj]
                        if has_preact:
                            preact[gi, gj] = v
                        out[gi, gj] = act(v, code, alpha)

    return gemm


def launch(a, b, out, *, trans_a=False, trans_b=False, bias=None, preact=None, code=_act.LINEAR,
           alpha=0.0, tiles: GemmTiles):
    """out = act(op(a) @ op(b) + bias), preact = op(a) @ op(b) + bias (see :func:`kernel`)."""
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0:
        return
    dtype = out.dtype
    has_bias = bias is not None
    has_preact = preact is not None
    bias = bias if has_bias else out[0]  # a typed stand-in that is never read
    preact = preact if has_preact else out
    ntx, nty = tiles.threads
    grid = (-(-n // tiles.bn), -(-m // tiles.bm))
    kernel(dtype, tiles, trans_a, trans_b, code)[grid, (ntx, nty)](a, b, bias, preact, out, m, n, k, alpha,
                                                                   has_bias, has_preact)
