"""How the CPU backends cut their work into tiles and chunks: from the shape only.

Every constant and plan here depends only on the shape, never on the thread count, and every
tile is one single-threaded BLAS call followed by its epilogue on the same thread, and every
reduction sums fixed chunks in a fixed order: results are bitwise identical for any number of
threads (OpenBLAS's result does depend on how a product is split, so this is necessary, not
cosmetic). The numba and cython backends both take their plans from here (the functions compile
into Numba kernels where Numba is installed and run as plain Python for the cython backend).
"""
try:
    from numba.extending import register_jitable as _jitable
except ImportError:  # the cython backend without Numba
    def _jitable(fn):
        return fn

#: products with m * n * k at most this run as one tile (OpenBLAS's small-matrix kernels take them
#: without packing the operands); larger ones are cut into tiles of about this size
SMALL_GEMM = 1_000_000
#: at most this many small tiles; beyond, large tiles (each BLAS call packs its operands)
MAX_SMALL_TILES = 64
#: large tiles: two per LARGE_TILE_FLOPS of product (doubling), between 2 and MAX_LARGE_TILES
LARGE_TILE_FLOPS = 2_000_000_000
MAX_LARGE_TILES = 16
#: rows per chunk of the bias-gradient reduction
DB_ROWS = 64
#: rows per chunk of the softmax cross-entropy reduction
CE_ROWS = 64
#: elements per chunk of the mean-squared-error reduction
MSE_CHUNK = 1 << 14
#: elementwise kernels (activations, optimizers): at most this many elements per chunk; also the
#: fixed chunk of the norm reductions
CHUNK = 1 << 14
#: elementwise work (elements) below which a kernel runs on the calling thread (no parallel launch)
SERIAL_ELEMENTS = 1 << 15
#: rows per chunk of the normalization kernels' column reductions (batch statistics merged by
#: Chan's formula chunk by chunk, and the gamma/beta gradients' column sums)
NORM_ROWS = 64
#: memory-bound elementwise work (dropout: a few cycles an element once vectorized) below which a
#: kernel runs on the calling thread: a parallel launch costs more than the work up to about here
LIGHT_SERIAL_ELEMENTS = 1 << 20
#: rows gathered per parallel chunk of a training batch (fewer than two chunks: one thread)
GATHER_ROWS = 32


@_jitable
def even_chunk(n):
    """Elements per chunk of an elementwise kernel over n elements: an even number of equal chunks
    of at most about CHUNK elements, a multiple of 64 (whole cache lines; on very large arrays the
    rounding may make the count odd, where one chunk more no longer matters), so two threads get
    equal shares. Reductions keep fixed CHUNK-sized chunks (their sums must not move)."""
    chunks = -(-n // CHUNK)
    if chunks <= 1:
        return max(n, 1)
    chunks += chunks % 2
    size = -(-n // chunks)
    return size + (-size) % 64


@_jitable
def ordered_sum(partial):
    """The sum of a reduction's chunk partial sums (float64), in chunk order."""
    total = 0.0
    for c in range(partial.shape[0]):
        total += partial[c]
    return total


@_jitable
def balanced_rows(m, rb):
    """Rows per tile when m rows are cut into tiles of at most rb rows (a multiple of 4): an even
    number of tiles of equal size, rounded up to a multiple of 4 (784 rows at most 240 a tile:
    4 tiles of 196, not 240, 240, 240 and 64)."""
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
        # share (mk + kn/2 instead of mk/2 + kn; a tie goes to column halves, see the CHANGELOG)
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
