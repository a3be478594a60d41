"""What the benchmark scripts compute besides timings (their floors), checked by hand."""
import importlib
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_the_seed_epoch_has_24_5_gflop_of_products():
    """784-128-10 over 60,000 samples, counted product by product (a multiply-add is 2 flops):
    x @ w1, h @ w2 forward; dw2 = h.T @ dz2, dx2 = dz2 @ w2.T, dw1 = x.T @ dz1 backward; no dx1."""
    n = 60_000
    products = [(n, 784, 128), (n, 128, 10), (128, n, 10), (n, 10, 128), (784, n, 128)]
    by_hand = sum(2 * m * k * p for m, k, p in products)
    assert by_hand == 24_545_280_000
    assert _script("compare_training").epoch_flops(n) == by_hand


def test_compare_sklearn_fits_the_issues_model_with_both():
    """compare_sklearn.py's setting is issue 20's, and one fit of each contender works (one epoch
    of MNIST here: both past 90% test accuracy, one iteration)."""
    import os

    import pytest

    pytest.importorskip("sklearn", reason="scikit-learn is in the test extra")
    script = _script("compare_sklearn")
    assert script.PARAMS == dict(hidden_layer_sizes=(128,), solver="adam", batch_size=128, max_iter=10,
                                 random_state=0)
    data = os.environ.get("FASTBP_DATA") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    for name in ("fastbp", "sklearn"):
        result = script.one_fit(name, data, "float32", dict(script.PARAMS, max_iter=1))
        assert set(result) == {"first_fit_s", "fit_s", "accuracy", "n_iter"}
        assert result["n_iter"] == 1 and result["accuracy"] > 0.9, (name, result)


def test_compare_distributed_cost_model_and_its_mpi_tasks(mnist_dir, monkeypatch):
    """The ring-allreduce cost 2 (N - 1) / N x bytes / bandwidth + 2 (N - 1) x latency, by hand; and
    the script's Allreduce and overlap measurements run under mpiexec (2 ranks) and report."""
    script = _script("compare_distributed")
    assert script._ring(2, 1e6, 1e9, 1e-6) == 1e-3 + 2e-6
    assert abs(script._ring(4, 400_000, 1e10, 2e-6) - (1.5 * 4e-5 + 6 * 2e-6)) < 1e-15
    assert script._ring(1, 400_000, 1e10, 2e-6) == 0
    monkeypatch.setenv("FASTBP_DATA", str(mnist_dir))
    comm = script._run(2, 1, "allreduce")
    assert 0 < comm["latency"] < comm["gradient"] < comm["big"]
    overlap = script._run(2, 1, "overlap", 128)
    assert set(overlap) == {"one allreduce", "per-layer iallreduce"} and min(overlap.values()) > 0


def test_cold_start_probes_call_every_public_kernel(tmp_path):
    """cold_start.py's probe programs run every public kernel of fastbp.kernels (here, in this
    environment with its cache) and report their first and second calls."""
    import subprocess

    import fastbp.kernels as K

    script = _script("cold_start")
    public = {name for name in dir(K) if not name.startswith("_") and callable(getattr(K, name))
              and getattr(getattr(K, name), "__module__", "") == K.__name__}
    assert public <= set(script.KERNELS), f"not probed: {sorted(public - set(script.KERNELS))}"
    out = subprocess.run([sys.executable, "-c", script._probe(list(script.KERNELS))], capture_output=True, text=True,
                         check=True)
    import json

    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert [c[0] for c in report["calls"]] == list(script.KERNELS)
    assert all(first > 0 and second > 0 for _, first, second in report["calls"])


def test_compare_layers_fusion_ceiling_times_the_residual_add_passes(capsys):
    """The residual Add's separate passes (what a fused epilogue could save) are timed and scaled
    to the epoch: 23 blocks x 469 steps at batch 128."""
    script = _script("compare_layers")
    assert script.fusion_ceiling(128, rounds=1, reps=10) == 0
    assert "x 23 blocks x 469 steps" in capsys.readouterr().out
