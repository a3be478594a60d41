"""Keras-style optimizers over one flat parameter buffer: one kernel call updates every weight.

Defaults are Keras's (Adam: lr 1e-3, eps 1e-7; RMSprop: lr 1e-3, rho 0.9, eps 1e-7; SGD: lr 0.01).
The update formulas are the kernels' (:mod:`fastbp.kernels`, PyTorch's placement of eps);
``weight_decay`` is decoupled, as in Keras 3 (p *= 1 - lr * wd before the update). Gradient
clipping: ``clipvalue`` clamps each element, ``clipnorm`` scales each variable's gradient to that
norm, ``global_clipnorm`` all gradients together (``kernels.clip_grad_norm``).
``learning_rate`` may be a number or a schedule (:mod:`fastbp.nn.schedules`).
"""
from __future__ import annotations

import numpy as np

from .. import formulas as F
from .. import kernels as K
from .schedules import learning_rate_at
from .serialization import register_serializable


class Optimizer:
    def __init__(self, learning_rate, clipnorm=None, global_clipnorm=None, clipvalue=None, weight_decay=None):
        if clipnorm is not None and global_clipnorm is not None:
            raise ValueError("give clipnorm or global_clipnorm, not both")
        self.learning_rate = learning_rate
        self.clipnorm = clipnorm
        self.global_clipnorm = global_clipnorm
        self.clipvalue = clipvalue
        self.weight_decay = weight_decay
        self.iterations = 0
        self._state = ()

    def _slots(self):
        """How many state arrays like the parameters this optimizer keeps."""
        return 0

    def build(self, params: np.ndarray) -> None:
        """Allocate the state (zeros shaped like the flat parameter buffer)."""
        self._state = tuple(np.zeros_like(params) for _ in range(self._slots()))
        self.iterations = 0

    def current_learning_rate(self) -> float:
        return learning_rate_at(self.learning_rate, self.iterations)

    def apply(self, params, grads, segments, backend=None) -> None:
        """Clip ``grads`` (in place), then update ``params`` (in place); ``segments`` are the
        (start, stop) of each variable in the flat buffers."""
        if len(self._state) != self._slots():
            self.build(params)
        lr = self.current_learning_rate()
        if self.clipvalue is not None:
            K.clip_grad_value(grads, self.clipvalue, backend=backend)
        if self.clipnorm is not None:  # each variable by its own norm
            for a, b in segments:
                K.clip_grad_norm(grads[a:b], self.clipnorm, backend=backend)
        if self.global_clipnorm is not None:
            K.clip_grad_norm(grads, self.global_clipnorm, backend=backend)
        self._update(params, grads, lr, backend)
        self.iterations += 1

    def _update(self, params, grads, lr, backend):
        raise NotImplementedError

    def _decay(self, params, lr):
        if self.weight_decay:
            params *= params.dtype.type(1 - lr * self.weight_decay)

    def compiled_spec(self):
        """(optimizer code, hyper-parameters, state arrays) for the compiled training loop; see
        fastbp.nn.compiled.interpreter._optimize."""
        raise NotImplementedError

    def get_config(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "iterations"}


@register_serializable
class SGD(Optimizer):
    """Keras's SGD (momentum, Nesterov), PyTorch's update formula (the same for a constant rate)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = momentum
        self.nesterov = nesterov

    def _slots(self):
        return 1 if self.momentum else 0

    def compiled_spec(self):
        return 0, [self.momentum, 0.0, 0.0, self.weight_decay or 0.0, float(self.nesterov), 0.0], self._state

    def _update(self, params, grads, lr, backend):
        self._decay(params, lr)
        velocity = self._state[0] if self.momentum else None
        K.sgd_update(params, grads, lr=lr, momentum=self.momentum, velocity=velocity, nesterov=self.nesterov,
                     backend=backend)


@register_serializable
class Adam(Optimizer):
    """Adam with Keras's defaults (eps 1e-7), bias correction, optional amsgrad.

    ``uncorrected_epsilon=True`` adds eps to sqrt(v) before the bias correction instead of after
    it (the "epsilon hat" of Kingma & Ba, scikit-learn's and TensorFlow 1's placement): the kernel
    is given eps / sqrt(1 - beta_2^t) (:func:`fastbp.formulas.uncorrected_epsilon`)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 uncorrected_epsilon=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, epsilon, amsgrad
        self.uncorrected_epsilon = bool(uncorrected_epsilon)

    def _slots(self):
        return 3 if self.amsgrad else 2

    def compiled_spec(self):
        return 1, [self.beta_1, self.beta_2, self.epsilon, self.weight_decay or 0.0, float(self.amsgrad),
                   float(self.uncorrected_epsilon)], self._state

    def _update(self, params, grads, lr, backend):
        m, v = self._state[:2]
        step = self.iterations + 1
        eps = F.uncorrected_epsilon(self.epsilon, self.beta_2, step) if self.uncorrected_epsilon else self.epsilon
        K.adam_update(params, grads, m, v, step=step, lr=lr, beta1=self.beta_1, beta2=self.beta_2,
                      eps=eps, weight_decay=self.weight_decay or 0.0, decoupled_weight_decay=True,
                      amsgrad=self.amsgrad, vmax=self._state[2] if self.amsgrad else None, backend=backend)


@register_serializable
class AdamW(Adam):
    """Adam with decoupled weight decay, Keras's default 0.004."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, **kwargs):
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


@register_serializable
class RMSprop(Optimizer):
    """RMSprop with Keras's defaults (rho 0.9, eps 1e-7), PyTorch's placement of eps."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, centered

    def _slots(self):
        return 3

    def compiled_spec(self):
        return 2, [self.rho, 0.0, self.epsilon, self.weight_decay or 0.0, float(self.centered), self.momentum], self._state

    def _update(self, params, grads, lr, backend):
        self._decay(params, lr)
        sq, avg, buf = self._state
        K.rmsprop_update(params, grads, sq, lr=lr, rho=self.rho, eps=self.epsilon, momentum=self.momentum,
                         momentum_buf=buf if self.momentum else None, centered=self.centered,
                         grad_avg=avg if self.centered else None, backend=backend)


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get(optimizer) -> Optimizer:
    """An optimizer from its name ('adam', 'sgd', 'adamw', 'rmsprop') or an instance."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in _BY_NAME:
        return _BY_NAME[optimizer.lower()]()
    raise ValueError(f"unknown optimizer {optimizer!r}; one of {', '.join(_BY_NAME)} or an Optimizer")
