"""Data-parallel scenarios for test_distributed.py, run under mpiexec:

    mpiexec -n N python mpi_worker.py SCENARIO OUT_DIR [--backend NAME]

train     replicated fit (float64, Adam with a schedule, clipping, L2), distributed evaluate and
          predict; each rank writes rank<r>.npz (weights, history, evaluation, predictions)
sharded   each rank trains on its own, unevenly sized part; writes rank<r>.npz
resume    BackupAndRestore in OUT_DIR/backup; with --crash-at K every rank raises after global
          step K (the job aborts); without, the fit resumes and finishes; writes rank<r>.npz
raise     rank 1 raises during the second epoch; the others are blocked in the Allreduce
mismatch  rank 1 builds a wider first layer; every rank prints the error it gets and exits 3
badinput  rank 1 passes inputs of the wrong width; every rank prints the error it gets and exits 3
stop      a callback on rank 0 only stops training after global step 5; writes rank<r>.npz
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from fastbp import nn
from fastbp.distributed import DataParallel

EPOCHS, BATCH = 2, 24


def data(n=250):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, 7))
    return x, (x[:, 0] > 0).astype(int) + (x[:, 1] + x[:, 2] > 0)


OPTIMIZERS = {
    "adam": lambda: nn.Adam(nn.ExponentialDecay(0.02, 7, 0.8), global_clipnorm=1.0),
    "rmsprop": lambda: nn.RMSprop(nn.CosineDecay(0.01, 30), momentum=0.5, centered=True, clipvalue=0.3),
    "sgd": lambda: nn.SGD(nn.PiecewiseConstantDecay([10], [0.1, 0.05]), momentum=0.9, nesterov=True, clipnorm=1.0),
}


def model(backend=None, width=16, optimizer="adam"):
    m = nn.Sequential([nn.Dense(width, activation="tanh", input_shape=(7,), kernel_regularizer=nn.regularizers.L2(1e-3)),
                       nn.Dense(12, activation="relu"), nn.Dense(3, activation="softmax")],
                      seed=21, backend=backend, dtype=np.float64)
    m.compile(optimizer=OPTIMIZERS[optimizer](), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def fit(m, x, y, distribution=None, callbacks=()):
    return m.fit(x, y, batch_size=BATCH, epochs=EPOCHS, validation_split=0.2, verbose=0, distribution=distribution,
                 callbacks=list(callbacks))


class CrashAfter(nn.Callback):
    def __init__(self, step, rank=None):
        self.step, self.rank, self.seen = step, rank, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step and self.rank in (None, self.model._dp_rank):
            raise RuntimeError(f"crash after step {self.step}")


def _write(out, rank, m, history, **extra):
    np.savez(os.path.join(out, f"rank{rank}.npz"), *m.get_weights(), history=json.dumps(history.history),
             iterations=m.optimizer.iterations, **extra)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("scenario")
    p.add_argument("out")
    p.add_argument("--backend", default=None)
    p.add_argument("--crash-at", type=int, default=0)
    p.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    args = p.parse_args(argv)
    dp = DataParallel(sharded=args.scenario == "sharded")
    x, y = data()
    if args.scenario in ("mismatch", "badinput"):
        wider = args.scenario == "mismatch" and dp.rank == 1
        bad = args.scenario == "badinput" and dp.rank == 1
        m = model(args.backend, width=17 if wider else 16)
        m.build()  # (from input_shape: a width-6 input is then refused on that rank alone)
        try:
            fit(m, x[:, :6] if bad else x, y, dp)
        except ValueError as e:
            print(f"rank {dp.rank}: {e}", flush=True)
            return 3
        return 0
    m = model(args.backend, optimizer=args.optimizer)
    m._dp_rank = dp.rank
    if args.scenario == "train":
        history = fit(m, x, y, dp)
        loss, accuracy = m.evaluate(x, y, batch_size=10, verbose=0, distribution=dp)
        _write(args.out, dp.rank, m, history, evaluation=[loss, accuracy], predictions=m.predict(x, distribution=dp))
    elif args.scenario == "sharded":
        lo, hi = [(0, 40), (40, 140), (140, 200), (200, 250)][dp.rank] if dp.size == 4 else dp.share(len(x))
        history = fit(m, x[lo:hi], y[lo:hi], dp)
        _write(args.out, dp.rank, m, history)
    elif args.scenario == "resume":
        callbacks = [nn.BackupAndRestore(os.path.join(args.out, "backup"), save_freq=4)]
        if args.crash_at:
            callbacks.append(CrashAfter(args.crash_at))
        history = fit(m, x, y, dp, callbacks)
        _write(args.out, dp.rank, m, history)
    elif args.scenario == "stop":
        class StopOnRankZero(nn.Callback):
            writes_files = True  # (so it runs on rank 0 only)

            def on_train_batch_end(self, batch, logs=None):
                if self.model.optimizer.iterations == 5:
                    self.model.stop_training = True
        history = fit(m, x, y, dp, [StopOnRankZero()])
        _write(args.out, dp.rank, m, history)
    elif args.scenario == "raise":
        fit(m, x, y, dp, [CrashAfter(12, rank=1)])
    else:
        raise SystemExit(f"unknown scenario {args.scenario}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
