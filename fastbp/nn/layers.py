"""Layers: Dense, Activation, Dropout, LayerNormalization, BatchNormalization and Add.

A layer maps one (batch, n_in) input (Add: two or more of one width) to a (batch, width) output.
Its trainable weights are views into the model's flat parameter buffer (their gradients views into
the flat gradient buffer); its non-trainable weights (BatchNormalization's moving statistics) views
into the model's flat state buffer. ``forward`` and ``backward`` run one layer of a step on the
kernels of :mod:`fastbp.kernels` into buffers the model allocated once (:meth:`Layer.buffers`).

Layers are called on symbolic tensors to build a functional model (:mod:`fastbp.nn.functional`):
``h = nn.Dense(64, activation="relu")(inputs)``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import activations as A
from .. import formulas as F
from .. import kernels as K
from . import initializers, regularizers
from .serialization import register_serializable


class Pass(NamedTuple):
    """What a layer's forward or backward needs to know about the step: the activation it applies
    (the model replaces a softmax output fused into the loss by linear), the kernels' backend,
    whether it is training, and the global step number (dropout masks are drawn per step)."""

    activation: A.Activation
    backend: object
    training: bool
    step: int


class Layer:
    """The base class: a layer of one input whose output has its input's width, no weights."""

    activation = A.get("linear")
    alpha = A.DEFAULT_ALPHA
    kernel_regularizer = None
    #: inputs the layer takes: 1, or None for two or more of one width (Add)
    n_inputs = 1

    def __init__(self, input_shape=None, name=None):
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.name = name
        self.n_in = None
        self.weights = []  # views into the model's flat parameter (then state) buffers, set by the model
        self.grads = []  # views into the model's flat gradient buffer: one per trainable weight

    def __call__(self, inputs):
        """The layer applied to symbolic tensors (:func:`fastbp.nn.Input` and the outputs of other
        layers): a new symbolic tensor, for :class:`fastbp.nn.Model`."""
        from .functional import call_layer

        return call_layer(self, inputs)

    @property
    def label(self) -> str:
        """The layer's name, or its class name where it has none (for messages)."""
        return self.name or type(self).__name__

    def build(self, n_in: int) -> int:
        """Fix the input width; return the output width. A layer built before keeps its width: one
        reused on another width is refused (its weights have one shape)."""
        if self.n_in is not None and self.n_in != n_in:
            raise ValueError(f"layer {self.label!r} was built for inputs of width {self.n_in} and is reused on "
                             f"width {n_in}; a layer (and its weights) has one input width")
        self.n_in = n_in
        return self.output_width(n_in)

    def output_width(self, n_in: int) -> int:
        return n_in

    def params_shapes(self):
        """The trainable weights' shapes (in the flat parameter buffer)."""
        return []

    def init_params(self, rng, dtype):
        return []

    def state_shapes(self):
        """The non-trainable weights' shapes (in the flat state buffer)."""
        return []

    def init_state(self, dtype):
        return []

    def buffers(self, batch, dtype, act):
        """{name: array} the layer keeps between its forward and backward pass for ``batch`` rows,
        applying activation ``act`` (allocated once by the model)."""
        return {}

    def forward(self, xs, y, buffers, ctx: Pass):
        """y = the layer applied to its inputs ``xs`` (n rows each); ``buffers`` sliced to n rows."""
        np.copyto(y, xs[0])

    def backward(self, g, xs, y, buffers, dxs, grads, ctx: Pass):
        """Given g = dL/dy: the gradient of every input into ``dxs`` (None where not needed) and of
        every trainable weight into ``grads`` (the layer's gradient views, or buffers the model
        adds into them). ``g`` may be overwritten."""
        if dxs[0] is not None:
            np.copyto(dxs[0], g)

    def get_config(self) -> dict:
        """The constructor's arguments (what :func:`fastbp.nn.serialization.serialize` saves)."""
        return {"input_shape": list(self.input_shape) if self.input_shape is not None else None, "name": self.name}


