"""One epoch of the classic MNIST example (784-128 relu-10 softmax, Adam, sparse CE)."""
import numpy as np

from .common import fastbp_backend, mnist_dir, torch_or_skip

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
                from fastbp import nn
            except ImportError as exc:
                raise NotImplementedError(f"fastbp.nn at this commit: {exc}") from None

            model = nn.Sequential([nn.Dense(128, activation="relu", input_shape=(784,)),
                                   nn.Dense(10, activation="softmax")], seed=0, backend=name)
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            model.fit(x[:batch * 4], y[:batch * 4], batch_size=batch, epochs=1, verbose=0)  # compile
            self.fn = lambda: model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        else:
            torch = torch_or_skip()
            torch.manual_seed(0)
            net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
            opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
            loss_fn = torch.nn.CrossEntropyLoss()
            tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

            def epoch():
                perm = torch.randperm(len(tx))
                for i in range(0, len(tx), batch):
                    idx = perm[i:i + batch]
                    opt.zero_grad(set_to_none=True)
                    loss_fn(net(tx[idx]), ty[idx]).backward()
                    opt.step()
            self.fn = epoch

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


