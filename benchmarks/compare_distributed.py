"""Data-parallel training on MPI, measured on this machine and projected to N ranks.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_distributed.py [--rounds 3]

Launches ``mpiexec`` runs of this script (``--worker``), one at a time, alternating, and prints:

1. the seed model's MNIST epoch (784-128-10, Adam) at global batch 128 and 1024 on 1 rank x 2
   threads against 2 ranks x 1 thread (``fit(distribution=DataParallel(threads=...))``);
2. the time per step in the gradient Allreduce (101,772 float32 elements: the flat gradient and
   the two elements of loss and correct count) against its bandwidth bound, from the Allreduce's
   measured latency (8 bytes) and bandwidth (16 MiB) on 2 ranks;
3. one Allreduce after the backward pass against per-layer buckets whose nonblocking Iallreduce
   starts during the backward pass (the last layer's gradient is ready first), in the same
   Python loop over fastbp.kernels;
4. a projected table for N ranks: the measured compute of one rank's share of a global batch of
   1024 (1 thread, local batches 1024 / N) plus the ring-allreduce cost 2 (N - 1) / N x bytes /
   bandwidth + 2 (N - 1) x latency, with this machine's measured shared-memory latency and
   bandwidth, and with an assumed cluster link (100 Gb/s InfiniBand: 12 GB/s, 2 us).

The CPU is named in the output; medians of the rounds, each figure from its own run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

# the contenders' warm speed: Numba compiles in this process, not in a background worker
os.environ.setdefault("FASTBP_BACKGROUND_COMPILE", "0")

HERE = os.path.abspath(__file__)
CLUSTER = {"bandwidth": 12e9, "latency": 2e-6, "name": "assumed 100 Gb/s InfiniBand (12 GB/s, 2 us)"}


# ----------------------------------------------------------------------------------- worker

def _mnist():
    from fastbp.datasets import load_mnist

    (x, y), _ = load_mnist(download=False)
    return (x.reshape(-1, 784) / 255.0).astype(np.float32), y


def _model():
    from fastbp import nn

    m = nn.Sequential([nn.Dense(128, activation="relu", input_shape=(784,)), nn.Dense(10, activation="softmax")],
                      seed=0)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def _epoch(dp, batch):
    x, y = _mnist()
    m = _model()
    m.fit(x[:4 * batch], y[:4 * batch], batch_size=batch, epochs=1, verbose=0, distribution=dp)  # warm
    dp.comm.Barrier()
    t = time.perf_counter()
    m.fit(x, y, batch_size=batch, epochs=1, verbose=0, distribution=dp)
    dp.comm.Barrier()
    return time.perf_counter() - t


def _allreduce_seconds(dp, elements, repeats):
    from mpi4py import MPI

    buf = np.ones(elements, np.float32)
    times = []
    for _ in range(repeats):
        dp.comm.Barrier()
        t = time.perf_counter()
        dp.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _overlap(dp, batch, steps=300):
    """Seconds per step of the Python loop over fastbp.kernels for the seed model on this rank's
    share of each global batch: one Allreduce after the backward pass, and per-layer buckets whose
    Iallreduce starts as soon as the layer's gradient is ready. Each mode runs twice, alternating;
    the medians of the second passes count."""
    from mpi4py import MPI

    from fastbp import kernels as K
    from fastbp.backends.numba_cpu import single_threaded_blas

    x, y = _mnist()
    m = _model()
    m.build(784)
    (w1, b1), (w2, b2) = (layer.weights for layer in m.layers)
    (g1w, g1b), (g2w, g2b) = (layer.grads for layer in m.layers)
    lo, hi = dp.share(batch)
    h, dh = np.empty((hi - lo, 128), np.float32), np.empty((hi - lo, 128), np.float32)
    z, g = np.empty((hi - lo, 10), np.float32), np.empty((hi - lo, 10), np.float32)
    mom, vel = np.zeros_like(m.params), np.zeros_like(m.params)
    first_layer, last_layer = m.grads[:w1.size + b1.size], m.grads[w1.size + b1.size:]

    def step(k, buckets):
        xb, yb = x[k * batch + lo:k * batch + hi], y[k * batch + lo:k * batch + hi]
        K.linear_forward(xb, w1, b1, "relu", out=h)
        K.linear_forward(h, w2, b2, "linear", out=z)
        K.softmax_cross_entropy(z, yb, dlogits=g)
        K.linear_backward(g, h, w2, activation="linear", dx=dh, dw=g2w, db=g2b)
        if buckets:
            last = dp.comm.Iallreduce(MPI.IN_PLACE, last_layer, op=MPI.SUM)
        K.linear_backward(dh, xb, w1, y=h, activation="relu", dw=g1w, db=g1b, need_dx=False)
        if buckets:
            MPI.Request.Waitall([last, dp.comm.Iallreduce(MPI.IN_PLACE, first_layer, op=MPI.SUM)])
        else:
            dp.comm.Allreduce(MPI.IN_PLACE, m.grads, op=MPI.SUM)
        K.adam_update(m.params, m.grads, mom, vel, step=k + 1, lr=1e-3, eps=1e-7)

    results = {}
    with single_threaded_blas, dp.threads_in_use():
        for mode in ("one allreduce", "per-layer iallreduce") * 2:
            times = []
            for k in range(steps):
                t = time.perf_counter()
                step(k, mode != "one allreduce")
                times.append(time.perf_counter() - t)
            results[mode] = statistics.median(times)
    return results


def _compute_per_step(batch, steps=200):
    """Seconds per step of one rank's compiled gradient and update at ``batch`` rows, no collective."""
    import fastbp

    x, y = _mnist()
    m = _model()
    m.fit(x[:4 * batch], y[:4 * batch], batch_size=batch, epochs=1, verbose=0)
    run = m._epoch_runner(x, y, batch)
    order = np.arange(len(x))
    fastbp.set_num_threads(1)
    times = []
    with run.blas:
        for step in range(steps):
            lo = (step * batch) % (len(x) - batch)
            t = time.perf_counter()
            run.grad(order, lo, batch, 1.0)
            run.apply(batch)
            times.append(time.perf_counter() - t)
    return statistics.median(times[10:])


