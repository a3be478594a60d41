"""One training epoch of the classic MNIST MLP (784-128 relu-10 softmax, Adam, sparse CE):
fastbp.nn (``fastbp``: its default backend; ``fastbp:cython``; ``fastbp:numpy``, the reference)
against PyTorch CPU eager, Keras on TensorFlow and scikit-learn's MLPClassifier, one process at
a time.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_training.py [--rounds 5] [--json F]

Real MNIST (FASTBP_DATA or ../shared/data), float32 inputs, 2 threads each. Each round starts
one process per contender in turn (the order reversed every other round), which loads the data,
builds and warms up its model, times ``--epochs`` epochs, prints them and exits: no two
contenders are ever alive together. (Kept warm side by side, an idle contender's spinning
threads slowed the other one: PyTorch epochs of 13.5-106 s against 2.7-3.1 s alone.) The
contenders present are those installed: PyTorch and scikit-learn come with the ``compare``
extra, TensorFlow too where it has wheels.

Also printed: the CPU and each contender's BLAS, and the matrix-product floor: the epoch's GEMM
flops (:func:`epoch_flops`) at the one-process BLAS rate measured here (NumPy, 1024^3, float32).
Medians over rounds; every epoch is printed too, since this machine's state shows in them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import environment
from benchmarks.common import EPOCHS, THREADS, fastbp_mnist_epoch

# the contenders' warm speed: Numba compiles in this process, not in a background worker
os.environ.setdefault("FASTBP_BACKGROUND_COMPILE", "0")

CONTENDERS = ("fastbp", "fastbp:cython", "fastbp:numpy", "torch", "tensorflow", "sklearn")
MODULES = {"torch": "torch", "tensorflow": "tensorflow", "sklearn": "sklearn"}


def epoch_flops(n, n_in=784, hidden=128, classes=10):
    """GEMM flops of one epoch over n samples: each layer's forward x @ w and dw = x.T @ dz, and
    dx = dz @ w.T for every layer but the first (nothing needs the gradient of the input), at 2
    flops per multiply-add: 2 n (2 n_in hidden + 3 hidden classes)."""
    return 2 * n * (2 * n_in * hidden + 3 * hidden * classes)


def blas_rate(rounds=5):
    """float32 GEMM flop/s of NumPy's BLAS on 1024^3 (the median of ``rounds``)."""
    a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
    a @ a
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t)
    return 2 * 1024**3 / statistics.median(times)


def _load(data):
    from fastbp.datasets import load_mnist

    (x, y), _ = load_mnist(data, download=False)
    return (x.reshape(-1, 784) / 255.0).astype(np.float32), y


def worker(name, data, batch, epochs):
    """Build and warm up ``name``'s epoch, time ``epochs`` of them, print the seconds as JSON."""
    x, y = _load(data)
    if name.startswith("fastbp"):
        import fastbp

        fastbp.set_num_threads(THREADS)
        run = fastbp_mnist_epoch(x, y, batch, name.partition(":")[2] or None)
    else:
        run = EPOCHS[name](x, y, batch)
        run()  # PyTorch's builder does not warm up itself
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    print(json.dumps(times), flush=True)


def describe(contenders):
    """(the CPU and BLAS lines, NumPy's GEMM flop/s), printed as JSON by a process of their own so
    that this one imports no contender and starts no thread pool."""
    print(json.dumps([environment.describe(contenders), blas_rate()]), flush=True)


def installed(names):
    import importlib.util

    return [n for n in names if n.startswith("fastbp") or importlib.util.find_spec(MODULES[n]) is not None]


def measure(contenders, batch, rounds, epochs, data):
    """{contender: [epoch seconds]} from ``rounds`` rounds of one process per contender in turn."""
    times = {c: [] for c in contenders}
    for r in range(rounds):
        for c in (contenders if r % 2 == 0 else contenders[::-1]):
            out = subprocess.run([sys.executable, __file__, "--data", data, "--epochs", str(epochs),
                                  "--worker", c, str(batch)], capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"{c} (batch {batch}) failed:\n{out.stderr[-3000:]}")
            times[c] += json.loads(out.stdout.strip().splitlines()[-1])
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per process (default 1)")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    parser.add_argument("--json", default=None, help="also write the results here (report.py reads them)")
    parser.add_argument("--data", default=None)
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--describe", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.describe:
        return describe(args.describe)
    data = args.data or os.environ.get("FASTBP_DATA") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    if args.worker:
        return worker(args.worker[0], data, int(args.worker[1]), args.epochs)
    contenders = installed(["fastbp"] + [c for c in args.contenders if c != "fastbp"])
    out = subprocess.run([sys.executable, __file__, "--describe", *[c for c in contenders if ":" not in c]], capture_output=True, text=True,
                         check=True)
    lines, rate = json.loads(out.stdout.strip().splitlines()[-1])
    floor = epoch_flops(60000) / rate
    print("\n".join(lines))
    print(f"{THREADS} threads, {args.rounds} rounds x {args.epochs} epochs, one process at a time (medians); "
          f"NumPy's BLAS {rate / 1e9:.0f} GFLOP/s -> matrix-product floor {floor:.3f} s/epoch "
          f"({epoch_flops(60000) / 1e9:.1f} GFLOP)")
    results = {"environment": lines, "floor_s": floor, "blas_gflops": rate / 1e9, "batches": {}}
    print(f"{'batch':>5} {'contender':<14} {'epoch s':>8} {'fastest':>8} {'/ fastbp':>9} {'x floor':>8}")
    for batch in args.batches:
        times = measure(contenders, batch, args.rounds, args.epochs, data)
        results["batches"][str(batch)] = times
        ours = statistics.median(times["fastbp"])
        for c, ts in times.items():
            med = statistics.median(ts)
            print(f"{batch:>5} {c:<14} {med:>8.3f} {min(ts):>8.3f} {med / ours:>8.2f}x {med / floor:>7.2f}x")
        for c, ts in times.items():
            print(f"{'':>5}   {c} epochs: " + " ".join(f"{t:.2f}" for t in ts))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
