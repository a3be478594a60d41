"""Lowering a model to the compiled interpreter's tables, and the epoch runner.

:func:`lower` turns the model's nodes into an integer node table (one row per node: kind,
activation code, widths, offsets of its weights in the flat parameter and state buffers, what the
backward pass keeps, the slots it reads), allocates every work buffer once for the batch size,
and returns a function that runs one epoch's steps in compiled chunks, each on the thread count
:mod:`.thread_tuner` picks.
"""
from __future__ import annotations

import time

import numpy as np

from ...activations import LINEAR, NEEDS_OUTPUT, NEEDS_PREACT
from ..schedules import learning_rate_at
from . import interpreter as C
from .thread_tuner import ThreadTuner, adaptive_threads_enabled


def _saved_code(needs):
    return {NEEDS_OUTPUT: C.SAVED_Y, NEEDS_PREACT: C.SAVED_Z}.get(needs, C.SAVED_NONE)


def _kind(layer):
    from .. import layers as L

    return {L.Dense: C.DENSE, L.Activation: C.ACTIVATION, L.Dropout: C.DROPOUT, L.LayerNormalization: C.LAYERNORM,
            L.BatchNormalization: C.BATCHNORM, L.Add: C.ADD}[type(layer)]


def node_table(model):
    """The model as the interpreter's tables: (nodes, inputs, adds, needs, floats, seeds,
    thresholds). ``nodes``: one row per node (KIND, CODE, N_IN, N_OUT, W_OFF, B_OFF (-1: none),
    SAVED, IN_START, IN_COUNT, S_OFF); ``inputs``: the slots the nodes read, node after node;
    ``adds``: per entry of ``inputs``, whether its gradient is added to one written before;
    ``needs``: per slot, whether it needs a gradient; ``floats``: per node (alpha | epsilon |
    rate, momentum, 1 / (1 - rate)); ``seeds``, ``thresholds``: per node, a dropout layer's seed
    and round(rate 2^32)."""
    from ...kernels import _drop_threshold

    offsets = {}  # layer -> (its first weight's offset in params, its first state's offset in state)
    segment, state_segment = 0, 0
    for layer in model.layers:
        params, states = len(layer.params_shapes()), len(layer.state_shapes())
        offsets[id(layer)] = (model.segments[segment][0] if params else -1,
                              model._state_segments[state_segment][0] if states else -1)
        segment += params
        state_segment += states
    rows, inputs, adds = [], [], []
    floats = np.zeros((len(model.nodes), 3))
    seeds = np.zeros(len(model.nodes), np.uint64)
    thresholds = np.zeros(len(model.nodes), np.uint64)
    for i, node in enumerate(model.nodes):
        layer, kind = node.layer, _kind(node.layer)
        act = model._act(i)
        n_in, n_out = model.widths[node.inputs[0]], model.widths[i + 1]
        start, s_off = offsets[id(layer)]
        w_off = b_off = -1
        if kind == C.DENSE:
            w_off, b_off = start, start + n_in * n_out if layer.use_bias else -1
        elif kind in (C.LAYERNORM, C.BATCHNORM):
            w_off = start if layer.scale else -1
            b_off = start + n_in * int(layer.scale) if layer.center else -1
        rows.append([kind, act.code, n_in, n_out, w_off, b_off, _saved_code(act.needs), len(inputs), len(node.inputs),
                     s_off])
        inputs += node.inputs
        adds += model._adds_grad[i]
        if kind in (C.DENSE, C.ACTIVATION):
            floats[i, C.ALPHA] = float(layer.alpha)
        elif kind == C.DROPOUT:
            floats[i] = layer.rate, 0.0, 1.0 / (1.0 - layer.rate)
            seeds[i], thresholds[i] = layer.seed, _drop_threshold(layer.rate)
        elif kind in (C.LAYERNORM, C.BATCHNORM):
            floats[i, C.EPS] = layer.epsilon
            floats[i, C.MOMENTUM] = 1.0 - getattr(layer, "momentum", 1.0)
    return (np.array(rows, np.int64), np.array(inputs, np.int64), np.array(adds, np.bool_),
            np.array(model._needs_grad, np.bool_), floats, seeds, thresholds)


