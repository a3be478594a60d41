"""Optimizer updates over a flat float32 parameter vector (the MNIST MLP has 101,770)."""
import numpy as np

from .common import BACKENDS, fastbp_backend, torch_or_skip

SIZES = [101_770, 1_000_000, 10_000_000]


def _state(n):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n).astype(np.float32)
    g = (rng.standard_normal(n) * 1e-2).astype(np.float32)  # zero-mean: no subnormal moments
    return p, g


class Adam:
    params = [BACKENDS, SIZES]
    param_names = ["backend", "size"]
    timeout = 300

    def setup(self, backend, size):
        p, g = _state(size)
        m, v = np.zeros_like(p), np.zeros_like(p)
        self.bytes = 28 * size  # read p, g, m, v; write p, m, v
        if backend.startswith("fastbp:"):
            from fastbp import kernels as K

            name = fastbp_backend(backend)
            step = [0]

            def run():
                step[0] += 1
                K.adam_update(p, g, m, v, step=step[0], backend=name)
            self.fn = run
        elif backend == "numpy":
            tmp = np.empty_like(p)
            step = [0]

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
            self.fn = run
        else:
            torch = torch_or_skip()
            tp = torch.nn.Parameter(torch.from_numpy(p))
            tp.grad = torch.from_numpy(g)
            self.fn = torch.optim.Adam([tp], lr=1e-3, fused=True).step
        self.fn()

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
        if backend.startswith("fastbp:"):
            from fastbp import kernels as K

            name = fastbp_backend(backend)
            self.fn = lambda: K.sgd_update(p, g, lr=0.01, momentum=0.9, velocity=vel, backend=name)
        elif backend == "numpy":
            def run():
                np.multiply(vel, 0.9, out=vel)
                np.add(vel, g, out=vel)
                p.__isub__(0.01 * vel)
            self.fn = run
        else:
            torch = torch_or_skip()
            tp = torch.nn.Parameter(torch.from_numpy(p))
            tp.grad = torch.from_numpy(g)
            self.fn = torch.optim.SGD([tp], lr=0.01, momentum=0.9).step
        self.fn()

    def time_sgd_momentum(self, backend, size):
        self.fn()


class RMSprop:
    params = [BACKENDS, SIZES[:2]]
    param_names = ["backend", "size"]

    def setup(self, backend, size):
        p, g = _state(size)
        sq = np.zeros_like(p)
        if backend.startswith("fastbp:"):
            from fastbp import kernels as K

            name = fastbp_backend(backend)
            self.fn = lambda: K.rmsprop_update(p, g, sq, lr=1e-3, backend=name)
        elif backend == "numpy":
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
            self.fn = run
        else:
            torch = torch_or_skip()
            tp = torch.nn.Parameter(torch.from_numpy(p))
            tp.grad = torch.from_numpy(g)
            self.fn = torch.optim.RMSprop([tp], lr=1e-3).step
        self.fn()

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
