"""Checkpointing callbacks with Keras's names and semantics: BackupAndRestore (resume a killed
training where it was, bit for bit) and ModelCheckpoint (model or weights files during training).
Every file is written atomically (:mod:`fastbp.nn.atomic`)."""
from __future__ import annotations

import glob
import os

from . import saving
from .atomic import TEMP_SUFFIX, temp_prefix
from .callbacks import Callback, MonitorMixin


def _save_freq(owner, save_freq):
    if save_freq == "epoch":
        return save_freq
    if isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1:
        raise ValueError(f"{owner}: save_freq must be 'epoch' or a positive integer (steps); got {save_freq!r}")
    return save_freq


class BackupAndRestore(Callback):
    """Back up the whole training state in ``backup_dir`` (at each epoch's end, or every
    ``save_freq`` steps counted from the start of training) and, when ``fit()`` starts with a
    backup there, restore it and continue from that point: the weights at the end are the same
    bits as an uninterrupted run on the same backend. The backup is one model file
    (``latest.fastbp``: weights, optimizer state, random state, epoch, step, the epoch's sample
    order and running sums) replaced atomically, so a kill at any moment leaves the previous backup
    or the new one. ``delete_checkpoint``: remove the backup when training completes (and the
    folder, if nothing else is in it).

    The backup must come from the same model, compiled the same way, fitted on the same data with
    the same ``batch_size`` and ``validation_split``; a different model or compile() is a
    ValueError, as is a sample order that does not fit the data."""

    FILE_NAME = "latest.fastbp"
    writes_files = True

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        if not backup_dir:
            raise ValueError("BackupAndRestore: backup_dir must be a non-empty path")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = _save_freq("BackupAndRestore", save_freq)
        self.delete_checkpoint = bool(delete_checkpoint)
        self.path = os.path.join(self.backup_dir, self.FILE_NAME)

    @property
    def batch_interval(self):
        return None if self.save_freq == "epoch" else self.save_freq

    def on_train_begin(self, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        for stale in self._stale_temporaries():
            os.unlink(stale)  # a write a kill interrupted: the backup itself is whole
        if os.path.exists(self.path):  # read and checked now; fit() applies it once it fits the data
            self.model._resume_from = saving.read_backup(self.model, self.path)

    def on_train_batch_end(self, batch, logs=None):
        self._save()

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save()

    def _save(self):
        saving.save_model(self.model, self.path, position=self.model._fit_position)

    def on_train_end(self, logs=None):
        """With ``delete_checkpoint``: remove the backup, and ``backup_dir`` if that leaves it
        empty (unlike Keras, which removes the whole folder: files of others in it stay)."""
        if not self.delete_checkpoint:
            return
        for path in [self.path, *self._stale_temporaries()]:
            if os.path.exists(path):
                os.unlink(path)
        try:
            os.rmdir(self.backup_dir)
        except OSError:  # not empty, or already gone
            pass

    def _stale_temporaries(self):
        return glob.glob(os.path.join(glob.escape(self.backup_dir), temp_prefix(self.path) + "*" + TEMP_SUFFIX))


class ModelCheckpoint(MonitorMixin, Callback):
    """Save the model (``model.save``) or its weights (``save_weights_only``) to ``filepath`` at
    each epoch's end or every ``save_freq`` steps. ``filepath`` may hold ``{epoch}`` (1-based),
    ``{batch}`` (1-based, step saves) and log keys with formats, e.g.
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.fastbp"``. ``save_best_only``: save only when ``monitor``
    improved on the best so far (``mode``, ``initial_value_threshold``), as in Keras."""

    writes_files = True

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        self.filepath = os.fspath(filepath)
        if not self.filepath:
            raise ValueError("ModelCheckpoint: filepath must be a non-empty path")
        self.save_freq = _save_freq("ModelCheckpoint", save_freq)
        self.verbose, self.save_best_only, self.save_weights_only = verbose, bool(save_best_only), bool(save_weights_only)
        if save_best_only or mode != "auto":
            self._init_monitor("ModelCheckpoint", monitor, mode, 0.0, initial_value_threshold)
        else:  # monitor unused: any name is accepted, as in Keras
            self.monitor, self.mode, self.min_delta, self._initial_best, self.best = monitor, mode, 0.0, None, None
        self._epoch = 0

    @property
    def batch_interval(self):
        return None if self.save_freq == "epoch" else self.save_freq

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._save(self._epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _path(self, epoch, batch, logs):
        fields = dict(logs or {})
        fields["epoch"] = epoch + 1
        if batch is not None:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except (KeyError, IndexError, ValueError) as e:
            raise KeyError(f"ModelCheckpoint: cannot format the filepath {self.filepath!r} with the fields "
                           f"{sorted(fields)}: {e}") from None

    def _save(self, epoch, batch, logs):
        path = self._path(epoch, batch, logs)
        if self.save_best_only:
            current = self._monitored(logs, "ModelCheckpoint")
            if current is None:  # Keras saves then (with the warning)
                pass
            elif not self._is_improvement(current, self.best):
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            else:
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                          f"saving model to {path}")
                self.best = current
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
