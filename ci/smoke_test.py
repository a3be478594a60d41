"""Smoke test of an installed fastbp (run from outside the source tree by ci/build_wheels.sh).

Checks that the installed package is the compiled one, that the cython backend is available and
agrees with the NumPy reference on every kernel, and that a few training steps of the MNIST
model lower the loss on it.

    python smoke_test.py [--no-numba]   # --no-numba: also require that numba is absent and that
                                        # fastbp says why the numba backend is unavailable
"""
import math
import sys

import numpy as np

import fastbp
from fastbp import kernels as K
from fastbp import nn


def close(a, b, tol=2e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(1.0, float(np.max(np.abs(b))) if b.size else 0.0)
    assert np.allclose(a, b, rtol=tol, atol=tol * scale), (a, b)


def main():
    no_numba = "--no-numba" in sys.argv
    status = fastbp.backend_status()
    print("fastbp", fastbp.__version__, "from", fastbp.__file__)
    print("backends:", status)
    assert "site-packages" in fastbp.__file__, "not the installed package"
    assert status["cython"] is None, status["cython"]
    if no_numba:
        try:
            import numba  # noqa: F401
        except ImportError:
            pass
        else:
            raise AssertionError("numba is installed in the --no-numba environment")
        assert status["numba"] is not None and "numba" in status["numba"], status["numba"]
        assert fastbp.available_backends()[:2] == ["numpy", "cython"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 784), dtype=np.float32)
    w = rng.standard_normal((784, 128), dtype=np.float32) * 0.05
    b = rng.standard_normal(128, dtype=np.float32)
    dy = rng.standard_normal((64, 128), dtype=np.float32)
    for act in ("relu", "gelu", "softmax"):
        z = np.empty((64, 128), np.float32)
        y = K.linear_forward(x, w, b, act, preact_out=z, backend="cython")
        close(y, K.linear_forward(x, w, b, act, backend="numpy"))
        saved = {"z": z} if act == "gelu" else {"y": y}
        for got, ref in zip(K.linear_backward(dy, x, w, activation=act, backend="cython", **saved),
                            K.linear_backward(dy, x, w, activation=act, backend="numpy", **saved)):
            close(got, ref)
        close(K.activation_forward(z, act, backend="cython"), K.activation_forward(z, act, backend="numpy"))
        close(K.activation_backward(dy, act, backend="cython", **saved),
              K.activation_backward(dy, act, backend="numpy", **saved))
    labels = rng.integers(0, 10, 64)
    logits = rng.standard_normal((64, 10), dtype=np.float32)
    for got, ref in zip(K.softmax_cross_entropy(logits, labels, backend="cython"),
                        K.softmax_cross_entropy(logits, labels, backend="numpy")):
        close(got, ref)
    for got, ref in zip(K.mse_loss(x, x[::-1].copy(), backend="cython"), K.mse_loss(x, x[::-1].copy(), backend="numpy")):
        close(got, ref)
    grad = w * 0.5
    for update, state in ((K.sgd_update, {"momentum": 0.9, "velocity": 0}), (K.adam_update, {"m": 0, "v": 0}),
                          (K.rmsprop_update, {"sq_avg": 0})):
        results = []
        for backend in ("cython", "numpy"):
            p = w.copy()
            kw = {k: np.zeros_like(p) if k != "momentum" else v for k, v in state.items()}
            if update is K.adam_update:
                kw["step"] = 1
            update(p, grad, lr=0.01, backend=backend, **kw)
            results.append(p)
        close(*results)
    g1, g2 = [w.copy()], [w.copy()]
    assert math.isclose(K.clip_grad_norm(g1, 1.0, backend="cython"), K.clip_grad_norm(g2, 1.0, backend="numpy"),
                        rel_tol=1e-9)
    close(g1[0], g2[0])
    K.clip_grad_value(g1, 0.01, backend="cython")
    K.clip_grad_value(g2, 0.01, backend="numpy")
    close(g1[0], g2[0])
    # a training step of the classic model on cython
    model = nn.Sequential([nn.Dense(128, activation="relu"), nn.Dense(10)], seed=0, backend="cython")
    model.compile(optimizer=nn.Adam(1e-3), loss=nn.SparseCategoricalCrossentropy(from_logits=True))
    xs = rng.standard_normal((512, 784), dtype=np.float32)
    ys = (xs[:, :10].argmax(axis=1)).astype(np.int64)
    history = model.fit(xs, ys, epochs=3, batch_size=64, verbose=0)
    losses = history.history["loss"]
    print("training losses on cython:", [round(v, 4) for v in losses])
    assert losses[-1] < losses[0], losses
    print("smoke test passed")


if __name__ == "__main__":
    main()
