"""The ``fastbp`` command and show_config."""
import io
import subprocess
import sys

import fastbp


def test_fastbp_info_lists_every_backend_versions_and_blas():
    out = subprocess.run([sys.executable, "-m", "fastbp.cli", "info"], capture_output=True, text=True, check=True).stdout
    assert f"fastbp {fastbp.__version__}" in out
    for name in ("numpy", "numba", "cython", "cuda"):
        assert f"  {name} " in out
    for name, reason in fastbp.backend_status().items():
        if reason is not None:
            assert reason in out
    assert "numpy " in out and "thread pools (threadpoolctl):" in out
    assert "blas" in out  # NumPy's BLAS, found through threadpoolctl


def test_show_config_and_config_info_agree():
    buf = io.StringIO()
    fastbp.show_config(file=buf)
    info = fastbp.config_info()
    assert {b["name"] for b in info["backends"]} >= {"numpy", "numba", "cython", "cuda"}
    assert any(p["user_api"] == "blas" for p in info["thread_pools"])
    assert info["default_cpu_backend"] in buf.getvalue()
