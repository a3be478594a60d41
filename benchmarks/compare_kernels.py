"""Side-by-side kernel timings: fastbp against NumPy and PyTorch (CPU), in one process, one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_kernels.py [--quick]

Contenders are timed alternately, round after round, and the median per-call time of each is
reported with the ratio to its baseline (> 1 means fastbp is faster). float32, 2 threads for
everyone. PyTorch is optional (the `compare` extra); its rows are left out when it is missing.
Targets are those of the Numba backend's issue; the last column says whether each is met.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import fastbp
from benchmarks import environment
from fastbp import kernels as K

# the contenders' warm speed: Numba compiles in this process, not in a background worker
os.environ.setdefault("FASTBP_BACKGROUND_COMPILE", "0")

try:
    import torch
except ImportError:  # the comparison rows that need it are skipped, and say so
    torch = None

THREADS = 2


def timed(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


#: idle time before each contender's turn: thread pools that spin after work (OpenBLAS's threads
#: keep polling for a while, OpenMP's too) go quiet, so no contender pays for the previous one's
GAP_S = 0.3


def compare(contenders: dict, rounds: int, budget_s: float = 0.05) -> dict:
    """Seconds per call of each callable, timed alternately in rounds: {name: [per-round times]}."""
    for fn in contenders.values():  # warm up (compilation, caches, thread pools)
        fn()
        fn()
    number = {name: max(1, int(budget_s / max(timed(fn, 3), 1e-7))) for name, fn in contenders.items()}
    samples = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            time.sleep(GAP_S)
            fn()  # one untimed call wakes the pools
            samples[name].append(timed(fn, number[name]))
    return samples


def median(samples):
    return statistics.median(samples)


def median_ratio(base, ours):
    """Median over rounds of baseline time / our time: each ratio pairs two timings taken moments
    apart, so drift of the shared machine between rounds cancels out."""
    return statistics.median(b / o for b, o in zip(base, ours))


def stream_bandwidth(n: int, rounds: int) -> float:
    """Triad a = b + s c with Numba's prange on float32, in GB/s counting 12 bytes per element."""
    from numba import njit, prange

    @njit(parallel=True)
    def triad(a, b, c, s):
        for i in prange(a.size):
            a[i] = b[i] + s * c[i]

    a, b, c = (np.ones(n, np.float32) for _ in range(3))
    s = np.float32(3.0)
    t = median(compare({"triad": lambda: triad(a, b, c, s)}, rounds)["triad"])
    return 12 * n / t / 1e9


def layer(batch, n_in, n_out, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in), dtype=np.float32)
    w = (rng.standard_normal((n_in, n_out), dtype=np.float32) / np.sqrt(n_in)).astype(np.float32)
    b = rng.standard_normal(n_out, dtype=np.float32) * 0.1
    return x, w, b


def bench_forward(rows, shape, rounds):
    x, w, b = layer(*shape)
    y = np.empty((shape[0], shape[2]), np.float32)
    cont = {
        "fastbp": lambda: K.linear_forward(x, w, b, "relu", out=y),
        "numpy": lambda: np.maximum(x @ w + b, 0),
    }
    if torch is not None:
        tx, tw, tb = map(torch.from_numpy, (x, w, b))
        cont["torch"] = lambda: torch.relu(torch.addmm(tb, tx, tw))
    t = compare(cont, rounds)
    name = f"linear_forward relu {shape}"
    rows.append((name, "numpy maximum(x@w+b,0)", t["fastbp"], t["numpy"], 1.3))
    if torch is not None:
        rows.append((name, "torch relu(addmm)", t["fastbp"], t["torch"], 1.0))


def bench_forward_large(rows, rounds):
    shape = (1024, 1024, 1024)
    x, w, b = layer(*shape)
    y = np.empty((1024, 1024), np.float32)
    t = compare({"fastbp": lambda: K.linear_forward(x, w, b, "relu", out=y), "numpy": lambda: x @ w}, rounds)
    rows.append((f"linear_forward relu {shape}", "numpy bare x@w", t["fastbp"], t["numpy"], 0.95))


