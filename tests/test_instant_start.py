"""Instant start: on a machine whose Numba cache is empty, the automatic backend serves kernels and
fit() on the cython backend while a background process compiles Numba's code into the cache.

Every scenario runs in new processes with ``FASTBP_BACKGROUND_COMPILE=1`` and a ``NUMBA_CACHE_DIR``
of its own (empty at first), as on a fresh install. What is checked: the first calls run on the
cython kernels and give the results Numba's give (the same bits: no transcendental function
involved); what the background compiled is then loaded, not compiled again, in that process and
in the next; a fit() runs one path from start to end and says which; the worker outlives the
process that started it (never blocks its exit) and finishes its job; two processes never
compile one signature at the same time; asking for ``backend="numba"`` by name compiles in the
caller as before. (Speed targets are measured by benchmarks/cold_start.py, not here.)
"""
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastbp
from fastbp import _backend

pytestmark = pytest.mark.skipif(not {"numba", "cython"} <= set(fastbp.available_backends()),
                                reason="needs the numba and the cython backend")

#: seconds a background compile may take here (one kernel ~10 s, the training steps ~2.5 min on
#: 2 busy vCPUs), with room for a slow machine
COMPILE_TIMEOUT = 900


def _run(script, cache, timeout=COMPILE_TIMEOUT, **env):
    """Run ``script`` in a new process with background compilation on and Numba's cache in
    ``cache``; return the JSON object it prints last."""
    full_env = {**os.environ, "FASTBP_BACKGROUND_COMPILE": "1", "NUMBA_CACHE_DIR": str(cache), **env}
    full_env.pop("FASTBP_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                         env=full_env, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stdout


_PRELUDE = """
    import json, numpy as np
    from fastbp import kernels as K
    from fastbp.backends.numba_cpu import background, dispatch, optim
    rng = np.random.default_rng(7)
    x = rng.standard_normal((40, 30)).astype(np.float32)
    w = (rng.standard_normal((30, 20)) / 6).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    g1, g2 = rng.standard_normal(500).astype(np.float32), rng.standard_normal(300).astype(np.float32)

    def calls():
        y = K.linear_forward(x, w, b, "relu")
        a, c = g1.copy(), g2.copy()
        norm = K.clip_grad_norm([a, c], 1.0)  # (sum_of_squares, then scale_ in place on each array)
        return y, a, c, norm
"""


def test_cold_kernels_run_on_cython_then_on_numbas_compiled_code(tmp_path):
    script = _PRELUDE + """
    first = calls()
    state_at_first = background.status()
    compiled_before = len(dispatch.linear_forward.overloads)
    assert background.wait(%d), background.status()
    after = calls()
    print(json.dumps({
        "state_at_first": state_at_first, "state_after": background.status(),
        "compiled_before": compiled_before, "loaded_after": len(dispatch.linear_forward.overloads),
        "compiled_here": sum(dispatch.linear_forward.stats.cache_misses.values())
                         + sum(optim.scale_.stats.cache_misses.values()),
        "same": [bool(np.array_equal(p, q)) for p, q in zip(first[:3], after[:3])],
        "norms": [float(first[3]), float(after[3])],
        "cython_y": bool(np.array_equal(first[0], K.linear_forward(x, w, b, "relu", backend="cython"))),
    }))
    """ % COMPILE_TIMEOUT
    r, _ = _run(script, tmp_path)
    assert set(r["state_at_first"]) == {"linear_forward", "sum_of_squares", "scale_"}
    assert set(r["state_at_first"].values()) == {"compiling"}
    assert r["compiled_before"] == 0  # nothing compiled in the caller
    assert set(r["state_after"].values()) == {"done"}, r["state_after"]
    assert r["loaded_after"] == 1 and r["compiled_here"] == 0  # loaded from the cache the worker wrote
    assert r["same"] == [True, True, True] and r["norms"][0] == r["norms"][1]
    assert r["cython_y"]

    # the next process finds everything in the cache: Numba serves at once, nothing is submitted
    r2, _ = _run(_PRELUDE + """
    calls()
    print(json.dumps({"state": background.status(), "loaded": len(dispatch.linear_forward.overloads),
                      "compiled_here": sum(dispatch.linear_forward.stats.cache_misses.values())}))
    """, tmp_path)
    assert r2 == {"state": {}, "loaded": 1, "compiled_here": 0}


def test_list_kernels_in_place_scale_every_array_once(tmp_path):
    """While Numba's scale_ is missing, clip_grad_norm over two arrays scales each exactly once."""
    r, _ = _run(_PRELUDE + """
    y, a, c, norm = calls()
    print(json.dumps({"a": a.tolist(), "c": c.tolist(), "norm": float(norm)}))
    """, tmp_path)
    from fastbp import kernels as K

    rng = np.random.default_rng(7)
    for shape in ((40, 30), (30, 20), (20,)):
        rng.standard_normal(shape)
    g1, g2 = rng.standard_normal(500).astype(np.float32), rng.standard_normal(300).astype(np.float32)
    norm = K.clip_grad_norm([g1, g2], 1.0, backend="numpy")  # the reference, in place
    # a few float32 roundings apart at most (the norm is summed in float64 in another order);
    # scaling an array twice would be off by the factor itself (about 1/28 here)
    assert r["norm"] == pytest.approx(float(norm), rel=1e-12)
    np.testing.assert_allclose(np.array(r["a"], np.float32), g1, rtol=1e-6)
    np.testing.assert_allclose(np.array(r["c"], np.float32), g2, rtol=1e-6)


_FIT = """
    import json, numpy as np
    from fastbp import nn
    from fastbp.backends.numba_cpu import background
    from fastbp.nn.compiled import interpreter
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 12)).astype(np.float32)
    y = (x[:, :2] * 0.5).astype(np.float32)

    def fit(verbose=0):
        model = nn.Sequential([nn.Dense(16, activation="relu", input_shape=(12,)), nn.Dense(2)], seed=1)
        model.compile(optimizer="adam", loss="mse")
        history = model.fit(x, y, batch_size=32, epochs=2, verbose=verbose)
        return model, history
"""


def test_a_cold_fit_runs_on_cython_throughout_and_the_next_on_numba_with_the_same_bits(tmp_path):
    r, out = _run(_FIT + """
    cold, h_cold = fit(verbose=2)
    status_during = background.status()
    assert background.wait(%d), background.status()
    warm, h_warm = fit()
    print(json.dumps({
        "paths": [h_cold.params["path"], h_warm.params["path"]], "status_during": status_during,
        "status_after": background.status(),
        "compiled_here": sum(interpreter.train_steps.stats.cache_misses.values()),
        "loss": [h_cold.history["loss"], h_warm.history["loss"]],
        "same_weights": all(np.array_equal(a, b) for a, b in zip(cold.get_weights(), warm.get_weights())),
    }))
    """ % COMPILE_TIMEOUT, tmp_path)
    cold_path, warm_path = r["paths"]
    assert cold_path.startswith("cython kernels in a Python loop") and "background" in cold_path
    assert warm_path == "numba compiled steps"
    assert r["status_during"] == {"the training steps": "compiling"}
    assert r["status_after"] == {"the training steps": "done"}
    assert r["compiled_here"] == 0
    assert r["loss"][0] == r["loss"][1] and r["same_weights"]  # relu, mse, Adam: no transcendental
    assert "Training path: cython kernels in a Python loop" in out
    assert "numba compiling the training steps in the background" in out  # the progress output


def test_the_worker_outlives_its_process_and_fills_the_cache(tmp_path):
    """The process exits at once; its worker finishes the compile; the next process uses it."""
    t = time.perf_counter()
    r, _ = _run("""
    import json, numpy as np
    from fastbp import kernels as K
    from fastbp.backends.numba_cpu import background
    p = np.ones((8, 3), np.float32)
    K.mse_loss(p, p * 0.5)
    print(json.dumps({"pid": background.worker_pid(), "status": background.status()}))
    """, tmp_path)
    exited_after = time.perf_counter() - t
    assert r["status"] == {"mse_loss": "compiling"} and r["pid"]
    deadline = time.monotonic() + COMPILE_TIMEOUT
    while _alive(r["pid"]):
        assert time.monotonic() < deadline, "the worker did not finish"
        time.sleep(0.5)
    assert exited_after < 60  # (the worker's compile alone takes seconds; the caller did not wait for it)
    r2, _ = _run("""
    import json, numpy as np
    from fastbp import kernels as K
    from fastbp.backends.numba_cpu import background, dispatch
    p = np.ones((8, 3), np.float32)
    K.mse_loss(p, p * 0.5)
    print(json.dumps({"status": background.status(), "loaded": len(dispatch.mse_loss.overloads)}))
    """, tmp_path)
    assert r2 == {"status": {}, "loaded": 1}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a finished child of another process may linger as a zombie until reaped by init
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_two_processes_never_compile_one_signature_at_once(tmp_path):
    """Two cold processes ask for the same kernel together: one worker compiles it, the other
    waits for the lock and finds it in the cache."""
    script = """
    import json, numpy as np
    from fastbp import kernels as K
    from fastbp.backends.numba_cpu import background
    p = np.ones(50, np.float32)
    K.sgd_update(p, p * 0.1, lr=0.1)
    assert background.wait(%d), background.status()
    print(json.dumps(background.status()))
    """ % COMPILE_TIMEOUT
    env = {**os.environ, "FASTBP_BACKGROUND_COMPILE": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    states = []
    for proc in procs:
        out, err = proc.communicate(timeout=COMPILE_TIMEOUT)
        assert proc.returncode == 0, out + err
        states.extend(json.loads(out.strip().splitlines()[-1]).values())
    assert states.count("done") == 1, states  # compiled once; the other (if it asked) found it
    assert all(s in ("done", "done: found in the cache") for s in states), states


def test_numba_by_name_compiles_in_the_caller(tmp_path):
    r, _ = _run("""
    import json, numpy as np
    from fastbp import kernels as K
    from fastbp.backends.numba_cpu import background, optim
    p = np.ones(50, np.float32)
    K.sgd_update(p, p * 0.1, lr=0.1, backend="numba")
    print(json.dumps({"status": background.status(), "compiled_here": sum(optim.sgd_update.stats.cache_misses.values())}))
    """, tmp_path)
    assert r == {"status": {}, "compiled_here": 1}


def test_automatic_selection_hands_out_the_standby_module(monkeypatch):
    from fastbp.backends.numba_cpu import backend as numba_backend
    from fastbp.backends.numba_cpu import standby

    monkeypatch.delenv("FASTBP_BACKEND", raising=False)
    monkeypatch.setenv("FASTBP_BACKGROUND_COMPILE", "1")
    assert _backend.select() is standby and _backend.is_automatic()
    assert _backend.select("numba") is numba_backend
    with fastbp.use_backend("numba"):
        assert _backend.select() is numba_backend and not _backend.is_automatic()
    monkeypatch.setenv("FASTBP_BACKGROUND_COMPILE", "0")
    assert _backend.select() is numba_backend
    monkeypatch.setenv("FASTBP_BACKGROUND_COMPILE", "1")
    monkeypatch.setenv("FASTBP_BACKEND", "numba")
    assert _backend.select() is numba_backend


def test_the_standby_module_implements_the_protocol():
    from fastbp.backends import missing_members
    from fastbp.backends.numba_cpu import standby

    assert missing_members(standby) == []
