"""One training epoch of the classic MNIST MLP (784-128 relu-10 softmax, Adam, sparse CE):
fastbp.nn against PyTorch CPU eager (the standard nn.Sequential + Adam loop), in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_training.py [--rounds 7]

Real MNIST (FASTBP_DATA or ../shared/data), float32, 2 threads each, epochs alternated between
the contenders; medians. Each contender runs in its own worker process, started once and kept
warm: in one process, PyTorch's OpenMP pool and Numba's slow each other down (measured here: a
PyTorch epoch 2.0 s alone, 6.7 s beside a Numba pool; or the other way round, depending on which
pool started first), which would measure the neighbour, not the contender. Also the
matrix-product floor: the epoch's GEMM flops at the BLAS rate measured here (NumPy, 1024^3).
fastbp's compiled loop picks 2 or 1 threads chunk by chunk (``FASTBP_ADAPTIVE_THREADS=0`` in the
environment keeps it on 2); every round's time is printed, since this machine's state shows there.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import fastbp
from benchmarks.common import fastbp_mnist_epoch, torch_mnist_epoch  # the asv suite's epoch builders
from fastbp.datasets import load_mnist

# the contenders' warm speed: Numba compiles in this process, not in a background worker
os.environ.setdefault("FASTBP_BACKGROUND_COMPILE", "0")

THREADS = 2
GAP_S = 0.3


def epoch_flops(n, n_in=784, hidden=128, classes=10):
    """GEMM flops of one epoch over n samples: each layer's forward x @ w and dw = x.T @ dz, and
    dx = dz @ w.T for every layer but the first (nothing needs the gradient of the input), at 2
    flops per multiply-add: 2 n (2 n_in hidden + 3 hidden classes)."""
    return 2 * n * (2 * n_in * hidden + 3 * hidden * classes)


def blas_rate(rounds=5):
    a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
    a @ a
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t)
    return 2 * 1024**3 / statistics.median(times)


def _load(data):
    (x, y), _ = load_mnist(data, download=False)
    return (x.reshape(-1, 784) / 255.0).astype(np.float32), y


def worker(name, data, batch):
    """Serve epochs on request: read a line, run one epoch, print its seconds."""
    x, y = _load(data)
    if name == "torch":
        run = torch_mnist_epoch(x, y, batch)  # (sets PyTorch's threads to common.THREADS, 2)
        run()
    else:
        fastbp.set_num_threads(THREADS)
        run = fastbp_mnist_epoch(x, y, batch)
    print("ready", flush=True)
    for _ in sys.stdin:
        t = time.perf_counter()
        run()
        print(time.perf_counter() - t, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--data", default=None)
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    data = args.data or os.environ.get("FASTBP_DATA") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    if args.worker:
        return worker(args.worker[0], data, int(args.worker[1]))
    try:
        import torch
    except ImportError:
        torch = None
    rate = blas_rate()
    floor = epoch_flops(60000) / rate
    print(f"fastbp {fastbp.__version__} ({fastbp._backend.auto_backend()}), torch "
          f"{torch.__version__ if torch else 'not installed'}, {THREADS} threads, {args.rounds} rounds (medians); "
          f"BLAS {rate / 1e9:.0f} GFLOP/s -> matrix-product floor {floor:.3f} s/epoch")
    print(f"{'batch':>5} {'fastbp s':>9} {'torch s':>9} {'speedup':>8} {'x floor':>8}")
    for batch in args.batches:
        names = ["fastbp"] + (["torch"] if torch is not None else [])
        procs = {name: subprocess.Popen([sys.executable, __file__, "--data", data, "--worker", name, str(batch)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for name in names}
        for p in procs.values():
            assert p.stdout.readline().strip() == "ready"
        times = {k: [] for k in procs}
        for _ in range(args.rounds):
            for name, p in procs.items():
                time.sleep(GAP_S)
                p.stdin.write("run\n")
                p.stdin.flush()
                times[name].append(float(p.stdout.readline()))
        for p in procs.values():
            p.stdin.close()
            p.wait()
        ours = statistics.median(times["fastbp"])
        if torch is not None:
            theirs = statistics.median(times["torch"])
            ratio = statistics.median(t / o for t, o in zip(times["torch"], times["fastbp"]))
            print(f"{batch:>5} {ours:>9.3f} {theirs:>9.3f} {ratio:>7.2f}x {ours / floor:>7.2f}x")
        else:
            print(f"{batch:>5} {ours:>9.3f} {'-':>9} {'-':>8} {ours / floor:>7.2f}x")
        for name, ts in times.items():  # the rounds themselves: this machine's state shows in them
            print(f"{'':>5} {name} rounds: " + " ".join(f"{t:.2f}" for t in ts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
