"""Lowering a Sequential model to the compiled interpreter's tables, and the epoch runner.

:func:`lower` turns the model's layers into an integer op table (one row per layer: kind,
activation code, widths, offsets of its weights in the flat parameter buffer, what the backward
pass keeps), allocates every work buffer once for the batch size, and returns a function that
runs one epoch's steps in compiled chunks, each on the thread count :mod:`.thread_tuner` picks.
"""
from __future__ import annotations

import time

import numpy as np

from ...activations import NEEDS_OUTPUT, NEEDS_PREACT
from ..schedules import learning_rate_at
from . import interpreter as C
from .thread_tuner import ThreadTuner, adaptive_threads_enabled


def _saved_code(needs):
    return {NEEDS_OUTPUT: C.SAVED_Y, NEEDS_PREACT: C.SAVED_Z}.get(needs, C.SAVED_NONE)


def layer_table(model) -> np.ndarray:
    """One row per layer: KIND, CODE, N_IN, N_OUT, W_OFF, B_OFF (-1: none), SAVED."""
    from ..layers import Dense

    rows = []
    first_segment = 0
    for i, layer in enumerate(model.layers):
        act = model._act(i)
        start = model.segments[first_segment][0] if layer.weights else -1
        first_segment += len(layer.params_shapes())
        dense = isinstance(layer, Dense)
        rows.append([C.DENSE if dense else C.ACTIVATION, act.code, model.widths[i], model.widths[i + 1],
                     start if dense else -1, start + layer.n_in * layer.units if dense and layer.use_bias else -1,
                     _saved_code(act.needs)])
    return np.array(rows, np.int64)


