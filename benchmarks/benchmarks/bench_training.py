"""One epoch of the classic MNIST example (784-128 relu-10 softmax, Adam, sparse CE)."""
import numpy as np

from .common import fastbp_backend, fastbp_mnist_epoch, mnist_dir, torch_mnist_epoch

BATCHES = [32, 128]
CONTENDERS = ["fastbp:numba", "fastbp:cython", "fastbp:numpy", "torch"]


def _data():
    try:
        from fastbp.datasets import load_mnist
    except ImportError as exc:
        raise NotImplementedError(f"fastbp.datasets at this commit: {exc}") from None

    (x, y), _ = load_mnist(mnist_dir(), download=False)
    return (x.reshape(-1, 784) / 255.0).astype(np.float32), y


class MnistEpoch:
    params = [CONTENDERS, BATCHES]
    param_names = ["backend", "batch"]
    number = 1
    repeat = (1, 3, 60.0)
    timeout = 600

    def setup(self, backend, batch):
        x, y = _data()
        self.samples = len(x)
        if backend.startswith("fastbp:"):
            name = fastbp_backend(backend)
            try:
                self.fn = fastbp_mnist_epoch(x, y, batch, name)
            except ImportError as exc:
                raise NotImplementedError(f"fastbp.nn at this commit: {exc}") from None
        else:
            self.fn = torch_mnist_epoch(x, y, batch)

    def time_epoch(self, backend, batch):
        self.fn()

    def track_samples_per_second(self, backend, batch):
        import time

        t = time.perf_counter()
        self.fn()
        return self.samples / (time.perf_counter() - t)

    track_samples_per_second.unit = "samples/s"

    def peakmem_epoch(self, backend, batch):
        self.fn()


