"""Standalone activations, forward and backward."""
import numpy as np

from .common import BACKENDS, DTYPES, fastbp_backend, shape_of, torch_or_skip

SHAPES = ["128x128", "1024x1024"]
ACTIVATIONS = ["relu", "gelu", "softmax"]


def _numpy_forward(name, z):
    if name == "relu":
        return np.maximum(z, 0)
    if name == "gelu":
        from scipy.special import erf

        return 0.5 * z * (1 + erf(z / np.sqrt(2)))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Activation:
    params = [BACKENDS, DTYPES, ACTIVATIONS, SHAPES]
    param_names = ["backend", "dtype", "activation", "shape"]

    def setup(self, backend, dtype, activation, shape):
        z = np.random.default_rng(0).standard_normal(shape_of(shape)).astype(dtype)
        dy = np.ones_like(z)
        if backend.startswith("fastbp:"):
            from fastbp import kernels as K

            name = fastbp_backend(backend)
            y = K.activation_forward(z, activation, backend=name)
            saved = {"z": z} if activation == "gelu" else {"y": y}
            out, dz = np.empty_like(z), np.empty_like(z)
            self.fwd = lambda: K.activation_forward(z, activation, out=out, backend=name)
            self.bwd = lambda: K.activation_backward(dy, activation, out=dz, backend=name, **saved)
        elif backend == "numpy":
            y = _numpy_forward(activation, z)
            self.fwd = lambda: _numpy_forward(activation, z)
            if activation == "relu":
                self.bwd = lambda: dy * (y > 0)
            elif activation == "softmax":
                self.bwd = lambda: y * (dy - (dy * y).sum(axis=1, keepdims=True))
            else:
                raise NotImplementedError("no plain NumPy gelu derivative in the suite")
        else:
            torch = torch_or_skip()
            f = {"relu": torch.relu, "gelu": torch.nn.functional.gelu,
                 "softmax": lambda t: torch.softmax(t, dim=1)}[activation]
            tz = torch.from_numpy(z).requires_grad_()
            ty = f(tz)
            tdy = torch.from_numpy(dy)
            self.fwd = lambda: f(torch.from_numpy(z))
            self.bwd = lambda: torch.autograd.grad(ty, tz, tdy, retain_graph=True)
        self.fwd()
        self.bwd()

    def time_forward(self, backend, dtype, activation, shape):
        self.fwd()

    def time_backward(self, backend, dtype, activation, shape):
        self.bwd()