def _buffers(model, batch, dt, nodes, inputs, adds, needs):
    """The interpreter's buffers for ``batch`` rows as typed lists: ys, gs (per slot: outputs and
    their gradients), zs, dzs, aux, masks (per node: pre-activations, dL/dz, a normalization's mean
    and rstd, a dropout mask), temps (per entry of ``inputs``: gradients to add)."""
    from numba.typed import List

    none = np.empty(0, dt)
    ys, gs, zs, dzs, aux, masks, temps = List(), List(), List(), List(), List(), List(), List()
    last = len(model.widths) - 1
    for s, width in enumerate(model.widths):
        ys.append(np.empty(batch * width, dt) if s else none)
        gs.append(np.empty(batch * width, dt) if s and (needs[s] or s == last) else none)
    for i, row in enumerate(nodes):
        kind, n_in, n_out = row[C.KIND], row[C.N_IN], row[C.N_OUT]
        zs.append(np.empty(batch * n_out, dt) if row[C.SAVED] == C.SAVED_Z else none)
        dzs.append(np.empty(batch * n_out, dt) if kind == C.DENSE and row[C.CODE] != LINEAR else none)
        aux.append(np.empty(2 * (batch if kind == C.LAYERNORM else n_in), dt)
                   if kind in (C.LAYERNORM, C.BATCHNORM) else none)
        masks.append(np.empty(batch * n_in if kind == C.DROPOUT else 0, np.uint8))
    for k, slot in enumerate(inputs):
        temps.append(np.empty(batch * model.widths[slot], dt) if adds[k] else none)
    return ys, gs, zs, dzs, aux, masks, temps


class _ListPlaceholder:
    """Stands for a typed List argument of a known type in a signature probe."""

    def __init__(self, type_):
        self.type = type_


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
    nodes, inputs, adds, needs, floats, seeds, thresholds = tables = node_table(model)
    segments = np.array(model.segments, np.int64)
    n_out = model.widths[-1]
    xbuf = np.empty(batch * model.widths[0], dt)
    lbuf, tbuf = np.empty(batch, np.intp), np.empty(batch * n_out, dt)
    sparse = y.ndim == 1
    labels = y if sparse else np.empty(0, np.intp)
    targets = np.empty((0, n_out), dt) if sparse else y
    loss_kind = (C.SPARSE_CE if sparse else C.BINARY_CE if model._binary else C.DENSE_CE if model.loss.needs_logits
                 else C.MSE)
    reg = np.zeros((len(model.nodes), 2))  # (supports(): each layer in one node, the nodes in the layers' order)
    for i, regularizer in model._regularized():
        reg[i] = regularizer.coefficients()
    regularized = bool(model._regularized())
    opt = model.optimizer
    if len(opt._state) != opt._slots():
        opt.build(model.params)
    clip = np.array([opt.clipvalue or 0.0, opt.clipnorm or 0.0, opt.global_clipnorm or 0.0])
    dummy = np.empty(0, dt)

    def arguments(lists, order, first, last, lrs, stats, watch):
        """train_steps's arguments (``lists``: ys, gs, zs, dzs, aux, masks, temps)."""
        code, hyper, state = opt.compiled_spec()
        s = list(state) + [dummy] * (3 - len(state))
        return (x, labels, targets, order, first, last, batch, *tables, model.params, model.grads, model.state,
                segments, *lists, xbuf, lbuf, tbuf, loss_kind, float(model.loss_weight), reg, regularized, code,
                np.array(hyper, np.float64), lrs, int(opt.iterations), s[0], s[1], s[2], clip, stats, watch)

    def grad_arguments(lists, order, lo, b, weight):
        """grad_step's arguments, at the optimizer's current step."""
        return (x, labels, targets, order, lo, b, int(opt.iterations), *tables, model.params, model.grads,
                model.state, *lists, xbuf, lbuf, tbuf, loss_kind, float(weight))

    def apply_arguments(b):
        """apply_step's arguments, for the optimizer's next step."""
        code, hyper, state = opt.compiled_spec()
        s = list(state) + [dummy] * (3 - len(state))
        return (nodes, reg, regularized, model.params, model.grads, segments, code, np.array(hyper, np.float64),
                float(learning_rate_at(opt.learning_rate, opt.iterations)), int(opt.iterations) + 1, s[0], s[1], s[2],
                clip, int(b))

    if standby:
        from ...backends.numba_cpu import background

        # the typed lists' types, without building any (a typed List costs a compile to build)
        list_types = [numba.types.ListType(numba.typeof(dummy))] * 5 + [
            numba.types.ListType(numba.typeof(np.empty(0, np.uint8))), numba.types.ListType(numba.typeof(dummy))]
        placeholders = tuple(_ListPlaceholder(t) for t in list_types)
        order = np.empty(0, np.intp)
        probes = ([(C.grad_step, grad_arguments(placeholders, order, 0, 1, 1.0)), (C.apply_step, apply_arguments(1))]
                  if halves else [(C.train_steps, arguments(placeholders, order, 0, 0, np.empty(0), np.zeros(3),
                                                            False))])
        missing = []
        for dispatcher, probe in probes:
            sig = tuple(a.type if isinstance(a, _ListPlaceholder) else dispatcher.typeof_pyval(a) for a in probe)
            if not background.ready(dispatcher, sig):
                missing.append((dispatcher, sig))
        if missing:
            for dispatcher, sig in missing if submit else ():
                background.submit(dispatcher, sig, "the training steps")
            return None

    lists = _buffers(model, batch, dt, nodes, inputs, adds, needs)
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
