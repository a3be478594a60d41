"""Model (Keras's functional API) and Sequential: Keras's model API over fastbp's kernels.

A model is a list of nodes (:mod:`.functional`): each applies a layer to earlier nodes' outputs
(Sequential: a chain). All trainable weights live in one flat buffer (each layer's kernel, bias,
gamma, beta are views into it), and so do their gradients: one optimizer kernel call updates every
weight per step. Non-trainable weights (BatchNormalization's moving statistics) live in a second
flat buffer. Every buffer a training step needs is allocated once per batch size, so a step
allocates nothing. The backward pass runs the nodes in reverse; where a tensor feeds several
nodes, their gradients are added.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from .. import activations as A
from .. import formulas as F
from .. import kernels as K
from .._backend import select, selected_name
from . import losses as losses_mod
from . import optimizers as optimizers_mod
from . import functional
from .callbacks import CallbackList, FitPosition, History, ProgressBar, background_compiling
from .layers import Dense, Layer, Pass
from .serialization import register_serializable


@register_serializable
class Model:
    """Keras's functional model: ``Model(inputs=nn.Input(shape), outputs=tensor)``, the graph of
    layers between them (:mod:`.functional`), built at once. ``seed`` makes initialization and
    shuffling reproducible; ``backend`` picks the kernels' backend (None: the usual selection, see
    :func:`fastbp.use_backend`)."""

    def __init__(self, inputs=None, outputs=None, name=None, seed=None, backend=None, dtype=np.float32):
        if inputs is None or outputs is None:
            raise ValueError("Model: pass inputs= (an nn.Input) and outputs= (a layer's output tensor)")
        nodes = functional.graph(inputs, outputs)
        self._setup(name or "model", seed, backend, dtype)
        self.nodes = nodes
        self.layers = list({id(node.layer): node.layer for node in nodes}.values())
        self.widths = [functional._one("input", inputs).width]
        self.build(self.widths[0])

    def _setup(self, name, seed, backend, dtype):
        self.nodes = []
        self.name = name
        self.seed = seed
        self.backend = backend
        self.dtype = np.dtype(dtype)
        self._rng = np.random.default_rng(seed)
        self.built = False
        self.optimizer = self.loss = None
        self.loss_weight = 1.0
        self.metrics = []
        self._plans = {}
        self._thread_tuners = {}  # (threads, batch, enabled) -> ThreadTuner, kept across fit() calls
        self.stop_training = False
        self._fit_position = None  # where fit() is (a FitPosition), for BackupAndRestore
        self._resume_from = None  # a backup BackupAndRestore read (saving.Backup), for fit() to start at

    # ----------------------------------------------------------------------------- structure

    def _config_base(self) -> dict:
        seed = self.seed if self.seed is None or isinstance(self.seed, (int, np.integer)) else None
        return {"name": self.name, "seed": seed, "backend": self.backend, "dtype": self.dtype.name}

    def get_config(self) -> dict:
        """The graph (the input's width, the layers, and each node as [layer index, input slots]),
        serialized (:mod:`fastbp.nn.serialization`); a seed that is not an integer (a Generator)
        is saved as None (the random state is saved apart)."""
        index = {id(layer): k for k, layer in enumerate(self.layers)}
        return {"input_width": int(self.widths[0]), "layers": list(self.layers),
                "nodes": [[index[id(node.layer)], list(node.inputs)] for node in self.nodes], **self._config_base()}

    @classmethod
    def from_config(cls, config):
        """The model :meth:`get_config` describes, its layers called again on symbolic tensors."""
        config = dict(config)
        layers, nodes = config.pop("layers"), config.pop("nodes")
        inputs = functional.Input((config.pop("input_width"),))
        tensors = [inputs]
        for layer_index, slots in nodes:
            layer = layers[layer_index]
            args = [tensors[s] for s in slots]
            tensors.append(layer(args if layer.n_inputs is None else args[0]))
        return cls(inputs=inputs, outputs=tensors[-1], **config)

    def _connect(self, n_in: int) -> None:
        """Give the nodes their input width (a functional model was connected when it was made)."""
        if n_in != self.widths[0]:
            raise ValueError(f"{type(self).__name__}: the model takes {self.widths[0]} input features; got {n_in}")

    def build(self, n_in: int | None = None) -> None:
        """Fix every layer's widths and initialize the weights: the trainable ones in one flat
        buffer (``params``, with ``grads`` beside it), the non-trainable ones in another (``state``)."""
        if self.built:
            return
        self._connect(n_in)
        self.layers = list({id(node.layer): node.layer for node in self.nodes}.values())
        self._graph_plan()
        sizes = [int(np.prod(s)) for layer in self.layers for s in layer.params_shapes()]
        state_sizes = [int(np.prod(s)) for layer in self.layers for s in layer.state_shapes()]
        self.params = np.zeros(sum(sizes), self.dtype)
        self.state = np.zeros(sum(state_sizes), self.dtype)
        ends = np.cumsum([0] + sizes)
        self.segments = [(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:])]
        ends = np.cumsum([0] + state_sizes)
        self._state_segments = [(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:])]
        self._bind_gradients(np.zeros_like(self.params), weights=True)
        for layer in self.layers:
            for view, value in zip(layer.weights, layer.init_params(self._rng, self.dtype)
                                   + layer.init_state(self.dtype)):
                view[...] = value
        self.built = True

    def _graph_plan(self) -> None:
        """From the nodes: the width of every slot, which slots need a gradient (those that depend
        on a trainable weight), which gradients a node adds rather than writes (a slot that feeds
        several nodes), and which nodes add into the weight gradients of a layer used twice."""
        self.widths = [self.widths[0]]
        for node in self.nodes:
            self.widths.append(node.layer.output_width(self.widths[node.inputs[0]]))
        needs = [False]
        for node in self.nodes:
            needs.append(bool(node.layer.params_shapes()) or any(needs[s] for s in node.inputs))
        self._needs_grad = needs
        written, seen = set(), set()
        self._adds_grad, self._adds_weight_grads = [None] * len(self.nodes), [False] * len(self.nodes)
        for i in range(len(self.nodes) - 1, -1, -1):  # the backward order
            node = self.nodes[i]
            adds = []
            for s in node.inputs:
                adds.append(needs[s] and s in written)
                written.add(s)
            self._adds_grad[i] = adds
            self._adds_weight_grads[i] = id(node.layer) in seen
            seen.add(id(node.layer))

    @property
    def _chain(self) -> bool:
        """True when node i reads the output of node i - 1 (or the input) and no layer repeats: a
        plain stack of layers."""
        return all(node.inputs == (i,) for i, node in enumerate(self.nodes)) and len(self.layers) == len(self.nodes)

    # --------------------------------------------------------------------------------- compile

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None) -> None:
        """Choose the optimizer (a name or an object), the loss, the metrics (["accuracy"]) and
        Keras's ``loss_weights`` (a number, or a list of one for the model's one output: the loss
        and its gradient are scaled by it; regularization penalties are not)."""
        if loss is None:
            raise ValueError(f"{type(self).__name__}.compile: a loss is required")
        self.optimizer = optimizers_mod.get(optimizer)
        self.loss = losses_mod.get(loss)
        self.loss_weight = _loss_weight(loss_weights)
        self.metrics = list(metrics or [])
        for m in self.metrics:
            if m not in ("accuracy", "acc"):
                raise ValueError(f"{type(self).__name__}.compile: unknown metric {m!r}; supported: 'accuracy'")
        last = self._output_layer.activation if self.layers else A.get("linear")
        if self.loss.needs_logits:
            if self.loss.from_logits and last.code != A.LINEAR:
                raise ValueError(f"{self.loss.name}(from_logits=True) needs a linear last layer; it is {last.name}")
            fused = self.loss.output_activation
            if not self.loss.from_logits and last.name != fused:
                raise ValueError(f"{self.loss.name} on probabilities needs a {fused} last layer (it is "
                                 f"{last.name}); or use a linear last layer with from_logits=True")
        self.optimizer.iterations = 0
        self.optimizer._state = ()

    @property
    def _fused_output(self) -> bool:
        """Softmax output + cross-entropy, or sigmoid output + binary cross-entropy: the last layer
        computes logits; the loss kernel does the rest."""
        return self.loss is not None and self.loss.needs_logits and not self.loss.from_logits

    @property
    def _binary(self) -> bool:
        return isinstance(self.loss, losses_mod.BinaryCrossentropy)

    @property
    def _output_layer(self):
        """The layer whose output is the model's."""
        return self.nodes[-1].layer if self.nodes else self.layers[-1]

    # ----------------------------------------------------------------------------- buffers

    def _plan(self, batch: int) -> dict:
        """Every buffer a step with this batch size needs: each node's output ("y") and what its
        layer keeps for the backward pass ("buffers"), each slot's gradient ("g": the last one
        receives the loss's), and the scratch arrays of gradients that are added ("add": per
        node input, "add_w": per node whose layer is used again)."""
        plan = self._plans.get(batch)
        if plan is None:
            w, dt = self.widths, self.dtype
            nodes = range(len(self.nodes))
            plan = {
                "x": np.empty((batch, w[0]), dt),
                "y": [np.empty((batch, w[i + 1]), dt) for i in nodes],
                "buffers": [self.nodes[i].layer.buffers(batch, dt, self._act(i)) for i in nodes],
                "g": [None] + [np.empty((batch, w[s]), dt) if self._needs_grad[s] or s == len(w) - 1 else None
                               for s in range(1, len(w))],
                "add": [[np.empty((batch, w[s]), dt) if adds else None
                         for s, adds in zip(self.nodes[i].inputs, self._adds_grad[i])] for i in nodes],
                "add_w": [[np.empty(shape, dt) for shape in self.nodes[i].layer.params_shapes()]
                          if self._adds_weight_grads[i] else None for i in nodes],
            }
            self._plans = {batch: plan}  # keep one: the training batch (the last partial batch slices it)
        return plan

    def _act(self, i: int):
        """The activation node i applies while training (logits for a fused softmax output)."""
        act = self.nodes[i].layer.activation
        if i == len(self.nodes) - 1 and self._fused_output:
            return A.get("linear")
        return act

    def _step_number(self) -> int:
        """The global step the next update is (dropout draws its masks per step)."""
        return int(self.optimizer.iterations) if self.optimizer is not None else 0

    # ------------------------------------------------------------------------------ passes

    def _forward(self, x, plan, n, training):
        step = self._step_number()
        values = [x]
        for i, node in enumerate(self.nodes):
            y = plan["y"][i][:n]
            node.layer.forward([values[s] for s in node.inputs], y, plan["buffers"][i],
                               Pass(self._act(i), self._kernel_backend, training, step))
            values.append(y)
        return values[-1]

    def _loss(self, out, target, grad, weight=None):
        """The loss of the batch times ``weight`` (default: compile's loss_weights); its gradient
        into ``grad`` (when not None)."""
        need = grad is not None
        if self._binary:
            loss = K.sigmoid_cross_entropy(out, target, dlogits=grad, need_grad=need, backend=self._kernel_backend)[0]
        elif self.loss.needs_logits:
            loss = K.softmax_cross_entropy(out, target, dlogits=grad, need_grad=need, backend=self._kernel_backend)[0]
        else:
            loss = K.mse_loss(out, target, dpred=grad, need_grad=need, backend=self._kernel_backend)[0]
        weight = self.loss_weight if weight is None else weight
        if weight != 1.0:
            if need:
                np.multiply(grad, grad.dtype.type(weight), out=grad)
            loss *= weight
        return loss

    def _regularized(self):
        """(layer index, regularizer) of every Dense layer with a kernel regularizer."""
        return [(i, layer.kernel_regularizer) for i, layer in enumerate(self.layers)
                if isinstance(layer, Dense) and layer.kernel_regularizer is not None]

    def _penalty(self, batch):
        """The regularization penalty sum_l c_l(batch) / 2 * sum(kernel_l^2) (float64)."""
        be = select(self._kernel_backend)
        return sum(0.5 * reg.coefficient(batch) * be.sum_of_squares([self.layers[i].kernel])
                   for i, reg in self._regularized())

    def _regularize(self, batch):
        """Add each regularizer's gradient c(batch) * kernel to the kernel's gradient (after the
        backward pass, before clipping); return the penalty."""
        penalty = self._penalty(batch)
        for i, reg in self._regularized():
            layer = self.layers[i]
            dw = layer.grads[0]
            dw[...] = F.l2_gradient(dw, layer.kernel, dw.dtype.type(reg.coefficient(batch)))
        return penalty

    def _backward(self, x, plan, n):
        """The gradients of every trainable weight, from the loss's gradient in plan["g"][-1]: the
        nodes in reverse, each slot's gradient written by the first node that reads it (in this
        order) and added to by the others."""
        step = self._step_number()
        values = [x] + [y[:n] for y in plan["y"]]
        g = plan["g"]
        for i in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[i]
            layer = node.layer
            if not self._needs_grad[i + 1] and i != len(self.nodes) - 1:
                continue
            dxs = []
            for s, add in zip(node.inputs, plan["add"][i]):
                dxs.append(None if not self._needs_grad[s] else (add if add is not None else g[s])[:n])
            grads = plan["add_w"][i] if plan["add_w"][i] is not None else layer.grads
            layer.backward(g[i + 1][:n], [values[s] for s in node.inputs], values[i + 1], plan["buffers"][i], dxs,
                           grads, Pass(self._act(i), self._kernel_backend, True, step))
            for s, add in zip(node.inputs, plan["add"][i]):
                if add is not None:
                    g[s][:n] += add[:n]
            if plan["add_w"][i] is not None:
                for total, part in zip(layer.grads, plan["add_w"][i]):
                    total += part

    def _metric_counts(self, out, target):
        """Number of correct predictions in the batch (argmax of outputs; logits give the same).
        Binary cross-entropy: Keras's binary accuracy, the fraction of the row's outputs where
        (sigmoid > 0.5, i.e. logit > 0) equals the 0/1 target, summed over rows."""
        if self._binary:  # (out holds logits: binary cross-entropy is always computed from them)
            return float(np.count_nonzero(target == (out > 0))) / out.shape[1]
        pred = out.argmax(axis=1)
        truth = target if target.ndim == 1 else target.argmax(axis=1)
        return int(np.count_nonzero(pred == truth))

    # -------------------------------------------------------------------------------- data

    def _prepare(self, x, y=None):
        x = np.asarray(x)
        if x.ndim == 1:
            raise ValueError(f"expected inputs of shape (samples, features); got {x.shape}")
        if x.ndim > 2:
            x = x.reshape(len(x), -1)
        x = np.ascontiguousarray(x, dtype=self.dtype)
        if not self.built:
            self.build(x.shape[1])
        if x.shape[1] != self.widths[0]:
            raise ValueError(f"expected {self.widths[0]} input features; got {x.shape[1]}")
        if y is None:
            return x, None
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"x and y have different numbers of samples: {len(x)} and {len(y)}")
        if self.loss is not None and getattr(self.loss, "sparse", False):
            y = np.ascontiguousarray(y.reshape(len(y)), dtype=np.intp)
        else:
            y = np.ascontiguousarray(y.reshape(len(y), -1), dtype=self.dtype)
            if y.shape[1] != self.widths[-1]:
                raise ValueError(f"expected targets with {self.widths[-1]} columns; got {y.shape[1]}")
        return x, y

    # ---------------------------------------------------------------------------- training

    def fit(self, x, y, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0, distribution=None) -> History:
        """Train for epochs ``initial_epoch`` .. ``epochs - 1`` over (x, y) in shuffled batches
        (Keras's semantics); return the History. Callbacks (:mod:`fastbp.nn.callbacks`,
        :mod:`fastbp.nn.checkpoints`) run at epoch ends and, where they ask, after steps; a
        :class:`~fastbp.nn.checkpoints.BackupAndRestore` backup makes fit() resume where it was.
        ``distribution``: a :class:`fastbp.distributed.DataParallel` to train on every rank of an
        MPI job, ``batch_size`` being the global batch."""
        dp = distribution
        callbacks = list(callbacks or [])

        def prepare():
            if self.optimizer is None:
                raise RuntimeError(f"{type(self).__name__}.fit: call compile() first")
            if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, (int, np.integer)) or initial_epoch < 0:
                raise ValueError(f"fit: initial_epoch must be an integer >= 0; got {initial_epoch!r}")
            if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
                raise ValueError(f"fit: batch_size must be a positive integer; got {batch_size!r}")
            xs, ys = self._prepare(x, y)
            val = validation_data
            if val is None and validation_split:
                if not 0 < validation_split < 1:
                    raise ValueError(f"validation_split must be in (0, 1); got {validation_split}")
                cut = int(len(xs) * (1 - validation_split))
                val = (xs[cut:], ys[cut:])
                xs, ys = xs[:cut], ys[:cut]
            if dp is not None:
                dp.check_callbacks(callbacks)
            return xs, ys, val

        if dp is None:
            x, y, validation_data = prepare()
            n = len(x)
            steps = math.ceil(n / batch_size)
        else:  # a rank that fails here makes every rank raise (the others would wait in a collective)
            x, y, validation_data = dp.on_every_rank(prepare)
            dp.check_fit(self, x, y, batch_size, epochs, initial_epoch, shuffle, validation_data, callbacks)
            callbacks = dp.callbacks_for_this_rank(callbacks)
            verbose = verbose if dp.rank == 0 else 0
            steps, n = dp.steps_per_epoch(len(x), batch_size)
        with dp.aborting() if dp is not None else contextlib.nullcontext():
            try:
                return self._fit_epochs(x, y, batch_size, epochs, verbose, callbacks, validation_data, shuffle,
                                        initial_epoch, dp, steps, n)
            finally:
                self._fit_backend = None  # (the path's backend, see _epoch_runner)

    def _fit_epochs(self, x, y, batch_size, epochs, verbose, callbacks, validation_data, shuffle, initial_epoch, dp,
                    steps, n):
        """fit()'s epochs: ``steps`` steps of ``batch_size`` rows over ``n`` rows (all ranks' rows
        under ``dp``) each."""
        history = History()
        cbs = CallbackList([history] + callbacks, self, steps, batch_size, n,
                           lambda totals, seen: self._logs(totals[0] / seen, totals[1] / seen))
        self.stop_training = False
        self._resume_from = None
        cbs.call("on_train_begin", None)
        backup, self._resume_from = self._resume_from, None  # read by BackupAndRestore
        position = None
        if backup is not None:
            if backup.position is not None:
                self._check_resume(backup.position, len(x), steps)
            backup.apply()
            position = backup.position
        if dp is not None:
            position = dp.broadcast_state(self, position)
        if position is None:
            position = FitPosition(int(initial_epoch), 0, None, (0.0, 0.0, 0.0), int(initial_epoch) * steps)
        if dp is not None:
            run_epoch = dp.epoch_runner(self, x, y, batch_size, steps, n)
        else:
            run_epoch = self._epoch_runner(x, y, batch_size)
        history.params = {"verbose": verbose, "epochs": epochs, "steps": steps, "path": run_epoch.path}
        progress = ProgressBar(verbose, epochs, steps)
        if verbose:
            progress.announce(run_epoch.path, background_compiling if run_epoch.compiling else None)
        global_step = position.global_step
        for epoch in range(position.epoch, epochs):
            resumed = epoch == position.epoch and position.order is not None
            first, totals = (position.step, position.totals) if resumed else (0, (0.0, 0.0, 0.0))
            cbs.call("on_epoch_begin", epoch, None)
            progress.epoch_begin(epoch, first)
            if resumed:
                order = position.order
            elif dp is not None:
                order = dp.epoch_order(self, len(x), shuffle)
            else:
                order = self._rng.permutation(n) if shuffle else np.arange(n)
            cbs.start_epoch(epoch, order, first, global_step)
            self._fit_position = FitPosition(epoch, first, order, totals, global_step)
            total_loss, correct, _ = run_epoch(order, progress if verbose == 1 else None, first, totals, cbs)
            done = self._fit_position  # recorded after every chunk of steps
            global_step = done.global_step
            seen = max(1, min(done.step * batch_size, n))  # (fewer than n when training stopped mid-epoch)
            logs = self._logs(total_loss / seen, correct / seen)
            if validation_data is not None:
                val = self.evaluate(*validation_data, batch_size=batch_size, verbose=0, return_dict=True,
                                    distribution=dp)
                logs.update({f"val_{k}": v for k, v in val.items()})
            progress.epoch_end(epoch, logs)
            self._fit_position = FitPosition(epoch + 1, 0, None, (0.0, 0.0, 0.0), global_step)
            cbs.call("on_epoch_end", epoch, logs)
            if dp is not None:  # every rank stops if one does
                self.stop_training = dp.any(self.stop_training)
            if self.stop_training:
                break
        cbs.call("on_train_end", None)
        self._fit_position = None
        return history

    def _check_resume(self, position, n, steps):
        """A restored position must fit this fit() call's data: the same number of samples and
        steps per epoch, and an order that is a permutation of the samples."""
        if position.step > steps or position.global_step < 0 or position.epoch < 0:
            raise ValueError(f"fit: the backup's position (epoch {position.epoch}, step {position.step}) does not "
                             f"fit {steps} steps per epoch; resume with the same data and batch_size")
        if position.order is not None:
            order = position.order
            if len(order) != n or not np.array_equal(np.sort(order), np.arange(n)):
                raise ValueError(f"fit: the backup's sample order is not a permutation of the {n} samples; resume "
                                 "with the same data, validation_split and batch_size")

    def _epoch_runner(self, x, y, batch_size, halves=False):
        """A function ``run(order, progress=None, first=0, totals=(0, 0, 0), hooks=None) -> (sum of
        batch losses x rows, correct, the regularization penalties' part of that sum)`` that trains
        one epoch (its steps from ``first`` on, the sums starting at ``totals``; ``hooks`` a
        CallbackList) over the prepared (x, y) in the batches of ``order``, in compiled steps
        where the model allows (:meth:`_use_compiled`), else in the Python loop over the kernels;
        ``run.steps`` is the number of steps per epoch. ``run.grad(order, lo, b, weight) -> (loss,
        correct)`` and ``run.apply(b) -> penalty x b`` are one step's two halves (the gradient of
        x[order[lo:lo + b]], the update), for loops that act between them (fastbp.distributed, which
        says so with ``halves=True``);
        ``run.blas`` is the context they run in; ``run.path`` says in words which path this is (one
        for the whole run: Numba's compiled steps, or a Python loop over the kernels, on the
        cython backend while Numba compiles its steps in the background: ``run.compiling``).
        Used by fit() and fastbp.sklearn."""
        n = len(x)
        steps = math.ceil(n / batch_size)
        self._plan(batch_size)  # (evaluate and predict after fit use the training batch's buffers)
        self._fit_backend = None
        compiled = self._compiled(x, y, batch_size, halves) if self._use_compiled() else None
        if compiled is not None:
            def run(order, progress=None, first=0, totals=(0.0, 0.0, 0.0), hooks=None):
                return compiled(order, steps, progress, first, totals, hooks)
            run.grad, run.apply, run.blas = compiled.grad, compiled.apply, compiled.blas
            run.path, run.compiling = "numba compiled steps", False
        else:
            run_compiling = self._use_compiled()  # (then Numba compiles its steps in the background)
            if run_compiling:
                self._fit_backend = "cython"
            grad, apply = self._python_step(x, y, batch_size)

            def run(order, progress=None, first=0, totals=(0.0, 0.0, 0.0), hooks=None):
                total_loss, correct, penalties = totals
                for step in range(first, steps):
                    if hooks is not None:
                        hooks.begin(step)
                    lo = step * batch_size
                    b = min(n, lo + batch_size) - lo
                    loss, right = grad(order, lo, b, self.loss_weight)
                    total_loss += loss * b
                    correct += right
                    penalty = apply(b)
                    total_loss += penalty
                    penalties += penalty
                    if progress is not None:
                        seen = min((step + 1) * batch_size, n)
                        progress.update(1, self._logs(total_loss / seen, correct / seen))
                    if hooks is not None and hooks.end(step + 1, (total_loss, correct, penalties)):
                        break
                return total_loss, correct, penalties
            run.grad, run.apply, run.blas = grad, apply, contextlib.nullcontext()
            run.compiling = run_compiling
            run.path = (f"{selected_name(self._kernel_backend)} kernels in a Python loop"
                        + (" (numba compiles its compiled steps in the background meanwhile)" if run_compiling else ""))
        run.steps = steps
        return run

    def _python_step(self, x, y, batch_size):
        """(grad, apply) of :meth:`_epoch_runner` on the kernels, buffers for ``batch_size`` rows."""
        plan = self._plan(batch_size)
        regularized = bool(self._regularized())

        def grad(order, lo, b, weight):
            idx = order[lo:lo + b]
            xb = plan["x"][:b]
            np.take(x, idx, axis=0, out=xb)
            yb = y[idx]
            out = self._forward(xb, plan, b, training=True)
            correct = self._metric_counts(out, yb) if self.metrics else 0
            loss = self._loss(out, yb, plan["g"][-1][:b], weight)
            self._backward(xb, plan, b)
            return loss, correct

        def apply(b):
            penalty = self._regularize(b) * b if regularized else 0.0
            self.optimizer.apply(self.params, self.grads, self.segments, backend=self._kernel_backend)
            return penalty
        return grad, apply

    def _loss_and_gradient(self, x, y):
        """Full-batch objective for deterministic solvers (L-BFGS): (the weighted loss, the
        penalty) at the current weights, the gradient of their sum written into ``self.grads``.
        ``x``, ``y`` prepared (:meth:`_prepare`); no optimizer step."""
        n = len(x)
        plan = self._plan(n)
        out = self._forward(x, plan, n, training=True)
        loss = self._loss(out, y, plan["g"][-1][:n])
        self._backward(x, plan, n)
        return loss, self._regularize(n)

    def __getstate__(self):
        """Pickled without the per-batch buffers and thread timings (caches rebuilt on use)."""
        state = dict(self.__dict__)
        state["_plans"], state["_thread_tuners"] = {}, {}
        state.pop("_allreduce_buffer", None)
        return state

    def __setstate__(self, state):
        """Unpickled with writable buffers of its own (a pickle may be loaded read-only, memory
        mapped) and each layer's weights and gradients views into them again (pickle stores
        every view as a separate array)."""
        self.__dict__.update(state)
        if self.built:
            self.params = np.array(self.params)
            self.state = np.array(self.state)
            self._bind_gradients(np.array(self.grads), weights=True)
        if self.optimizer is not None:
            self.optimizer._state = tuple(np.array(s) for s in self.optimizer._state)

    def _bind_gradients(self, grads, weights=False):
        """Make ``grads`` (flat, one element per parameter) the model's gradient buffer, each layer's
        gradients views into it (and, with ``weights``, each layer's weights views into ``params``
        and ``state``)."""
        self.grads = grads
        segments, state_segments = iter(self.segments), iter(self._state_segments)
        for layer in self.layers:
            if weights:
                layer.weights = []
            layer.grads = []
            for shape in layer.params_shapes():
                start, stop = next(segments)
                if weights:
                    layer.weights.append(self.params[start:stop].reshape(shape))
                layer.grads.append(self.grads[start:stop].reshape(shape))
            if weights:
                for shape in layer.state_shapes():
                    start, stop = next(state_segments)
                    layer.weights.append(self.state[start:stop].reshape(shape))

    # ------------------------------------------------------------- compiled training (numba)

    @property
    def _kernel_backend(self):
        """The backend of the model's kernel calls: the one the current fit() path runs on (see
        :meth:`_epoch_runner`), else the model's ``backend``."""
        return self.__dict__.get("_fit_backend") or self.backend

    def _use_compiled(self) -> bool:
        """Whole steps run in compiled code (:mod:`fastbp.nn.compiled`) where the model allows."""
        from .compiled import supports

        return supports(self)

    def _standby(self) -> bool:
        """While Numba has not compiled the training steps yet, train on the cython kernels instead
        of waiting: when the backend is chosen automatically, background compilation is on
        (``FASTBP_BACKGROUND_COMPILE``) and the cython backend is available."""
        from .._backend import is_automatic, is_available, standby_enabled

        return is_automatic(self.backend) and standby_enabled() and is_available("cython")

    def _compiled(self, x, y, batch, halves=False):
        """A function order -> (sum of losses x rows, correct) running an epoch in compiled code;
        None when :meth:`_standby` and Numba's code is still to be compiled (it is then submitted
        for background compilation). ``halves``: see :func:`fastbp.nn.compiled.lowering.lower`."""
        from .compiled import lower

        return lower(self, x, y, batch, standby=self._standby(), halves=halves)

    def _logs(self, loss, accuracy):
        logs = {"loss": loss}
        if self.metrics:
            logs["accuracy"] = accuracy
        return logs

    # ------------------------------------------------------------------------ evaluation

    def evaluate(self, x, y, batch_size=32, verbose=1, return_dict=False, distribution=None):
        """Mean loss (and accuracy) over (x, y): ``loss`` or ``[loss, accuracy]`` like Keras.
        ``distribution``: each rank evaluates its share (replicated) or its own data (sharded),
        and the sums are combined: every rank gets the result over all rows."""
        x, y = self._prepare(x, y)
        if distribution is not None:
            x, y = distribution.local_rows(x, y)
        n = len(x)
        total_loss = 0.0
        correct = 0
        plan = self._plan(max(batch_size, self._training_batch()))
        with distribution.aborting() if distribution is not None else contextlib.nullcontext():
            for start in range(0, n, plan["x"].shape[0]):
                xb = x[start:start + plan["x"].shape[0]]
                yb = y[start:start + plan["x"].shape[0]]
                out = self._forward(xb, plan, len(xb), training=False)
                total_loss += (self._loss(out, yb, None) + self._penalty(len(xb))) * len(xb)
                if self.metrics:
                    correct += self._metric_counts(out, yb)
            if distribution is not None:
                total_loss, correct, n = (float(v) for v in distribution.sum([total_loss, correct, n]))
        logs = self._logs(total_loss / n, correct / n)
        if verbose and (distribution is None or distribution.rank == 0):
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        return list(logs.values()) if self.metrics else logs["loss"]

    def _training_batch(self):
        return next(iter(self._plans), 0)

    def predict(self, x, batch_size=32, verbose=0, distribution=None):
        """The model's outputs (probabilities for a softmax output). ``distribution``: replicated,
        each rank predicts its share and every rank gets all rows; sharded, each rank its own."""
        x, _ = self._prepare(x)
        rows_in = len(x)
        if distribution is not None:
            (x,) = distribution.local_rows(x)
        plan = self._plan(max(batch_size, self._training_batch()))
        rows = plan["x"].shape[0]
        out = np.empty((len(x), self.widths[-1]), self.dtype)
        with distribution.aborting() if distribution is not None else contextlib.nullcontext():
            for start in range(0, len(x), rows):
                xb = x[start:start + rows]
                res = self._forward(xb, plan, len(xb), training=False)
                if self._fused_output:
                    K.activation_forward(res, self.loss.output_activation, out=out[start:start + len(xb)],
                                         backend=self._kernel_backend)
                else:
                    out[start:start + len(xb)] = res
            if distribution is not None:
                out = distribution.gather_rows(out, rows_in)
        return out

    # ------------------------------------------------------------------------------ weights

    def count_params(self) -> int:
        """Every weight, trainable or not (Keras's count)."""
        return int(self.params.size + self.state.size) if self.built else 0

    def get_weights(self) -> list:
        self.build()
        return [w.copy() for layer in self.layers for w in layer.weights]

    def set_weights(self, weights) -> None:
        self.build()
        mine = [w for layer in self.layers for w in layer.weights]
        if len(weights) != len(mine):
            raise ValueError(f"set_weights: expected {len(mine)} arrays; got {len(weights)}")
        for target, value in zip(mine, weights):
            value = np.asarray(value)
            if value.shape != target.shape:
                raise ValueError(f"set_weights: expected shape {target.shape}; got {value.shape}")
            target[...] = value

    def save(self, path) -> None:
        """Write the whole model to ``path`` atomically: architecture, weights, compile settings,
        optimizer state and random state (:mod:`fastbp.nn.saving`); ``nn.load_model(path)``
        continues training exactly where this model is."""
        from . import saving

        saving.save_model(self, path)

    def save_weights(self, path) -> None:
        """Write the weights to ``path`` atomically (a zip of ``arr_0.npy``, ... in layer order with
        their checksums; ``np.load`` reads it). The path is used as given."""
        from . import saving

        saving.save_weights(self, path)

    def load_weights(self, path) -> None:
        """Set the weights from a :meth:`save_weights` file; a file that is corrupted or whose
        arrays do not fit this model is a ValueError and changes nothing."""
        from . import saving

        saving.load_weights(self, path)

    def summary(self, print_fn=print) -> None:
        self.build()
        graph = not self._chain
        names = {id(node.layer): node.layer.name or f"{_snake_case(type(node.layer).__name__)}_{i}"
                 for i, node in reversed(list(enumerate(self.nodes)))}
        lines = [f'Model: "{self.name}"', f"{'Layer (type)':<44}{'Output Shape':<16}{'Param #':>10}"
                 + ("  Connected to" if graph else ""), "=" * (70 + 24 * graph)]
        for i, node in enumerate(self.nodes):
            layer = node.layer
            kind = type(layer).__name__
            act = f", {layer.activation.name}" if isinstance(layer, Dense) or kind == "Activation" else ""
            params = sum(int(np.prod(s)) for s in layer.params_shapes() + layer.state_shapes())
            line = f"{names[id(layer)] + f' ({kind}{act})':<44}{str((None, self.widths[i + 1])):<16}{params:>10,}"
            if graph:
                line += "  " + ", ".join("input" if s == 0 else names[id(self.nodes[s - 1].layer)] for s in node.inputs)
            lines.append(line)
        trainable = int(self.params.size)
        lines += ["=" * (70 + 24 * graph), f"Total params: {self.count_params():,}", f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {self.count_params() - trainable:,}"]
        print_fn("\n".join(lines))


@register_serializable
class Sequential(Model):
    """A stack of layers, each reading the previous one's output (Keras's Sequential)."""

    def __init__(self, layers=None, name=None, seed=None, backend=None, dtype=np.float32):
        self._setup(name or "sequential", seed, backend, dtype)
        self.layers: list[Layer] = []
        for layer in layers or []:
            self.add(layer)

    def get_config(self) -> dict:
        """The constructor's arguments, layers serialized (:mod:`fastbp.nn.serialization`); a seed
        that is not an integer (a Generator) is saved as None (the random state is saved apart)."""
        return {"layers": list(self.layers), **self._config_base()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def add(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a layer (Dense, Activation, ...); got {type(layer).__name__}")
        if layer.n_inputs != 1:
            raise ValueError(f"Sequential.add: layer {layer.label!r} ({type(layer).__name__}) takes several inputs; "
                             "build the model with the functional API (nn.Input, nn.Model)")
        if any(layer is other for other in self.layers):
            raise ValueError(f"Sequential.add: layer {layer.label!r} is in the model already")
        if self.built:
            raise RuntimeError("Sequential.add: the model is already built")
        self.layers.append(layer)

    def _connect(self, n_in):
        """The chain of nodes, each layer built for the width of the one before."""
        if not self.layers:
            raise ValueError("Sequential.build: the model has no layers")
        if n_in is None:
            shape = self.layers[0].input_shape
            if shape is None:
                raise ValueError("Sequential.build: give the first layer an input_shape, or call fit() first")
            n_in = int(np.prod(shape))
        self.widths = [n_in]
        for layer in self.layers:
            self.widths.append(layer.build(self.widths[-1]))
        self.nodes = [functional.Node(layer, (i,)) for i, layer in enumerate(self.layers)]


def _snake_case(name: str) -> str:
    """BatchNormalization -> batch_normalization (Keras's default layer names)."""
    return "".join("_" + c.lower() if c.isupper() and k else c.lower() for k, c in enumerate(name))


def _loss_weight(loss_weights) -> float:
    """Keras's loss_weights for a one-output model: None (1), a number, or a list/tuple of one."""
    if loss_weights is None:
        return 1.0
    value = loss_weights
    if isinstance(loss_weights, (list, tuple)):
        if len(loss_weights) != 1:
            raise ValueError(f"compile: loss_weights must hold one weight for the model's one output; got {loss_weights!r}")
        value = loss_weights[0]
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"compile: loss_weights must be a finite number >= 0; got {loss_weights!r}")
    return float(value)

