"""Layers: Dense and Activation. Their weights live in the model's flat parameter buffer."""
from __future__ import annotations

from .. import activations as A
from . import initializers, regularizers
from .serialization import register_serializable


class Layer:
    """A layer maps (batch, n_in) to (batch, units); ``params_shapes`` lists its weights."""

    activation = A.get("linear")
    alpha = A.DEFAULT_ALPHA
    kernel_regularizer = None

    def __init__(self, input_shape=None, name=None):
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.name = name
        self.n_in = None
        self.weights = []  # views into the model's flat parameter buffer, set by the model

    def build(self, n_in: int) -> int:
        """Fix the input width; return the output width."""
        self.n_in = n_in
        return self.output_width(n_in)

    def output_width(self, n_in: int) -> int:
        return n_in

    def params_shapes(self):
        return []

    def init_params(self, rng, dtype):
        return []

    def get_config(self) -> dict:
        """The constructor's arguments (what :func:`fastbp.nn.serialization.serialize` saves)."""
        return {"input_shape": list(self.input_shape) if self.input_shape is not None else None, "name": self.name}


@register_serializable
class Dense(Layer):
    """y = activation(x @ kernel + bias); kernel (in, units), bias (units,). ``kernel_regularizer``
    (:mod:`fastbp.nn.regularizers`, or 'l2') adds a penalty on the kernel to the loss."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", input_shape=None, name=None, alpha=A.DEFAULT_ALPHA,
                 kernel_regularizer=None):
        super().__init__(input_shape, name)
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"Dense: units must be a positive integer; got {units!r}")
        self.units = units
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

    def get_config(self):
        return {"activation": self.activation.name, "alpha": self.alpha, **super().get_config()}
