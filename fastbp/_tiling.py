"""How the CPU backends split a dense layer's products into tiles: from the shape only.

Tiling depends only on the shape, never on the thread count, and every tile is one
single-threaded BLAS call followed by its epilogue on the same thread: results are bitwise
identical for any number of threads (OpenBLAS's result does depend on how a product is split, so
this is necessary, not cosmetic). The numba and cython backends share these plans; the functions
compile into Numba kernels where Numba is installed and run as plain Python elsewhere.
"""
try:
    from numba.extending import register_jitable as _jitable
except ImportError:  # the cython backend without Numba
    def _jitable(fn):
        return fn

#: OpenBLAS's small-matrix kernels (no packing of the operands; SkylakeX/Zen4 builds) take
#: products with m * n * k <= 100^3; such tiles measured 190-200 GFLOP/s here against 110-140 for
#: NumPy's whole 32x784x128 and 128x784x128 products. Products below it run as one serial tile.
SMALL_GEMM = 1_000_000
#: at most this many small tiles; beyond, large tiles (each BLAS call packs its operands)
MAX_SMALL_TILES = 64
#: large tiles: two per 2 GFLOP of product (doubling), between 2 and MAX_LARGE_TILES
LARGE_TILE_FLOPS = 2_000_000_000
MAX_LARGE_TILES = 16
#: rows per chunk of the bias-gradient reduction (fixed, so db never depends on the thread count)
DB_ROWS = 64
#: elementwise kernels (activations, optimizers): at most this many elements per chunk
CHUNK = 1 << 14


@_jitable
def even_chunk(n):
    """Elements per chunk of an elementwise kernel over n elements: an even number of equal chunks
    of at most about CHUNK elements, a multiple of 64 (whole cache lines; on very large arrays the
    rounding may make the count odd, where one chunk more no longer matters). 101,770 Adam parameters
    in chunks of 2^14 were 7 chunks, 4 for one thread and 3 for the other (measured: Adam 8-20%
    faster balanced). Reductions keep fixed CHUNK-sized chunks (their sums must not move)."""
    chunks = -(-n // CHUNK)
    if chunks <= 1:
        return max(n, 1)
    chunks += chunks % 2
    size = -(-n // chunks)
    return size + (-size) % 64


@_jitable
def balanced_rows(m, rb):
    """Rows per tile when m rows are cut into tiles of at most rb rows (a multiple of 4): an even
    number of tiles of equal size, rounded up to a multiple of 4. Uneven tiles leave a thread
    idle: 784 rows at 240 gave tiles of 240, 240, 240 and 64 (one thread 480 rows, the other
    304); balanced, 4 tiles of 196."""
    tiles = -(-m // rb)
    if tiles <= 1:
        return min(rb, m)
    tiles += tiles % 2
    rows = -(-m // tiles)
    return min(rb, rows + (-rows) % 4) if rows >= 4 else rb


@_jitable
def tile_shape(m, n, k, whole_rows):
    """(rows, cols) of the tiles of an (m, n) output with inner dimension k. Depends on the shape
    only, never on the thread count. One tile (m, n) means: run serially."""
    if m * n * k <= SMALL_GEMM or m <= 1 and (whole_rows or n <= 1):
        return max(m, 1), max(n, 1)
    cb = n
    rb = SMALL_GEMM // (n * k)
    if rb < 4 and not whole_rows:
        cb = max(16, SMALL_GEMM // (4 * k))
        rb = SMALL_GEMM // (cb * k)
    if rb >= 4:
        rb -= rb % 4
        if -(-m // rb) * -(-n // cb) <= MAX_SMALL_TILES:
            return balanced_rows(m, rb), min(cb, n)
    tiles = 2
    while tiles < MAX_LARGE_TILES and 2 * m * n * k >= LARGE_TILE_FLOPS * tiles:
        tiles *= 2
    if tiles == 2 and n >= m and not whole_rows:
        # two tiles: halve the wider operand, so each single-threaded BLAS call packs the smaller
        # share (mk + kn/2 instead of mk/2 + kn; at 1024^3, a tie in bytes, column halves measured
        # 0.944-0.953 of NumPy's 2-thread x @ w against 0.913-0.928 for row halves)
        return m, -(-n // 2)
    rb = -(-m // tiles)
    if rb >= 16 or whole_rows:
        return max(rb, 1), n
    row_tiles = -(-m // 16)
    return min(16, m), max(16, -(-n // (tiles // row_tiles)))


@_jitable
def plan_backward(m, k, n, need_dx):
    """(dw row block, dw tiles, dx column block, dx tiles), shape-only."""
    if m == 0:
        return 1, 0, 1, 0
    rb_dw = tile_shape(k, n, m, True)[0]
    n_dw = -(-k // rb_dw)
    n_dx = 0
    cb_dx = max(k, 1)
    if need_dx and m * n * k > SMALL_GEMM:
        tiles = 4
        while tiles < MAX_LARGE_TILES and 2 * m * n * k >= LARGE_TILE_FLOPS * tiles:
            tiles *= 2
        cb_dx = max(64, -(-k // tiles))
    if need_dx:
        n_dx = -(-k // cb_dx)
    return rb_dw, n_dw, cb_dx, n_dx
