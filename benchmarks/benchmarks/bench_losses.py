"""Losses with their gradients: softmax cross-entropy (integer labels), MSE and binary cross-entropy."""
import numpy as np

from .common import BACKENDS, DTYPES, contender, shape_of

SHAPES = ["32x10", "128x10", "1024x1000"]


class SoftmaxCrossEntropy:
    params = [BACKENDS, DTYPES, SHAPES]
    param_names = ["backend", "dtype", "shape"]

    def setup(self, backend, dtype, shape):
        batch, classes = shape_of(shape)
        rng = np.random.default_rng(0)
        logits = (rng.standard_normal((batch, classes)) * 3).astype(dtype)
        labels = rng.integers(0, classes, batch)
        grad = np.empty_like(logits)
        rows = np.arange(batch)

        def numpy_ce():
            def run():
                shifted = logits - logits.max(axis=1, keepdims=True)
                e = np.exp(shifted)
                s = e.sum(axis=1, keepdims=True)
                loss = np.mean(np.log(s[:, 0]) - shifted[rows, labels])
                p = e / s
                p[rows, labels] -= 1
                return loss, p / batch
            return run

        def torch_ce(torch):
            tl = torch.from_numpy(logits).requires_grad_()
            tlab = torch.from_numpy(labels)
            return lambda: torch.autograd.grad(torch.nn.functional.cross_entropy(tl, tlab), tl)

        self.fn = contender(
            backend,
            fastbp=lambda K, name: lambda: K.softmax_cross_entropy(logits, labels, dlogits=grad, backend=name),
            numpy=numpy_ce, torch=torch_ce)

    def time_softmax_cross_entropy(self, backend, dtype, shape):
        self.fn()


class MeanSquaredError:
    params = [BACKENDS, DTYPES, ["128x10", "1024x1024"]]
    param_names = ["backend", "dtype", "shape"]

    def setup(self, backend, dtype, shape):
        rng = np.random.default_rng(0)
        pred = rng.standard_normal(shape_of(shape)).astype(dtype)
        target = rng.standard_normal(shape_of(shape)).astype(dtype)
        grad = np.empty_like(pred)

        def numpy_mse():
            def run():
                d = pred - target
                return np.mean(d * d), d * (2 / d.size)
            return run

        def torch_mse(torch):
            tp = torch.from_numpy(pred).requires_grad_()
            tt = torch.from_numpy(target)
            return lambda: torch.autograd.grad(torch.nn.functional.mse_loss(tp, tt), tp)

        self.fn = contender(backend,
                            fastbp=lambda K, name: lambda: K.mse_loss(pred, target, dpred=grad, backend=name),
                            numpy=numpy_mse, torch=torch_mse)

    def time_mse_loss(self, backend, dtype, shape):
        self.fn()


class SigmoidCrossEntropy:
    """Binary cross-entropy from logits (multi-label targets), value and gradient."""
    params = [BACKENDS, DTYPES, ["128x10", "1024x1024"]]
    param_names = ["backend", "dtype", "shape"]

    def setup(self, backend, dtype, shape):
        rng = np.random.default_rng(0)
        logits = (rng.standard_normal(shape_of(shape)) * 3).astype(dtype)
        targets = (rng.random(shape_of(shape)) < 0.5).astype(dtype)
        grad = np.empty_like(logits)

        def numpy_bce():
            def run():
                loss = np.mean(np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits))))
                return loss, (1 / (1 + np.exp(-logits)) - targets) / logits.size
            return run

        def torch_bce(torch):
            tz = torch.from_numpy(logits).requires_grad_()
            tt = torch.from_numpy(targets)
            return lambda: torch.autograd.grad(torch.nn.functional.binary_cross_entropy_with_logits(tz, tt), tz)

        self.fn = contender(
            backend,
            fastbp=lambda K, name: lambda: K.sigmoid_cross_entropy(logits, targets, dlogits=grad, backend=name),
            numpy=numpy_bce, torch=torch_bce)

    def time_sigmoid_cross_entropy(self, backend, dtype, shape):
        self.fn()
