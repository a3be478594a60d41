"""Data parallelism over MPI (mpi4py): ``model.fit(..., distribution=DataParallel())``.

``batch_size`` is the global batch. Each of the N ranks computes the gradient of its share of every
global batch (shares differ by at most one row), scaled by its share of the rows, so that one
in-place ``Allreduce`` (SUM) of the flat gradient buffer gives every rank the gradient of the mean
over the global batch; every rank then applies the same update. N ranks train the model one process
trains with the same global batch, up to the order of float sums. The batch's loss and correct count
travel in two extra elements of that buffer, so the logs (and every callback's decision) are the
global ones, the same on every rank, with no second collective; a third carries a stop flag, so
a callback that stops training on one rank (``model.stop_training``) stops every rank after the
same step.

Two data modes. Replicated (the default): every rank passes the same arrays; every rank draws the
same permutation each epoch (the random state is broadcast from rank 0) and takes its share of each
global batch, so the batches are exactly the single process's. Sharded (``sharded=True``): each
rank passes its own part; its local batch is its share of ``batch_size``, the number of steps per
epoch is the largest rank's ``ceil(rows / local batch)``, and a rank with fewer rows pads its epoch
by repeating the start of that epoch's permutation (PyTorch's ``DistributedSampler`` with
``drop_last=False``); each rank's permutation comes from a seed all ranks draw together and its rank.

At the start of fit the ranks check (one ``allgather``) that they hold the same model, compile
settings, dtypes, batch size, epochs and, replicated, the same data (CRC-32), and raise the same
ValueError on every rank if not; then rank 0's weights, optimizer state and random state are
broadcast. Only rank 0 shows progress and runs the callbacks that write files (ModelCheckpoint,
BackupAndRestore, CSVLogger); a backup is restored on rank 0 and broadcast. An exception on any
rank during training ends the whole job (``comm.Abort``) instead of leaving the others blocked.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import traceback
import zlib

import numpy as np


#: elements after the gradient in the Allreduce buffer: the batch's loss x rows, correct count, stop flag
TAIL = 3


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError('fastbp.distributed needs mpi4py and an MPI library: pip install "fastbp[mpi]" '
                          f"(mpi4py with MPICH from PyPI); {e}") from None
    return MPI


class DataParallel:
    """Data-parallel training on the ranks of ``comm`` (default: mpi4py's ``COMM_WORLD``);
    ``sharded``: each rank passes its own part of the data (see the module's documentation).

    ``threads``: fastbp's threads per rank while it trains. "auto" (the default) gives each rank
    its share of the cores it may run on: ``max(1, cores // ranks on this node)`` (ranks that share
    cores and each spin all of them slow every rank down); an integer sets it; None leaves the
    count as it is (``fastbp.set_num_threads``)."""

    def __init__(self, comm=None, sharded=False, threads="auto"):
        self.MPI = _mpi()
        self.comm = self.MPI.COMM_WORLD if comm is None else comm
        if not isinstance(self.comm, self.MPI.Comm):
            raise TypeError(f"DataParallel: comm must be an mpi4py communicator; got {type(comm).__name__}")
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.sharded = bool(sharded)
        if threads == "auto":
            node = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
            threads = max(1, _usable_cores() // node.Get_size())
            node.Free()
        elif threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"DataParallel: threads must be 'auto', a positive integer or None; got {threads!r}")
        self.threads = threads

    @contextlib.contextmanager
    def threads_in_use(self):
        """fastbp's thread count set to :attr:`threads` inside, restored after."""
        from . import get_num_threads, set_num_threads

        if self.threads is None:
            yield
            return
        before = get_num_threads()
        set_num_threads(self.threads)
        try:
            yield
        finally:
            set_num_threads(before)

    def __repr__(self):
        return f"DataParallel(rank {self.rank} of {self.size}, {'sharded' if self.sharded else 'replicated'})"

    # ------------------------------------------------------------------------------ shares

    def share(self, rows: int, rank: int | None = None) -> tuple[int, int]:
        """This rank's rows [lo, hi) of ``rows`` split over the ranks (the first ``rows % size``
        ranks hold one more)."""
        rank = self.rank if rank is None else rank
        base, extra = divmod(rows, self.size)
        lo = rank * base + min(rank, extra)
        return lo, lo + base + (rank < extra)

    def local_rows(self, *arrays):
        """Replicated: this rank's share of the rows of each array; sharded: the arrays."""
        if self.sharded:
            return arrays
        lo, hi = self.share(len(arrays[0]))
        return tuple(a[lo:hi] for a in arrays)

    def sum(self, values) -> np.ndarray:
        """The sum over the ranks of a few numbers (float64)."""
        buf = np.array(values, np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return buf

    # ----------------------------------------------------------------------------- checks

    def check_same(self, what: dict) -> None:
        """Raise the same ValueError on every rank unless every rank passed equal ``what``."""
        mine = json.dumps(what, sort_keys=True, default=str)
        every = self.comm.allgather(mine)
        if all(other == every[0] for other in every):
            return
        reference = json.loads(every[0])
        lines = []
        for rank, text in enumerate(every[1:], start=1):
            theirs = json.loads(text)
            for key in sorted(set(reference) | set(theirs)):
                if reference.get(key) != theirs.get(key):
                    lines.append(f"rank {rank} has {key}={_short(theirs.get(key))}, rank 0 has {_short(reference.get(key))}")
        raise ValueError("DataParallel: the ranks disagree; every rank must build the same model and pass the same "
                         "settings" + ("" if self.sharded else " and data") + ":\n  " + "\n  ".join(lines))

    def on_every_rank(self, task):
        """``task()``'s result, when it succeeded on every rank; else every rank raises (this rank's
        own exception where it failed, a ValueError naming the failed ranks elsewhere)."""
        try:
            result, failure = task(), None
        except Exception as e:
            result, failure = None, e
        every = self.comm.allgather(None if failure is None else f"{type(failure).__name__}: {failure}")
        failed = {rank: text for rank, text in enumerate(every) if text is not None}
        if failure is not None:
            raise failure
        if failed:
            raise ValueError("DataParallel: " + "; ".join(f"rank {r} failed: {t}" for r, t in failed.items()))
        return result

    def any(self, flag) -> bool:
        """True on every rank when ``flag`` is true on any."""
        return bool(self.comm.allreduce(bool(flag), op=self.MPI.LOR))

    def check_callbacks(self, callbacks):
        if self.sharded and any(getattr(cb, "save_freq", "epoch") != "epoch" and type(cb).__name__ == "BackupAndRestore"
                                for cb in callbacks):
            raise ValueError("DataParallel(sharded=True): BackupAndRestore can back up at epoch ends only "
                             "(save_freq='epoch'); mid-epoch positions hold one rank's sample order")

    def check_fit(self, model, x, y, batch_size, epochs, initial_epoch, shuffle, validation_data, callbacks):
        """The ranks agree on the model, settings and (replicated) data, or all raise."""
        from .nn import saving

        what = {"model": saving._describe(model), "dtype": model.dtype.name, "features": int(x.shape[1]),
                "targets": list(y.shape[1:]), "batch_size": int(batch_size), "epochs": int(epochs),
                "initial_epoch": int(initial_epoch), "shuffle": bool(shuffle), "sharded": self.sharded,
                "validation": validation_data is not None, "callbacks": sorted(type(cb).__name__ for cb in callbacks)}
        if not self.sharded:
            what["rows"] = int(len(x))
            what["data_crc32"] = [zlib.crc32(np.ascontiguousarray(a).view(np.uint8)) for a in (x, y)]
        if batch_size < self.size and not self.sharded:
            what["batch_size_error"] = f"batch_size {batch_size} < {self.size} ranks on rank {self.rank}"
        self.check_same(what)
        if self.sharded:
            shares = self.comm.allgather(int(len(x)))
            if min(shares) == 0 or self.share(batch_size)[1] - self.share(batch_size)[0] == 0:
                raise ValueError(f"DataParallel(sharded=True): every rank needs rows and a local batch of at least one "
                                 f"row; rows per rank {shares}, batch_size {batch_size} over {self.size} ranks")

    # ------------------------------------------------------------------------ model state

    def broadcast_state(self, model, position):
        """Rank 0's weights (trainable and not), optimizer state, random state and training position
        on every rank."""
        self.comm.Bcast(model.params, root=0)
        if model.state.size:
            self.comm.Bcast(model.state, root=0)
        opt = model.optimizer
        if len(opt._state) != opt._slots():
            opt.build(model.params)
        for slot in opt._state:
            self.comm.Bcast(slot, root=0)
        opt.iterations = self.comm.bcast(opt.iterations, root=0)
        model._rng.bit_generator.state = self.comm.bcast(model._rng.bit_generator.state, root=0)
        return self.comm.bcast(position, root=0)

    def use_gradient_buffer(self, model) -> np.ndarray:
        """Move the model's gradients into a buffer with :data:`TAIL` more elements (the batch's
        loss and correct count, and a stop flag) that one Allreduce sums; returns that buffer."""
        buf = getattr(model, "_allreduce_buffer", None)
        if buf is None or buf.size != model.params.size + TAIL or buf.dtype != model.dtype:
            buf = np.zeros(model.params.size + TAIL, model.dtype)
            model._bind_gradients(buf[:-TAIL])
            model._allreduce_buffer = buf
        return buf

    def callbacks_for_this_rank(self, callbacks):
        """Every callback on rank 0; on the others, those that write no files."""
        if self.rank == 0:
            return list(callbacks)
        return [cb for cb in callbacks if not getattr(cb, "writes_files", False)]

    # ------------------------------------------------------------------------------ epochs

    def steps_per_epoch(self, rows, batch_size):
        """(steps, rows of the global epoch): replicated ceil(rows / batch); sharded, the largest
        rank's ceil(rows / local batch), every step batch_size rows."""
        if not self.sharded:
            return math.ceil(rows / batch_size), rows
        lo, hi = self.share(batch_size)
        steps = int(self.comm.allreduce(math.ceil(rows / (hi - lo)), op=self.MPI.MAX))
        return steps, steps * batch_size

    def epoch_order(self, model, rows, shuffle):
        """The epoch's sample order: replicated, the one permutation every rank draws; sharded, this
        rank's permutation from a seed all ranks draw together."""
        if not self.sharded:
            return model._rng.permutation(rows) if shuffle else np.arange(rows)
        seed = int(model._rng.integers(2 ** 63)) if shuffle else None
        return np.random.default_rng([seed, self.rank]).permutation(rows) if shuffle else np.arange(rows)

    def epoch_runner(self, model, x, y, batch_size, steps, total_rows):
        """Like ``Sequential._epoch_runner``: a ``run(order, progress, first, totals, hooks)`` whose
        every step is the local gradient, one Allreduce, the update."""
        MPI, comm = self.MPI, self.comm
        buf = self.use_gradient_buffer(model)
        tail = buf[-TAIL:]
        local_batch = self.share(batch_size)[1] - self.share(batch_size)[0]
        pieces = model._epoch_runner(x, y, max(1, local_batch if self.sharded else -(-batch_size // self.size)),
                                     halves=True)
        n = len(x)
        weight = model.loss_weight

        def batch_of(step):
            """(lo, rows, global rows) of this rank's part of global batch ``step``."""
            if self.sharded:
                return step * local_batch, local_batch, batch_size
            g_lo = step * batch_size
            g_rows = min(n, g_lo + batch_size) - g_lo
            lo, hi = self.share(g_rows)
            return g_lo + lo, hi - lo, g_rows

        def run(order, progress=None, first=0, totals=(0.0, 0.0, 0.0), hooks=None):
            if self.sharded:
                order = np.resize(order, steps * local_batch)  # pad by wrapping, as DistributedSampler
            total_loss, correct, penalties = totals
            with pieces.blas, self.threads_in_use():
                for step in range(first, steps):
                    if hooks is not None:
                        hooks.begin(step)
                    lo, b, g_rows = batch_of(step)
                    if b:
                        loss, right = pieces.grad(order, lo, b, weight * b / g_rows)
                        tail[0], tail[1] = loss * g_rows, right
                    else:  # a last global batch with fewer rows than ranks
                        buf[:] = 0
                    tail[2] = 1.0 if model.stop_training else 0.0  # a callback stopped after the last step
                    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
                    if tail[2] > 0:  # then every rank stops there (this step's gradient is dropped)
                        model.stop_training = True
                        break
                    total_loss += float(tail[0])
                    correct += float(tail[1])
                    penalty = pieces.apply(g_rows)
                    total_loss += penalty
                    penalties += penalty
                    seen = min((step + 1) * batch_size, total_rows)
                    if progress is not None:
                        progress.update(1, model._logs(total_loss / seen, correct / seen))
                    if hooks is not None:  # (a stop it asks for is agreed on at the next Allreduce)
                        hooks.end(step + 1, (total_loss, correct, penalties))
            return total_loss, correct, penalties
        run.steps, run.path, run.compiling = steps, f"{pieces.path}, one Allreduce per step", pieces.compiling
        return run

    @contextlib.contextmanager
    def aborting(self):
        """Any exception inside ends every rank's process (MPI_Abort), after this rank prints it."""
        try:
            yield
        except BaseException:
            if self.size == 1:
                raise
            sys.stderr.write(f"fastbp.distributed: rank {self.rank} of {self.size} failed; aborting the job\n")
            traceback.print_exc()
            sys.stderr.flush()
            self.comm.Abort(1)
            raise

    # -------------------------------------------------------------------------- predictions

    def gather_rows(self, local: np.ndarray, rows: int) -> np.ndarray:
        """Replicated: every rank's share of the rows put together on every rank (Allgatherv)."""
        if self.sharded:
            return local
        out = np.empty((rows,) + local.shape[1:], local.dtype)
        width = int(np.prod(local.shape[1:], dtype=np.int64))
        counts = [(self.share(rows, r)[1] - self.share(rows, r)[0]) * width for r in range(self.size)]
        offsets = [self.share(rows, r)[0] * width for r in range(self.size)]
        self.comm.Allgatherv(np.ascontiguousarray(local), [out, (counts, offsets)])
        return out


def _usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _short(value, limit=160):
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + "..."
