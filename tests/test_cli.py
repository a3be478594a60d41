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


def test_fastbp_train_saves_the_model_and_backs_up_while_training(mnist_dir, tmp_path, capsys):
    from fastbp import cli, nn

    saved, backup = tmp_path / "mnist.fastbp", tmp_path / "backup"
    assert cli.main(["train", "--epochs", "1", "--data", str(mnist_dir), "--seed", "0", "--verbose", "0",
                     "--save", str(saved), "--backup-dir", str(backup)]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.9 and f"model saved to {saved}" in out
    assert not backup.exists()  # deleted once training completed
    from fastbp.datasets import load_mnist

    _, (x_test, y_test) = load_mnist(mnist_dir)
    loss, acc = nn.load_model(saved).evaluate(x_test.reshape(-1, 784) / 255.0, y_test, verbose=0)
    assert f"test accuracy {acc:.4f}" in out and f"test loss {loss:.4f}" in out


def test_fastbp_info_says_which_training_path_fit_takes():
    out = subprocess.run([sys.executable, "-m", "fastbp.cli", "info"], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("fit() of the seed example now runs: "))
    assert "unknown" not in line
    if "numba" in fastbp.available_backends():
        assert "numba compiled steps" in line or "cython kernels in a Python loop" in line


def test_fastbp_train_without_mnist_says_where_it_looked_and_exits_2(tmp_path, monkeypatch, capsys):
    from fastbp import cli, datasets

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("FASTBP_DATA", str(empty))
    monkeypatch.setattr(datasets, "user_cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", ["http://127.0.0.1:9/"])  # (nothing listens there)
    assert cli.main(["train", "--epochs", "1", "--data", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastbp train: MNIST files (") and str(empty) in err and "could not download" in err
    assert "Traceback" not in err
