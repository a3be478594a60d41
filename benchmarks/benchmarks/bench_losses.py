"""Losses with their gradients: softmax cross-entropy (integer labels) and MSE."""
import numpy as np

from .common import BACKENDS, DTYPES, fastbp_backend, shape_of, torch_or_skip

SHAPES = ["32x10", "128x10", "1024x1000"]


class SoftmaxCrossEntropy:
    params = [BACKENDS, DTYPES, SHAPES]
    param_names = ["backend", "dtype", "shape"]

    def setup(self, backend, dtype, shape):
        batch, classes = shape_of(shape)
        rng = np.random.default_rng(0)
        logits = (rng.standard_normal((batch, classes)) * 3).astype(dtype)
        labels = rng.integers(0, classes, batch)
        if backend.startswith("fastbp:"):
            from fastbp import kernels as K

            name = fastbp_backend(backend)
            grad = np.empty_like(logits)
            self.fn = lambda: K.softmax_cross_entropy(logits, labels, dlogits=grad, backend=name)
        elif backend == "numpy":
            rows = np.arange(batch)

            def numpy_ce():
                shifted = logits - logits.max(axis=1, keepdims=True)
                e = np.exp(shifted)
                s = e.sum(axis=1, keepdims=True)
                loss = np.mean(np.log(s[:, 0]) - shifted[rows, labels])
                p = e / s
                p[rows, labels] -= 1
                return loss, p / batch
            self.fn = numpy_ce
        else:
            torch = torch_or_skip()
            tl = torch.from_numpy(logits).requires_grad_()
            tlab = torch.from_numpy(labels)

            def torch_ce():
                loss = torch.nn.functional.cross_entropy(tl, tlab)
                return torch.autograd.grad(loss, tl)
            self.fn = torch_ce
        self.fn()

    def time_softmax_cross_entropy(self, backend, dtype, shape):
        self.fn()


class MeanSquaredError:
    params = [BACKENDS, DTYPES, ["128x10", "1024x1024"]]
    param_names = ["backend", "dtype", "shape"]

    def setup(self, backend, dtype, shape):
        rng = np.random.default_rng(0)
        pred = rng.standard_normal(shape_of(shape)).astype(dtype)
        target = rng.standard_normal(shape_of(shape)).astype(dtype)
        if backend.startswith("fastbp:"):
            from fastbp import kernels as K

            name = fastbp_backend(backend)
            grad = np.empty_like(pred)
            self.fn = lambda: K.mse_loss(pred, target, dpred=grad, backend=name)
        elif backend == "numpy":
            def numpy_mse():
                d = pred - target
                return np.mean(d * d), d * (2 / d.size)
            self.fn = numpy_mse
        else:
            torch = torch_or_skip()
            tp = torch.from_numpy(pred).requires_grad_()
            tt = torch.from_numpy(target)
            self.fn = lambda: torch.autograd.grad(torch.nn.functional.mse_loss(tp, tt), tp)
        self.fn()

    def time_mse_loss(self, backend, dtype, shape):
        self.fn()
