"""Callbacks with Keras's semantics, on the compiled loop (default backend) and the Python loop
(numpy backend): batch hooks and their intervals, EarlyStopping, TerminateOnNaN, CSVLogger,
ModelCheckpoint, and BackupAndRestore resuming an interrupted or SIGKILLed fit bit for bit."""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastbp import nn

BACKENDS = [None, "numpy"]  # None: numba's compiled loop where Numba runs


def _data(rng, n=80):
    x = rng.standard_normal((n, 6))
    return x, (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)


def _model(backend, seed=3):
    model = nn.Sequential([nn.Dense(16, activation="relu", input_shape=(6,)), nn.Dense(3, activation="softmax")],
                          seed=seed, backend=backend)
    model.compile(optimizer=nn.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class Interrupt(Exception):
    pass


class InterruptAt(nn.Callback):
    """Raises after global step ``step`` (a crash in the middle of an epoch)."""

    def __init__(self, step):
        self.step, self.seen = step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            raise Interrupt


class OnBatchEnd(nn.Callback):
    """Calls ``fn(batch, logs)`` after every training step."""

    def __init__(self, fn):
        self.fn = fn

    def on_train_batch_end(self, batch, logs=None):
        self.fn(batch, logs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_hooks_run_after_every_step_with_running_logs(backend, rng):
    x, y = _data(rng)
    seen = []

    class Batches(nn.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(("begin", batch))

        def on_train_batch_end(self, batch, logs=None):
            seen.append(("end", batch, logs["loss"], logs["accuracy"]))

    model = _model(backend)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[Batches()])
    ends = [s for s in seen if s[0] == "end"]
    assert [s[1] for s in ends] == list(range(5)) * 2
    assert [s for s in seen if s[0] == "begin"] == [("begin", b) for b in range(5)] * 2
    assert ends[4][2] == pytest.approx(history.history["loss"][0], rel=1e-12)  # last step: the epoch's mean
    assert ends[9][3] == history.history["accuracy"][1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_interval_callback_runs_every_k_steps_of_training(backend, rng):
    x, y = _data(rng)
    calls = []

    class Every3(nn.Callback):
        batch_interval = 3

        def on_train_batch_end(self, batch, logs=None):
            calls.append((self.model.optimizer.iterations, batch))

    _model(backend).fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[Every3()])
    assert calls == [(k, (k - 1) % 5) for k in range(3, 16, 3)]  # steps 3, 6, ... across epochs


@pytest.mark.parametrize("backend", BACKENDS)
def test_early_stopping_follows_keras(backend, rng):
    x, y = _data(rng)
    # patience 1 on a loss that cannot improve by min_delta (learning rate 0: the epochs' losses
    # differ only by the rounding of their summation orders): stops after epoch 1
    model = _model(backend)
    model.compile(optimizer=nn.SGD(0.0), loss="sparse_categorical_crossentropy")
    stop = nn.EarlyStopping(monitor="loss", patience=1, min_delta=1e-6)
    history = model.fit(x, y, epochs=10, batch_size=16, verbose=0, callbacks=[stop])
    assert len(history.epoch) == 2 and stop.stopped_epoch == 1  # no improvement: stop at epoch 1 (not 0)
    # restore_best_weights: the weights after the best validation epoch
    model = _model(backend)
    snapshots = []

    class Snapshot(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(self.model.get_weights())

    stop = nn.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True, min_delta=1e-3)
    model.compile(optimizer=nn.Adam(0.5), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=30, batch_size=16, validation_split=0.25, verbose=0, callbacks=[Snapshot(), stop])
    val = history.history["val_loss"]
    best = int(np.argmin(val))
    assert stop.best == val[best] and stop.best_epoch == best
    for a, b in zip(model.get_weights(), snapshots[best]):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="mode must be"):
        nn.EarlyStopping(mode="lowest")
    with pytest.raises(ValueError, match="cannot tell whether 'f1' should fall or rise"):
        nn.EarlyStopping(monitor="f1")
    with pytest.warns(RuntimeWarning, match="monitors 'val_loss', which is not in the logs"):
        _model(backend).fit(x, y, epochs=1, verbose=0, callbacks=[nn.EarlyStopping()])


@pytest.mark.parametrize("backend", BACKENDS)
def test_terminate_on_nan_stops_after_the_step_that_broke(backend, rng, capsys):
    x, y = _data(rng, n=64)
    x[37, 2] = np.nan  # row 37 is in step 2 (batch 16, no shuffle)
    model = _model(backend)
    history = model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0, callbacks=[nn.TerminateOnNaN()])
    assert model.optimizer.iterations == 3 and len(history.epoch) == 1
    assert np.isnan(history.history["loss"][0])
    assert "Batch 2: Invalid loss, terminating training" in capsys.readouterr().out


