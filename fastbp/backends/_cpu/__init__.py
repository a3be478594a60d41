"""What the two CPU backends (numba and cython) share: the tile and chunk plans (:mod:`.tiling`),
the GEMM provider (:mod:`.openblas`), keeping that BLAS on one thread (:mod:`.blas_threads`) and
the thread counts of their pools (:mod:`.threads`). Nothing here needs Numba."""