def _saved_name(act):
    return "y" if act.needs == A.NEEDS_OUTPUT else "z" if act.needs == A.NEEDS_PREACT else None


@register_serializable
class Dense(Layer):
    """y = activation(x @ kernel + bias); kernel (in, units), bias (units,). ``kernel_regularizer``
    (:mod:`fastbp.nn.regularizers`, or 'l2') adds a penalty on the kernel to the loss."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", input_shape=None, name=None, alpha=A.DEFAULT_ALPHA,
                 kernel_regularizer=None):
        super().__init__(input_shape, name)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"Dense: units must be a positive integer; got {units!r}")
        self.units = int(units)
        self.activation = A.get(activation)
        self.alpha = alpha
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)

    def output_width(self, n_in):
        return self.units

    def params_shapes(self):
        return [(self.n_in, self.units)] + ([(self.units,)] if self.use_bias else [])

    def init_params(self, rng, dtype):
        params = [self.kernel_initializer((self.n_in, self.units), rng, dtype)]
        if self.use_bias:
            params.append(self.bias_initializer((self.units,), rng, dtype))
        return params

    def buffers(self, batch, dtype, act):
        out = {"dz": np.empty((batch, self.units), dtype)}
        if act.needs == A.NEEDS_PREACT:
            out["z"] = np.empty((batch, self.units), dtype)
        return out

    def forward(self, xs, y, buffers, ctx):
        z = buffers["z"][:len(y)] if ctx.training and "z" in buffers else None
        K.linear_forward(xs[0], self.kernel, self.bias, ctx.activation.name, alpha=self.alpha, out=y, preact_out=z,
                         backend=ctx.backend)

    def backward(self, g, xs, y, buffers, dxs, grads, ctx):
        act = ctx.activation
        n = len(y)
        saved = {"y": y, "z": buffers["z"][:n] if "z" in buffers else None}
        name = _saved_name(act)
        K.linear_backward(g, xs[0], self.kernel, activation=act.name, alpha=self.alpha, dx=dxs[0], dw=grads[0],
                          db=grads[1] if self.use_bias else None, dz=buffers["dz"][:n], need_dx=dxs[0] is not None,
                          need_db=self.use_bias, backend=ctx.backend, **({name: saved[name]} if name else {}))

    def get_config(self):
        return {"units": self.units, "activation": self.activation.name, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer, "bias_initializer": self.bias_initializer,
                "alpha": self.alpha, "kernel_regularizer": self.kernel_regularizer, **super().get_config()}

    @property
    def kernel(self):
        return self.weights[0]

    @property
    def bias(self):
        return self.weights[1] if self.use_bias else None


@register_serializable
class Activation(Layer):
    """y = activation(x), no weights."""

    def __init__(self, activation, input_shape=None, name=None, alpha=A.DEFAULT_ALPHA):
        super().__init__(input_shape, name)
        self.activation = A.get(activation)
        self.alpha = alpha

    def buffers(self, batch, dtype, act):
        return {"z": np.empty((batch, self.n_in), dtype)} if act.needs == A.NEEDS_PREACT else {}

    def forward(self, xs, y, buffers, ctx):
        K.activation_forward(xs[0], ctx.activation.name, alpha=self.alpha, out=y, backend=ctx.backend)
        if ctx.training and "z" in buffers:
            np.copyto(buffers["z"][:len(y)], xs[0])

    def backward(self, g, xs, y, buffers, dxs, grads, ctx):
        if dxs[0] is None:
            return
        act = ctx.activation
        saved = {"y": y, "z": buffers["z"][:len(y)] if "z" in buffers else None}
        name = _saved_name(act)
        K.activation_backward(g, act.name, alpha=self.alpha, out=dxs[0], backend=ctx.backend,
                              **({name: saved[name]} if name else {}))

    def get_config(self):
        return {"activation": self.activation.name, "alpha": self.alpha, **super().get_config()}


@register_serializable
class Dropout(Layer):
    """Keras's Dropout: in training, y = x mask / (1 - rate) with mask_i = 1 with probability
    1 - rate; in evaluate and predict, y = x. The mask of step t is drawn from
    seed_t = seed + (t + 1) * 0x9E3779B97F4A7C15 (mod 2^64) by :func:`fastbp.kernels.dropout_forward`:
    a resumed fit draws the same masks. ``seed`` None: one drawn from the model's random generator
    when the model is built (saved with the model)."""

    def __init__(self, rate, seed=None, input_shape=None, name=None):
        super().__init__(input_shape, name)
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) \
                or not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must be a number in [0, 1); got {rate!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or not 0 <= seed <= F.MASK64):
            raise ValueError(f"Dropout: seed must be None or an integer in [0, 2**64); got {seed!r}")
        self.rate = float(rate)
        self.seed = None if seed is None else int(seed)

    def init_params(self, rng, dtype):
        if self.seed is None:
            self.seed = int(rng.integers(0, 2**63))
        return []

    def step_seed(self, step: int) -> int:
        """The seed of step ``step``'s mask."""
        return (self.seed + (step + 1) * F.GOLDEN_GAMMA) & F.MASK64

    def buffers(self, batch, dtype, act):
        return {"mask": np.empty((batch, self.n_in), np.uint8)}

    def forward(self, xs, y, buffers, ctx):
        if not ctx.training or self.rate == 0:
            np.copyto(y, xs[0])
            return
        K.dropout_forward(xs[0], self.rate, seed=self.step_seed(ctx.step), out=y, mask_out=buffers["mask"][:len(y)],
                          backend=ctx.backend)

    def backward(self, g, xs, y, buffers, dxs, grads, ctx):
        if dxs[0] is None:
            return
        if self.rate == 0:
            np.copyto(dxs[0], g)
            return
        K.dropout_backward(g, buffers["mask"][:len(y)], self.rate, out=dxs[0], backend=ctx.backend)

    def get_config(self):
        return {"rate": self.rate, "seed": self.seed, **super().get_config()}


