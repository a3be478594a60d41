"""One training run with BackupAndRestore, for test_saving's kill-and-resume test.

    python resume_worker.py BACKUP_DIR OUT [--die-in-save K] [--backend NAME]

trains :func:`train` (the same model, data and settings every time) with a BackupAndRestore in
BACKUP_DIR, prints ``training`` once its backup (if any) is restored and ``done`` at the end, and
writes the final weights to OUT. ``--die-in-save K``: SIGKILL itself halfway through writing its
K-th backup file (a kill during a save, placed exactly).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

import numpy as np

from fastbp import nn

EPOCHS, BATCH, SAVE_EVERY = 6, 32, 7


def data():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3000, 64)).astype(np.float32)
    y = (x[:, :5] + 0.5 * x[:, 5:10]).argmax(axis=1)
    return x, y


def model(backend=None):
    m = nn.Sequential([nn.Dense(128, activation="relu", input_shape=(64,)), nn.Dense(64, activation="tanh"),
                       nn.Dense(5, activation="softmax")], seed=11, backend=backend)
    m.compile(optimizer=nn.Adam(nn.ExponentialDecay(3e-3, 50, 0.9), clipnorm=1.0),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def train(m, callbacks=()):
    x, y = data()
    return m.fit(x, y, batch_size=BATCH, epochs=EPOCHS, validation_split=0.1, verbose=0, callbacks=list(callbacks))


class _Announce(nn.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if not getattr(self, "said", False):
            print("training", flush=True)
            self.said = True


def _die_in_save(k):
    from fastbp.nn import archive

    real = archive.atomic_write
    count = [0]

    def atomic_write(path, write):
        count[0] += 1
        if count[0] < k:
            return real(path, write)

        def half_then_die(f):
            import io

            buf = io.BytesIO()
            write(buf)
            data = buf.getvalue()
            f.write(data[:len(data) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, half_then_die)
    archive.atomic_write = atomic_write


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("backup_dir")
    p.add_argument("out")
    p.add_argument("--die-in-save", type=int, default=0)
    p.add_argument("--backend", default=None)
    args = p.parse_args(argv)
    if args.die_in_save:
        _die_in_save(args.die_in_save)
    m = model(args.backend)
    train(m, [nn.BackupAndRestore(args.backup_dir, save_freq=SAVE_EVERY), _Announce()])
    m.save_weights(args.out)
    print("done", flush=True)


if __name__ == "__main__":
    sys.exit(main())
