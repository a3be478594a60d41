"""What only the numba backend offers: raw kernels callable from the user's own @njit code, and
on-disk caching of the compiled kernels."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastbp

pytestmark = pytest.mark.skipif("numba" not in fastbp.available_backends(),
                                reason=f"numba backend unavailable: {fastbp.backend_status().get('numba')}")


def test_raw_kernels_compose_inside_a_users_njit_function():
    from numba import njit

    from fastbp import activations as A
    from fastbp import kernels as K
    from fastbp.backends import numba_cpu as nb

    @njit
    def train_step(x, labels, w, b, m_w, v_w, step, y, dlogits, dw, db, dx):
        """One SGD-free step of a softmax regression: forward, loss, backward, Adam on w."""
        nb.linear_forward(x, w, b, A.LINEAR, 0.0, y, None)
        loss = nb.softmax_cross_entropy(y, labels, None, dlogits)
        nb.linear_backward(dlogits, x, w, dlogits, A.LINEAR, 0.0, dlogits, True, dx, False, dw, db)
        nb.adam_update(w, dw, m_w, v_w, None, step, 1e-2, 0.9, 0.999, 1e-8, 0.0, False)
        return loss

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 20))
    labels = rng.integers(0, 5, 64)
    w = rng.standard_normal((20, 5)) * 0.1
    b = np.zeros(5)
    w_ref = w.copy()
    m, v, m_ref, v_ref = (np.zeros_like(w) for _ in range(4))
    y, dlogits = np.empty((64, 5)), np.empty((64, 5))
    dw, db, dx = np.empty_like(w), np.empty_like(b), np.empty((0, 20))
    with nb.single_threaded_blas:
        losses = [train_step(x, labels, w, b, m, v, t, y, dlogits, dw, db, dx) for t in (1, 2, 3)]
    for t in (1, 2, 3):  # the same steps through the public API of the reference backend
        logits = K.linear_forward(x, w_ref, b, backend="numpy")
        loss_ref, g = K.softmax_cross_entropy(logits, labels, backend="numpy")
        _, dw_ref, _ = K.linear_backward(g, x, w_ref, need_dx=False, backend="numpy")
        K.adam_update(w_ref, dw_ref, m_ref, v_ref, step=t, lr=1e-2, backend="numpy")
        assert losses[t - 1] == pytest.approx(loss_ref, rel=1e-12)
    np.testing.assert_allclose(w, w_ref, rtol=1e-12, atol=1e-14)


def _run_every_kernel_script():
    return textwrap.dedent("""
        import time
        t0 = time.perf_counter()
        import numpy as np
        from fastbp import kernels as K
        t_import = time.perf_counter() - t0
        f = np.float32
        x = np.ones((8, 4), f); w = np.ones((4, 3), f); b = np.ones(3, f)
        y = K.linear_forward(x, w, b, "relu", backend="numba")
        K.linear_backward(y, x, w, y=y, activation="relu", backend="numba")
        K.activation_forward(y, "tanh", backend="numba")
        K.activation_backward(y, "tanh", y=y, backend="numba")
        K.softmax_cross_entropy(y, np.zeros(8, np.int64), backend="numba")
        K.mse_loss(y, y, backend="numba")
        p = np.ones(10, f); g = np.ones(10, f)
        K.sgd_update(p, g, lr=0.1, backend="numba")
        K.adam_update(p, g, np.zeros(10, f), np.zeros(10, f), step=1, backend="numba")
        K.rmsprop_update(p, g, np.zeros(10, f), backend="numba")
        K.clip_grad_norm([g], 1.0, backend="numba")
        K.clip_grad_value([g], 1.0, backend="numba")
        print(f"{t_import:.3f} {time.perf_counter() - t0:.3f}")
    """)


def test_kernels_are_cached_on_disk_for_a_fresh_process(tmp_path):
    """A second fresh process loads the kernels from the cache instead of compiling them.

    A cold process compiles; a warm one only loads. Asserting on the number of compilations
    (not on seconds) keeps this test exact on a noisy machine: Numba's event API counts them."""
    script = _run_every_kernel_script() + textwrap.dedent("""
        from numba.core.registry import CPUDispatcher
        from fastbp.backends.numba_cpu import activation, dispatch, linear, losses, optim
        kernels = [obj for mod in (activation, dispatch, linear, losses, optim) for obj in vars(mod).values()
                   if isinstance(obj, CPUDispatcher)]
        print(sum(sum(k.stats.cache_misses.values()) for k in kernels),
              sum(sum(k.stats.cache_hits.values()) for k in kernels))
    """)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    cold_misses, cold_hits = map(int, runs[0].split()[2:4])
    warm_misses, warm_hits = map(int, runs[1].split()[2:4])
    assert cold_misses > 0  # compiled (and written to the cache)
    assert warm_misses == 0 and warm_hits > 0  # loaded, nothing compiled
    assert any((tmp_path / "cache").rglob("*.nbi"))


