"""Losses. A softmax output trained with cross-entropy goes through the fused, stable
softmax-cross-entropy kernel on the logits: the log of a probability is never taken."""
from __future__ import annotations


class Loss:
    name = ""
    needs_logits = False  # True: computed from the logits of a softmax (or linear) output

    def __init__(self, from_logits=False):
        self.from_logits = from_logits


class SparseCategoricalCrossentropy(Loss):
    """Mean over the batch of -log softmax(z)[label]; labels are integer class indices."""
    name = "sparse_categorical_crossentropy"
    needs_logits = True
    sparse = True


class CategoricalCrossentropy(Loss):
    """Mean over the batch of -sum_j t_j log softmax(z)_j; targets are one-hot or probabilities."""
    name = "categorical_crossentropy"
    needs_logits = True
    sparse = False


class MeanSquaredError(Loss):
    """Mean over all elements of (prediction - target)^2."""
    name = "mean_squared_error"


_BY_NAME = {"sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
            "categorical_crossentropy": CategoricalCrossentropy,
            "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError}


def get(loss) -> Loss:
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in _BY_NAME:
        return _BY_NAME[loss]()
    raise ValueError(f"unknown loss {loss!r}; one of {', '.join(_BY_NAME)} or a Loss")
