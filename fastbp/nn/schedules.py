"""Learning-rate schedules, Keras's formulas. ``schedule(step)`` gives the rate for the update
after ``step`` earlier updates (step 0 is the first update)."""
from __future__ import annotations

import math

from .serialization import register_serializable


class LearningRateSchedule:
    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        """The constructor's arguments."""
        return dict(vars(self))


@register_serializable
class ExponentialDecay(LearningRateSchedule):
    """lr = initial * decay_rate ** (step / decay_steps)   (floor of the exponent with staircase)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        if decay_steps <= 0:
            raise ValueError(f"ExponentialDecay: decay_steps must be > 0; got {decay_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = decay_steps
        self.decay_rate = float(decay_rate)
        self.staircase = staircase

    def __call__(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p


@register_serializable
class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] while step <= boundaries[0], values[i] while boundaries[i-1] < step <= boundaries[i],
    values[-1] after the last boundary."""

    def __init__(self, boundaries, values):
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"PiecewiseConstantDecay: need len(values) == len(boundaries) + 1; "
                             f"got {len(values)} values and {len(boundaries)} boundaries")
        if list(boundaries) != sorted(boundaries):
            raise ValueError(f"PiecewiseConstantDecay: boundaries must increase; got {boundaries}")
        self.boundaries = list(boundaries)
        self.values = [float(v) for v in values]

    def __call__(self, step):
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]


@register_serializable
class CosineDecay(LearningRateSchedule):
    """lr = initial * ((1 - alpha) * (1 + cos(pi * min(step, decay_steps) / decay_steps)) / 2 + alpha)."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0):
        if decay_steps <= 0:
            raise ValueError(f"CosineDecay: decay_steps must be > 0; got {decay_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = decay_steps
        self.alpha = float(alpha)

    def __call__(self, step):
        fraction = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1 + math.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)


def learning_rate_at(learning_rate, step: int) -> float:
    """The rate for ``step``: a number as it is, a schedule evaluated."""
    return float(learning_rate(step)) if callable(learning_rate) else float(learning_rate)
