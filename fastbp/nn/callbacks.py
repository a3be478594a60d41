"""Callbacks (Keras's names and semantics), the History that fit() returns, the loop's view of
the callbacks (CallbackList) and the progress display (tqdm). The checkpointing callbacks are in
:mod:`fastbp.nn.checkpoints`."""
from __future__ import annotations

import csv
import math
import os
import sys
import time
import typing
import warnings


class Callback:
    """Hooks called by ``Sequential.fit`` (Keras's names); ``logs`` maps metric names to values.

    ``on_train_batch_begin(batch)`` / ``on_train_batch_end(batch, logs)`` run every
    :attr:`batch_interval` training steps (``batch`` is the step's index in its epoch, ``logs`` the
    epoch's running mean loss and metrics). A callback that overrides either is called after every
    step (interval 1: the compiled loop then runs one step per call); one with a coarser need says
    so with ``batch_interval`` (ModelCheckpoint and BackupAndRestore with an integer ``save_freq``),
    and the compiled loop returns to Python exactly there, as Keras does with ``steps_per_execution``.
    Setting ``model.stop_training = True`` in any hook ends training after that step or epoch."""

    model = None
    #: True: also called (on_train_batch_end) after any step that makes the epoch's loss non-finite
    watches_nonfinite = False
    #: True: writes files (in data-parallel training it runs on rank 0 only)
    writes_files = False

    def set_model(self, model):
        self.model = model

    @property
    def batch_interval(self):
        """Every how many training steps (counted from the start of training) the batch hooks run;
        None: never."""
        cls = type(self)
        overridden = (cls.on_train_batch_begin is not Callback.on_train_batch_begin
                      or cls.on_train_batch_end is not Callback.on_train_batch_end)
        return 1 if overridden else None

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass


class History(Callback):
    """``history[name]`` is the list of per-epoch values; ``epoch`` the list of epoch indices;
    ``params`` fit()'s settings (Keras's verbose, epochs, steps) and ``path``, the training path
    it ran on from start to end (see ``Sequential._epoch_runner``)."""

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.params = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


class CallbackList:
    """The callbacks of one ``fit`` call, and the training loop's view of them: where a compiled
    chunk of steps must end (:meth:`next_stop`) and what runs before and after it (:meth:`begin`,
    :meth:`end`).

    Steps are counted from the start of training (``global_step``, kept by the model across a
    resume), so a callback with ``batch_interval`` k runs after steps k, 2k, ... wherever training
    was interrupted. ``logs_of(totals, seen)`` turns the running sums into Keras's logs."""

    def __init__(self, callbacks, model, steps_per_epoch, batch_size, n_samples, logs_of):
        self.callbacks = list(callbacks)
        self.model = model
        self.steps, self.batch_size, self.n = steps_per_epoch, batch_size, n_samples
        self.logs_of = logs_of
        for cb in self.callbacks:
            cb.set_model(model)
        self.intervals = []
        for cb in self.callbacks:
            k = cb.batch_interval
            if k is not None:
                if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                    raise ValueError(f"{type(cb).__name__}.batch_interval must be a positive integer or None; got {k!r}")
                self.intervals.append((cb, k))
        self.watchers = [cb for cb in self.callbacks if cb.watches_nonfinite]
        self.watch_nonfinite = bool(self.watchers)
        self.epoch = 0
        self.order = None
        self.epoch_base = 0  # global step of the epoch's step 0

    def start_epoch(self, epoch, order, first, global_step):
        self.epoch, self.order = epoch, order
        self.epoch_base = global_step - first

    def next_stop(self, done):
        """The first step index > ``done`` of this epoch after which some callback must run."""
        g = self.epoch_base + done
        stop = self.steps
        for _, k in self.intervals:
            stop = min(stop, (g // k + 1) * k - self.epoch_base)
        return stop

    def begin(self, step):
        g = self.epoch_base + step
        for cb, k in self.intervals:
            if g % k == 0:
                cb.on_train_batch_begin(step)

    def end(self, done, totals):
        """After step ``done - 1``: record the training position (for backups), run the callbacks
        due there; True when one of them stopped training."""
        g = self.epoch_base + done
        self.model._fit_position = FitPosition(self.epoch, done, self.order, totals, g)
        due = [cb for cb, k in self.intervals if g % k == 0]
        if self.watchers and not math.isfinite(totals[0]):
            due += [cb for cb in self.watchers if cb not in due]
        if due:
            logs = self.logs_of(totals, min(done * self.batch_size, self.n))
            for cb in due:
                cb.on_train_batch_end(done - 1, logs)
        return bool(getattr(self.model, "stop_training", False))

    def call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(*args)


class FitPosition(typing.NamedTuple):
    """Where a fit() is: ``step`` steps of epoch ``epoch`` done over the sample ``order`` (None at an
    epoch's start), the running ``totals`` (loss x rows, correct, penalties) and ``global_step``,
    the steps since training started. What BackupAndRestore saves and resumes from."""
    epoch: int
    step: int
    order: object
    totals: tuple
    global_step: int


def _format(logs):
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


def background_compiling() -> str:
    """What Numba is compiling in the background for this process, in words ('' when nothing)."""
    from ..backends.numba_cpu import background

    busy = background.compiling()
    return f"numba compiling {', '.join(busy)} in the background" if busy else ""


class ProgressBar:
    """verbose=1: a tqdm bar per epoch with the running loss and metrics; verbose=2: one line per
    epoch; verbose=0: nothing. Either says, after the metrics, what compiles in the background
    (see :meth:`announce`)."""

    def __init__(self, verbose, epochs, steps, file=None):
        self.verbose, self.epochs, self.steps = verbose, epochs, steps
        self.file = file or sys.stdout
        self._bar = None
        self._note = None

    def announce(self, path, note=None):
        """Print the training path fit() runs (one line); ``note``: a function returning what
        to show beside the metrics (what compiles in the background), or None."""
        self._note = note
        extra = note() if note is not None else ""
        print(f"Training path: {path}" + (f" [{extra}]" if extra else ""), file=self.file)

    def _with_note(self, text):
        extra = self._note() if self._note is not None else ""
        return f"{text} - {extra}" if extra else text

    def epoch_begin(self, epoch, first_step=0):
        """``first_step``: steps of this epoch already done (a resumed epoch)."""
        self._t0 = time.perf_counter()
        if self.verbose == 1:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.steps, initial=first_step, desc=f"Epoch {epoch + 1}/{self.epochs}",
                             unit="step", file=self.file, mininterval=0.2, leave=True, dynamic_ncols=True)

    def update(self, n, logs):
        if self._bar is not None:
            self._bar.update(n)
            if self._bar.n == self.steps or time.perf_counter() - self._bar.last_print_t > 0.2:
                self._bar.set_postfix_str(self._with_note(_format(logs)), refresh=False)

    def epoch_end(self, epoch, logs):
        seconds = time.perf_counter() - self._t0
        if self._bar is not None:
            self._bar.set_postfix_str(self._with_note(f"{_format(logs)} - {seconds:.2f}s"))
            self._bar.close()
            self._bar = None
        elif self.verbose == 2:
            print(self._with_note(f"Epoch {epoch + 1}/{self.epochs} - {seconds:.2f}s - {_format(logs)}"), file=self.file)
        return seconds


class MonitorMixin:
    """A monitored quantity and its direction (Keras's MonitorCallback): ``mode`` 'min', 'max' or
    'auto' (min for a name ending in 'loss', max for 'accuracy'/'acc', with or without 'val_');
    an improvement is ``current - min_delta`` beyond the best (below it for 'min')."""

    def _init_monitor(self, owner, monitor, mode, min_delta=0.0, best=None):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max'; got {mode!r}")
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"{owner}: monitor must be a metric name such as 'val_loss'; got {monitor!r}")
        if mode == "auto":
            name = monitor.removeprefix("val_")
            if name.endswith("loss"):
                mode = "min"
            elif name in ("accuracy", "acc"):
                mode = "max"
            else:
                raise ValueError(f"{owner}: cannot tell whether {monitor!r} should fall or rise; "
                                 "pass mode='min' or mode='max'")
        self.monitor, self.mode = monitor, mode
        self.min_delta = abs(float(min_delta))
        self._initial_best = best
        self._reset_best()

    def _reset_best(self):
        worst = math.inf if self.mode == "min" else -math.inf
        self.best = worst if self._initial_best is None else float(self._initial_best)

    def _is_improvement(self, current, reference):
        if self.mode == "min":
            return current + self.min_delta < reference
        return current - self.min_delta > reference

    def _monitored(self, logs, owner):
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"{owner} monitors {self.monitor!r}, which is not in the logs; available: "
                          f"{', '.join(logs or {}) or 'none'}", RuntimeWarning, stacklevel=3)
        return value