def lower(model, x, y, batch, standby=False, halves=False, submit=True):
    """A function ``run(order, steps, progress, first=0, totals=(0, 0, 0), hooks=None) -> (sum of
    losses x rows, correct, the penalties' part of that sum)`` that trains one epoch (or its steps
    from ``first`` on) over ``x[order]`` in compiled code (``progress``: a ProgressBar or None).
    ``standby``: when Numba's code for these steps does not exist yet (in memory or in its disk
    cache), submit it for background compilation (:mod:`fastbp.backends.numba_cpu.background`)
    and return None instead of compiling; ``halves``: the caller runs ``run.grad`` and
    ``run.apply`` (one step's two halves) rather than ``run`` itself, so it is their code that
    must exist; ``submit=False``: only find out (nothing is compiled)."""
    import numba

    from ...backends.numba_cpu import single_threaded_blas

    dt = model.dtype
    layers = layer_table(model)
    alphas = np.array([float(layer.alpha) for layer in model.layers])
    segments = np.array(model.segments, np.int64)
    n_out = model.widths[-1]
    gbuf, xbuf = np.empty(batch * n_out, dt), np.empty(batch * model.widths[0], dt)
    lbuf, tbuf = np.empty(batch, np.intp), np.empty(batch * n_out, dt)
    sparse = y.ndim == 1
    labels = y if sparse else np.empty(0, np.intp)
    targets = np.empty((0, n_out), dt) if sparse else y
    loss_kind = (C.SPARSE_CE if sparse else C.BINARY_CE if model._binary else C.DENSE_CE if model.loss.needs_logits
                 else C.MSE)
    reg = np.zeros((len(model.layers), 2))
    for i, regularizer in model._regularized():
        reg[i] = regularizer.coefficients()
    regularized = bool(model._regularized())
    opt = model.optimizer
    if len(opt._state) != opt._slots():
        opt.build(model.params)
    clip = np.array([opt.clipvalue or 0.0, opt.clipnorm or 0.0, opt.global_clipnorm or 0.0])
    dummy = np.empty(0, dt)

    def arguments(lists, order, first, last, lrs, stats, watch):
        """train_steps's arguments (``lists``: ys, zs, dxs, dzs)."""
        code, hyper, state = opt.compiled_spec()
        s = list(state) + [dummy] * (3 - len(state))
        return (x, labels, targets, order, first, last, batch, layers, alphas, model.params, model.grads, segments,
                *lists, gbuf, xbuf, lbuf, tbuf, loss_kind, float(model.loss_weight), reg, regularized, code,
                np.array(hyper, np.float64), lrs, int(opt.iterations), s[0], s[1], s[2], clip, stats, watch)

    def grad_arguments(lists, order, lo, b, weight):
        """grad_step's arguments."""
        return (x, labels, targets, order, lo, b, layers, alphas, model.params, model.grads, *lists, gbuf, xbuf, lbuf,
                tbuf, loss_kind, float(weight))

    def apply_arguments(b):
        """apply_step's arguments, for the optimizer's next step."""
        code, hyper, state = opt.compiled_spec()
        s = list(state) + [dummy] * (3 - len(state))
        return (layers, reg, regularized, model.params, model.grads, segments, code, np.array(hyper, np.float64),
                float(learning_rate_at(opt.learning_rate, opt.iterations)), int(opt.iterations) + 1, s[0], s[1], s[2],
                clip, int(b))

    if standby:
        from ...backends.numba_cpu import background

        buffer_list = numba.types.ListType(numba.typeof(dummy))  # (a typed List costs a compile to build)
        order = np.empty(0, np.intp)
        probes = ([(C.grad_step, grad_arguments((None,) * 4, order, 0, 1, 1.0)), (C.apply_step, apply_arguments(1))]
                  if halves else [(C.train_steps, arguments((None,) * 4, order, 0, 0, np.empty(0), np.zeros(3), False))])
        missing = []
        for dispatcher, probe in probes:
            sig = tuple(buffer_list if a is None else dispatcher.typeof_pyval(a) for a in probe)
            if not background.ready(dispatcher, sig):
                missing.append((dispatcher, sig))
        if missing:
            for dispatcher, sig in missing if submit else ():
                background.submit(dispatcher, sig, "the training steps")
            return None

    from numba.typed import List

    ys, zs, dxs, dzs = List(), List(), List(), List()
    for i in range(len(model.layers)):
        for lst, width in ((ys, model.widths[i + 1]), (zs, model.widths[i + 1]), (dxs, model.widths[i]),
                           (dzs, model.widths[i + 1])):
            lst.append(np.empty(batch * width, dt))
    lists = (ys, zs, dxs, dzs)
    threads_as_set = numba.get_num_threads()
    key = (threads_as_set, batch, adaptive_threads_enabled())
    if key not in model._thread_tuners:  # kept by the model across fit() calls
        model._thread_tuners[key] = ThreadTuner(*key[::2])
    tuner = model._thread_tuners[key]

    def run(order, steps, progress, first=0, totals=(0.0, 0.0, 0.0), hooks=None):
        """Steps [first, steps) of the epoch over x[order], the running sums starting at ``totals``;
        ``hooks`` (a :class:`~fastbp.nn.callbacks.CallbackList` or None) is called before and after
        each chunk, and a chunk ends where it asks (``next_stop``) or where the loss sum becomes
        non-finite (when it watches for that). Returns the sums; stops early when hooks say so."""
        stats = np.array(totals, np.float64)
        watch = hooks is not None and hooks.watch_nonfinite
        try:
            while first < steps:
                # chunks of steps, each on the thread count that currently runs them fastest
                # (the same bits on any count)
                threads, chunk = tuner.choose()
                last = min(steps, first + chunk)
                if hooks is not None:
                    last = min(last, hooks.next_stop(first))
                    hooks.begin(first)
                lrs = np.array([learning_rate_at(opt.learning_rate, opt.iterations + k) for k in range(last - first)])
                numba.set_num_threads(threads)
                start = time.perf_counter()
                with single_threaded_blas:  # one thread pool: the kernels split the work themselves
                    done = C.train_steps(*arguments(lists, order, first, last, lrs, stats, watch))
                tuner.record(threads, time.perf_counter() - start, done - first)
                opt.iterations += done - first
                if progress is not None:
                    seen = min(done * batch, len(order))
                    progress.update(done - first, model._logs(stats[0] / seen, stats[1] / seen))
                first = done
                if hooks is not None and hooks.end(done, (float(stats[0]), float(stats[1]), float(stats[2]))):
                    break
        finally:
            numba.set_num_threads(threads_as_set)
        return float(stats[0]), float(stats[1]), float(stats[2])

    def grad(order, lo, b, weight):
        """One batch's gradient, x[order[lo:lo + b]] (b >= 1), the loss scaled by ``weight``:
        :func:`.interpreter.grad_step`; returns (scaled mean loss, correct)."""
        return C.grad_step(*grad_arguments(lists, order, lo, b, weight))

    def apply(b):
        """The update after a batch of ``b`` rows (:func:`.interpreter.apply_step`); returns the
        penalty times b."""
        penalty = C.apply_step(*apply_arguments(b))
        opt.iterations += 1
        return penalty

    run.tuner = tuner
    run.grad, run.apply, run.blas = grad, apply, single_threaded_blas
    return run
