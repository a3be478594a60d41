"""Weight initializers, Keras's definitions (fan_in, fan_out of a (in, out) kernel).

glorot_uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out))      he_uniform: l = sqrt(6 / fan_in)
glorot_normal:  N(0, s) truncated at 2 s, s = sqrt(2 / (fan_in + fan_out)) / 0.87962566103423978
he_normal:      the same with s = sqrt(2 / fan_in) / 0.87962566103423978
zeros, ones.
"""
from __future__ import annotations

import math

import numpy as np

from .serialization import register_serializable

_TRUNC_STD = 0.87962566103423978  # std of a unit normal truncated at +-2


def _fans(shape):
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], shape[1]


def _truncated_normal(rng, shape, std):
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():  # redraw outside +-2 std, as Keras's truncated normal does
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return out * std


def glorot_uniform(shape, rng, dtype=np.float32):
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(dtype)


def glorot_normal(shape, rng, dtype=np.float32):
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(rng, shape, math.sqrt(2.0 / (fan_in + fan_out)) / _TRUNC_STD).astype(dtype)


def he_uniform(shape, rng, dtype=np.float32):
    limit = math.sqrt(6.0 / _fans(shape)[0])
    return rng.uniform(-limit, limit, shape).astype(dtype)


def he_normal(shape, rng, dtype=np.float32):
    return _truncated_normal(rng, shape, math.sqrt(2.0 / _fans(shape)[0]) / _TRUNC_STD).astype(dtype)


def zeros(shape, rng=None, dtype=np.float32):
    return np.zeros(shape, dtype)


def ones(shape, rng=None, dtype=np.float32):
    return np.ones(shape, dtype)


_BY_NAME = {f.__name__: register_serializable(f) for f in (glorot_uniform, glorot_normal, he_uniform, he_normal,
                                                          zeros, ones)}


def get(init):
    """An initializer from its name or a callable ``f(shape, rng, dtype) -> array``."""
    if callable(init):
        return init
    try:
        return _BY_NAME[init]
    except KeyError:
        raise ValueError(f"unknown initializer {init!r}; one of {', '.join(_BY_NAME)} or a callable") from None
