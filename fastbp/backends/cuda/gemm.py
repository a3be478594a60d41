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
(:mod:`fastbp.formulas`). Accumulation is in the array dtype, one fixed order per tile geometry.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from ...activations import LINEAR
from . import _jit
from ._formulas import F
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


def _source_pipelined(tiles: GemmTiles, trans_a: bool, trans_b: bool, a_cols: int, nthreads: int) -> str:
    """The pipelined kernel (``GemmTiles.pipelined``), written out for one geometry.

    Thread (tx, ty) owns rows ty * tm + i and columns tx * tn + j of the tile (contiguous, so the
    fragments are read from shared memory with 16-byte loads: both tiles are 16-byte aligned and
    every offset is a multiple of 4 elements), the bk inner steps are unrolled with unsigned
    shared offsets (no negative-index wraparound code), and while a step multiplies the staged
    tiles, the next step's elements are already on their way from global memory into registers.
    Each output still sums its k products in ascending order, as :data:`_TEMPLATE` does.
    """
    bm, bn, bk, tm, tn = tiles.bm, tiles.bn, tiles.bk, tiles.tm, tiles.tn
    a_rounds, b_rounds = bm * bk // nthreads, bk * bn // nthreads
    i1, i2, i3 = " " * 4, " " * 8, " " * 12
    align = "" if _jit.SIMULATOR else ", alignment=16"  # (the simulator refuses alignment)
    lines = ["def gemm(a, b, bias, preact, out, m, n, k, alpha, has_bias, has_preact):",
             f"{i1}a_tile = cuda.shared.array({bk * a_cols}, dt{align})",
             f"{i1}b_tile = cuda.shared.array({bk * bn}, dt{align})",
             f"{i1}tx = cuda.threadIdx.x",
             f"{i1}ty = cuda.threadIdx.y",
             f"{i1}tid = ty * {bn // tn} + tx",
             f"{i1}row0 = cuda.blockIdx.y * {bm}",
             f"{i1}col0 = cuda.blockIdx.x * {bn}",
             f"{i1}abase = np.uint32(ty * {tm})",
             f"{i1}bbase = np.uint32(tx * {tn})"]
    # where each staged element comes from and goes to: fixed per thread for the whole loop
    for r in range(a_rounds):
        idx = f"(tid + {r * nthreads})"
        ii, kk = (f"{idx} % {bm}", f"{idx} // {bm}") if trans_a else (f"{idx} // {bk}", f"{idx} % {bk}")
        lines += [f"{i1}ai{r} = row0 + {ii}", f"{i1}ak{r} = {kk}", f"{i1}as{r} = np.uint32(ak{r} * {a_cols} + {ii})"]
    for r in range(b_rounds):
        idx = f"(tid + {r * nthreads})"
        jj, kk = (f"{idx} // {bk}", f"{idx} % {bk}") if trans_b else (f"{idx} % {bn}", f"{idx} // {bn}")
        lines += [f"{i1}bj{r} = col0 + {jj}", f"{i1}bk{r} = {kk}", f"{i1}bs{r} = np.uint32(bk{r} * {bn} + {jj})"]

    def load(ind, k0):
        out = []
        for r in range(a_rounds):
            ga = f"a[gk, ai{r}]" if trans_a else f"a[ai{r}, gk]"
            out += [f"{ind}gk = {k0} + ak{r}", f"{ind}va{r} = {ga} if ai{r} < m and gk < k else dt(0)"]
        for r in range(b_rounds):
            gb = f"b[bj{r}, gk]" if trans_b else f"b[gk, bj{r}]"
            out += [f"{ind}gk = {k0} + bk{r}", f"{ind}vb{r} = {gb} if bj{r} < n and gk < k else dt(0)"]
        return out

    def store(ind):
        return ([f"{ind}a_tile[as{r}] = va{r}" for r in range(a_rounds)]
                + [f"{ind}b_tile[bs{r}] = vb{r}" for r in range(b_rounds)])

    lines += [f"{i1}c{i}_{j} = dt(0)" for i in range(tm) for j in range(tn)]
    lines += load(i1, "0") + store(i1) + [f"{i1}cuda.syncthreads()"]
    lines += [f"{i1}for k0 in range(0, k, {bk}):", f"{i2}more = k0 + {bk} < k", f"{i2}if more:"]
    lines += load(i3, f"k0 + {bk}")
    for kk in range(bk):
        lines += [f"{i2}a{i} = a_tile[abase + np.uint32({kk * a_cols + i})]" for i in range(tm)]
        lines += [f"{i2}b{j} = b_tile[bbase + np.uint32({kk * bn + j})]" for j in range(tn)]
        lines += [f"{i2}c{i}_{j} += a{i} * b{j}" for i in range(tm) for j in range(tn)]
    lines += [f"{i2}cuda.syncthreads()", f"{i2}if more:"] + store(i3) + [f"{i2}cuda.syncthreads()"]
    for i in range(tm):
        lines += [f"{i1}gi = row0 + ty * {tm} + {i}", f"{i1}if gi < m:"]
        for j in range(tn):
            lines += [f"{i2}gj = col0 + tx * {tn} + {j}", f"{i2}if gj < n:", f"{i3}v = c{i}_{j}",
                      f"{i3}if has_bias:", f"{i3}    v += bias[gj]", f"{i3}if has_preact:",
                      f"{i3}    preact[gi, gj] = v", f"{i3}out[gi, gj] = act(v, CODE, alpha)"]
    return "\n".join(lines) + "\n"


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
        cuda=cuda, dt=dt, act=F.act_forward, CODE=code, TRANS_A=trans_a, TRANS_B=trans_b,
        BM=tiles.bm, BN=tiles.bn, BK=tiles.bk, NTX=ntx, NTY=nty, NTHREADS=nthreads,
        A_ROUNDS=tiles.bm * tiles.bk // nthreads, B_ROUNDS=tiles.bk * tiles.bn // nthreads,
        # padded rows keep a's transposed staging stores off one bank
        A_COLS=tiles.bm + (4 if dt is np.float32 else 2),
    )
    namespace = dict(constants, np=np)
    if tiles.pipelined:
        source = _source_pipelined(tiles, trans_a, trans_b, constants["A_COLS"], nthreads)
    else:
        source = _source(tiles.tm, tiles.tn)
    exec(compile(source, f"<fastbp gemm {tiles}>", "exec"), namespace)
    return cuda.jit(namespace["gemm"])


def launch(a, b, out, *, trans_a=False, trans_b=False, bias=None, preact=None, code=LINEAR,
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
