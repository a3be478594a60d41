"""Layer normalization, batch normalization and dropout, forward and backward, beside NumPy and
PyTorch (autograd of the same operation; its dropout draws with its own generator)."""
import numpy as np

from .common import BACKENDS, DTYPES, contender, shape_of

#: an MNIST MLP's hidden layer at batch 128, and a wide one
SHAPES = ["128x512", "1024x1024"]


def _data(dtype, shape):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape_of(shape)) * 2 + 1).astype(dtype)
    n = x.shape[1]
    return x, rng.uniform(0.5, 1.5, n).astype(dtype), rng.standard_normal(n).astype(dtype), \
        rng.standard_normal(x.shape).astype(dtype)


def _numpy_norm(x, gamma, beta, dy, axis):
    """The textbook two-pass forward and the closed-form backward (statistics along ``axis``)."""
    def run():
        mean = x.mean(axis=axis, keepdims=True)
        dev = x - mean
        rstd = 1 / np.sqrt((dev * dev).mean(axis=axis, keepdims=True) + 1e-5)
        xhat = dev * rstd
        y = xhat * gamma + beta
        g = dy * gamma
        dx = rstd * (g - g.mean(axis=axis, keepdims=True) - xhat * (g * xhat).mean(axis=axis, keepdims=True))
        return y, dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)
    return run


class LayerNorm:
    params = [BACKENDS, DTYPES, SHAPES]
    param_names = ["backend", "dtype", "shape"]

    def setup(self, backend, dtype, shape):
        x, gamma, beta, dy = _data(dtype, shape)
        y, mean, rstd = np.empty_like(x), np.empty(x.shape[0], dtype), np.empty(x.shape[0], dtype)
        dx, dg, db = np.empty_like(x), np.empty_like(gamma), np.empty_like(beta)

        def fastbp_ln(K, name):
            def run():
                K.layernorm_forward(x, gamma, beta, out=y, mean_out=mean, rstd_out=rstd, backend=name)
                K.layernorm_backward(dy, x, gamma, mean, rstd, dx=dx, dgamma=dg, dbeta=db, backend=name)
            return run

        def torch_ln(torch):
            tx = torch.from_numpy(x).requires_grad_()
            tg, tb = torch.from_numpy(gamma).requires_grad_(), torch.from_numpy(beta).requires_grad_()
            tdy = torch.from_numpy(dy)

            def run():
                out = torch.nn.functional.layer_norm(tx, (x.shape[1],), tg, tb, 1e-5)
                return torch.autograd.grad(out, (tx, tg, tb), tdy)
            return run

        self.fn = contender(backend, fastbp=fastbp_ln, numpy=lambda: _numpy_norm(x, gamma, beta, dy, 1),
                            torch=torch_ln)

    def time_layernorm_forward_backward(self, backend, dtype, shape):
        self.fn()


class BatchNorm:
    params = [BACKENDS, DTYPES, SHAPES]
    param_names = ["backend", "dtype", "shape"]

    def setup(self, backend, dtype, shape):
        x, gamma, beta, dy = _data(dtype, shape)
        n = x.shape[1]
        y, mean, rstd = np.empty_like(x), np.empty(n, dtype), np.empty(n, dtype)
        rm, rv = np.zeros(n, dtype), np.ones(n, dtype)
        dx, dg, db = np.empty_like(x), np.empty_like(gamma), np.empty_like(beta)

        def fastbp_bn(K, name):
            def run():
                K.batchnorm_forward(x, gamma, beta, running_mean=rm, running_var=rv, out=y, mean_out=mean,
                                    rstd_out=rstd, backend=name)
                K.batchnorm_backward(dy, x, gamma, mean, rstd, dx=dx, dgamma=dg, dbeta=db, backend=name)
            return run

        def torch_bn(torch):
            tx = torch.from_numpy(x).requires_grad_()
            tg, tb = torch.from_numpy(gamma).requires_grad_(), torch.from_numpy(beta).requires_grad_()
            trm, trv, tdy = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy()), torch.from_numpy(dy)

            def run():
                out = torch.nn.functional.batch_norm(tx, trm, trv, tg, tb, True, 0.1, 1e-5)
                return torch.autograd.grad(out, (tx, tg, tb), tdy)
            return run

        self.fn = contender(backend, fastbp=fastbp_bn, numpy=lambda: _numpy_norm(x, gamma, beta, dy, 0),
                            torch=torch_bn)

    def time_batchnorm_forward_backward(self, backend, dtype, shape):
        self.fn()


class Dropout:
    params = [BACKENDS, DTYPES, SHAPES]
    param_names = ["backend", "dtype", "shape"]

    def setup(self, backend, dtype, shape):
        x, _, _, dy = _data(dtype, shape)
        y, mask, dx = np.empty_like(x), np.empty(x.shape, np.uint8), np.empty_like(x)
        scale = np.dtype(dtype).type(1 / 0.8)

        def fastbp_dropout(K, name):
            def run():
                K.dropout_forward(x, 0.2, seed=7, out=y, mask_out=mask, backend=name)
                K.dropout_backward(dy, mask, 0.2, out=dx, backend=name)
            return run

        def numpy_dropout():
            rng = np.random.default_rng(7)

            def run():
                keep = rng.random(x.shape, dtype) >= 0.2
                return np.where(keep, x * scale, 0), np.where(keep, dy * scale, 0)
            return run

        def torch_dropout(torch):
            tx, tdy = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dy)

            def run():
                out = torch.nn.functional.dropout(tx, 0.2, True)
                return torch.autograd.grad(out, tx, tdy)
            return run

        self.fn = contender(backend, fastbp=fastbp_dropout, numpy=numpy_dropout, torch=torch_dropout)

    def time_dropout_forward_backward(self, backend, dtype, shape):
        self.fn()
