"""The numba and cython backends give the same bits wherever no transcendental function is involved.

Both split the products into the same tiles (fastbp.backends._cpu.tiling, from the shape only),
call the same one-thread BLAS on each, and run the same formulas (fastbp/formulas.py), chunked
elementwise loops and fixed-chunk reductions in the same order: so every result without
exp/log/tanh/erf from a library (which a platform's libm, or a vectorized math library Numba may
pick up, can evaluate differently) must agree to the last bit; the sigmoid, whose exp is
formulas.exponential (arithmetic only), included. A drifted chunk size, tile plan or
reduction order, or a compiler contracting ``a * b + c`` into one FMA in one backend only, shows
here, where the conformance suite's tolerances would hide it. (The sign of zero is
tests/test_signed_zero.py's business: assert_array_equal counts -0.0 equal to +0.0.)
"""
import numpy as np
import pytest
from helpers import DTYPES

import fastbp
from fastbp import kernels as K

pytestmark = pytest.mark.skipif(not {"numba", "cython"} <= set(fastbp.available_backends()),
                                reason="needs both the numba and the cython backend")

PAIR = ("numba", "cython")

#: (batch, in, out): one serial tile; small tiles of rows (128x784x128, 257x300x65); small tiles
#: of rows and columns (64x512x1000); two large tiles (1024x512x256)
LAYER_SHAPES = [(1, 1, 1), (31, 17, 29), (128, 784, 128), (257, 300, 65), (64, 512, 1000), (1024, 512, 256)]
layer_ids = ["x".join(map(str, s)) for s in LAYER_SHAPES]

#: elements: one, less than a chunk, several uneven chunks (an MNIST MLP's 101,770 parameters), many
SIZES = [1, 1000, 101_770, 300_001]


def _differ(a, b):
    """'' when a and b are equal elementwise, else how they differ (numba's a, cython's b)."""
    bad = a != b
    if not bad.any():
        return ""
    i = int(np.flatnonzero(bad)[0])
    return (f"{int(bad.sum())} of {a.size} elements differ, first at {i}: "
            f"{a.reshape(-1)[i]!r} (numba) != {b.reshape(-1)[i]!r} (cython)")


def _layer(rng, shape, dtype):
    """x (batch, in), w (in, out) scaled by 1/sqrt(in), b (out,): a layer's inputs."""
    batch, n_in, n_out = shape
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    return x, w, (rng.standard_normal(n_out) * 0.1).astype(dtype)


def _both(call):
    """call(backend) for numba and for cython: (numba's result, cython's result)."""
    return tuple(call(be) for be in PAIR)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LAYER_SHAPES, ids=layer_ids)
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid"])
def test_linear_forward(activation, shape, dtype, rng):
    batch, n_in, n_out = shape
    x, w, b = _layer(rng, shape, dtype)
    for bias in (b, None):
        for with_preact in (True, False):
            def run(be):
                z = np.empty((batch, n_out), dtype) if with_preact else None
                y = K.linear_forward(x, w, bias, activation, preact_out=z, backend=be)
                return y, z
            (y1, z1), (y2, z2) = _both(run)
            what = f"linear_forward {activation} bias={bias is not None} preact_out={with_preact}"
            np.testing.assert_array_equal(y1, y2, err_msg=f"{what}: y, numba vs cython")
            if with_preact:
                np.testing.assert_array_equal(z1, z2, err_msg=f"{what}: preact_out, numba vs cython")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LAYER_SHAPES, ids=layer_ids)
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid"])
def test_linear_backward(activation, shape, dtype, rng):
    batch, n_in, n_out = shape
    x, w, b = _layer(rng, shape, dtype)
    y = K.linear_forward(x, w, b, activation, backend="numpy")
    dy = rng.standard_normal((batch, n_out)).astype(dtype)
    saved = {"y": y} if activation != "linear" else {}
    for in_place in (False, True):
        def run(be):
            dy_ = dy.copy()
            dz = dy_ if in_place else np.empty_like(dy)
            dx, dw, db = K.linear_backward(dy_, x, w, activation=activation, dz=dz, backend=be, **saved)
            return {"dx": dx, "dw": dw, "db": db, "dz": dz}
        r1, r2 = _both(run)
        for name in r1:
            np.testing.assert_array_equal(r1[name], r2[name], err_msg=(
                f"linear_backward {activation} dz{'=dy' if in_place else ' buffer'}: {name}, numba vs cython"))


def _run_optimizer(update, size, dtype, rng, n_state, steps=5):
    p0 = rng.standard_normal(size).astype(dtype)
    grads = [rng.standard_normal(size).astype(dtype) for _ in range(steps)]

    def run(be):
        p = p0.copy()
        state = [np.zeros_like(p) for _ in range(n_state)]
        for t, g in enumerate(grads, start=1):
            update(be, p, g, state, t)
        return [p, *state]

    r1, r2 = _both(run)
    for i, (a, b) in enumerate(zip(r1, r2)):
        np.testing.assert_array_equal(a, b, err_msg=f"{'param' if i == 0 else f'state {i}'}: numba vs cython")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0),
                                                  (0.0, False, 0.01), (0.9, True, 0.01)],
                         ids=["plain", "momentum", "nesterov", "weight_decay", "nesterov_weight_decay"])
