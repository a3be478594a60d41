"""Weight regularizers (Keras's ``kernel_regularizer``): a penalty on a layer's kernel added to the
loss, and its gradient added to the kernel's gradient before clipping and the optimizer step.

Every regularizer here is a scaled L2 penalty: for a training batch of ``b`` rows its coefficient
is ``c(b) = const + per_row / b`` (:meth:`Regularizer.coefficients`), the penalty is
``c(b) / 2 * sum(w^2)`` and the gradient term ``c(b) * w`` (the formula
:func:`fastbp.formulas.l2_gradient`). Keras's ``L2(l2)`` is ``const = 2 l2``; scikit-learn's
``alpha`` (divided by the batch size) is ``per_row = alpha``.
"""
from __future__ import annotations

import math

from .serialization import register_serializable


class Regularizer:
    """A scaled L2 penalty; subclasses define :meth:`coefficients`."""

    def coefficients(self) -> tuple[float, float]:
        """(const, per_row): the coefficient for a batch of b rows is const + per_row / b."""
        raise NotImplementedError

    def coefficient(self, batch: int) -> float:
        const, per_row = self.coefficients()
        return const + per_row / batch

    def get_config(self) -> dict:
        return dict(vars(self))


def _non_negative(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return float(value)


@register_serializable
class L2(Regularizer):
    """Keras's L2: penalty ``l2 * sum(w^2)``, gradient ``2 l2 w`` (the same for every batch size)."""

    def __init__(self, l2=0.01):
        self.l2 = _non_negative("L2: l2", l2)

    def coefficients(self):
        return 2.0 * self.l2, 0.0


@register_serializable
class PerSampleL2(Regularizer):
    """scikit-learn's MLP penalty: ``alpha / (2 b) * sum(w^2)`` for a batch of ``b`` rows, gradient
    ``alpha w / b`` (the L2 term divided by the batch size)."""

    def __init__(self, alpha=1e-4):
        self.alpha = _non_negative("PerSampleL2: alpha", alpha)

    def coefficients(self):
        return 0.0, self.alpha


def get(regularizer):
    """None, a Regularizer, or 'l2' (Keras's default L2(0.01))."""
    if regularizer is None or isinstance(regularizer, Regularizer):
        return regularizer
    if isinstance(regularizer, str) and regularizer.lower() == "l2":
        return L2()
    raise ValueError(f"unknown regularizer {regularizer!r}; 'l2', a Regularizer (regularizers.L2(l2)) or None")
