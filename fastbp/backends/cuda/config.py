"""Launch geometry of the cuda kernels: tile sizes, threads per block, grid sizes.

Every kernel is compiled for the geometry in force when it is first launched (kernels are cached
per geometry), so tests under Numba's CUDA simulator, where every GPU thread is a Python thread,
can use tiny blocks that still cross tile boundaries and leave partial tiles::

    from fastbp.backends.cuda import config
    config.configure(**config.SIMULATOR)

Results depend on the geometry only through the order of float additions; for one geometry they
are bitwise reproducible (no atomics anywhere).
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class GemmTiles:
    """A block computes a (bm, bn) tile of the product, stepping bk along the inner dimension;
    each of its (bm/tm) x (bn/tn) threads holds a (tm, tn) block of the tile in registers.

    ``pipelined`` picks the second kernel of :mod:`.gemm`: each thread's block is contiguous (so
    its shared-memory reads are 16-byte vector loads), the inner step is unrolled, and the next
    step's tiles are read from global memory into registers while the current one is multiplied.
    Same summation order, so the same bits, as the plain kernel with the same bm, bn, bk."""
    bm: int
    bn: int
    bk: int
    tm: int
    tn: int
    pipelined: bool = False

    def __post_init__(self):
        if self.bm % self.tm or self.bn % self.tn:
            raise ValueError(f"tile {self.bm}x{self.bn} must be a multiple of the thread block {self.tm}x{self.tn}")
        threads = (self.bm // self.tm) * (self.bn // self.tn)
        if (self.bm * self.bk) % threads or (self.bk * self.bn) % threads:
            raise ValueError(f"{threads} threads must load the {self.bm}x{self.bk} and {self.bk}x{self.bn} "
                             "tiles in whole rounds")
        if self.pipelined and (self.tm % 4 or self.tn % 4):
            raise ValueError(f"a pipelined tile needs thread blocks of multiples of 4 (16-byte loads); got "
                             f"{self.tm}x{self.tn}")

    @property
    def threads(self) -> tuple[int, int]:
        """(x, y) threads per block: x along the tile's columns, y along its rows."""
        return self.bn // self.tn, self.bm // self.tm


@dataclass(frozen=True)
class Geometry:
    gemm32: GemmTiles  # float32 products
    gemm64: GemmTiles  # float64 products (registers hold half as many values)
    threads: int  # threads per block of elementwise and reduction kernels (a power of 2)
    max_blocks: int  # blocks of a reduction's first stage (fixed, so sums are reproducible)
    row_threads: int  # threads per row in row-wise kernels (softmax, cross-entropy; a power of 2)
    rows_per_block: int  # rows per block in row-wise kernels
    col_chunk: int  # rows summed per block in the first stage of the bias-gradient reduction

    def gemm(self, dtype) -> GemmTiles:
        return self.gemm32 if dtype.itemsize == 4 else self.gemm64


#: tuned on an H100/H200 (see ci/gpu_check.sh and the CHANGELOG)
DEFAULT = Geometry(gemm32=GemmTiles(128, 64, 8, 8, 4), gemm64=GemmTiles(64, 64, 8, 4, 4),
                   threads=256, max_blocks=1024, row_threads=32, rows_per_block=8, col_chunk=64)

#: small blocks for the CUDA simulator: 4x4 = 16 threads per product block, 8x8 tiles
SIMULATOR = dict(gemm32=GemmTiles(8, 8, 4, 2, 2), gemm64=GemmTiles(8, 8, 4, 2, 2),
                 threads=16, max_blocks=4, row_threads=4, rows_per_block=2, col_chunk=4)

_current = DEFAULT


def current() -> Geometry:
    return _current


def configure(**changes) -> Geometry:
    """Replace parts of the geometry (fields of :class:`Geometry`); returns the previous one."""
    global _current
    previous = _current
    _current = replace(_current, **changes)
    return previous


def restore(geometry: Geometry) -> None:
    global _current
    _current = geometry
