"""Optimizer updates over a flat float32 parameter vector (the MNIST MLP has 101,770)."""
import numpy as np

from .common import BACKENDS, contender, fastbp_backend

SIZES = [101_770, 1_000_000, 10_000_000]


def _state(n):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n).astype(np.float32)
    g = (rng.standard_normal(n) * 1e-2).astype(np.float32)  # zero-mean: no subnormal moments
    return p, g


def _torch_step(torch, p, g, optimizer, **options):
    """The ``step`` of a PyTorch optimizer over a parameter sharing p's memory, with gradient g."""
    tp = torch.nn.Parameter(torch.from_numpy(p))
    tp.grad = torch.from_numpy(g)
    return getattr(torch.optim, optimizer)([tp], **options).step


class Adam:
    params = [BACKENDS, SIZES]
    param_names = ["backend", "size"]
    timeout = 300

    def setup(self, backend, size):
        p, g = _state(size)
        m, v = np.zeros_like(p), np.zeros_like(p)
        self.bytes = 28 * size  # read p, g, m, v; write p, m, v
        step = [0]

        def fastbp_adam(K, name):
            def run():
                step[0] += 1
                K.adam_update(p, g, m, v, step=step[0], backend=name)
            return run

        def numpy_adam():
            tmp = np.empty_like(p)

            def run():  # in place, no temporaries
                step[0] += 1
                t = step[0]
                np.multiply(m, 0.9, out=m)
                np.multiply(g, 0.1, out=tmp)
                np.add(m, tmp, out=m)
                np.multiply(v, 0.999, out=v)
                np.multiply(g, g, out=tmp)
                np.multiply(tmp, 0.001, out=tmp)
                np.add(v, tmp, out=v)
                np.sqrt(v, out=tmp)
                np.multiply(tmp, 1 / np.sqrt(1 - 0.999**t), out=tmp)
                np.add(tmp, 1e-8, out=tmp)
                np.divide(m, tmp, out=tmp)
                np.multiply(tmp, 1e-3 / (1 - 0.9**t), out=tmp)
                np.subtract(p, tmp, out=p)
            return run

        self.fn = contender(backend, fastbp=fastbp_adam, numpy=numpy_adam,
                            torch=lambda torch: _torch_step(torch, p, g, "Adam", lr=1e-3, fused=True))

    def time_adam(self, backend, size):
        self.fn()

    def track_gbps(self, backend, size):
        from .common import best_seconds

        return self.bytes / best_seconds(self.fn) / 1e9

    track_gbps.unit = "GB/s"


class SGDMomentum:
    params = [BACKENDS, SIZES[:2]]
    param_names = ["backend", "size"]

    def setup(self, backend, size):
        p, g = _state(size)
        vel = np.zeros_like(p)

        def numpy_sgd():
            def run():
                np.multiply(vel, 0.9, out=vel)
                np.add(vel, g, out=vel)
                p.__isub__(0.01 * vel)
            return run

        self.fn = contender(
            backend,
            fastbp=lambda K, name: lambda: K.sgd_update(p, g, lr=0.01, momentum=0.9, velocity=vel, backend=name),
            numpy=numpy_sgd,
            torch=lambda torch: _torch_step(torch, p, g, "SGD", lr=0.01, momentum=0.9))

    def time_sgd_momentum(self, backend, size):
        self.fn()


class RMSprop:
    params = [BACKENDS, SIZES[:2]]
    param_names = ["backend", "size"]

    def setup(self, backend, size):
        p, g = _state(size)
        sq = np.zeros_like(p)

        def numpy_rmsprop():
            tmp = np.empty_like(p)

            def run():
                np.multiply(sq, 0.99, out=sq)
                np.multiply(g, g, out=tmp)
                np.multiply(tmp, 0.01, out=tmp)
                np.add(sq, tmp, out=sq)
                np.sqrt(sq, out=tmp)
                np.add(tmp, 1e-8, out=tmp)
                np.divide(g, tmp, out=tmp)
                np.multiply(tmp, 1e-3, out=tmp)
                np.subtract(p, tmp, out=p)
            return run

        self.fn = contender(backend,
                            fastbp=lambda K, name: lambda: K.rmsprop_update(p, g, sq, lr=1e-3, backend=name),
                            numpy=numpy_rmsprop,
                            torch=lambda torch: _torch_step(torch, p, g, "RMSprop", lr=1e-3))

    def time_rmsprop(self, backend, size):
        self.fn()


class GradientClipping:
    """clip_grad_norm and clip_grad_value (fastbp's kernels only; the limits never bind)."""
    params = [[b for b in BACKENDS if b.startswith("fastbp:")], SIZES[:2]]
    param_names = ["backend", "size"]

    def setup(self, backend, size):
        from fastbp import kernels as K

        name = fastbp_backend(backend)
        _, g = _state(size)
        self.norm = lambda: K.clip_grad_norm([g], 1e9, backend=name)
        self.value = lambda: K.clip_grad_value([g], 1e9, backend=name)
        self.norm()
        self.value()

    def time_clip_grad_norm(self, backend, size):
        self.norm()

    def time_clip_grad_value(self, backend, size):
        self.value()
