"""The ``numba`` backend: ``@njit`` CPU kernels, importable and callable from users' own ``@njit`` code."""
