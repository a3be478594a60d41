"""fastbp.sklearn.MLPClassifier against scikit-learn's, with the same parameters, on MNIST.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_sklearn.py [--rounds 3]

hidden_layer_sizes=(128,), solver='adam', batch_size=128, max_iter=10, random_state=0 (the issue's
setting), on real MNIST (FASTBP_DATA or ../shared/data) scaled to [0, 1], in float32 and float64
(both estimators train in the dtype of X). Every fit runs in a fresh process of its own, one at a
time, fastbp and scikit-learn alternating (an idle process's threads never slow the other): the
``fit`` seconds are timed inside it, after a warm-up fit on 1,000 rows that loads fastbp's
compiled kernels (``first fit s`` is that warm-up, what a new process pays once). Prints the
median fit time of each, their ratio, test accuracy and n_iter_.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

# the contenders' warm speed: Numba compiles in this process, not in a background worker
os.environ.setdefault("FASTBP_BACKGROUND_COMPILE", "0")

PARAMS = dict(hidden_layer_sizes=(128,), solver="adam", batch_size=128, max_iter=10, random_state=0)


def _load(data, dtype):
    from fastbp.datasets import load_mnist

    (x, y), (xt, yt) = load_mnist(data, download=False)
    scale = lambda a: (a.reshape(len(a), -1) / 255.0).astype(dtype)  # noqa: E731
    return scale(x), y, scale(xt), yt


def one_fit(name, data, dtype, params=PARAMS):
    """Fit in this process; return {first_fit_s, fit_s, accuracy, n_iter}."""
    from sklearn.exceptions import ConvergenceWarning

    if name == "fastbp":
        from fastbp.sklearn import MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier
    x, y, xt, yt = _load(data, np.dtype(dtype))
    warnings.simplefilter("ignore", ConvergenceWarning)
    t = time.perf_counter()
    MLPClassifier(**dict(params, max_iter=1)).fit(x[:1000], y[:1000])
    first = time.perf_counter() - t
    t = time.perf_counter()
    est = MLPClassifier(**params).fit(x, y)
    seconds = time.perf_counter() - t
    return {"first_fit_s": first, "fit_s": seconds, "accuracy": float(est.score(xt, yt)), "n_iter": est.n_iter_}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--batch-size", type=int, default=PARAMS["batch_size"])
    parser.add_argument("--data", default=None)
    parser.add_argument("--one", nargs=2, metavar=("NAME", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    data = args.data or os.environ.get("FASTBP_DATA") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    params = dict(PARAMS, batch_size=args.batch_size)
    if args.one:
        print(json.dumps(one_fit(args.one[0], data, args.one[1], params)))
        return 0
    import sklearn

    import fastbp

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown CPU") if os.path.exists("/proc/cpuinfo") else "unknown CPU"
    print(f"fastbp {fastbp.__version__} ({fastbp._backend.auto_backend()}), scikit-learn {sklearn.__version__}, "
          f"{cpu}, {os.cpu_count()} CPUs; {params}; {args.rounds} rounds (medians)")
    print(f"{'dtype':>8} {'fastbp s':>9} {'sklearn s':>10} {'speedup':>8} {'acc fastbp':>11} {'acc sklearn':>12} "
          f"{'n_iter_':>8} {'first fit s':>12}")
    for dtype in args.dtypes:
        runs = {"fastbp": [], "sklearn": []}
        for _ in range(args.rounds):
            for name in runs:
                done = subprocess.run([sys.executable, __file__, "--data", data, "--batch-size",
                                       str(args.batch_size), "--one", name, dtype],
                                      capture_output=True, text=True, check=True)
                runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
        ours = statistics.median(r["fit_s"] for r in runs["fastbp"])
        theirs = statistics.median(r["fit_s"] for r in runs["sklearn"])
        ratio = statistics.median(s["fit_s"] / f["fit_s"] for f, s in zip(runs["fastbp"], runs["sklearn"]))
        acc = {k: statistics.median(r["accuracy"] for r in v) for k, v in runs.items()}
        iters = {k: sorted({r["n_iter"] for r in v}) for k, v in runs.items()}
        first = statistics.median(r["first_fit_s"] for r in runs["fastbp"])
        print(f"{dtype:>8} {ours:>9.2f} {theirs:>10.2f} {ratio:>7.2f}x {acc['fastbp']:>11.4f} {acc['sklearn']:>12.4f} "
              f"{str(iters['fastbp']) + '/' + str(iters['sklearn']):>8} {first:>12.2f}")
        for name, rs in runs.items():
            print(f"{'':>8} {name} rounds: " + " ".join(f"{r['fit_s']:.2f}" for r in rs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
