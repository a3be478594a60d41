"""The conformance suite: every available backend computes what the NumPy reference computes.

Backends join by registering (fastbp.register_backend); this file needs no change for them.
"""
import numpy as np
import pytest
from helpers import ACTIVATIONS, AWKWARD_SHAPES, DTYPES, assert_close, layer_data, other_backends

from fastbp import activations as A
from fastbp import kernels as K

BACKENDS = other_backends()
pytestmark = pytest.mark.skipif(not BACKENDS, reason="no backend besides the reference is available")
shape_ids = ["x".join(map(str, s)) for s in AWKWARD_SHAPES]


def _saved(act, y, z):
    needs = A.get(act).needs
    return {"y": y} if needs == A.NEEDS_OUTPUT else {"z": z} if needs == A.NEEDS_PREACT else {}


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", AWKWARD_SHAPES, ids=shape_ids)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_forward(backend, activation, shape, dtype, rng):
    x, w, b = layer_data(rng, *shape, dtype, activation)
    for bias in (b, None):
        z_ref = np.empty(shape[::2], dtype)
        y_ref = K.linear_forward(x, w, bias, activation, alpha=0.1, preact_out=z_ref, backend="numpy")
        out = np.empty(shape[::2], dtype)
        z = np.empty(shape[::2], dtype)
        y = K.linear_forward(x, w, bias, activation, alpha=0.1, out=out, preact_out=z, backend=backend)
        assert y is out
        assert_close(z, z_ref, dtype)
        assert_close(y, y_ref, dtype)
        assert_close(K.linear_forward(x, w, bias, activation, alpha=0.1, backend=backend), y_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", AWKWARD_SHAPES, ids=shape_ids)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_backward(backend, activation, shape, dtype, rng):
    batch, n_in, n_out = shape
    x, w, b = layer_data(rng, *shape, dtype, activation)
    z = np.empty((batch, n_out), dtype)
    y = K.linear_forward(x, w, b, activation, alpha=0.1, preact_out=z, backend="numpy")
    dy = rng.standard_normal((batch, n_out)).astype(dtype)
    saved = _saved(activation, y, z)
    ref = K.linear_backward(dy, x, w, activation=activation, alpha=0.1, backend="numpy", **saved)
    got = K.linear_backward(dy, x, w, activation=activation, alpha=0.1, backend=backend, **saved)
    for g, r in zip(got, ref):
        assert_close(g, r, dtype)
    # with every buffer given, dz in place over a copy of dy, and the optional gradients skipped
    dy2 = dy.copy()
    dw = np.empty((n_in, n_out), dtype)
    dx, dw_, db = K.linear_backward(dy2, x, w, activation=activation, alpha=0.1, dz=dy2, dw=dw,
                                    need_dx=False, need_db=False, backend=backend, **saved)
    assert dx is None and db is None and dw_ is dw
    assert_close(dw, ref[1], dtype)
    dz_ref = K.activation_backward(dy, activation, alpha=0.1, backend="numpy", **saved) if batch else dy
    assert_close(dy2, dz_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (0, 4), (33, 129), (256, 1000)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activations(backend, activation, shape, dtype, rng):
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y_ref = K.activation_forward(z, activation, alpha=0.1, backend="numpy")
    assert_close(K.activation_forward(z, activation, alpha=0.1, backend=backend), y_ref, dtype)
    saved = _saved(activation, y_ref, z)
    dz_ref = K.activation_backward(dy, activation, alpha=0.1, backend="numpy", **saved)
    assert_close(K.activation_backward(dy, activation, alpha=0.1, backend=backend, **saved), dz_ref, dtype)
    # documented in-place use
    z2, dy2 = z.copy(), dy.copy()
    assert K.activation_forward(z2, activation, alpha=0.1, out=z2, backend=backend) is z2
    assert_close(z2, y_ref, dtype)
    assert K.activation_backward(dy2, activation, alpha=0.1, out=dy2, backend=backend, **saved) is dy2
    assert_close(dy2, dz_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS if not A.get(a).rowwise])
def test_elementwise_activations_on_any_shape(backend, activation, dtype, rng):
    z = rng.standard_normal((3, 4, 5)).astype(dtype)
    assert_close(K.activation_forward(z, activation, backend=backend),
                 K.activation_forward(z, activation, backend="numpy"), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (7, 3), (32, 10), (129, 1000)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_softmax_cross_entropy(backend, targets, shape, dtype, rng):
    logits = (rng.standard_normal(shape) * 5).astype(dtype)
    if targets == "labels":
        t = rng.integers(0, shape[1], size=shape[0])
    else:
        t = rng.random(shape).astype(dtype)
        t /= t.sum(axis=1, keepdims=True)
    loss_ref, grad_ref = K.softmax_cross_entropy(logits, t, backend="numpy")
    loss, grad = K.softmax_cross_entropy(logits, t, backend=backend)
    assert_close(loss, loss_ref, dtype)
    assert_close(grad, grad_ref, dtype)
    assert K.softmax_cross_entropy(logits, t, need_grad=False, backend=backend)[1] is None
    inplace = logits.copy()
    loss2, grad2 = K.softmax_cross_entropy(inplace, t, dlogits=inplace, backend=backend)
    assert grad2 is inplace
    assert_close(loss2, loss_ref, dtype)
    assert_close(grad2, grad_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7, 3), (32, 10), (100003,)], ids=lambda s: "x".join(map(str, s)))
