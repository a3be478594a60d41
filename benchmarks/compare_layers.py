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

``--interleaved`` measures the layers' overhead with less noise: one fastbp process builds every
model, then times their epochs in turn (the order rotating each epoch), so that a slow spell of
the machine falls on all of them; each model's epoch is divided by the plain MLP's epoch of the
same turn and the median of those ratios is printed.

``--fusion-ceiling`` times what fusing the residual Add into the Dense kernels could save in the
``residual`` model: per block and step, the compiled loop's separate passes over the 128x64 block
(forward: copy and add; backward: the gradient copied to both inputs and the Dense's dx added),
summed over the epoch. A fused ``linear_forward(residual=)`` / ``linear_backward(accumulate_dx=)``
removes at most these passes.
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


def interleaved_worker(names, data, batch, epochs):
    """All ``names`` (fastbp) in this process, their epochs in rotating order; JSON of the times."""
    import fastbp

    x, y = _load(data)
    fastbp.set_num_threads(THREADS)
    models = {m: fastbp_model(m) for m in names}
    for model in models.values():
        model.fit(x[:batch * 8], y[:batch * 8], batch_size=batch, epochs=1, verbose=0)
    times = {m: [] for m in names}
    for e in range(epochs):
        for m in names[e % len(names):] + names[:e % len(names)]:
            t = time.perf_counter()
            models[m].fit(x, y, batch_size=batch, epochs=1, verbose=0)
            times[m].append(time.perf_counter() - t)
    print(json.dumps(times), flush=True)


def fusion_ceiling(batch, rounds=7, reps=20000):
    """Seconds per epoch of the residual model's Add passes (the most a fusion could save)."""
    from fastbp.nn.compiled.interpreter import _add_into, _copy

    a, b, c, t = (np.random.default_rng(i).standard_normal((batch, WIDTH)).astype(np.float32) for i in range(4))

    def block():
        _copy(a, b)  # forward: y = h
        _add_into(b, c)  # y += dense(h)
        _copy(a, b)  # backward: the gradient to the skip input
        _copy(a, t)  # ... and to the Dense's output
        _add_into(b, t)  # the Dense's dx added to the skip's gradient
    block()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            block()
        times.append((time.perf_counter() - start) / reps)
    per_block = statistics.median(times)
    steps = -(-60000 // batch)
    print(f"residual Add passes: {per_block * 1e6:.2f} us per block and step (5 calls from Python, their dispatch "
          f"included) x {DEPTH - 1} blocks x {steps} steps = {per_block * (DEPTH - 1) * steps:.3f} s per epoch")
    return 0


def interleaved(args, data):
    names = [m for m in args.models if m.startswith("mlp")]
    if names[0] != "mlp":
        names = ["mlp"] + [m for m in names if m != "mlp"]
    times = {m: [] for m in names}
    for _ in range(args.rounds):
        out = subprocess.run([sys.executable, __file__, "--data", data, "--batch", str(args.batch), "--epochs",
                              str(args.epochs), "--worker", "interleaved", ",".join(names)],
                             capture_output=True, text=True, check=True)
        for m, ts in json.loads(out.stdout.strip().splitlines()[-1]).items():
            times[m] += ts
    print(f"{'model':<15}{'fastbp s':>10}{'fastest':>9}{'/ mlp (median of paired epochs)':>33}")
    for m in names:
        ratio = statistics.median(t / p for t, p in zip(times[m], times["mlp"]))
        print(f"{m:<15}{statistics.median(times[m]):>10.3f}{min(times[m]):>9.3f}{ratio:>32.3f}x")
    for m, ts in times.items():
        print(f"  fastbp {m}: " + " ".join(f"{t:.2f}" for t in ts))
    return 0


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
    parser.add_argument("--fusion-ceiling", action="store_true",
                        help="what fusing the residual Add into the Dense kernels could save per epoch")
    parser.add_argument("--interleaved", action="store_true",
                        help="the layers' overhead only: every mlp model in one fastbp process, epochs in turn")
    parser.add_argument("--data", default=None)
    parser.add_argument("--worker", nargs=2, metavar=("CONTENDER", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    data = args.data or os.environ.get("FASTBP_DATA") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    if args.worker and args.worker[0] == "interleaved":
        return interleaved_worker(args.worker[1].split(","), data, args.batch, args.epochs)
    if args.worker:
        return worker(args.worker[0], args.worker[1], data, args.batch, args.epochs)
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    import fastbp

    if args.fusion_ceiling:
        print(f"CPU: {_cpu()}; fastbp {fastbp.__version__}; one thread (the loop runs these passes serially)")
        return fusion_ceiling(args.batch)
    if args.interleaved:
        print(f"CPU: {_cpu()}; fastbp {fastbp.__version__}; {THREADS} threads, batch {args.batch}, {args.rounds} "
              f"processes x {args.epochs} epochs per model, the models' epochs interleaved")
        return interleaved(args, data)
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