def worker(args):
    from fastbp.distributed import DataParallel

    dp = DataParallel(threads=args.threads)
    out = {}
    if args.task == "epoch":
        out["seconds"] = _epoch(dp, args.batch)
    elif args.task == "allreduce":
        out["gradient"] = _allreduce_seconds(dp, 101_772, 400)
        out["latency"] = _allreduce_seconds(dp, 2, 400)  # 8 bytes
        out["big"] = _allreduce_seconds(dp, 4 << 20, 30)  # 16 MiB
    elif args.task == "overlap":
        out.update(_overlap(dp, args.batch))
    elif args.task == "compute":
        out["per_step"] = {str(b): _compute_per_step(b) for b in (1024, 512, 256, 128, 64, 32, 16)}
    if dp.rank == 0:
        with open(args.out, "w") as f:
            json.dump(out, f)


# ------------------------------------------------------------------------------------ driver

def _run(ranks, threads, task, batch=0):
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit('mpiexec not found: pip install ".[mpi]"')
    fd, out = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        subprocess.run([mpiexec, "-n", str(ranks), sys.executable, HERE, "--worker", task, "--threads", str(threads),
                        "--batch", str(batch), "--out", out], check=True, timeout=1800)
        with open(out) as f:
            return json.load(f)
    finally:
        os.unlink(out)


def _cpu():
    with open("/proc/cpuinfo") as f:
        info = f.read()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "unknown")
    fields = {k: next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith(k)), "?")
              for k in ("cpu family", "model\t")}
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    simd = [f for f in ("avx2", "fma", "avx512f", "amx_bf16") if f in flags]
    return f"{name} (family {fields['cpu family']}, model {fields['model' + chr(9)]}, {'+'.join(simd)}), {os.cpu_count()} CPUs"


