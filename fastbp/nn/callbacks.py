"""Callbacks, the History that fit() returns, and the progress display (tqdm)."""
from __future__ import annotations

import sys
import time


class Callback:
    """Hooks called by ``Sequential.fit``; ``logs`` maps metric names to values."""

    model = None

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass


class History(Callback):
    """``history[name]`` is the list of per-epoch values; ``epoch`` the list of epoch indices."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def _format(logs):
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class ProgressBar:
    """verbose=1: a tqdm bar per epoch with the running loss and metrics; verbose=2: one line per
    epoch; verbose=0: nothing."""

    def __init__(self, verbose, epochs, steps, file=None):
        self.verbose, self.epochs, self.steps = verbose, epochs, steps
        self.file = file or sys.stdout
        self._bar = None

    def epoch_begin(self, epoch):
        self._t0 = time.perf_counter()
        if self.verbose == 1:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.steps, desc=f"Epoch {epoch + 1}/{self.epochs}", unit="step",
                             file=self.file, mininterval=0.2, leave=True, dynamic_ncols=True)

    def update(self, n, logs):
        if self._bar is not None:
            self._bar.update(n)
            if self._bar.n == self.steps or time.perf_counter() - self._bar.last_print_t > 0.2:
                self._bar.set_postfix_str(_format(logs), refresh=False)

    def epoch_end(self, epoch, logs):
        seconds = time.perf_counter() - self._t0
        if self._bar is not None:
            self._bar.set_postfix_str(f"{_format(logs)} - {seconds:.2f}s")
            self._bar.close()
            self._bar = None
        elif self.verbose == 2:
            print(f"Epoch {epoch + 1}/{self.epochs} - {seconds:.2f}s - {_format(logs)}", file=self.file)
        return seconds
