"""The activation table: name -> integer code, and what each derivative is computed from.

Every backend receives the integer ``code`` (cheap to pass into compiled code) and applies
the same formulas:

=============  ===========================================  ==========================
name           forward  y = f(z)                            derivative computed from
=============  ===========================================  ==========================
linear         z                                            nothing (f' = 1)
relu           max(z, 0)                                    y:  1[y > 0]
leaky_relu     z if z > 0 else alpha * z   (alpha >= 0)     y:  1 if y > 0 else alpha
sigmoid        1 / (1 + exp(-z))                            y:  y (1 - y)
tanh           tanh(z)                                      y:  1 - y^2
gelu           z Phi(z) = z/2 (1 + erf(z / sqrt 2))         z:  Phi(z) + z phi(z)
gelu_tanh      z/2 (1 + tanh(k (z + c z^3)))                z:  see :mod:`numpy_ref`
silu           z sigmoid(z)                                 z:  s (1 + z (1 - s))
softplus       log(1 + exp(z))                              z:  sigmoid(z)
softmax        exp(z_j) / sum_k exp(z_k)   (per row)        y:  y (dy - sum(dy y))
log_softmax    z_j - log sum_k exp(z_k)    (per row)        y:  dy - exp(y) sum(dy)
=============  ===========================================  ==========================

``gelu`` is the exact (erf) form, the default of both PyTorch and Keras; ``gelu_tanh`` is the
tanh approximation (PyTorch's ``approximate="tanh"``), k = sqrt(2/pi), c = 0.044715.
``leaky_relu``'s slope ``alpha`` defaults to 0.01 (PyTorch's ``negative_slope``; Keras's
layer defaults to 0.3, pass ``alpha=0.3`` for that).
"""
from __future__ import annotations

from typing import NamedTuple

LINEAR, RELU, LEAKY_RELU, SIGMOID, TANH, GELU, GELU_TANH, SILU, SOFTPLUS, SOFTMAX, LOG_SOFTMAX = range(11)

#: what the derivative needs besides ``dy``
NEEDS_NOTHING, NEEDS_OUTPUT, NEEDS_PREACT = "nothing", "y", "z"

DEFAULT_ALPHA = 0.01


class Activation(NamedTuple):
    name: str
    code: int
    needs: str  # NEEDS_NOTHING, NEEDS_OUTPUT (y) or NEEDS_PREACT (z)
    rowwise: bool  # True when each output depends on the whole row (softmax family)


_TABLE = (
    Activation("linear", LINEAR, NEEDS_NOTHING, False),
    Activation("relu", RELU, NEEDS_OUTPUT, False),
    Activation("leaky_relu", LEAKY_RELU, NEEDS_OUTPUT, False),
    Activation("sigmoid", SIGMOID, NEEDS_OUTPUT, False),
    Activation("tanh", TANH, NEEDS_OUTPUT, False),
    Activation("gelu", GELU, NEEDS_PREACT, False),
    Activation("gelu_tanh", GELU_TANH, NEEDS_PREACT, False),
    Activation("silu", SILU, NEEDS_PREACT, False),
    Activation("softplus", SOFTPLUS, NEEDS_PREACT, False),
    Activation("softmax", SOFTMAX, NEEDS_OUTPUT, True),
    Activation("log_softmax", LOG_SOFTMAX, NEEDS_OUTPUT, True),
)

BY_NAME = {a.name: a for a in _TABLE}
BY_CODE = {a.code: a for a in _TABLE}
ALIASES = {None: "linear", "identity": "linear", "swish": "silu"}

#: every canonical activation name, in code order
NAMES = tuple(a.name for a in _TABLE)


def get(name) -> Activation:
    """Return the :class:`Activation` for ``name`` (a name, an alias, or None for linear)."""
    if isinstance(name, Activation):
        return name
    key = ALIASES.get(name, name)
    if not isinstance(key, str) or key not in BY_NAME:
        raise ValueError(
            f"activation must be one of {', '.join(NAMES)} (or None); got {name!r}"
        )
    return BY_NAME[key]
