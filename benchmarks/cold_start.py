"""What a new user waits for: first calls and the first epoch on a fresh install with no Numba cache.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/cold_start.py [--venv DIR]

Builds a fresh virtual environment (``--venv``, default a temporary folder) with a non-editable
``pip install`` of this checkout (timed), then measures, each in a new process whose
``NUMBA_CACHE_DIR`` is a new empty folder (the installed package holds no Numba cache of its own):

1. the first call of each public kernel (float32, the MNIST layer shapes), after ``import fastbp``;
2. the first calls of ``linear_forward``, ``linear_backward``, ``softmax_cross_entropy`` and
   ``adam_update`` together in one process;
3. ``fastbp train --epochs 2 --verbose 2`` (the README's main job, MNIST from ``FASTBP_DATA``):
   its wall time, its two epochs and its training path; then, once the background compile it
   started has finished, the same command again with the cache it left (warm).

Each probe's background compile worker is stopped when the probe has answered (it would compile
beside the next probe).

These are the figures issue 17 (instant start) sets targets for: each first call within 0.5 s,
the four together within 2 s, the first epoch within twice a warm epoch plus 1 s.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SETUP = """
import numpy as np
rng = np.random.default_rng(0)
f = np.float32
x, w, b = rng.random((32, 784), f), rng.random((784, 128), f) * 0.01, np.zeros(128, f)
y = rng.random((32, 128), f); z = rng.random((32, 10), f); labels = rng.integers(0, 10, 32)
p, g, m, v = (rng.random(101770, f) for _ in range(4))
gamma, beta, dy = np.ones(128, f), np.zeros(128, f), rng.random((32, 128), f)
mean, rstd = np.zeros(32, f), np.ones(32, f)
mask = (y > 0.5).astype(np.uint8)
"""
KERNELS = {
    "linear_forward": "K.linear_forward(x, w, b, 'relu')",
    "linear_backward": "K.linear_backward(y, x, w, y=y, activation='relu')",
    "activation_forward": "K.activation_forward(z, 'softmax')",
    "activation_backward": "K.activation_backward(z, 'tanh', y=z)",
    "softmax_cross_entropy": "K.softmax_cross_entropy(z, labels)",
    "sigmoid_cross_entropy": "K.sigmoid_cross_entropy(z, (z > 0.5).astype(f))",
    "mse_loss": "K.mse_loss(z, z * 0.5)",
    "sgd_update": "K.sgd_update(p, g, lr=0.1, momentum=0.9, velocity=m)",
    "adam_update": "K.adam_update(p, g, m, v, step=1)",
    "rmsprop_update": "K.rmsprop_update(p, g, m)",
    "clip_grad_norm": "K.clip_grad_norm([g], 1.0)",
    "clip_grad_value": "K.clip_grad_value([g], 1.0)",
    "layernorm_forward": "K.layernorm_forward(y, gamma, beta)",
    "layernorm_backward": "K.layernorm_backward(dy, y, gamma, mean, rstd)",
    "batchnorm_forward": "K.batchnorm_forward(y, gamma, beta)",
    "batchnorm_backward": "K.batchnorm_backward(dy, y, gamma, beta, gamma)",
    "dropout_forward": "K.dropout_forward(y, 0.2, seed=1)",
    "dropout_backward": "K.dropout_backward(dy, mask, 0.2)",
}
TOGETHER = ("linear_forward", "linear_backward", "softmax_cross_entropy", "adam_update")


def _probe(calls):
    """A program printing JSON: import seconds, then (name, first call s, second call s) per call."""
    lines = ["import json, time", "t0 = time.perf_counter()", "import fastbp", "from fastbp import kernels as K",
             "out = {'import': time.perf_counter() - t0, 'calls': []}", _SETUP]
    for name in calls:
        lines += ["t = time.perf_counter()", KERNELS[name], "t1 = time.perf_counter()", KERNELS[name],
                  f"out['calls'].append(({name!r}, t1 - t, time.perf_counter() - t1))"]
    lines += ["from fastbp.backends.numba_cpu import background",
              "out['worker'] = background.worker_pid()", "print(json.dumps(out))"]
    return "\n".join(lines)


def _fresh_env(cache_parent):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba-cache-", dir=cache_parent)
    return env


def _run_probe(python, calls, cache_parent):
    """One probe in a new process with an empty cache; its background compile worker (which would
    go on compiling into that cache, beside the next probe) is stopped when it has answered."""
    out = subprocess.run([python, "-c", _probe(calls)], capture_output=True, text=True, check=True,
                         env=_fresh_env(cache_parent), cwd=cache_parent)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result.get("worker"):
        try:
            os.killpg(result["worker"], signal.SIGKILL)  # (it runs in a session of its own)
        except ProcessLookupError:
            pass
    return result


def _train(python, env, cwd):
    fastbp = os.path.join(os.path.dirname(python), "fastbp")
    t = time.perf_counter()
    out = subprocess.run([fastbp, "train", "--epochs", "2", "--verbose", "2", "--seed", "0"], capture_output=True,
                         text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"fastbp train failed:\n{out.stdout}\n{out.stderr}")
    epochs = [float(s) for s in re.findall(r"^Epoch \d+/\d+ - ([0-9.]+)s", out.stdout, re.M)]
    path = re.search(r"^Training path: (.*)$", out.stdout, re.M)
    worker = re.search(r"in the background \(pid (\d+)\)", out.stdout)
    return wall, epochs, path.group(1) if path else "?", int(worker.group(1)) if worker else None


def _wait_for(pid):
    """Until process ``pid`` (the background compile worker) has exited; returns the seconds."""
    t = time.perf_counter()
    while True:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split()[2] == "Z":
                    break
        except (ProcessLookupError, FileNotFoundError):
            break
        time.sleep(0.5)
    return time.perf_counter() - t


def _kernels(python, work):
    print("\n1. first call of each kernel in a new process, empty Numba cache (float32, MNIST shapes)")
    for name in KERNELS:
        r = _run_probe(python, [name], work)
        _, first, second = r["calls"][0]
        print(f"   {name:24s} first {first:7.2f} s   second {second * 1e3:8.3f} ms   (import {r['import']:.2f} s)")
    r = _run_probe(python, list(TOGETHER), work)
    print(f"\n2. {', '.join(TOGETHER)} in one new process: {sum(c[1] for c in r['calls']):.2f} s "
          f"({', '.join(f'{c[0]} {c[1]:.2f}' for c in r['calls'])})")


def _training(python, env, work):
    cold_wall, cold, cold_path, worker = _train(python, env, work)
    print(f"\n3. fastbp train --epochs 2: empty cache: {cold_wall:.1f} s wall, epochs {cold} ({cold_path})")
    if worker is not None:
        print(f"   its background compile went on for {_wait_for(worker):.0f} s after it ended")
    warm_wall, warm, warm_path, _ = _train(python, env, work)
    print(f"   then with the cache it left: {warm_wall:.1f} s wall, epochs {warm} ({warm_path})")
    if cold and warm:
        print(f"   first epoch {cold[0]:.2f} s against the target 2 x warm + 1 = {2 * warm[-1] + 1:.2f} s")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--venv", default=None, help="where to build the environment (default: a temporary folder)")
    p.add_argument("--checkout", default=ROOT, help="the source tree to install (default: this one)")
    p.add_argument("--skip-kernels", action="store_true", help="measure only the training command")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="fastbp-cold-")
    venv = args.venv or os.path.join(work, "venv")
    python = os.path.join(venv, "bin", "python")
    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "unknown")
    print(f"CPU: {cpu}, {os.cpu_count()} CPUs; checkout {args.checkout}")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", args.checkout], check=True, cwd=work)
    print(f"fresh venv + pip install . : {time.perf_counter() - t:.1f} s")
    if not args.skip_kernels:
        _kernels(python, work)
    _training(python, _fresh_env(work), work)


if __name__ == "__main__":
    sys.exit(main())
