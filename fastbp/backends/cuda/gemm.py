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


_TEMPLATE = """
def gemm(a, b, bias, preact, out, m, n, k, alpha, has_bias, has_preact):
    a_tile = cuda.shared.array((BK, A_COLS), dt)
    b_tile = cuda.shared.array((BK, BN), dt)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * NTX + tx
    row0 = cuda.blockIdx.y * BM
    col0 = cuda.blockIdx.x * BN
{zero}
    for k0 in range(0, k, BK):
        for r in range(A_ROUNDS):
            idx = tid + r * NTHREADS
            if TRANS_A:  # a is (k, m): consecutive threads walk along m
                ii = idx % BM
                kk = idx // BM
                gi = row0 + ii
                gk = k0 + kk
                v = a[gk, gi] if gi < m and gk < k else dt(0)
            else:  # a is (m, k): consecutive threads walk along k
                kk = idx % BK
                ii = idx // BK
                gi = row0 + ii
                gk = k0 + kk
                v = a[gi, gk] if gi < m and gk < k else dt(0)
            a_tile[kk, ii] = v
        for r in range(B_ROUNDS):
            idx = tid + r * NTHREADS
            if TRANS_B:  # b is (n, k): consecutive threads walk along k
                kk = idx % BK
                jj = idx // BK
                gj = col0 + jj
                gk = k0 + kk
                v = b[gj, gk] if gj < n and gk < k else dt(0)
            else:  # b is (k, n): consecutive threads walk along n
                jj = idx % BN
                kk = idx // BN
                gj = col0 + jj
                gk = k0 + kk
                v = b[gk, gj] if gj < n and gk < k else dt(0)
            b_tile[kk, jj] = v
        cuda.syncthreads()
        for kk in range(BK):
{fragments}
{products}
        cuda.syncthreads()
{epilogue}
"""


def _source(tm: int, tn: int) -> str:
    """The kernel's text with the (tm, tn) register block written out: one scalar per accumulator,
    so that they live in registers (a (8, 8) ``cuda.local.array`` was spilled to local memory by
    NVVM: 256 bytes per thread, 2.3x slower on an H200)."""
    ind = " " * 4
    zero = "\n".join(f"{ind}c{i}_{j} = dt(0)" for i in range(tm) for j in range(tn))
    fragments = "\n".join([f"{ind * 3}a{i} = a_tile[kk, ty + {i * 1} * NTY]" for i in range(tm)]
                          + [f"{ind * 3}b{j} = b_tile[kk, tx + {j} * NTX]" for j in range(tn)])
    products = "\n".join(f"{ind * 3}c{i}_{j} += a{i} * b{j}" for i in range(tm) for j in range(tn))
    epilogue = []
    for i in range(tm):
        epilogue.append(f"{ind}gi = row0 + ty + {i} * NTY")
        epilogue.append(f"{ind}if gi < m:")
        for j in range(tn):
            epilogue += [f"{ind * 2}gj = col0 + tx + {j} * NTX",
                         f"{ind * 2}if gj < n:",
                         f"{ind * 3}v = c{i}_{j}",
                         f"{ind * 3}if has_bias:",
                         f"{ind * 4}v += bias[gj]",
                         f"{ind * 3}if has_preact:",
                         f"{ind * 4}preact[gi, gj] = v",
                         f"{ind * 3}out[gi, gj] = act(v, CODE, alpha)"]
    return _TEMPLATE.format(zero=zero, fragments=fragments, products=products, epilogue="\n".join(epilogue))


@functools.lru_cache(maxsize=None)
def kernel(dtype: np.dtype, tiles: GemmTiles, trans_a: bool, trans_b: bool, code: int):
    """The compiled kernel for one dtype, tile geometry, pair of transposes and activation code
    (a compile-time constant, so the epilogue is only that activation).

    Signature: ``(a, b, bias, preact, out, m, n, k, alpha, has_bias, has_preact)``: out is
    (m, n); op(a) is (m, k): a is (m, k), or (k, m) with ``trans_a``; op(b) is (k, n): b is (k, n),
    or (n, k) with ``trans_b``. Launch with :func:`launch`. The body is :data:`_TEMPLATE` with the
    register block unrolled by :func:`_source`; every size in it is a compile-time constant.
    """
    dt = np.dtype(dtype).type
    ntx, nty = tiles.threads
    nthreads = ntx * nty
    constants = dict(
        cuda=cuda, dt=dt, act=_act.forward, CODE=code, TRANS_A=trans_a, TRANS_B=trans_b,
        BM=tiles.bm, BN=tiles.bn, BK=tiles.bk, NTX=ntx, NTY=nty, NTHREADS=nthreads,
        A_ROUNDS=tiles.bm * tiles.bk // nthreads, B_ROUNDS=tiles.bk * tiles.bn // nthreads,
        # padded rows keep a's transposed staging stores off one bank
        A_COLS=tiles.bm + (4 if dt is np.float32 else 2),
    )
    namespace = dict(constants)
    exec(compile(_source(tiles.tm, tiles.tn), f"<fastbp gemm {tiles.tm}x{tiles.tn}>", "exec"), namespace)
    return cuda.jit(namespace["gemm"])


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
