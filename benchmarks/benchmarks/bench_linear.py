"""Dense layer forward (relu(x @ w + b)) and backward (dx, dw, db) against NumPy and PyTorch."""
import numpy as np

from .common import BACKENDS, DTYPES, LAYER_SHAPES, best_seconds, contender, layer, shape_of


class _Layer:
    params = [BACKENDS, DTYPES, LAYER_SHAPES]
    param_names = ["backend", "dtype", "shape"]
    passes = 1  # products per call (2 for backward: dw and dx)

    def setup(self, backend, dtype, shape):
        s = shape_of(shape)
        if backend == "fastbp:numpy" and s[0] >= 1024:
            raise NotImplementedError("the reference backend is not timed on the large shape")
        self.flops = self.passes * 2 * s[0] * s[1] * s[2]
        self.fn = self.make(backend, *layer(s, np.dtype(dtype)))

    def track_gflops(self, backend, dtype, shape):
        return self.flops / best_seconds(self.fn) / 1e9

    track_gflops.unit = "GFLOP/s"


class LinearForward(_Layer):
    def make(self, backend, x, w, b):
        y = np.empty((x.shape[0], w.shape[1]), x.dtype)

        def torch_forward(torch):
            tx, tw, tb = map(torch.from_numpy, (x, w, b))
            return lambda: torch.relu(torch.addmm(tb, tx, tw))

        return contender(backend,
                         fastbp=lambda K, name: lambda: K.linear_forward(x, w, b, "relu", out=y, backend=name),
                         numpy=lambda: lambda: np.maximum(x @ w + b, 0),
                         torch=torch_forward)

    def time_linear_forward(self, backend, dtype, shape):
        self.fn()


class LinearBackward(_Layer):
    passes = 2

    def make(self, backend, x, w, b):
        y = np.maximum(x @ w + b, 0)
        dy = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)

        def fastbp_backward(K, name):
            dx, dw, db, dz = np.empty_like(x), np.empty_like(w), np.empty_like(b), np.empty_like(y)
            return lambda: K.linear_backward(dy, x, w, y=y, activation="relu", dx=dx, dw=dw, db=db, dz=dz,
                                             backend=name)

        def numpy_backward():
            def run():
                d = dy * (y > 0)
                return d @ w.T, x.T @ d, d.sum(axis=0)
            return run

        def torch_backward(torch):
            tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
            ty = torch.relu(torch.addmm(tb, tx, tw))
            tdy = torch.from_numpy(dy)
            return lambda: torch.autograd.grad(ty, (tx, tw, tb), tdy, retain_graph=True)

        return contender(backend, fastbp=fastbp_backward, numpy=numpy_backward, torch=torch_backward)

    def time_linear_backward(self, backend, dtype, shape):
        self.fn()
