# cython: language_level=3
"""How the compiled extensions of this build were made: with or without OpenMP."""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int fastbp_openmp_enabled(void) { return 1; }
    static int fastbp_openmp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int fastbp_openmp_enabled(void) { return 0; }
    static int fastbp_openmp_max_threads(void) { return 1; }
    #endif
    """
    int fastbp_openmp_enabled() nogil
    int fastbp_openmp_max_threads() nogil


def openmp_enabled():
    """True when the extensions were compiled with OpenMP."""
    return bool(fastbp_openmp_enabled())


def openmp_max_threads():
    """omp_get_max_threads() of this build (1 without OpenMP)."""
    return fastbp_openmp_max_threads()
