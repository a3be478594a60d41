"""Import plus the first kernel call in a fresh process, with a warm on-disk cache."""
import subprocess
import sys

FIRST_CALL = """
import numpy as np
from fastbp import kernels as K
x = np.ones((32, 784), np.float32); w = np.ones((784, 128), np.float32); b = np.zeros(128, np.float32)
y = K.linear_forward(x, w, b, "relu", backend="{backend}")
K.linear_backward(y, x, w, y=y, activation="relu", backend="{backend}")
"""


class Startup:
    params = [["numba", "cython", "numpy"]]
    param_names = ["backend"]

    def setup(self, backend):
        import fastbp

        reason = fastbp.backend_status().get(backend)
        if reason is not None:
            raise NotImplementedError(reason)
        # one untimed fresh process: compiles and caches, so the timed ones find a warm cache
        subprocess.run([sys.executable, "-c", FIRST_CALL.format(backend=backend)], check=True)

    def timeraw_import_and_first_call(self, backend):
        return FIRST_CALL.format(backend=backend)
