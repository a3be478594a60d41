"""Reliability: hostile input in subprocesses, numerical stability, thread safety, deterministic
training, and no leaks, on every CPU backend (the cuda backend's versions are in test_cuda.py).
"""
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close, cpu_backends

import hostile_cases as H
from fastbp import kernels as K

BACKENDS = cpu_backends()
HERE = Path(__file__).parent


def _run_hostile(backend, env=None):
    """Run every hostile case; a case that kills its process is recorded as a crash and the rest
    continue in a new process. Returns {case index: (ok, detail)}."""
    n = len(H.cases())
    results, start = {}, 0
    while start < n:
        proc = subprocess.run([sys.executable, str(HERE / "hostile_cases.py"), backend, str(start)],
                              capture_output=True, text=True, timeout=600, cwd=HERE, env=env)
        last_started = None
        for line in proc.stdout.splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if "start" in record:
                last_started = record["start"]
            else:
                results[record["done"]] = (record["ok"], record["detail"])
        if len(results) == n:
            break
        crashed = last_started if last_started is not None and last_started not in results else start
        results[crashed] = (False, f"process died (exit {proc.returncode}): {proc.stderr[-500:]}")
        start = crashed + 1
    return results


@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_input(backend):
    cases = H.cases()
    results = _run_hostile(backend)
    failures = [f"{cases[i][0]} | {cases[i][1]} | expected {cases[i][3]} | got {detail}"
                for i, (ok, detail) in sorted(results.items()) if not ok]
    print(f"{backend}: {len(results)} hostile cases tried, {len(failures)} failed")
    assert len(results) == len(cases)
    assert not failures, "\n".join(failures)


def test_hostile_runner_names_a_crash_and_goes_on():
    """The runner itself: a case that aborts the process is reported as that case's failure, and
    the cases after it still run (in a new process)."""
    results = _run_hostile("numpy", env={**os.environ, "FASTBP_HOSTILE_CRASH_AT": "5"})
    assert len(results) == len(H.cases())
    assert results[5][0] is False and "process died" in results[5][1]
    assert all(ok for i, (ok, _) in results.items() if i != 5)


# ------------------------------------------------------------------------- numerical stability

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_values_stay_finite_and_correct(backend, dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype)
    labels = np.array([0, 2, 1])
    loss, grad = K.softmax_cross_entropy(logits, labels, backend=backend)
    # row 0: log(1 + e^-1e4 + e^-1e4) ~ 0; row 1: log 3; row 2: log 2
    assert np.isfinite(loss) and np.isclose(loss, (0 + np.log(3) + np.log(2)) / 3, rtol=1e-6)
    expected = np.array([[0, 0, 0], [1 / 3, 1 / 3, -2 / 3], [0.5, -0.5, 0]]) / 3
    assert np.all(np.isfinite(grad)) and np.allclose(grad, expected, atol=1e-7)
    z = np.array([[-1e3, -50.0, 0.0, 50.0, 1e3]], dtype)
    s = K.activation_forward(z, "sigmoid", backend=backend)
    assert np.all(np.isfinite(s)) and s[0, 0] == 0 and s[0, -1] == 1 and s[0, 2] == 0.5
    ls = K.activation_forward(logits, "log_softmax", backend=backend)
    assert np.all(np.isfinite(ls))
    assert_close(ls, np.array([[0, -2e4, -1e4], [-np.log(3)] * 3, [-np.log(2), -np.log(2), -2e4 - np.log(2)]]),
                 dtype)
    sp = K.activation_forward(z, "softplus", backend=backend)
    assert np.all(np.isfinite(sp)) and sp[0, -1] == dtype(1e3) and sp[0, 0] == 0
    for name in ("gelu", "gelu_tanh", "silu", "tanh"):
        assert np.all(np.isfinite(K.activation_forward(z, name, backend=backend)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_adam_with_zero_gradients_and_tiny_eps(backend):
    p = np.linspace(-1, 1, 1000).astype(np.float32)
    before = p.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    for step in range(1, 4):
        K.adam_update(p, np.zeros_like(p), m, v, step=step, eps=1e-30, backend=backend)
    np.testing.assert_array_equal(p, before)  # 0 / (0 + eps): no step, no NaN
    g = np.full_like(p, 1e-20)
    K.adam_update(p, g, m, v, step=4, eps=0.0, backend=backend)
    assert np.all(np.isfinite(p))


# ------------------------------------------------------------------------------ thread safety

@pytest.mark.parametrize("backend", BACKENDS)
def test_eight_threads_at_once(backend):
    """8 Python threads call kernels on independent data at the same time; in a subprocess, so
    that an abort of the threading layer fails this test instead of the run."""
    code = textwrap.dedent(f"""
        import threading, numpy as np
        from fastbp import kernels as K
        errors = []
        def work(seed):
            try:
                rng = np.random.default_rng(seed)
                x = rng.standard_normal((64, 300), dtype=np.float32)
                w = rng.standard_normal((300, 40), dtype=np.float32) * 0.1
                b = rng.standard_normal(40, dtype=np.float32)
                labels = rng.integers(0, 40, 64)
                p = rng.standard_normal(50_000, dtype=np.float32)
                m, v = np.zeros_like(p), np.zeros_like(p)
                for _ in range(30):
                    y = K.linear_forward(x, w, b, "relu", backend={backend!r})
                    ref = K.linear_forward(x, w, b, "relu", backend="numpy")
                    assert np.allclose(y, ref, rtol=1e-4, atol=1e-4)
                    loss, g = K.softmax_cross_entropy(y, labels, backend={backend!r})
                    dx, dw, db = K.linear_backward(g, x, w, y=y, activation="relu", backend={backend!r})
                    rdx, rdw, rdb = K.linear_backward(g, x, w, y=y, activation="relu", backend="numpy")
                    assert np.allclose(dw, rdw, rtol=1e-4, atol=1e-5) and np.allclose(dx, rdx, rtol=1e-4, atol=1e-5)
                    K.adam_update(p, p * 0.01, m, v, step=1, backend={backend!r})
            except Exception as exc:
                errors.append(repr(exc))
        threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        print("errors:", errors)
        assert not errors
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


# --------------------------------------------------------------------- deterministic training

_TRAIN = textwrap.dedent("""
    import sys, hashlib, numpy as np, fastbp
    from fastbp import nn
    fastbp.set_num_threads(int(sys.argv[2]))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, 784), dtype=np.float32)
    y = (x[:, :10] @ rng.standard_normal((10, 10))).argmax(axis=1)
    model = nn.Sequential([nn.Dense(128, activation="relu"), nn.Dense(10, activation="softmax")], seed=5,
                          backend=sys.argv[1])
    model.compile(optimizer=nn.Adam(1e-3), loss=nn.SparseCategoricalCrossentropy())
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(p).tobytes() for p in model.get_weights())).hexdigest()
    print(digest)