def _axis(cls, axis):
    if axis not in (-1, 1) and axis != [-1] and axis != [1]:
        raise ValueError(f"{cls}: fastbp normalizes the features of (batch, features) inputs: axis must be -1 (or 1); "
                         f"got {axis!r}")
    return -1


def _epsilon(cls, epsilon):
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.integer, np.floating)) \
            or not epsilon > 0 or not np.isfinite(epsilon):
        raise ValueError(f"{cls}: epsilon must be a finite number > 0; got {epsilon!r}")
    return float(epsilon)


class _Normalization(Layer):
    """What layer and batch normalization share: gamma (scale) and beta (center), one per feature."""

    def __init__(self, epsilon, center, scale, input_shape, name):
        super().__init__(input_shape, name)
        self.epsilon = _epsilon(type(self).__name__, epsilon)
        self.center = bool(center)
        self.scale = bool(scale)

    def params_shapes(self):
        return [(self.n_in,)] * (int(self.scale) + int(self.center))

    def init_params(self, rng, dtype):
        return [np.ones(self.n_in, dtype)] * int(self.scale) + [np.zeros(self.n_in, dtype)] * int(self.center)

    @property
    def gamma(self):
        return self.weights[0] if self.scale else None

    @property
    def beta(self):
        return self.weights[int(self.scale)] if self.center else None

    def _param_grads(self, grads):
        """(dgamma, dbeta) buffers, None where the weight does not exist."""
        return (grads[0] if self.scale else None), (grads[int(self.scale)] if self.center else None)

    def get_config(self):
        return {"epsilon": self.epsilon, "center": self.center, "scale": self.scale, **super().get_config()}