def _ring(ranks, bytes_, bandwidth, latency):
    return 2 * (ranks - 1) / ranks * bytes_ / bandwidth + 2 * (ranks - 1) * latency


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.task = args.worker
        return worker(args)
    print(f"CPU: {_cpu()}")
    epochs = {}
    for _ in range(args.rounds):
        for batch in (128, 1024):
            for ranks, threads in ((1, 2), (2, 1)):
                epochs.setdefault((batch, ranks, threads), []).append(_run(ranks, threads, "epoch", batch)["seconds"])
    print("\n1. MNIST epoch (seed model, Adam), seconds, median of", args.rounds, "rounds")
    for batch in (128, 1024):
        one, two = (statistics.median(epochs[(batch, r, t)]) for r, t in ((1, 2), (2, 1)))
        print(f"   global batch {batch:5d}: 1 rank x 2 threads {one:.3f} s, 2 ranks x 1 thread {two:.3f} s "
              f"({one / two:.2f}x)   rounds {[round(v, 3) for v in epochs[(batch, 1, 2)]]} / "
              f"{[round(v, 3) for v in epochs[(batch, 2, 1)]]}")
    comm = [_run(2, 1, "allreduce") for _ in range(args.rounds)]
    small = statistics.median(c["latency"] for c in comm)
    big = statistics.median(c["big"] for c in comm)
    gradient = statistics.median(c["gradient"] for c in comm)
    # the ring model on 2 ranks: t = S / bandwidth + 2 latency; an 8-byte Allreduce is the 2 latencies
    latency = small / 2
    bandwidth = (4 << 20) * 4 / max(big - small, 1e-9)
    grad_bytes = 101_772 * 4
    print("\n2. Allreduce on 2 ranks (shared memory): 8 B "
          f"{small * 1e6:.1f} us (latency {latency * 1e6:.1f} us), 16 MiB {big * 1e3:.2f} ms -> bandwidth "
          f"{bandwidth / 1e9:.2f} GB/s; "
          f"the gradient ({grad_bytes / 1e3:.0f} kB) {gradient * 1e6:.0f} us per step against its bound "
          f"{_ring(2, grad_bytes, bandwidth, latency) * 1e6:.0f} us")
    overlap = [_run(2, 1, "overlap", 128) for _ in range(args.rounds)]
    one = statistics.median(o["one allreduce"] for o in overlap)
    buckets = statistics.median(o["per-layer iallreduce"] for o in overlap)
    print(f"\n3. Python kernel loop, 2 ranks, global batch 128, per step: one Allreduce after backward "
          f"{one * 1e6:.0f} us, per-layer Iallreduce during backward {buckets * 1e6:.0f} us ({one / buckets:.2f}x)")
    compute = _run(1, 1, "compute")["per_step"]
    print("\n4. Projected step and epoch time (60,000 rows) at global batch 1024, N ranks of 1 thread:")
    print(f"   {'N':>4} {'compute/step':>13} {'allreduce (here)':>17} {'epoch (here)':>13} "
          f"{'allreduce (cluster)':>20} {'epoch (cluster)':>16} {'speed-up (cluster)':>19}")
    steps = -(-60_000 // 1024)
    base = None
    for ranks in (1, 2, 4, 8, 16, 32, 64):
        local = str(1024 // ranks)
        c = compute.get(local)
        if c is None:  # below the measured local batches: scale the smallest measured one
            c = compute["16"] * (1024 / ranks) / 16
        here = _ring(ranks, grad_bytes, bandwidth, latency)
        there = _ring(ranks, grad_bytes, CLUSTER["bandwidth"], CLUSTER["latency"])
        epoch_here, epoch_there = steps * (c + here), steps * (c + there)
        base = base or epoch_there
        print(f"   {ranks:4d} {c * 1e3:10.3f} ms {here * 1e6:14.0f} us {epoch_here:11.3f} s "
              f"{there * 1e6:17.0f} us {epoch_there:14.3f} s {base / epoch_there:17.2f}x")
    print(f"   (cluster: {CLUSTER['name']}; compute measured at local batch 1024 / N on this CPU, 1 thread)")


if __name__ == "__main__":
    sys.exit(main())
