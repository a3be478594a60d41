"""Dense layer forward (relu(x @ w + b)) and backward (dx, dw, db) against NumPy and PyTorch."""
import numpy as np

from .common import BACKENDS, DTYPES, LAYER_SHAPES, best_seconds, fastbp_backend, layer, shape_of, torch_or_skip


class LinearForward:
    params = [BACKENDS, DTYPES, LAYER_SHAPES]
    param_names = ["backend", "dtype", "shape"]

    def setup(self, backend, dtype, shape):
        s = shape_of(shape)
        if backend == "fastbp:numpy" and s[0] >= 1024:
            raise NotImplementedError("the reference backend is not timed on the large shape")
        x, w, b = layer(s, dtype)
        self.flops = 2 * s[0] * s[1] * s[2]
        if backend.startswith("fastbp:"):
            from fastbp import kernels as K

            name = fastbp_backend(backend)
            y = np.empty((s[0], s[2]), dtype)
            self.fn = lambda: K.linear_forward(x, w, b, "relu", out=y, backend=name)
        elif backend == "numpy":
            self.fn = lambda: np.maximum(x @ w + b, 0)
        else:
            torch = torch_or_skip()
            tx, tw, tb = map(torch.from_numpy, (x, w, b))
            self.fn = lambda: torch.relu(torch.addmm(tb, tx, tw))
        self.fn()

    def time_linear_forward(self, backend, dtype, shape):
        self.fn()

    def track_gflops(self, backend, dtype, shape):
        return self.flops / best_seconds(self.fn) / 1e9

    track_gflops.unit = "GFLOP/s"


class LinearBackward:
    params = [BACKENDS, DTYPES, LAYER_SHAPES]
    param_names = ["backend", "dtype", "shape"]

    def setup(self, backend, dtype, shape):
        s = shape_of(shape)
        if backend == "fastbp:numpy" and s[0] >= 1024:
            raise NotImplementedError("the reference backend is not timed on the large shape")
        x, w, b = layer(s, dtype)
        y = np.maximum(x @ w + b, 0)
        dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        self.flops = 2 * 2 * s[0] * s[1] * s[2]
        if backend.startswith("fastbp:"):
            from fastbp import kernels as K

            name = fastbp_backend(backend)
            dx, dw, db, dz = np.empty_like(x), np.empty_like(w), np.empty_like(b), np.empty_like(y)
            self.fn = lambda: K.linear_backward(dy, x, w, y=y, activation="relu", dx=dx, dw=dw, db=db, dz=dz,
                                                backend=name)
        elif backend == "numpy":
            def numpy_backward():
                d = dy * (y > 0)
                return d @ w.T, x.T @ d, d.sum(axis=0)
            self.fn = numpy_backward
        else:
            torch = torch_or_skip()
            tx = torch.from_numpy(x).requires_grad_()
            tw = torch.from_numpy(w).requires_grad_()
            tb = torch.from_numpy(b).requires_grad_()
            ty = torch.relu(torch.addmm(tb, tx, tw))
            tdy = torch.from_numpy(dy)
            self.fn = lambda: torch.autograd.grad(ty, (tx, tw, tb), tdy, retain_graph=True)
        self.fn()

    def time_linear_backward(self, backend, dtype, shape):
        self.fn()

    def track_gflops(self, backend, dtype, shape):
        return self.flops / best_seconds(self.fn) / 1e9

    track_gflops.unit = "GFLOP/s"