def test_csv_logger_writes_keras_rows(tmp_path, rng):
    x, y = _data(rng)
    path = tmp_path / "log.csv"
    model = _model(None)
    history = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0,
                        callbacks=[nn.CSVLogger(path)])
    model.fit(x, y, epochs=4, initial_epoch=2, batch_size=16, validation_split=0.25, verbose=0,
              callbacks=[nn.CSVLogger(path, separator=";", append=True)])
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss"
    assert [ln.split(",")[0] for ln in lines[1:3]] == ["0", "1"] and [ln.split(";")[0] for ln in lines[3:]] == ["2", "3"]
    rows = list(csv.DictReader(lines[:3]))
    assert [float(r["loss"]) for r in rows] == history.history["loss"]  # repr precision: exact
    with pytest.raises(ValueError, match="separator must be one character"):
        nn.CSVLogger(path, separator="::")


def test_model_checkpoint_names_and_best_only(tmp_path, rng):
    x, y = _data(rng)
    model = _model(None)
    every = nn.ModelCheckpoint(tmp_path / "e{epoch:02d}-{loss:.3f}.fastbp", save_freq="epoch")
    best = nn.ModelCheckpoint(tmp_path / "best.weights", monitor="val_accuracy", save_best_only=True,
                              save_weights_only=True)
    steps = nn.ModelCheckpoint(tmp_path / "s{epoch}-{batch}.fastbp", save_freq=3)
    history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0, callbacks=[every, best, steps])
    names = sorted(os.listdir(tmp_path))
    expected = {f"e{e + 1:02d}-{loss:.3f}.fastbp" for e, loss in enumerate(history.history["loss"])}
    assert expected <= set(names)
    # 4 steps per epoch: training steps 3, 6, 9, 12 are (epoch, batch) (1, 3), (2, 2), (3, 1), (3, 4)
    assert {n for n in names if n.startswith("s")} == {"s1-3.fastbp", "s2-2.fastbp", "s3-1.fastbp", "s3-4.fastbp"}
    last = nn.load_model(tmp_path / sorted(expected)[-1])
    for a, b in zip(last.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert best.best == max(history.history["val_accuracy"])
    with pytest.raises(ValueError, match="save_freq must be 'epoch' or a positive integer"):
        nn.ModelCheckpoint(tmp_path / "x", save_freq=0)
    bad = nn.ModelCheckpoint(tmp_path / "{val_f1}.fastbp")
    with pytest.raises(KeyError, match="cannot format the filepath"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[bad])


def _uninterrupted(backend, x, y, **fit):
    model = _model(backend)
    history = model.fit(x, y, verbose=0, **fit)
    return model, history


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("save_freq, crash_at", [("epoch", 13), (3, 13), (3, 15), (1, 1)])
def test_backup_and_restore_resumes_an_interrupted_fit_bit_for_bit(backend, save_freq, crash_at, rng, tmp_path):
    x, y = _data(rng)
    fit = dict(epochs=4, batch_size=12, validation_split=0.1)  # 6 steps per epoch
    reference, ref_history = _uninterrupted(backend, x, y, **fit)
    model = _model(backend)
    backup = nn.BackupAndRestore(tmp_path / "backup", save_freq=save_freq)
    with pytest.raises(Interrupt):
        model.fit(x, y, verbose=0, callbacks=[backup, InterruptAt(crash_at)], **fit)
    assert os.listdir(tmp_path / "backup") == ["latest.fastbp"]
    fresh = _model(backend)  # a new process would build the model again
    history = fresh.fit(x, y, verbose=0, callbacks=[nn.BackupAndRestore(tmp_path / "backup", save_freq=save_freq)],
                        **fit)
    for a, b in zip(fresh.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert fresh.optimizer.iterations == reference.optimizer.iterations == 24
    resumed_from = 4 - len(history.epoch)
    assert history.epoch == list(range(resumed_from, 4))
    for key, values in history.history.items():
        assert values == ref_history.history[key][resumed_from:]  # the resumed epoch's logs too
    assert not (tmp_path / "backup").exists()  # delete_checkpoint


def test_a_backup_from_another_model_or_other_data_is_refused(rng, tmp_path):
    x, y = _data(rng)
    model = _model("numpy")
    with pytest.raises(Interrupt):
        model.fit(x, y, epochs=3, batch_size=10, verbose=0,
                  callbacks=[nn.BackupAndRestore(tmp_path, save_freq=2, delete_checkpoint=False), InterruptAt(3)])
    other = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(6,)), nn.Dense(3, activation="softmax")])
    other.compile(optimizer=nn.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with pytest.raises(ValueError, match="written by a different model or compile"):
        other.fit(x, y, epochs=3, batch_size=10, verbose=0, callbacks=[nn.BackupAndRestore(tmp_path)])
    with pytest.raises(ValueError, match="sample order is not a permutation of the 70 samples"):
        _model("numpy").fit(x[:70], y[:70], epochs=3, batch_size=10, verbose=0, callbacks=[nn.BackupAndRestore(tmp_path)])
    kept = nn.BackupAndRestore(tmp_path, delete_checkpoint=False)
    _model("numpy").fit(x, y, epochs=3, batch_size=10, verbose=0, callbacks=[kept])
    assert (tmp_path / "latest.fastbp").exists()
    (tmp_path / "notes.txt").write_text("someone else's file")
    _model("numpy").fit(x, y, epochs=3, batch_size=10, verbose=0, callbacks=[nn.BackupAndRestore(tmp_path)])
    assert os.listdir(tmp_path) == ["notes.txt"]  # the backup is gone, the folder and its other files stay


def test_a_refused_backup_changes_nothing(rng, tmp_path):
    """A backup whose optimizer buffer is corrupted, or whose position does not fit the data, is
    refused before anything of the model changes."""
    import zipfile

    x, y = _data(rng)
    with pytest.raises(Interrupt):
        _model("numpy").fit(x, y, epochs=3, batch_size=10, verbose=0,
                            callbacks=[nn.BackupAndRestore(tmp_path, save_freq=2), InterruptAt(5)])
    backup = tmp_path / "latest.fastbp"
    good = backup.read_bytes()
    with zipfile.ZipFile(backup) as zf:
        member = zf.getinfo("optimizer/0.npy")
    corrupted = bytearray(good)
    corrupted[member.header_offset + 30 + len(member.filename) + 200] ^= 0xFF  # inside the array's data
    backup.write_bytes(bytes(corrupted))
    fresh = _model("numpy")
    fresh.build()
    before = fresh.get_weights()
    with pytest.raises(ValueError, match="corrupted"):
        fresh.fit(x, y, epochs=3, batch_size=10, verbose=0, callbacks=[nn.BackupAndRestore(tmp_path)])
    backup.write_bytes(good)
    with pytest.raises(ValueError, match="does not fit 2 steps per epoch"):
        fresh.fit(x[:20], y[:20], epochs=3, batch_size=10, verbose=0, callbacks=[nn.BackupAndRestore(tmp_path)])
    for a, b in zip(fresh.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert fresh.optimizer.iterations == 0 and fresh.optimizer._state == ()


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_epoch_stopped_midway_logs_the_mean_of_its_steps(backend, rng):
    x, y = _data(rng)
    model = _model(backend)
    seen = []

    def stop_after_3(batch, logs):
        seen.append(logs["loss"])
        model.stop_training = batch == 2

    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[OnBatchEnd(stop_after_3)])
    assert len(seen) == 3 and history.history["loss"] == [seen[-1]]


def test_initial_epoch_and_stop_training(rng):
    x, y = _data(rng)
    history = _model(None).fit(x, y, epochs=5, initial_epoch=3, verbose=0)
    assert history.epoch == [3, 4]
    with pytest.raises(ValueError, match="initial_epoch must be an integer >= 0"):
        _model(None).fit(x, y, initial_epoch=-1, verbose=0)

    class StopAfterFirst(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True
    assert _model(None).fit(x, y, epochs=5, verbose=0, callbacks=[StopAfterFirst()]).epoch == [0]


WORKER = Path(__file__).with_name("resume_worker.py")


def _run_worker(args, env, kill_after=None):
    """Start the worker; SIGKILL it ``kill_after`` seconds after it starts training (None: let it
    run). Returns (returncode, killed by us)."""
    proc = subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.monotonic() + 300
    line = proc.stdout.readline()  # "training": its backup is restored; or EOF if it died first
    if line.strip() == "training" and kill_after is not None:
        time.sleep(kill_after)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    err = proc.stderr.read()
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"the worker failed ({proc.returncode}):\n{err}")
    return proc.returncode


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkilled_training_resumes_bit_for_bit(backend, tmp_path):
    """SIGKILL a training process again and again, at random moments and halfway through its
    backup writes, restarting it each time with BackupAndRestore until it finishes; the final
    weights are an uninterrupted run's, and every backup a kill left behind loads."""
    sys.path.insert(0, str(WORKER.parent))
    try:
        import resume_worker as w
    finally:
        sys.path.pop(0)
    reference = w.model(backend)
    w.train(reference)  # (also puts the compiled code in Numba's cache for the workers)
    rng = np.random.default_rng(1202)
    backup, out = tmp_path / "backup", tmp_path / "final.weights"
    args = [str(backup), str(out)] + (["--backend", backend] if backend else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [str(Path(nn.__file__).parents[2]),
                                                                   os.environ.get("PYTHONPATH")] if p))
    kills = in_save = 0
    start = time.monotonic()
    while not out.exists():
        assert time.monotonic() - start < 600, f"not finished after {kills} kills"
        if kills >= 12:
            rc = _run_worker(args, env)
        elif kills % 2:
            rc = _run_worker(args + ["--die-in-save", str(rng.integers(1, 6))], env)
            in_save += rc == -signal.SIGKILL
        else:
            rc = _run_worker(args, env, kill_after=float(rng.uniform(0.0, 0.15)))
        if rc == -signal.SIGKILL:
            kills += 1
            if (backup / "latest.fastbp").exists():  # the backup a kill leaves is whole
                nn.load_model(backup / "latest.fastbp")
    assert kills >= 10 and in_save >= 5
    final = nn.Sequential([nn.Dense(128, input_shape=(64,)), nn.Dense(64), nn.Dense(5)])
    final.load_weights(out)
    for a, b in zip(final.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not backup.exists()
