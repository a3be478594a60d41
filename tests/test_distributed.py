"""Data-parallel training over MPI (fastbp.distributed), run under ``mpiexec -n 2`` and ``-n 4``
(MPICH from PyPI, the ``mpi`` extra; 4 ranks oversubscribe 2 cores): the weights after 2 epochs
equal the single-process run's to 1e-9 relative (float64; only the order of float sums differs) and
are bitwise equal on every rank; sharded data; distributed evaluate and predict; BackupAndRestore
across ranks; an exception on one rank ends the job; mismatched ranks all get the error."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastbp import nn

WORKER = Path(__file__).with_name("mpi_worker.py")
BACKENDS = [None, "numpy"]  # None: numba's compiled step pieces where Numba runs
sys.path.insert(0, str(WORKER.parent))
import mpi_worker as w  # noqa: E402

sys.path.pop(0)


def _mpiexec():
    found = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    assert found, 'mpiexec not found: pip install ".[mpi]" (or ".[test]") installs MPICH with it'
    return found


def _launch(ranks, *args, timeout=240):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [str(Path(nn.__file__).parents[2]),
                                                                   os.environ.get("PYTHONPATH")] if p))
    start = time.monotonic()
    proc = subprocess.run([_mpiexec(), "-n", str(ranks), sys.executable, str(WORKER), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    return proc, time.monotonic() - start


def _ok(proc):
    assert proc.returncode == 0, f"mpiexec failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"


def _ranks(out, ranks):
    results = []
    for r in range(ranks):
        with np.load(out / f"rank{r}.npz") as data:
            results.append({k: data[k] for k in data.files})
    return results


def _weights(result):
    return [result[f"arr_{i}"] for i in range(sum(k.startswith("arr_") for k in result))]


def _assert_close(got, reference, rtol=1e-9):
    for a, b in zip(got, reference):
        scale = np.abs(b).max()
        assert np.abs(a - b).max() <= rtol * scale, f"max relative difference {np.abs(a - b).max() / scale:.3g}"


def _same_on_every_rank(results):
    for other in results[1:]:
        for a, b in zip(_weights(other), _weights(results[0])):
            np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def references():
    """Single-process runs (and, for the numba backend, the compiled step pieces put in Numba's
    cache before the ranks start: they would all compile them at once)."""
    from fastbp.distributed import DataParallel

    refs = {}
    x, y = w.data()
    tiny = nn.Sequential([nn.Dense(4, activation="relu", input_shape=(7,)), nn.Dense(3, activation="softmax")])
    tiny.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    tiny.fit(x.astype(np.float32), y, epochs=1, verbose=0, distribution=DataParallel())  # float32, for the CLI test
    for backend in BACKENDS:
        for optimizer in w.OPTIMIZERS:
            single = w.model(backend, optimizer=optimizer)
            history = w.fit(single, x, y)
            refs[backend, optimizer] = (single, history)
        w.fit(w.model(backend), x, y, DataParallel())  # one rank: the same code path, cached
    return refs


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ranks, optimizer", [(2, "adam"), (2, "sgd"), (4, "rmsprop")])
def test_data_parallel_fit_equals_one_process(ranks, optimizer, backend, references, tmp_path):
    """Every optimizer, a schedule of each kind, each clipping option and L2 on 2 and 4 ranks."""
    proc, _ = _launch(ranks, "train", tmp_path, "--optimizer", optimizer, *(["--backend", backend] if backend else []))
    _ok(proc)
    results = _ranks(tmp_path, ranks)
    single, history = references[backend, optimizer]
    _same_on_every_rank(results)
    _assert_close(_weights(results[0]), single.get_weights())
    for r in results:
        assert int(r["iterations"]) == single.optimizer.iterations
        logged = json.loads(str(r["history"]))
        for key, values in history.history.items():  # the logs are the global ones on every rank
            np.testing.assert_allclose(logged[key], values, rtol=1e-12)
    x, y = w.data()
    loss, accuracy = single.evaluate(x, y, batch_size=10, verbose=0)
    for r in results:
        np.testing.assert_allclose(r["evaluation"], [loss, accuracy], rtol=1e-9)
        _assert_close([r["predictions"]], [single.predict(x)])


def test_sharded_data_trains_the_same_model_on_every_rank(references, tmp_path):
    proc, _ = _launch(4, "sharded", tmp_path)  # 40, 100, 60 and 50 rows: local batch 6
    _ok(proc)
    results = _ranks(tmp_path, 4)
    _same_on_every_rank(results)
    steps = -(-int(100 * 0.8) // 6)  # the largest rank's training rows (validation_split 0.2) / 6
    assert [int(r["iterations"]) for r in results] == [w.EPOCHS * steps] * 4
    logged = json.loads(str(results[0]["history"]))
    assert logged["loss"][1] < logged["loss"][0]
    assert not np.allclose(_weights(results[0])[0], references[None, "adam"][0].get_weights()[0])  # other batches


def test_backup_and_restore_across_ranks(references, tmp_path):
    crashed, _ = _launch(2, "resume", tmp_path, "--crash-at", 11)  # mid-epoch 2 (9 steps per epoch)
    assert crashed.returncode != 0 and "crash after step 11" in crashed.stderr
    assert (tmp_path / "backup" / "latest.fastbp").exists()  # written by rank 0 at step 8
    proc, _ = _launch(2, "resume", tmp_path)
    _ok(proc)
    results = _ranks(tmp_path, 2)
    _same_on_every_rank(results)
    _assert_close(_weights(results[0]), references[None, "adam"][0].get_weights())
    assert not (tmp_path / "backup").exists()


def test_an_exception_on_one_rank_ends_the_job(references, tmp_path):
    proc, seconds = _launch(2, "raise", tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "rank 1 of 2 failed; aborting the job" in proc.stderr and "crash after step 12" in proc.stderr
    assert seconds < 60


def test_mismatched_ranks_all_get_the_error(tmp_path):
    proc, _ = _launch(2, "mismatch", tmp_path, timeout=120)
    assert proc.returncode == 3
    for r in range(2):
        assert f"rank {r}: DataParallel: the ranks disagree" in proc.stdout
    assert "rank 1 has model=" in proc.stdout


def test_a_failure_while_preparing_on_one_rank_is_raised_on_every_rank(tmp_path):
    proc, _ = _launch(2, "badinput", tmp_path, timeout=120)
    assert proc.returncode == 3
    assert "rank 1: expected 7 input features; got 6" in proc.stdout
    assert "rank 0: DataParallel: rank 1 failed: ValueError: expected 7 input features; got 6" in proc.stdout


def test_a_stop_on_one_rank_stops_every_rank_after_the_same_step(references, tmp_path):
    proc, _ = _launch(2, "stop", tmp_path, timeout=120)
    _ok(proc)
    results = _ranks(tmp_path, 2)
    _same_on_every_rank(results)
    assert [int(r["iterations"]) for r in results] == [5, 5]
    for r in results:
        assert len(json.loads(str(r["history"]))["loss"]) == 1


def test_fastbp_train_distributed(mnist_dir, references, tmp_path):
    """The README's command under mpiexec: one report (rank 0's), a saved model that evaluates to it."""
    from fastbp.datasets import load_mnist

    saved = tmp_path / "mnist.fastbp"
    env = dict(os.environ, PYTHONPATH=str(Path(nn.__file__).parents[2]))
    proc = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "fastbp.cli", "train", "--distributed",
                           "--epochs", "1", "--batch-size", "256", "--data", str(mnist_dir), "--seed", "0",
                           "--verbose", "0", "--save", str(saved)], capture_output=True, text=True, timeout=600, env=env)
    _ok(proc)
    assert proc.stdout.count("test accuracy") == 1 and "trained on 2 ranks, global batch 256" in proc.stdout
    accuracy = float(proc.stdout.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.85
    _, (x_test, y_test) = load_mnist(mnist_dir)
    _, acc = nn.load_model(saved).evaluate(x_test.reshape(-1, 784) / 255.0, y_test, verbose=0)
    assert f"test accuracy {acc:.4f}" in proc.stdout


def test_data_parallel_refuses_what_it_cannot_do():
    from fastbp.distributed import DataParallel

    with pytest.raises(TypeError, match="comm must be an mpi4py communicator"):
        DataParallel(comm="world")
    dp = DataParallel(sharded=True)
    x, y = w.data()
    with pytest.raises(ValueError, match="BackupAndRestore can back up at epoch ends only"):
        w.model("numpy").fit(x, y, distribution=dp, callbacks=[nn.BackupAndRestore("unused", save_freq=3)], verbose=0)
    assert [dp.share(10, r) for r in range(1)] == [(0, 10)]
