"""Training epochs of the models Dropout and normalization make possible: fastbp.nn against PyTorch
CPU eager with the same layers, one process at a time.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_layers.py [--rounds 3]

Models (MNIST from FASTBP_DATA or ../shared/data, float32, 2 threads each):

* ``mlp``: Keras's mnist_mlp without dropout, 784-512 relu-512 relu-10 softmax, RMSprop, batch 128;
* ``mlp+dropout``: the same with Dropout(0.2) after each hidden layer (Keras's mnist_mlp itself);
* ``mlp+layernorm`` / ``mlp+batchnorm``: a LayerNormalization / BatchNormalization after each
  hidden layer instead;
* ``residual``: 24 sigmoid layers of width 64 as residual blocks h = LayerNorm(h + Dense(h)), Adam,
  batch 128 (examples/deep_residual_mlp.py).

Each round starts one process per contender in turn (never two alive at once: an idle pool's
spinning threads slow the other side), which loads the data, builds the model, trains one
warm-up epoch on a slice, then times ``--epochs`` epochs and exits. Medians over rounds and
epochs are printed with the ratios the layers issue asks for: dropout and normalization against
the plain MLP (fastbp), and PyTorch against fastbp per model.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# the contenders' warm speed: Numba compiles in this process, not in a background worker
os.environ.setdefault("FASTBP_BACKGROUND_COMPILE", "0")

THREADS = 2
MODELS = ("mlp", "mlp+dropout", "mlp+layernorm", "mlp+batchnorm", "residual")
DEPTH, WIDTH = 24, 64


def _load(data):
    from fastbp.datasets import load_mnist

    (x, y), _ = load_mnist(data, download=False)
    return (x.reshape(-1, 784) / 255.0).astype(np.float32), y.astype(np.int64)


def fastbp_model(name):
    """The model and its compile arguments on fastbp."""
    from fastbp import nn

    inputs = nn.Input((784,))
    if name == "residual":
        h = nn.Dense(WIDTH, activation="sigmoid")(inputs)
        for _ in range(DEPTH - 1):
            h = nn.LayerNormalization()(nn.Add()([h, nn.Dense(WIDTH, activation="sigmoid")(h)]))
        model = nn.Model(inputs, nn.Dense(10, activation="softmax")(h), seed=0)
        model.compile(optimizer=nn.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
    extra = name.partition("+")[2]
    h = inputs
    for _ in range(2):
        h = nn.Dense(512, activation="relu")(h)
        if extra == "dropout":
            h = nn.Dropout(0.2)(h)
        elif extra == "layernorm":
            h = nn.LayerNormalization()(h)
        elif extra == "batchnorm":
            h = nn.BatchNormalization()(h)
    model = nn.Model(inputs, nn.Dense(10, activation="softmax")(h), seed=0)
    model.compile(optimizer=nn.RMSprop(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def torch_model(name, torch):
    """The same model, optimizer and loss in PyTorch (Keras's epsilons and momentum)."""
    nn = torch.nn
    if name == "residual":
        class Residual(nn.Module):
            def __init__(self):
                super().__init__()
                self.first = nn.Linear(784, WIDTH)
                self.dense = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(DEPTH - 1))
                self.norm = nn.ModuleList(nn.LayerNorm(WIDTH, eps=1e-3) for _ in range(DEPTH - 1))
                self.out = nn.Linear(WIDTH, 10)

            def forward(self, x):
                h = torch.sigmoid(self.first(x))
                for dense, norm in zip(self.dense, self.norm):
                    h = norm(h + torch.sigmoid(dense(h)))
                return self.out(h)
        net = Residual()
        return net, torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    extra = name.partition("+")[2]
    layers, width = [], 784
    for _ in range(2):
        layers += [nn.Linear(width, 512), nn.ReLU()]
        width = 512
        if extra == "dropout":
            layers.append(nn.Dropout(0.2))
        elif extra == "layernorm":
            layers.append(nn.LayerNorm(512, eps=1e-3))
        elif extra == "batchnorm":
            layers.append(nn.BatchNorm1d(512, eps=1e-3, momentum=0.01))
    net = nn.Sequential(*layers, nn.Linear(512, 10))
    return net, torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)


def worker(contender, name, data, batch, epochs):
    """Build, warm up, time ``epochs`` epochs; print them as JSON."""
    x, y = _load(data)
    if contender == "torch":
        import torch

        torch.set_num_threads(THREADS)
        torch.manual_seed(0)
        net, opt = torch_model(name, torch)
        loss_fn = torch.nn.CrossEntropyLoss()
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def epoch(rows=len(x)):
            net.train()
            perm = torch.randperm(rows)
            for i in range(0, rows, batch):
                idx = perm[i:i + batch]
                opt.zero_grad(set_to_none=True)
                loss_fn(net(tx[idx]), ty[idx]).backward()
                opt.step()
    else:
        import fastbp

        fastbp.set_num_threads(THREADS)
        model = fastbp_model(name)

        def epoch(rows=len(x)):
            model.fit(x[:rows], y[:rows], batch_size=batch, epochs=1, verbose=0)
    epoch(batch * 8)  # compile (fastbp: from Numba's cache after the first run) and warm up
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - t)
    print(json.dumps(times), flush=True)


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per process")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--data", default=None)
    parser.add_argument("--worker", nargs=2, metavar=("CONTENDER", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    data = args.data or os.environ.get("FASTBP_DATA") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    if args.worker:
        return worker(args.worker[0], args.worker[1], data, args.batch, args.epochs)
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    import fastbp

    contenders = ["fastbp"] + (["torch"] if torch_version and not args.no_torch else [])
    print(f"CPU: {_cpu()}; fastbp {fastbp.__version__}, torch {torch_version or 'not installed'}; {THREADS} threads, "
          f"batch {args.batch}, {args.rounds} rounds x {args.epochs} epochs, one process at a time (medians)")
    times = {(c, m): [] for c in contenders for m in args.models}
    for r in range(args.rounds):
        for m in args.models:
            for c in (contenders if r % 2 == 0 else contenders[::-1]):
                out = subprocess.run([sys.executable, __file__, "--data", data, "--batch", str(args.batch),
                                      "--epochs", str(args.epochs), "--worker", c, m],
                                     capture_output=True, text=True, check=True)
                times[c, m] += json.loads(out.stdout.strip().splitlines()[-1])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'model':<15}{'fastbp s':>10}{'torch s':>10}{'torch/fastbp':>14}{'vs mlp':>9}")
    for m in args.models:
        ours = med["fastbp", m]
        theirs = med.get(("torch", m))
        ratio = f"{theirs / ours:>13.2f}x" if theirs else f"{'-':>14}"
        vs = f"{ours / med['fastbp', 'mlp']:>8.2f}x" if m.startswith("mlp") and "mlp" in args.models else f"{'':>9}"
        print(f"{m:<15}{ours:>10.3f}{theirs if theirs else float('nan'):>10.3f}{ratio}{vs}")
    for (c, m), ts in times.items():
        print(f"  {c} {m}: " + " ".join(f"{t:.2f}" for t in ts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