def bench_backward(rows, shape, rounds):
    x, w, b = layer(*shape)
    y = K.linear_forward(x, w, b, "relu")
    dy = np.random.default_rng(1).standard_normal(y.shape, dtype=np.float32)
    dx, dw, db, dz = np.empty_like(x), np.empty_like(w), np.empty_like(b), np.empty_like(y)

    def numpy_backward():
        d = dy * (y > 0)
        return d @ w.T, x.T @ d, d.sum(axis=0)

    cont = {
        "fastbp": lambda: K.linear_backward(dy, x, w, y=y, activation="relu", dx=dx, dw=dw, db=db, dz=dz),
        "numpy": numpy_backward,
    }
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_()
        tw = torch.from_numpy(w).requires_grad_()
        tb = torch.from_numpy(b).requires_grad_()
        ty = torch.relu(torch.addmm(tb, tx, tw))
        tdy = torch.from_numpy(dy)
        cont["torch"] = lambda: torch.autograd.grad(ty, (tx, tw, tb), tdy, retain_graph=True)
    t = compare(cont, rounds)
    name = f"linear_backward relu {shape}"
    rows.append((name, "numpy composition", t["fastbp"], t["numpy"], 1.5))
    if torch is not None:
        rows.append((name, "torch autograd.grad", t["fastbp"], t["torch"], 1.0))


def numpy_adam_step(p, g, m, v, tmp, t, lr, b1, b2, eps):
    """One Adam step in NumPy, in place, written as a careful user would: no temporaries allocated."""
    np.multiply(m, b1, out=m)
    np.multiply(g, 1 - b1, out=tmp)
    np.add(m, tmp, out=m)
    np.multiply(v, b2, out=v)
    np.multiply(g, g, out=tmp)
    np.multiply(tmp, 1 - b2, out=tmp)
    np.add(v, tmp, out=v)
    np.sqrt(v, out=tmp)
    np.multiply(tmp, 1 / np.sqrt(1 - b2**t), out=tmp)
    np.add(tmp, eps, out=tmp)
    np.divide(m, tmp, out=tmp)
    np.multiply(tmp, lr / (1 - b1**t), out=tmp)
    np.subtract(p, tmp, out=p)


def bench_adam(rows, n, rounds, bandwidth):
    rng = np.random.default_rng(2)
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32) * 1e-2  # zero-mean, no subnormal moments
    m, v = np.zeros_like(p), np.zeros_like(p)
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    step = [0]

    def fastbp_adam():
        step[0] += 1
        K.adam_update(p, g, m, v, step=step[0], lr=lr)

    pn, mn, vn = p.copy(), np.zeros_like(p), np.zeros_like(p)
    tmp = np.empty_like(p)
    nstep = [0]

    def numpy_adam():
        nstep[0] += 1
        numpy_adam_step(pn, g, mn, vn, tmp, nstep[0], lr, b1, b2, eps)

    cont = {"fastbp": fastbp_adam}
    if n <= 10**6:
        cont["numpy"] = numpy_adam
    if torch is not None:
        tp = torch.nn.Parameter(torch.from_numpy(p.copy()))
        tp.grad = torch.from_numpy(g)
        opt = torch.optim.Adam([tp], lr=lr, fused=True)
        cont["torch"] = opt.step
    t = compare(cont, rounds)
    name = f"adam_update {n:.0e} params"
    if "numpy" in cont:
        rows.append((name, "numpy in-place multi-line", t["fastbp"], t["numpy"], None))
    if torch is not None:
        rows.append((name, "torch Adam(fused=True)", t["fastbp"], t["torch"], 1.2 if n <= 10**6 else None))
    if n >= 10**7:
        gbs = 28 * n / median(t["fastbp"]) / 1e9
        # ratio = time at the triad's bandwidth / our time = the fraction of that bandwidth reached
        ideal = [28 * n / bandwidth / 1e9] * len(t["fastbp"])
        rows.append((name, f"streaming triad {bandwidth:.1f} GB/s", t["fastbp"], ideal, 0.8,
                     f"{gbs:.1f} GB/s, 28 B/param"))