def _can_mount_read_only():
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_read_only(), reason="needs root and unshare -m to mount the package read-only")
def test_caching_works_when_the_package_directory_is_read_only(tmp_path):
    """Numba cannot write __pycache__ next to the sources, so it falls back to the user-wide cache
    directory; a second process loads from there. The package is copied and bind-mounted
    read-only in a private mount namespace (root cannot be stopped by file modes alone)."""
    import shutil

    pkg_root = tmp_path / "site"
    shutil.copytree(os.path.dirname(fastbp.__file__), pkg_root / "fastbp",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    home = tmp_path / "home"
    home.mkdir()
    script = _run_every_kernel_script() + textwrap.dedent("""
        from numba.core.registry import CPUDispatcher
        from fastbp.backends.numba_cpu import dispatch
        print(sum(sum(k.stats.cache_hits.values()) for k in vars(dispatch).values() if isinstance(k, CPUDispatcher)))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PYTHONPATH=str(pkg_root))
    cmd = (f"mount --bind {pkg_root} {pkg_root} && mount -o remount,bind,ro {pkg_root} && "
           f"! touch {pkg_root}/fastbp/probe 2>/dev/null && cd {tmp_path} && {sys.executable} -c \"$SCRIPT\"")
    outs = [subprocess.run(["unshare", "-m", "sh", "-c", cmd], env={**env, "SCRIPT": script},
                           capture_output=True, text=True) for _ in range(2)]
    for out in outs:
        assert out.returncode == 0, out.stderr[-2000:]
    assert not list(pkg_root.rglob("*.nbi"))  # nothing written next to the sources
    assert list((home / ".cache").rglob("*.nbi"))  # but into the user cache directory
    assert int(outs[1].stdout.split()[-1]) > 0  # and the second process loaded from it


_BLAS_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    from threadpoolctl import threadpool_info

    def blas_pools():
        return {os.path.realpath(p["filepath"]): p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    before = blas_pools()
    from fastbp import kernels as K
    from fastbp.backends.numba_cpu import _blas
    rng = np.random.default_rng(0)
    out = {}
    for dtype in ("float32", "float64"):
        x = rng.standard_normal((300, 200)).astype(dtype)  # several tiles, BLAS above its small-matrix kernels
        w = rng.standard_normal((200, 700)).astype(dtype)
        b = rng.standard_normal(700).astype(dtype)
        for backend in ("numba", "cython"):
            y = K.linear_forward(x, w, b, "relu", backend=backend)
            _, dw, _ = K.linear_backward(y, x, w, y=y, activation="relu", backend=backend)
            np.save(os.path.join(sys.argv[1], f"{backend}_{dtype}_y.npy"), y)
            np.save(os.path.join(sys.argv[1], f"{backend}_{dtype}_dw.npy"), dw)
    from fastbp.backends.cython import backend as cy
    print(json.dumps({"source": _blas.BLAS_SOURCE, "private": _blas.BLAS_IS_PRIVATE, "cython_source": cy.BLAS_SOURCE,
                      "before": before, "after": blas_pools()}))
""")


def _run_blas_script(tmp_path, name, **env):
    out_dir = tmp_path / name
    out_dir.mkdir()
    run = subprocess.run([sys.executable, "-c", _BLAS_SCRIPT, str(out_dir)], env={**os.environ, **env},
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    return json.loads(run.stdout.splitlines()[-1]), out_dir


@pytest.mark.skipif("cython" not in fastbp.available_backends(), reason="the cython extension is not built")
def test_kernels_call_a_one_thread_openblas_of_their_own(tmp_path):
    """scipy-openblas32 (a dependency) is loaded by fastbp alone, for the numba and the cython
    kernels, and pinned to one thread; the BLAS of NumPy and SciPy keep the threads they had. With
    FASTBP_BLAS=scipy both call SciPy's BLAS instead. All give the float64 products to float32
    (float64) accuracy."""
    import scipy_openblas32

    env = {"FASTBP_BLAS": "openblas"}  # (the automatic choice is MKL on an Intel CPU with the mkl extra)
    own, own_dir = _run_blas_script(tmp_path, "own", **env)
    lib = os.path.realpath(os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True)))
    assert own["private"] and own["source"].startswith("scipy-openblas32") and own["cython_source"] == own["source"]
    assert own["after"][lib] == 1
    assert lib not in own["before"]  # loaded by fastbp, for fastbp
    for path, threads in own["before"].items():
        assert own["after"][path] == threads, path  # NumPy's and SciPy's BLAS untouched

    scipy_run, scipy_dir = _run_blas_script(tmp_path, "scipy", FASTBP_BLAS="scipy")
    assert not scipy_run["private"] and scipy_run["source"].startswith("SciPy")
    assert scipy_run["cython_source"].startswith("SciPy")
    assert lib not in scipy_run["after"]  # never loaded

    rng = np.random.default_rng(0)
    for dtype, rtol in (("float32", 2e-5), ("float64", 1e-12)):
        x = rng.standard_normal((300, 200)).astype(dtype).astype(np.float64)
        w = rng.standard_normal((200, 700)).astype(dtype).astype(np.float64)
        b = rng.standard_normal(700).astype(dtype).astype(np.float64)
        y_ref = np.maximum(x @ w + b, 0)
        scale = np.abs(x) @ np.abs(w) + np.abs(b)  # the size of the summed terms, per output
        for run_dir, backend in [(d, be) for d in (own_dir, scipy_dir) for be in ("numba", "cython")]:
            y = np.load(run_dir / f"{backend}_{dtype}_y.npy")
            assert y.dtype == dtype
            assert np.all(np.abs(y - y_ref) <= rtol * scale)
            dw = np.load(run_dir / f"{backend}_{dtype}_dw.npy")
            dw_ref = x.T @ (y.astype(np.float64) * (y > 0))
            assert np.all(np.abs(dw - dw_ref) <= rtol * (np.abs(x).T @ np.abs(y.astype(np.float64))))


