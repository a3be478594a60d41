"""The ``cython`` backend: compiled extensions (OpenMP ``prange``, BLAS through scipy).

``backend`` implements the kernel protocol of :mod:`fastbp.backends`; ``_buildinfo`` reports how
the extensions were built (with or without OpenMP).
"""