@register_serializable
class LayerNormalization(_Normalization):
    """Keras's LayerNormalization over the features: y = (x - mean_row) / sqrt(var_row + epsilon)
    * gamma + beta (``scale``: gamma, ``center``: beta)."""

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, input_shape=None, name=None):
        super().__init__(epsilon, center, scale, input_shape, name)
        self.axis = _axis("LayerNormalization", axis)

    def buffers(self, batch, dtype, act):
        return {"mean": np.empty(batch, dtype), "rstd": np.empty(batch, dtype)}

    def forward(self, xs, y, buffers, ctx):
        n = len(y)
        K.layernorm_forward(xs[0], self.gamma, self.beta, eps=self.epsilon, out=y, mean_out=buffers["mean"][:n],
                            rstd_out=buffers["rstd"][:n], backend=ctx.backend)

    def backward(self, g, xs, y, buffers, dxs, grads, ctx):
        n = len(y)
        dgamma, dbeta = self._param_grads(grads)
        K.layernorm_backward(g, xs[0], self.gamma, buffers["mean"][:n], buffers["rstd"][:n], dx=dxs[0], dgamma=dgamma,
                             dbeta=dbeta, need_dx=dxs[0] is not None, need_dbeta=self.center, backend=ctx.backend)

    def get_config(self):
        return {"axis": self.axis, **super().get_config()}


@register_serializable
class BatchNormalization(_Normalization):
    """Keras's BatchNormalization over the batch: in training, y = (x - mean_batch) /
    sqrt(var_batch + epsilon) * gamma + beta, and moving_mean = momentum moving_mean + (1 - momentum)
    mean_batch, moving_variance likewise with the batch's (biased) variance; in evaluate and
    predict the moving statistics normalize."""

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, input_shape=None, name=None):
        super().__init__(epsilon, center, scale, input_shape, name)
        self.axis = _axis("BatchNormalization", axis)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.integer, np.floating)) \
                or not 0 <= momentum <= 1:
            raise ValueError(f"BatchNormalization: momentum must be a number in [0, 1]; got {momentum!r}")
        self.momentum = float(momentum)

    def state_shapes(self):
        return [(self.n_in,), (self.n_in,)]

    def init_state(self, dtype):
        return [np.zeros(self.n_in, dtype), np.ones(self.n_in, dtype)]

    @property
    def moving_mean(self):
        return self.weights[-2]

    @property
    def moving_variance(self):
        return self.weights[-1]

    def buffers(self, batch, dtype, act):
        return {"mean": np.empty(self.n_in, dtype), "rstd": np.empty(self.n_in, dtype)}

    def forward(self, xs, y, buffers, ctx):
        K.batchnorm_forward(xs[0], self.gamma, self.beta, eps=self.epsilon, running_mean=self.moving_mean,
                            running_var=self.moving_variance, momentum=1.0 - self.momentum, training=ctx.training,
                            unbiased_running_var=False, out=y, mean_out=buffers["mean"], rstd_out=buffers["rstd"],
                            backend=ctx.backend)

    def backward(self, g, xs, y, buffers, dxs, grads, ctx):
        dgamma, dbeta = self._param_grads(grads)
        K.batchnorm_backward(g, xs[0], self.gamma, buffers["mean"], buffers["rstd"], dx=dxs[0], dgamma=dgamma,
                             dbeta=dbeta, need_dx=dxs[0] is not None, need_dbeta=self.center, backend=ctx.backend)

    def get_config(self):
        return {"axis": self.axis, "momentum": self.momentum, **super().get_config()}


@register_serializable
class Add(Layer):
    """y = x_1 + x_2 + ... (two or more inputs of one width); the gradient of each input is dL/dy."""

    n_inputs = None

    def __init__(self, input_shape=None, name=None):
        super().__init__(input_shape, name)

    def forward(self, xs, y, buffers, ctx):
        np.add(xs[0], xs[1], out=y)
        for x in xs[2:]:
            y += x

    def backward(self, g, xs, y, buffers, dxs, grads, ctx):
        for dx in dxs:
            if dx is not None:
                np.copyto(dx, g)