def test_a_change_in_a_file_the_kernels_compile_from_retires_their_cache(tmp_path):
    """Numba checks a cached function against the one file that defines it; fastbp's kernels
    inline code from others (the formulas, the tile plans, the BLAS binding). Its cache locators
    (fastbp/backends/numba_cpu/_cache.py) stamp every fastbp kernel with all of those files: after
    an edit of fastbp/formulas.py alone, a kernel defined in activation.py is compiled again."""
    import shutil

    pkg_root = tmp_path / "site"
    shutil.copytree(os.path.dirname(fastbp.__file__), pkg_root / "fastbp",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    script = textwrap.dedent("""
        import numpy as np
        from fastbp.backends.numba_cpu import activation
        z = np.linspace(-1, 1, 16).reshape(4, 4)
        y = np.empty_like(z)
        activation.activation_forward_serial(z, 1, 0.0, y)
        k = activation.activation_forward_serial
        print(sum(k.stats.cache_misses.values()), sum(k.stats.cache_hits.values()))
    """)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(pkg_root)}

    def run():
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                             cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        return tuple(map(int, out.stdout.split()[-2:]))

    assert run() == (1, 0)  # compiled
    assert run() == (0, 1)  # loaded
    with open(pkg_root / "fastbp" / "formulas.py", "a") as f:
        f.write("\n# an edit\n")
    assert run() == (1, 0)  # compiled again, though activation.py did not change
