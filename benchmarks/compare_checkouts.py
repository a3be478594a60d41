"""Before and after: two checkouts of fastbp timed alternately, one process at a time.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_checkouts.py OLD NEW [--rounds 3]

OLD and NEW are source trees with their extensions built in place (``python setup.py build_ext
--inplace``). Each round runs, for OLD then NEW (the order alternating between rounds), a fresh
process with the checkout first on ``PYTHONPATH``:

* ``kernels``: the checkout's own ``benchmarks/compare_kernels.py --no-torch`` (its ratios are
  against NumPy in the same process, so the machine's state cancels);
* ``epoch``: the seed model (784-128-10, Adam, MNIST from ``$FASTBP_DATA`` or ``../shared/data``),
  one warm-up epoch, then ``--epochs`` timed epochs at batch 32 and 128, each beside a NumPy
  1024x1024x1024 product timed in the same process.

Only one contender is alive at a time. Medians over rounds are printed per case.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import textwrap

# the contenders' warm speed: Numba compiles in this process, not in a background worker
os.environ.setdefault("FASTBP_BACKGROUND_COMPILE", "0")

_EPOCH = textwrap.dedent("""
    import sys, time
    import numpy as np
    import fastbp
    from fastbp import datasets, nn
    fastbp.set_num_threads(2)
    (x, y), _ = datasets.load_mnist()
    x = x.reshape(len(x), -1).astype(np.float32) / 255
    a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
    def numpy_gemm():
        t = time.perf_counter(); a @ a; return time.perf_counter() - t
    for batch in (32, 128):
        model = nn.Sequential([nn.Dense(128, activation="relu", input_shape=(784,)),
                               nn.Dense(10, activation="softmax")], seed=0)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # compile, warm up
        for _ in range(int(sys.argv[1])):
            t = time.perf_counter()
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
            epoch = time.perf_counter() - t
            print(f"epoch{batch} {epoch:.4f} {min(numpy_gemm() for _ in range(3)):.5f}")
""")

_RATIO = re.compile(r"^(?P<case>.+?)\s{2,}.*?(?P<ours>[\d.]+)us\s+(?P<base>[\d.]+)us\s+(?P<ratio>[\d.]+)x")


def _run(checkout: str, args: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": checkout}
    out = subprocess.run([sys.executable, *args], env=env, cwd=checkout, capture_output=True, text=True)
    if out.returncode not in (0, 1):  # compare_kernels exits 1 when a target is missed
        raise RuntimeError(f"{checkout}: {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def kernels(checkout: str, rounds: int) -> dict[str, float]:
    text = _run(checkout, ["benchmarks/compare_kernels.py", "--no-torch", "--rounds", str(rounds)])
    found = {}
    for line in text.splitlines():
        m = _RATIO.match(line)
        if m:
            found[m["case"].strip()] = float(m["ratio"])
    return found


def epochs(checkout: str, count: int) -> dict[str, list[tuple[float, float]]]:
    found: dict[str, list[tuple[float, float]]] = {}
    for line in _run(checkout, ["-c", _EPOCH, str(count)]).splitlines():
        name, seconds, gemm = line.split()
        found.setdefault(name, []).append((float(seconds), float(gemm)))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--kernel-rounds", type=int, default=7, help="compare_kernels.py rounds per run")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per batch size per run")
    parser.add_argument("--only", choices=("kernels", "epoch"), default=None)
    args = parser.parse_args(argv)
    names = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    ratios = {k: {} for k in names}
    times = {k: {} for k in names}
    for r in range(args.rounds):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        for who in order:
            if args.only in (None, "kernels"):
                for case, ratio in kernels(names[who], args.kernel_rounds).items():
                    ratios[who].setdefault(case, []).append(ratio)
            if args.only in (None, "epoch"):
                for case, samples in epochs(names[who], args.epochs).items():
                    times[who].setdefault(case, []).extend(samples)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    if ratios["old"]:
        print(f"{'kernel case (ratio to NumPy, > 1: fastbp faster)':<52} {'old':>8} {'new':>8} {'new/old':>8}")
        for case in ratios["old"]:
            old, new = statistics.median(ratios["old"][case]), statistics.median(ratios["new"].get(case, [0]))
            print(f"{case:<52} {old:>7.2f}x {new:>7.2f}x {new / old:>7.2f}")
    if times["old"]:
        print(f"{'epoch (seconds; NumPy 1024^3 in the same process)':<52} {'old':>8} {'new':>8} {'new/old':>8}")
        for case in times["old"]:
            old = statistics.median(s for s, _ in times["old"][case])
            new = statistics.median(s for s, _ in times["new"][case])
            gemm_old = statistics.median(g for _, g in times["old"][case])
            gemm_new = statistics.median(g for _, g in times["new"][case])
            print(f"{case:<52} {old:>7.3f}s {new:>7.3f}s {new / old:>7.2f}   (NumPy {gemm_old * 1e3:.1f} / "
                  f"{gemm_new * 1e3:.1f} ms)")
            for who in names:
                print(f"    {who}: " + " ".join(f"{s:.3f}" for s, _ in times[who][case]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
