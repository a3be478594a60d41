"""One epoch of the classic MNIST example (784-128 relu-10 softmax, Adam, sparse CE)."""
import numpy as np

from .common import EPOCHS, fastbp_backend, fastbp_mnist_epoch, mnist_dir, runnable_or_skip

BATCHES = [32, 128]
CONTENDERS = ["fastbp:numba", "fastbp:cython", "fastbp:numpy", "torch", "tensorflow", "sklearn"]


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
            self.fn = EPOCHS[backend](x, y, batch)

    def time_epoch(self, backend, batch):
        self.fn()

    def track_samples_per_second(self, backend, batch):
        import time

        t = time.perf_counter()
        self.fn()
        return self.samples / (time.perf_counter() - t)

    track_samples_per_second.unit = "samples/s"



class MnistEpochMemory:
    """Megabytes one epoch adds to a built, warmed-up model's process, measured in a fresh process
    per contender (epoch_memory.py): the interpreter, libraries, data and model left out."""
    params = [CONTENDERS, BATCHES]
    param_names = ["backend", "batch"]
    timeout = 600

    def setup(self, backend, batch):
        mnist_dir()  # (NotImplementedError without the data)
        runnable_or_skip(backend)

    def track_epoch_memory(self, backend, batch):
        import subprocess
        import sys
        from pathlib import Path

        out = subprocess.run([sys.executable, str(Path(__file__).with_name("epoch_memory.py")), backend, str(batch)],
                             capture_output=True, text=True)
        lines = out.stdout.strip().splitlines()
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"epoch_memory.py {backend} {batch} failed:\n{out.stderr[-2000:]}")
        return float(lines[-1])

    track_epoch_memory.unit = "MB"