def bench_cython(rows, rounds):
    """The cython backend against the numba backend (target: within 1.25x, i.e. ratio >= 0.8) on
    the shapes above, and against NumPy where the Cython issue sets targets."""
    x, w, b = layer(128, 784, 128)
    for shape in ((32, 784, 128), (128, 784, 128), (1024, 1024, 1024)):
        xs, ws, bs = layer(*shape)
        ys = np.empty((shape[0], shape[2]), np.float32)
        cont = {be: (lambda be=be, xs=xs, ws=ws, bs=bs, ys=ys: K.linear_forward(xs, ws, bs, "relu", out=ys, backend=be))
                for be in ("cython", "numba")}
        if shape == (128, 784, 128):
            cont["numpy"] = lambda: np.maximum(x @ w + b, 0)
        t = compare(cont, rounds if shape[0] < 1024 else max(3, rounds // 3))
        name = f"cython linear_forward relu {shape}"
        rows.append((name, "numba backend", t["cython"], t["numba"], 0.8))
        if "numpy" in t:
            rows.append((name, "numpy maximum(x@w+b,0)", t["cython"], t["numpy"], 1.2))
    yb = K.linear_forward(x, w, b, "relu")
    dy = np.random.default_rng(1).standard_normal(yb.shape, dtype=np.float32)
    dx, dw, db, dz = np.empty_like(x), np.empty_like(w), np.empty_like(b), np.empty_like(yb)
    t = compare({be: (lambda be=be: K.linear_backward(dy, x, w, y=yb, activation="relu", dx=dx, dw=dw, db=db, dz=dz,
                                                      backend=be)) for be in ("cython", "numba")}, rounds)
    rows.append(("cython linear_backward relu (128, 784, 128)", "numba backend", t["cython"], t["numba"], 0.8))
    for n in (10**6, 10**7):
        rng = np.random.default_rng(2)
        arrays = {be: (rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32) * 1e-2,
                       np.zeros(n, np.float32), np.zeros(n, np.float32)) for be in ("cython", "numba")}
        cont = {be: (lambda be=be: K.adam_update(*arrays[be], step=1, backend=be)) for be in arrays}
        t = compare(cont, rounds if n <= 10**6 else max(3, rounds // 3))
        rows.append((f"cython adam_update {n:.0e} params", "numba backend", t["cython"], t["numba"], 0.8))
    pn, g = np.random.default_rng(3).standard_normal(10**6, dtype=np.float32), np.full(10**6, 1e-2, np.float32)
    mn, vn, tmp = np.zeros_like(pn), np.zeros_like(pn), np.empty_like(pn)
    pc, mc, vc = pn.copy(), mn.copy(), vn.copy()

    def numpy_adam():
        numpy_adam_step(pn, g, mn, vn, tmp, 1, 1e-3, 0.9, 0.999, 1e-8)

    t = compare({"cython": lambda: K.adam_update(pc, g, mc, vc, step=1, backend="cython"), "numpy": numpy_adam}, rounds)
    rows.append(("cython adam_update 1e+06 params", "numpy in-place multi-line", t["cython"], t["numpy"], 5.0))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when installed")
    parser.add_argument("--cython", action="store_true", help="time the cython backend against numba and NumPy instead")
    parser.add_argument("--json", default=None, help="also write the rows here (report.py reads them)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 15)
    global torch
    if args.no_torch:
        torch = None
    fastbp.set_num_threads(THREADS)
    if torch is not None:
        torch.set_num_threads(THREADS)
    unset = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ]
    if unset:
        print(f"note: {', '.join(unset)} set: NumPy's BLAS may be slowed; unset them for fair numbers", file=sys.stderr)
    print(f"fastbp {fastbp.__version__} backend {fastbp._backend.auto_backend()} "
          f"numpy {np.__version__} torch {torch.__version__ if torch else 'not installed'} threads {THREADS} "
          f"rounds {rounds} (medians)")
    described = environment.describe(["fastbp", "numpy"] + (["torch"] if torch is not None else []))
    print("\n".join(described))
    rows = []
    if args.cython:
        bench_cython(rows, rounds)
    for shape in (() if args.cython else ((32, 784, 128), (128, 784, 128))):
        bench_forward(rows, shape, rounds)
    if not args.cython:
        bench_forward_large(rows, max(3, rounds // 3))
        bench_backward(rows, (128, 784, 128), rounds)
        bandwidth = stream_bandwidth(10**7, rounds)
        bench_adam(rows, 10**6, rounds, bandwidth)
        bench_adam(rows, 10**7, max(3, rounds // 3), bandwidth)

    print(f"{'case':<38} {'baseline':<34} {'fastbp':>10} {'baseline':>10} {'ratio':>7} {'target':>7}")
    print(f"{'':<38} {'':<34} {'median':>10} {'median':>10} {'median':>7}")
    failed = 0
    for row in rows:
        name, base_name, ours_s, base_s, target = row[:5]
        ratio = median_ratio(base_s, ours_s)
        ours, base = median(ours_s), median(base_s)
        ok = "" if target is None else ("ok" if ratio >= target else "MISS")
        failed += ok == "MISS"
        extra = f"  ({row[5]})" if len(row) > 5 else ""
        tgt = "" if target is None else f">={target:g}"
        print(f"{name:<38} {base_name:<34} {ours * 1e6:>8.1f}us {base * 1e6:>8.1f}us {ratio:>6.2f}x {tgt:>7} {ok}{extra}")
    if args.json:
        import json

        table = [dict(case=r[0], baseline=r[1], fastbp_s=median(r[2]), baseline_s=median(r[3]),
                      ratio=median_ratio(r[3], r[2])) for r in rows]
        with open(args.json, "w") as f:
            json.dump({"environment": described, "rounds": rounds, "rows": table}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
