"""Backends: modules that implement the kernel protocol below on one kind of hardware.

The public functions in :mod:`fastbp.kernels` validate their arguments, allocate any output
the caller did not pass (with the backend's ``empty``), and call the backend function of the
same name. A backend function may therefore assume: every array is C-contiguous, of one float
dtype (labels: ``intp``), with the documented shapes; scalars are valid Python numbers;
activations come as integer codes (:mod:`fastbp.activations`); and no output it writes overlaps
an input. The documented in-place uses of the public API (``out=z``, ``dz=dy``,
``dlogits=logits``, ``dpred=pred``) are served by the public layer for every backend alike: the
backend writes a fresh buffer, which ``copy_`` then copies into the caller's array.

:class:`KernelBackend` is the protocol; :mod:`fastbp._backend` checks that a registered module
has every member when it first loads it (a module that lacks one is reported unavailable, with
the names). The conformance suite in ``tests/`` runs every available backend against
``numpy_ref``.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class KernelBackend(Protocol):
    """What a backend module provides (outputs are written in place; nothing is returned unless
    noted). ``NAME`` and ``DEVICE`` ("cpu" or "cuda") are set from the registration when absent."""

    NAME: str
    DEVICE: str

    def empty(self, shape, dtype): ...
    def copy_(self, dst, src) -> None: ...  # dst[...] = src (same shape and dtype)

    def linear_forward(self, x, w, b, code, alpha, y, z) -> None: ...  # b, z may be None
    # saved: y, z or None (per activation); dz None: the activation is linear and dz is dy itself
    # (nothing to write); dx, db may be None (not computed)
    def linear_backward(self, dy, x, w, saved, code, alpha, dz, dx, dw, db) -> None: ...
    def activation_forward(self, z, code, alpha, y) -> None: ...
    def activation_backward(self, dy, saved, code, alpha, dz) -> None: ...  # saved None for linear

    # one of labels/targets is None; dlogits may be None (no gradient)
    def softmax_cross_entropy(self, logits, labels, targets, dlogits) -> float: ...
    def mse_loss(self, pred, target, dpred) -> float: ...  # dpred may be None
    def sigmoid_cross_entropy(self, logits, targets, dlogits) -> float: ...  # dlogits may be None

    def sgd_update(self, p, g, velocity, lr, momentum, nesterov, weight_decay) -> None: ...
    def adam_update(self, p, g, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay, decoupled) -> None: ...
    def rmsprop_update(self, p, g, sq_avg, grad_avg, momentum_buf, lr, rho, eps, weight_decay,
                       momentum) -> None: ...

    def sum_of_squares(self, arrays) -> float: ...  # accumulated in float64
    def max_abs(self, arrays) -> float: ...
    def scale_(self, arrays, factor) -> None: ...  # a *= factor, in place
    def clip_value_(self, arrays, clip) -> None: ...  # a = clamp(a, -clip, clip), in place

    # normalization: statistics (mean, rstd) per row (layer norm) or per column (batch norm);
    # gamma, beta None: no affine part; dx, dgamma, dbeta None: not computed
    def layernorm_forward(self, x, gamma, beta, eps, y, mean, rstd) -> None: ...
    def layernorm_backward(self, dy, x, gamma, mean, rstd, dx, dgamma, dbeta) -> None: ...
    # running_mean/var None: not updated (training) ; training False: they normalize (given);
    # unbiased: the running variance from the unbiased batch variance
    def batchnorm_forward(self, x, gamma, beta, eps, running_mean, running_var, momentum, training, unbiased,
                          y, mean, rstd) -> None: ...
    def batchnorm_backward(self, dy, x, gamma, mean, rstd, dx, dgamma, dbeta) -> None: ...
    # key = mix64(seed), threshold = round(rate 2^32) (Python ints < 2^64), scale = 1 / (1 - rate) in
    # x's dtype; any shape (flat index order); mask uint8
    def dropout_forward(self, x, key, threshold, scale, y, mask) -> None: ...
    def dropout_backward(self, dy, mask, scale, dx) -> None: ...


#: the members a backend module must define (NAME and DEVICE may come from its registration)
PROTOCOL_MEMBERS = tuple(name for name in KernelBackend.__dict__
                         if not name.startswith("_") and callable(getattr(KernelBackend, name)))


def missing_members(module) -> list[str]:
    """The protocol functions ``module`` does not define."""
    return [name for name in PROTOCOL_MEMBERS if not callable(getattr(module, name, None))]