def test_mse_loss(backend, shape, dtype, rng):
    pred = rng.standard_normal(shape).astype(dtype)
    target = rng.standard_normal(shape).astype(dtype)
    loss_ref, grad_ref = K.mse_loss(pred, target, backend="numpy")
    loss, grad = K.mse_loss(pred, target, backend=backend)
    assert_close(loss, loss_ref, dtype)
    assert_close(grad, grad_ref, dtype)
    loss2, grad2 = K.mse_loss(pred, target, dpred=pred, backend=backend)
    assert grad2 is pred
    assert_close(grad2, grad_ref, dtype)


SIZES = [(1,), (7,), (13, 17), (100003,)]
size_ids = ["x".join(map(str, s)) for s in SIZES]


def _run_steps(update, backend, shape, dtype, rng, n_state, **kw):
    p0 = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(4)]
    results = []
    for be in ("numpy", backend):
        p = p0.copy()
        state = [np.zeros_like(p) for _ in range(n_state)]
        for t, g in enumerate(grads, start=1):
            update(be, p, g, state, t)
        results.append((p, state))
    (p_ref, s_ref), (p, s) = results
    assert_close(p, p_ref, dtype)
    for a, b in zip(s, s_ref):
        assert_close(a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SIZES, ids=size_ids)
@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 0.01), (0.9, True, 0.0)])
def test_sgd_update(backend, momentum, nesterov, wd, shape, dtype, rng):
    def update(be, p, g, s, t):
        K.sgd_update(p, g, lr=0.05, momentum=momentum, velocity=s[0], nesterov=nesterov, weight_decay=wd, backend=be)
    _run_steps(update, backend, shape, dtype, rng, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SIZES, ids=size_ids)
@pytest.mark.parametrize("wd,decoupled,amsgrad", [(0.0, False, False), (0.1, False, True), (0.01, True, False)])
def test_adam_update(backend, wd, decoupled, amsgrad, shape, dtype, rng):
    def update(be, p, g, s, t):
        K.adam_update(p, g, s[0], s[1], step=t, lr=1e-2, weight_decay=wd, decoupled_weight_decay=decoupled,
                      amsgrad=amsgrad, vmax=s[2], backend=be)
    _run_steps(update, backend, shape, dtype, rng, 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SIZES, ids=size_ids)
@pytest.mark.parametrize("wd,momentum,centered", [(0.0, 0.0, False), (0.01, 0.9, True), (0.0, 0.5, False)])
def test_rmsprop_update(backend, wd, momentum, centered, shape, dtype, rng):
    def update(be, p, g, s, t):
        K.rmsprop_update(p, g, s[0], lr=1e-2, weight_decay=wd, momentum=momentum, momentum_buf=s[1],
                         centered=centered, grad_avg=s[2], backend=be)
    _run_steps(update, backend, shape, dtype, rng, 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", [2.0, np.inf])
def test_clip_grad_norm(backend, norm_type, dtype, rng):
    shapes = [(1,), (128, 784), (128,), (10, 128), (100003,)]
    grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ref = [g.copy() for g in grads]
    norm_ref = K.clip_grad_norm(ref, 1.0, norm_type=norm_type, backend="numpy")
    norm = K.clip_grad_norm(grads, 1.0, norm_type=norm_type, backend=backend)
    assert_close(norm, norm_ref, dtype)
    for g, r in zip(grads, ref):
        assert_close(g, r, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_value(backend, dtype, rng):
    grads = [rng.standard_normal(s).astype(dtype) * 3 for s in [(5,), (64, 33), (100003,)]]
    ref = [g.copy() for g in grads]
    K.clip_grad_value(ref, 1.5, backend="numpy")
    K.clip_grad_value(grads, 1.5, backend=backend)
    for g, r in zip(grads, ref):
        np.testing.assert_array_equal(g, r)