""")


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_epoch_of_training_is_bitwise_reproducible(backend):
    """Same seed: the same weights, bit for bit, run after run and with 1 or 2 threads."""
    digests = set()
    for threads in (1, 2, 2):
        proc = subprocess.run([sys.executable, "-c", _TRAIN, backend, str(threads)], capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        digests.add(proc.stdout.strip().splitlines()[-1])
    assert len(digests) == 1, digests


# ---------------------------------------------------------------------------------- no leaks

_LEAK = textwrap.dedent("""
    import sys, numpy as np
    from fastbp import kernels as K
    backend = sys.argv[1]
    rng = np.random.default_rng(0)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    x, w, b, dy = f(16, 32), f(32, 24), f(24), f(16, 24)
    y = np.abs(f(16, 24))
    labels = rng.integers(0, 24, 16)
    p, g = f(1000), f(1000)
    m, v, vel, sq = (np.zeros(1000, np.float32) for _ in range(4))
    mask = (y > 0.5).astype(np.uint8)
    row_mean, row_rstd = y[:, 0].copy(), y[:, 1] + 1
    calls = {
        "linear_forward": lambda: K.linear_forward(x, w, b, "relu", backend=backend),
        "linear_backward": lambda: K.linear_backward(dy, x, w, y=y, activation="relu", backend=backend),
        "activation_forward": lambda: K.activation_forward(x, "gelu", backend=backend),
        "activation_backward": lambda: K.activation_backward(dy, "tanh", y=np.tanh(dy), backend=backend),
        "softmax_cross_entropy": lambda: K.softmax_cross_entropy(dy, labels, backend=backend),
        "mse_loss": lambda: K.mse_loss(dy, y, backend=backend),
        "sigmoid_cross_entropy": lambda: K.sigmoid_cross_entropy(dy, y, backend=backend),
        "sgd_update": lambda: K.sgd_update(p, g, lr=1e-9, momentum=0.9, velocity=vel, backend=backend),
        "adam_update": lambda: K.adam_update(p, g, m, v, step=1, lr=1e-9, backend=backend),
        "rmsprop_update": lambda: K.rmsprop_update(p, g, sq, lr=1e-9, backend=backend),
        "clip_grad_norm": lambda: K.clip_grad_norm([g], 1e9, backend=backend),
        "clip_grad_value": lambda: K.clip_grad_value([g], 1e9, backend=backend),
        "layernorm_forward": lambda: K.layernorm_forward(dy, b, b, backend=backend),
        "layernorm_backward": lambda: K.layernorm_backward(dy, y, b, row_mean, row_rstd, backend=backend),
        "batchnorm_forward": lambda: K.batchnorm_forward(dy, b, b, backend=backend),
        "batchnorm_backward": lambda: K.batchnorm_backward(dy, y, b, b, np.abs(b), backend=backend),
        "dropout_forward": lambda: K.dropout_forward(dy, 0.3, seed=1, backend=backend),
        "dropout_backward": lambda: K.dropout_backward(dy, mask, 0.3, backend=backend),
        "hostile call": lambda: K.linear_forward(x, w[:-1], backend=backend),
    }
    def rss_kib():
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmRSS"))
    for name, fn in calls.items():
        def once():
            try:
                fn()
            except ValueError:
                pass
        for _ in range(2000):
            once()
        before = rss_kib()
        for _ in range(10_000):
            once()
        print(name, rss_kib() - before)
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmRSS from /proc (Linux)")
@pytest.mark.parametrize("backend", BACKENDS)
def test_ten_thousand_calls_keep_memory_flat(backend):
    """10,000 calls of each kernel (after 2,000 warm-up calls) grow the resident set by less than
    1 MiB: a leaked output of the smallest call here (1.5 KiB) would add 15 MiB."""
    proc = subprocess.run([sys.executable, "-c", _LEAK, backend], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    growth = {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in proc.stdout.strip().splitlines()}
    print(backend, "RSS growth (KiB) per 10,000 calls:", growth)
    assert set(growth) == set(K.__all__) | {"hostile call"}  # every public kernel, and a refused call
    assert all(kib < 1024 for kib in growth.values()), growth


# ------------------------------------------------------------------ the cython SIMD variants

def test_cython_avx2_and_baseline_builds_agree():
    """Where both builds of the cython kernels exist, they give the same bits: the builds differ
    in instruction set only (setup.py's -ffp-contract=off keeps a*b+c two roundings in both)."""
    pytest.importorskip("fastbp.backends.cython._elementwise_avx2",
                        reason="no AVX2 build here (not x86-64, or the compiler lacked the flags)")
    from fastbp.backends._cpu.tiling import even_chunk
    from fastbp.backends.cython import _elementwise, _elementwise_avx2, _linear, _linear_avx2

    rng = np.random.default_rng(4)
    x = rng.standard_normal((70, 300), dtype=np.float32)
    w = rng.standard_normal((300, 50), dtype=np.float32) * 0.05
    b = rng.standard_normal(50, dtype=np.float32)
    p = rng.standard_normal(5000, dtype=np.float32)
    outs = []
    for lin, ew in ((_linear, _elementwise), (_linear_avx2, _elementwise_avx2)):
        y, z = np.empty((70, 50), np.float32), np.empty((70, 50), np.float32)
        lin.linear_forward(x, w, b, 5, 0.0, y, z, 16, 50, 2)  # gelu
        p2, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
        ew.adam_update(p2, p * 0.1, m, v, v, False, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, even_chunk(p.size), 2)
        outs.append((y, z, p2))
    for base, fast in zip(*outs):
        np.testing.assert_array_equal(fast, base)
    from fastbp.backends.cython import _dropout, _dropout_avx2, _normalization, _normalization_avx2

    h = x * 3 + 20
    dy = rng.standard_normal(h.shape, dtype=np.float32)
    gamma = rng.uniform(0.5, 1.5, 300).astype(np.float32)
    outs = []
    for norm, drop in ((_normalization, _dropout), (_normalization_avx2, _dropout_avx2)):
        y, mean, rstd = np.empty_like(h), np.empty(300, np.float32), np.empty(300, np.float32)
        rm, rv = np.zeros(300, np.float32), np.ones(300, np.float32)
        norm.batchnorm_forward(h, gamma, None, 1e-5, rm, rv, 0.1, True, True, y, mean, rstd, 64, 2)
        dx, dg, db = np.empty_like(h), np.empty(300, np.float32), np.empty(300, np.float32)
        norm.batchnorm_backward(dy, h, gamma, mean, rstd, dx, dg, db, 64, 2)
        yd, mask = np.empty(h.size, np.float32), np.empty(h.size, np.uint8)
        drop.dropout_forward(h.reshape(-1), 12345, 2**31, 2.0, yd, mask, even_chunk(h.size), 2)
        outs.append((y, mean, rstd, rm, rv, dx, dg, db, yd, mask))
    for base, fast in zip(*outs):
        np.testing.assert_array_equal(fast, base)
