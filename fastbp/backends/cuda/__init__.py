"""The ``cuda`` backend: numba.cuda (``@cuda.jit``) kernels for arrays on an NVIDIA GPU."""
