"""fastbp: fast, exact, compiled backpropagation kernels for dense networks.

>>> import numpy as np, fastbp
>>> x = np.ones((4, 3), np.float32); w = np.ones((3, 2), np.float32)
>>> fastbp.kernels.linear_forward(x, w, activation="relu", backend="numpy")
array([[3., 3.],
       [3., 3.],
       [3., 3.],
       [3., 3.]], dtype=float32)
"""
from . import activations, kernels
from ._backend import (
    BackendUnavailableError,
    available_backends,
    backend_status,
    register_backend,
    use_backend,
)
from ._config import config_info, show_config
from .backends._cpu.threads import get_num_threads, set_num_threads
from ._version import __version__

__all__ = [
    "kernels", "activations", "available_backends", "backend_status", "use_backend",
    "register_backend", "BackendUnavailableError", "show_config", "config_info", "set_num_threads",
    "get_num_threads", "__version__",
]
