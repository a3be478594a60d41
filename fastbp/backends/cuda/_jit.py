"""``device_function``: ``@cuda.jit(device=True)`` inlined into its callers (NVVM's alwaysinline),
so compile-time constants such as an activation code fold through it. Numba's CUDA simulator has
no inlining option; there it is a plain device function."""
from numba import config as _numba_config
from numba import cuda

SIMULATOR = bool(_numba_config.ENABLE_CUDASIM)


def device_function(fn):
    if SIMULATOR:
        return cuda.jit(device=True)(fn)
    return cuda.jit(device=True, forceinline=True)(fn)