def test_sgd_update(momentum, nesterov, wd, size, dtype, rng):
    def update(be, p, g, s, t):
        K.sgd_update(p, g, lr=0.05, momentum=momentum, velocity=s[0] if momentum else None, nesterov=nesterov,
                     weight_decay=wd, backend=be)
    _run_optimizer(update, size, dtype, rng, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("wd,decoupled,amsgrad", [(0.0, False, False), (0.01, False, False), (0.01, True, False),
                                                  (0.0, False, True)],
                         ids=["adam", "adam_weight_decay", "adamw", "amsgrad"])
def test_adam_update(wd, decoupled, amsgrad, size, dtype, rng):
    def update(be, p, g, s, t):
        K.adam_update(p, g, s[0], s[1], step=t, lr=1e-2, weight_decay=wd, decoupled_weight_decay=decoupled,
                      amsgrad=amsgrad, vmax=s[2] if amsgrad else None, backend=be)
    _run_optimizer(update, size, dtype, rng, 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("wd,momentum,centered", [(0.0, 0.0, False), (0.0, 0.0, True), (0.0, 0.9, False),
                                                  (0.01, 0.9, True)],
                         ids=["plain", "centered", "momentum", "centered_momentum_weight_decay"])
def test_rmsprop_update(wd, momentum, centered, size, dtype, rng):
    def update(be, p, g, s, t):
        K.rmsprop_update(p, g, s[0], lr=1e-2, weight_decay=wd, momentum=momentum,
                         momentum_buf=s[1] if momentum else None, centered=centered,
                         grad_avg=s[2] if centered else None, backend=be)
    _run_optimizer(update, size, dtype, rng, 3)


GRAD_SHAPES = [(1,), (784, 128), (128,), (128, 10), (10,), (300_001,)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_norm", [0.5, 1e6], ids=["clipped", "unclipped"])
@pytest.mark.parametrize("norm_type", [2.0, np.inf])
def test_clip_grad_norm(norm_type, max_norm, dtype, rng):
    grads = [rng.standard_normal(s).astype(dtype) for s in GRAD_SHAPES]

    def run(be):
        g = [a.copy() for a in grads]
        return K.clip_grad_norm(g, max_norm, norm_type=norm_type, backend=be), g

    (n1, g1), (n2, g2) = _both(run)
    problems = [] if n1 == n2 else [f"norm {n1!r} (numba) != {n2!r} (cython)"]
    problems += [f"gradient {s}: {_differ(a, b)}" for s, a, b in zip(GRAD_SHAPES, g1, g2) if _differ(a, b)]
    assert not problems, "clip_grad_norm: " + "; ".join(problems)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_value(dtype, rng):
    grads = [(rng.standard_normal(s) * 2).astype(dtype) for s in GRAD_SHAPES]

    def run(be):
        g = [a.copy() for a in grads]
        K.clip_grad_value(g, 1.5, backend=be)
        return g

    g1, g2 = _both(run)
    for s, a, b in zip(GRAD_SHAPES, g1, g2):
        np.testing.assert_array_equal(a, b, err_msg=f"clip_grad_value: gradient {s}, numba vs cython")


@pytest.mark.parametrize("kernel, grad_name", [("mse_loss", "dpred"), ("sigmoid_cross_entropy", "dlogits")])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (1000,), (128, 10), (101_770,), (300_001,)],
                         ids=lambda s: "x".join(map(str, s)))
def test_elementwise_losses(kernel, grad_name, shape, dtype, rng):
    """mse_loss and sigmoid_cross_entropy: the loss and its gradient, into a buffer and in place."""
    first = (rng.standard_normal(shape) * 4).astype(dtype)
    second = (rng.standard_normal(shape) if kernel == "mse_loss" else rng.random(shape)).astype(dtype)
    fn = getattr(K, kernel)
    for in_place in (False, True):
        def run(be):
            a = first.copy()
            return fn(a, second, **{grad_name: a if in_place else None}, backend=be)
        (l1, g1), (l2, g2) = _both(run)
        problems = [] if l1 == l2 else [f"loss {l1!r} (numba) != {l2!r} (cython)"]
        if _differ(g1, g2):
            problems.append(f"{grad_name}: {_differ(g1, g2)}")
        assert not problems, f"{kernel}{' in place' if in_place else ''}: " + "; ".join(problems)


#: (batch, features): one serial row, under a chunk, a chunk and one row, the MNIST MLP's hidden
#: layers at batch 128 (parallel), many chunks
NORM_SHAPES = [(1, 5), (63, 17), (65, 33), (128, 512), (1000, 100)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", NORM_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", ["layernorm", "batchnorm"])
def test_normalization(kind, shape, dtype, rng):
    """Forward (with the running statistics for batch norm) and backward, with and without gamma
    and beta: every output the same bits (no transcendental function is involved)."""
    x = (rng.standard_normal(shape) * 3 + 50).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    gamma, beta = rng.uniform(0.5, 1.5, shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    for affine in ((gamma, beta), (None, None)):
        def run(be):
            extra = {}
            if kind == "batchnorm" and shape[0] > 1:
                extra = {"running_mean": np.zeros(shape[1], dtype), "running_var": np.ones(shape[1], dtype)}
            y, mean, rstd = getattr(K, f"{kind}_forward")(x, *affine, **extra, backend=be)
            grads = getattr(K, f"{kind}_backward")(dy, x, affine[0], mean, rstd, backend=be)
            return [y, mean, rstd, *extra.values(), *(g for g in grads if g is not None)]
        for a, b in zip(*_both(run)):
            assert not _differ(a, b), f"{kind} {shape}: {_differ(a, b)}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_dropout(size, dtype, rng):
    x = rng.standard_normal(size).astype(dtype)

    def run(be):
        y, mask = K.dropout_forward(x, 0.3, seed=11, backend=be)
        return y, mask, K.dropout_backward(x, mask, 0.3, backend=be)
    for a, b in zip(*_both(run)):
        assert not _differ(a, b), f"dropout {size}: {_differ(a, b)}"
