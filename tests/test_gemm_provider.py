"""The GEMM provider of the CPU kernels (fastbp/backends/_cpu/openblas.py): chosen from the CPU
and what is installed, overridden by FASTBP_BLAS, named by fastbp info; with MKL (the mkl extra,
in the test extra) the products are right and the same bits come out on 1 and 2 threads and on
both CPU backends, as with OpenBLAS. Each provider runs in a process of its own (a provider is
chosen once per process)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastbp
from fastbp.backends._cpu import openblas

needs_cython = pytest.mark.skipif("cython" not in fastbp.available_backends(), reason="the cython extension is not built")


def test_the_choice_by_cpu_and_request():
    assert openblas.provider_order(None, "GenuineIntel") == (["mkl", "openblas"], "Intel CPU")
    assert openblas.provider_order(None, "AuthenticAMD") == (["openblas"], "the default on AuthenticAMD CPU")
    assert openblas.provider_order("mkl", "AuthenticAMD") == (["mkl", "openblas"], "FASTBP_BLAS=mkl")
    assert openblas.provider_order("openblas", "GenuineIntel") == (["openblas", "mkl"], "FASTBP_BLAS=openblas")
    assert openblas.provider_order("scipy", "GenuineIntel") == ([], "FASTBP_BLAS=scipy")


@pytest.mark.parametrize("value,expected", [("", None), ("auto", None), (" MKL ", "mkl"), ("openblas", "openblas"),
                                            ("scipy", "scipy")])
def test_fastbp_blas_values(monkeypatch, value, expected):
    monkeypatch.setenv("FASTBP_BLAS", value)
    assert openblas.requested_provider() == expected


def test_an_unknown_fastbp_blas_warns_and_chooses_automatically(monkeypatch):
    monkeypatch.setenv("FASTBP_BLAS", "atlas")
    with pytest.warns(RuntimeWarning, match="FASTBP_BLAS='atlas' is not one of auto, openblas, mkl, scipy"):
        assert openblas.requested_provider() is None


_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import fastbp
    from fastbp import kernels as K
    from fastbp.backends.numba_cpu import _blas
    from fastbp.backends.cython import backend as cy
    rng = np.random.default_rng(0)
    out = {"source": _blas.BLAS_SOURCE, "cython_source": cy.BLAS_SOURCE}
    for dtype in ("float32", "float64"):
        x = rng.standard_normal((300, 200)).astype(dtype)
        w = rng.standard_normal((200, 700)).astype(dtype)
        b = rng.standard_normal(700).astype(dtype)
        for backend in ("numba", "cython"):
            for threads in (1, 2):
                fastbp.set_num_threads(threads)
                y = K.linear_forward(x, w, b, "relu", backend=backend)
                dx, dw, db = K.linear_backward(y, x, w, y=y, activation="relu", backend=backend)
                for name, a in (("y", y), ("dx", dx), ("dw", dw)):
                    np.save(os.path.join(sys.argv[1], f"{backend}_{threads}_{dtype}_{name}.npy"), a)
    print(json.dumps(out))
""")


def _run(tmp_path, provider):
    out = tmp_path / provider
    out.mkdir()
    run = subprocess.run([sys.executable, "-c", _SCRIPT, str(out)], env={**os.environ, "FASTBP_BLAS": provider},
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.splitlines()[-1]), out


@needs_cython
def test_mkl_serves_both_cpu_backends_with_the_same_bits_on_any_thread_count(tmp_path):
    if openblas.mkl_library() is None:
        pytest.skip("the mkl package is not installed on this platform (the mkl extra: x86-64 only)")
    info, out = _run(tmp_path, "mkl")
    assert info["source"].startswith("oneMKL") and "(FASTBP_BLAS=mkl)" in info["source"], info
    assert info["cython_source"] == info["source"]
    shown = subprocess.run([sys.executable, "-c", "from fastbp.cli import main; main(['info'])"],
                           env={**os.environ, "FASTBP_BLAS": "mkl"}, capture_output=True, text=True)
    assert shown.stdout.count(info["source"]) == 2, shown.stdout  # fastbp info: numba's and cython's BLAS
    rng = np.random.default_rng(0)
    for dtype, u in (("float32", 2.0**-24), ("float64", 2.0**-53)):
        x = rng.standard_normal((300, 200)).astype(dtype).astype(np.float64)
        w = rng.standard_normal((200, 700)).astype(dtype).astype(np.float64)
        b = rng.standard_normal(700).astype(dtype).astype(np.float64)
        y_ref = np.maximum(x @ w + b, 0)
        # a dot product of k = 200 terms: |error| <= (k + 1) u sum |terms| (Higham, 3.1), rounding of y once more
        bound = 202 * u * (np.abs(x) @ np.abs(w) + np.abs(b))
        ref = {}
        for backend in ("numba", "cython"):
            for threads in (1, 2):
                arrays = {n: np.load(out / f"{backend}_{threads}_{dtype}_{n}.npy") for n in ("y", "dx", "dw")}
                assert np.all(np.abs(arrays["y"] - y_ref) <= bound)
                for name, a in arrays.items():  # one provider: the same bits everywhere
                    ref.setdefault(name, a)
                    np.testing.assert_array_equal(a, ref[name], err_msg=f"{backend} {threads} threads {dtype} {name}")


def test_fastbp_blas_openblas_names_scipy_openblas32(tmp_path):
    info, _ = _run(tmp_path, "openblas")
    assert info["source"].startswith("scipy-openblas32") and "(FASTBP_BLAS=openblas)" in info["source"], info
