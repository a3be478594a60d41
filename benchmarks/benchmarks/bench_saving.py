"""Saving and loading the classic MNIST model with its Adam state (784-128-10: 101,770 weights and
two moment buffers, 1.2 MB): fastbp's model file (checksummed, atomic with fsync) against
``np.savez`` of the same arrays (no checksum, no fsync) and ``torch.save`` of the model's and the
optimizer's state dicts."""
import os
import shutil
import tempfile

import numpy as np

from .common import torch_or_skip

CONTENDERS = ["fastbp", "numpy.savez", "torch.save"]


def _fastbp_model():
    try:
        from fastbp import nn

        nn.load_model  # noqa: B018  (commits before model files skip)
    except (ImportError, AttributeError) as exc:
        raise NotImplementedError(f"fastbp model files at this commit: {exc}") from None
    rng = np.random.default_rng(0)
    model = nn.Sequential([nn.Dense(128, activation="relu", input_shape=(784,)), nn.Dense(10, activation="softmax")],
                          seed=0, backend="numpy")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(rng.random((64, 784), np.float32), rng.integers(0, 10, 64), batch_size=32, verbose=0)
    return nn, model


class SaveLoad:
    params = [CONTENDERS]
    param_names = ["contender"]
    number = 1
    repeat = (3, 20, 20.0)

    def setup(self, contender):
        self.folder = tempfile.mkdtemp()
        self.path = os.path.join(self.folder, "model")
        if contender == "fastbp":
            nn, model = _fastbp_model()
            self.save = lambda: model.save(self.path)
            self.load = lambda: nn.load_model(self.path)
        elif contender == "numpy.savez":
            rng = np.random.default_rng(0)
            arrays = [rng.random(s, np.float32) for s in ((784, 128), (128,), (128, 10), (10,), (101770,), (101770,))]
            self.path += ".npz"
            self.save = lambda: np.savez(self.path, *arrays)

            def load():
                with np.load(self.path) as data:
                    return [data[k] for k in data.files]
            self.load = load
        else:
            torch = torch_or_skip()
            net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
            opt = torch.optim.Adam(net.parameters())
            net(torch.zeros(2, 784)).sum().backward()
            opt.step()
            self.save = lambda: torch.save({"model": net.state_dict(), "optimizer": opt.state_dict()}, self.path)
            self.load = lambda: torch.load(self.path, weights_only=True)
        self.save()

    def teardown(self, contender):
        shutil.rmtree(self.folder, ignore_errors=True)

    def time_save(self, contender):
        self.save()

    def time_load(self, contender):
        self.load()
