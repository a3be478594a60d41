"""Losses. A softmax output trained with cross-entropy, or a sigmoid output trained with binary
cross-entropy, goes through the fused, stable kernel on the logits (softmax_cross_entropy,
sigmoid_cross_entropy): the log of a probability is never taken."""
from __future__ import annotations

from .serialization import register_serializable


class Loss:
    name = ""
    needs_logits = False  # True: computed from the logits of a softmax/sigmoid (or linear) output
    output_activation = "softmax"  # the activation a needs_logits loss fuses (from_logits=False)

    def __init__(self, from_logits=False):
        self.from_logits = from_logits

    def get_config(self) -> dict:
        return {"from_logits": self.from_logits}


@register_serializable
class SparseCategoricalCrossentropy(Loss):
    """Mean over the batch of -log softmax(z)[label]; labels are integer class indices."""
    name = "sparse_categorical_crossentropy"
    needs_logits = True
    sparse = True


@register_serializable
class CategoricalCrossentropy(Loss):
    """Mean over the batch of -sum_j t_j log softmax(z)_j; targets are one-hot or probabilities."""
    name = "categorical_crossentropy"
    needs_logits = True
    sparse = False


@register_serializable
class BinaryCrossentropy(Loss):
    """Mean over all elements of -[t log s + (1 - t) log(1 - s)], s = sigmoid(z): independent 0/1
    (or probability) targets per output column (binary and multi-label classification)."""
    name = "binary_crossentropy"
    needs_logits = True
    output_activation = "sigmoid"
    sparse = False


@register_serializable
class MeanSquaredError(Loss):
    """Mean over all elements of (prediction - target)^2."""
    name = "mean_squared_error"


_BY_NAME = {"sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
            "categorical_crossentropy": CategoricalCrossentropy, "binary_crossentropy": BinaryCrossentropy,
            "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError}


def get(loss) -> Loss:
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in _BY_NAME:
        return _BY_NAME[loss]()
    raise ValueError(f"unknown loss {loss!r}; one of {', '.join(_BY_NAME)} or a Loss")