class EarlyStopping(MonitorMixin, Callback):
    """Stop training when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs (Keras's semantics, ``baseline`` and ``start_from_epoch`` included). With
    ``restore_best_weights`` the model ends with the weights of the best epoch."""

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        self._init_monitor("EarlyStopping", monitor, mode, min_delta)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an integer >= 0; got {patience!r}")
        self.patience, self.verbose, self.baseline = patience, verbose, baseline
        self.restore_best_weights, self.start_from_epoch = bool(restore_best_weights), start_from_epoch
        self.wait = self.stopped_epoch = self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.wait = self.stopped_epoch = self.best_epoch = 0
        self.best_weights = None
        self._reset_best()

    def on_epoch_end(self, epoch, logs=None):
        current = self._monitored(logs, "EarlyStopping")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class TerminateOnNaN(Callback):
    """Stop training after the first step whose loss makes the epoch's running loss NaN or
    infinite (that step's update is applied, as in Keras)."""

    watches_nonfinite = True

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True

    @property
    def batch_interval(self):
        return None  # called only where the loss turns non-finite (watches_nonfinite)


class CSVLogger(Callback):
    """One CSV row per epoch (``epoch`` and the logs' keys in sorted order, Keras's layout) in
    ``filename``, flushed and fsynced after each row; ``append`` continues an existing file
    (a header is written only to an empty file)."""

    writes_files = True

    def __init__(self, filename, separator=",", append=False):
        self.filename = os.fspath(filename)
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be one character; got {separator!r}")
        self.sep, self.append = separator, bool(append)
        self.keys = self._file = self._writer = None

    def on_train_begin(self, logs=None):
        write_header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8", newline="") as f:
                write_header = not f.readline()
        self._file = open(self.filename, "a" if self.append else "w", encoding="utf-8", newline="")
        self._write_header = write_header
        self.keys = self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self._writer is None:
            self.keys = sorted(logs)
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch"] + self.keys, delimiter=self.sep,
                                          extrasaction="ignore", lineterminator="\n")
            if self._write_header:
                self._writer.writeheader()
        self._writer.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        self._file.flush()
        os.fsync(self._file.fileno())

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
        self._file = self._writer = None
