"""Run every kernel once, on shapes that reach both the serial and the parallel code paths, and
one tiny training run of fastbp.nn.

On the numba backend this compiles every kernel (and writes Numba's on-disk cache), so later
processes start fast: ``fastbp warmup`` after installing.
"""
from __future__ import annotations

import time

import numpy as np

from . import kernels as K

#: small shapes run the serial variants, large ones the parallel variants
_LAYER_SHAPES = ((8, 4, 3), (160, 784, 128))
_VECTOR_SIZES = (10, 40_000)


def run_every_kernel(backend: str | None = None, dtypes=(np.float32, np.float64)) -> float:
    """Call every public kernel (each activation family, each optimizer option); return seconds."""
    t0 = time.perf_counter()
    for dtype in dtypes:
        for batch, n_in, n_out in _LAYER_SHAPES:
            x = np.ones((batch, n_in), dtype)
            w = np.full((n_in, n_out), 0.01, dtype)
            b = np.zeros(n_out, dtype)
            z = np.empty((batch, n_out), dtype)
            for act in ("relu", "gelu", "softmax"):
                y = K.linear_forward(x, w, b, act, preact_out=z, backend=backend)
                K.linear_forward(x, w, None, act, backend=backend)
                saved = {"y": y} if act != "gelu" else {"z": z}
                K.linear_backward(y, x, w, activation=act, backend=backend, **saved)
                K.linear_backward(y, x, w, activation=act, need_dx=False, need_db=False, backend=backend, **saved)
                K.activation_forward(z, act, backend=backend)
                K.activation_backward(y, act, backend=backend, **saved)
            K.linear_backward(y, x, w, backend=backend)
            K.softmax_cross_entropy(z, np.zeros(batch, np.int64), backend=backend)
            K.softmax_cross_entropy(z, np.full_like(z, 1 / n_out), backend=backend)
            K.mse_loss(y, z, backend=backend)
            K.mse_loss(y, z, need_grad=False, backend=backend)
            gamma, beta = np.ones(n_in, dtype), np.zeros(n_in, dtype)
            for kind in ("layernorm", "batchnorm"):
                for affine in ((gamma, beta), (None, None)):
                    h, mean, rstd = getattr(K, f"{kind}_forward")(x, *affine, backend=backend)
                    getattr(K, f"{kind}_backward")(x, x, affine[0], mean, rstd, backend=backend)
            K.batchnorm_forward(x, gamma, beta, running_mean=np.zeros(n_in, dtype), running_var=np.ones(n_in, dtype),
                                backend=backend)
            K.batchnorm_forward(x, gamma, beta, running_mean=mean, running_var=rstd, training=False, backend=backend)
            h, mask = K.dropout_forward(x, 0.5, seed=0, backend=backend)
            K.dropout_backward(h, mask, 0.5, backend=backend)
        for n in _VECTOR_SIZES:
            p, g = np.ones(n, dtype), np.full(n, 0.1, dtype)
            s1, s2, s3 = (np.zeros(n, dtype) for _ in range(3))
            K.sgd_update(p, g, lr=0.1, backend=backend)
            K.sgd_update(p, g, lr=0.1, momentum=0.9, velocity=s1, nesterov=True, backend=backend)
            K.adam_update(p, g, s1, s2, step=1, backend=backend)
            K.adam_update(p, g, s1, s2, step=1, amsgrad=True, vmax=s3, backend=backend)
            K.rmsprop_update(p, g, s1, backend=backend)
            K.rmsprop_update(p, g, s1, momentum=0.9, momentum_buf=s2, centered=True, grad_avg=s3, backend=backend)
            K.clip_grad_norm([g], 1.0, backend=backend)
            K.clip_grad_norm([g], 1.0, norm_type=float("inf"), backend=backend)
            K.clip_grad_value([g], 1.0, backend=backend)
    _warm_training(backend)
    return time.perf_counter() - t0


def _warm_training(backend):
    """One tiny fit: on numba this compiles the whole-step training loop of fastbp.nn (float32)."""
    from . import nn

    rng = np.random.default_rng(0)
    x = rng.random((64, 8), dtype=np.float32)
    model = nn.Sequential([nn.Dense(16, activation="relu", input_shape=(8,)), nn.Dense(3, activation="softmax")],
                          seed=0, backend=backend)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, rng.integers(0, 3, 64), batch_size=16, epochs=1, verbose=0)
