"""Bitwise-identical results across repeated runs and across 1 and 2 threads.

Reductions (bias gradient, losses, norms) are summed in fixed chunks in a fixed order and the
tiling of the products depends only on the shapes, so the thread count cannot change a bit.
The shapes are large enough that the parallel code paths run.
"""
import numpy as np
import pytest
from helpers import cpu_backends

import fastbp
from fastbp import kernels as K

BACKENDS = cpu_backends()


def _run_everything(backend):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 784), dtype=np.float32)
    w = rng.standard_normal((784, 130), dtype=np.float32) * 0.05
    b = rng.standard_normal(130, dtype=np.float32)
    out = {}
    z = np.empty((300, 130), np.float32)
    out["y"] = K.linear_forward(x, w, b, "gelu", preact_out=z, backend=backend)
    out["z"] = z
    dy = rng.standard_normal((300, 130), dtype=np.float32)
    out["dx"], out["dw"], out["db"] = K.linear_backward(dy, x, w, z=z, activation="gelu", backend=backend)
    logits = rng.standard_normal((5000, 10), dtype=np.float32) * 4
    labels = rng.integers(0, 10, 5000)
    loss, out["dlogits"] = K.softmax_cross_entropy(logits, labels, backend=backend)
    out["ce"] = np.float64(loss)
    out["softmax"] = K.activation_forward(logits, "softmax", backend=backend)
    mse, out["dpred"] = K.mse_loss(x, x[::-1].copy(), backend=backend)
    out["mse"] = np.float64(mse)
    bce, out["dlogits_bce"] = K.sigmoid_cross_entropy(logits, (logits > 0.5).astype(np.float32), backend=backend)
    out["bce"] = np.float64(bce)
    p = rng.standard_normal(300_001, dtype=np.float32)
    g = rng.standard_normal(300_001, dtype=np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t in (1, 2, 3):
        K.adam_update(p, g, m, v, step=t, backend=backend)
    out["p"], out["m"], out["v"] = p, m, v
    out["norm"] = np.float64(K.clip_grad_norm([g, out["dw"].copy()], 1.0, backend=backend))
    h = x * 3 + 100  # (300, 784): several row chunks, both threads busy
    gamma, beta = rng.uniform(0.5, 1.5, 784).astype(np.float32), rng.standard_normal(784).astype(np.float32)
    dh = rng.standard_normal((300, 784), dtype=np.float32)
    for kind in ("layernorm", "batchnorm"):
        y, mean, rstd = getattr(K, f"{kind}_forward")(h, gamma, beta, backend=backend)
        grads = getattr(K, f"{kind}_backward")(dh, h, gamma, mean, rstd, backend=backend)
        out.update({f"{kind}_{k}": v for k, v in zip(("y", "mean", "rstd", "dx", "dgamma", "dbeta"),
                                                      (y, mean, rstd) + grads)})
    rm, rv = np.zeros(784, np.float32), np.ones(784, np.float32)
    K.batchnorm_forward(h, gamma, beta, running_mean=rm, running_var=rv, backend=backend)
    out["running_mean"], out["running_var"] = rm, rv
    out["dropout_y"], out["dropout_mask"] = K.dropout_forward(h, 0.3, seed=99, backend=backend)
    out["dropout_dx"] = K.dropout_backward(dh, out["dropout_mask"], 0.3, backend=backend)
    return out


def _assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert np.asarray(a[key]).tobytes() == np.asarray(b[key]).tobytes(), key


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeated_runs_are_bitwise_identical(backend):
    _assert_bitwise_equal(_run_everything(backend), _run_everything(backend))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b in ("numba", "cython")])
def test_one_and_two_threads_give_the_same_bits(backend):
    before = fastbp.get_num_threads()
    try:
        fastbp.set_num_threads(2)
        assert fastbp.get_num_threads() == 2
        two = _run_everything(backend)
        fastbp.set_num_threads(1)
        assert fastbp.get_num_threads() == 1
        one = _run_everything(backend)
    finally:
        fastbp.set_num_threads(before)
    _assert_bitwise_equal(one, two)
