"""The conformance suite: every available backend computes what the NumPy reference computes.

Backends join by registering (fastbp.register_backend); this file needs no change for them. The
cuda backend runs the same cases on device arrays (a real GPU, or Numba's CUDA simulator where
there is none: tests/conftest.py), through :class:`helpers.Target`: inputs go where the backend
computes with ``put``, results come back with ``get``. On the simulator, where every GPU thread is
a Python thread, only the small shapes run (``Target.shapes``), with a small launch geometry that
they still cross; a real GPU runs every shape.
"""
import numpy as np
import pytest
from helpers import ACTIVATIONS, AWKWARD_SHAPES, DTYPES, Target, assert_close, conformance_backends, layer_data

from fastbp import activations as A
from fastbp import kernels as K

TARGETS = [Target(b) for b in conformance_backends()]
pytestmark = pytest.mark.skipif(not TARGETS, reason="no backend besides the reference is available")


def _sid(shape):
    return "x".join(map(str, shape))


def per_target(shapes, activations=None, dtypes=DTYPES, on_simulator=None):
    """Parameters ("backend", ["activation",] "shape", "dtype"): every target with each shape it
    can afford (``Target.shapes``) and, on Numba's CUDA simulator, only the (activation, shape,
    dtype) combinations that ``on_simulator`` keeps. Pass with ``indirect=["backend"]``."""
    params = []
    for t in TARGETS:
        affordable = t.shapes(shapes)
        for act in activations or [None]:
            for shape in affordable:
                for dtype in dtypes:
                    if t.simulated and on_simulator and not on_simulator(act, shape, dtype, affordable):
                        continue
                    values = (t.name, shape, dtype) if act is None else (t.name, act, shape, dtype)
                    ids = ([] if act is None else [act]) + [t.name, _sid(shape), np.dtype(dtype).name]
                    params.append(pytest.param(*values, id="-".join(ids)))
    return params


# On Numba's CUDA simulator every GPU thread is a Python thread: even the affordable shapes, in
# every activation x shape x dtype combination, would take ~5 minutes on two cores. There the
# suite keeps a covering subset (a real GPU runs every combination):
#  - the activation epilogues do not depend on the shape and the product kernel does not depend
#    on the activation, so every activation runs on SIM_TILE_SHAPES (crossing the simulator
#    geometry's 8x8 tiles and 4-deep inner steps both ways with partial tiles, and the empty
#    batch) and the other small shapes (batch 1, in 1, out 1, ...) run with SIM_ACTIVATIONS, one
#    activation of each kind (none, from the output, from the pre-activation, row-wise);
#  - the kernels are the same source compiled for each dtype, so float64 runs only on the
#    largest affordable shape (SIM_TILE_SHAPES with SIM_ACTIVATIONS for the layers).
SIM_TILE_SHAPES = [(9, 13, 11), (0, 5, 3)]
SIM_ACTIVATIONS = ("linear", "relu", "gelu", "softmax")


def _simulated_layer_case(act, shape, dtype, affordable):
    if dtype is np.float64:
        return shape in SIM_TILE_SHAPES and act in SIM_ACTIVATIONS
    return shape in SIM_TILE_SHAPES or act in SIM_ACTIVATIONS


def _float64_on_largest(act, shape, dtype, affordable):
    return dtype is not np.float64 or shape == max(affordable, key=np.prod)


def _saved(act, y, z):
    needs = A.get(act).needs
    return {"y": y} if needs == A.NEEDS_OUTPUT else {"z": z} if needs == A.NEEDS_PREACT else {}


@pytest.fixture(params=[t.name for t in TARGETS])
def backend(request):
    """A :class:`helpers.Target` (tests that also take a shape parametrize it with per_target)."""
    with Target(request.param) as target:
        yield target


@pytest.mark.parametrize("backend, activation, shape, dtype",
                         per_target(AWKWARD_SHAPES, ACTIVATIONS, on_simulator=_simulated_layer_case),
                         indirect=["backend"])
def test_linear_forward(backend, activation, shape, dtype, rng):
    t = backend
    x, w, b = layer_data(rng, *shape, dtype, activation)
    xd, wd = t.put(x), t.put(w)
    for bias in (b, None):
        z_ref = np.empty(shape[::2], dtype)
        y_ref = K.linear_forward(x, w, bias, activation, alpha=0.1, preact_out=z_ref, backend="numpy")
        bd = t.put(bias)
        out = t.empty(shape[::2], dtype)
        z = t.empty(shape[::2], dtype)
        y = K.linear_forward(xd, wd, bd, activation, alpha=0.1, out=out, preact_out=z, backend=t.name)
        assert y is out
        assert_close(t.get(z), z_ref, dtype)
        assert_close(t.get(y), y_ref, dtype)
        assert_close(t.get(K.linear_forward(xd, wd, bd, activation, alpha=0.1, backend=t.name)), y_ref, dtype)


@pytest.mark.parametrize("backend, activation, shape, dtype",
                         per_target(AWKWARD_SHAPES, ACTIVATIONS, on_simulator=_simulated_layer_case),
                         indirect=["backend"])
def test_linear_backward(backend, activation, shape, dtype, rng):
    t = backend
    batch, n_in, n_out = shape
    x, w, b = layer_data(rng, *shape, dtype, activation)
    z = np.empty((batch, n_out), dtype)
    y = K.linear_forward(x, w, b, activation, alpha=0.1, preact_out=z, backend="numpy")
    dy = rng.standard_normal((batch, n_out)).astype(dtype)
    saved = _saved(activation, y, z)
    ref = K.linear_backward(dy, x, w, activation=activation, alpha=0.1, backend="numpy", **saved)
    xd, wd = t.put(x), t.put(w)
    saved_d = {k: t.put(v) for k, v in saved.items()}
    got = K.linear_backward(t.put(dy), xd, wd, activation=activation, alpha=0.1, backend=t.name, **saved_d)
    for g, r in zip(got, ref):
        assert_close(t.get(g), r, dtype)
    # with every buffer given, dz in place over a copy of dy, and the optional gradients skipped
    dy2 = t.put(dy.copy())
    dw = t.empty((n_in, n_out), dtype)
    dx, dw_, db = K.linear_backward(dy2, xd, wd, activation=activation, alpha=0.1, dz=dy2, dw=dw,
                                    need_dx=False, need_db=False, backend=t.name, **saved_d)
    assert dx is None and db is None and dw_ is dw
    assert_close(t.get(dw), ref[1], dtype)
    dz_ref = K.activation_backward(dy, activation, alpha=0.1, backend="numpy", **saved) if batch else dy
    assert_close(t.get(dy2), dz_ref, dtype)


ACTIVATION_SHAPES = [(1, 1), (3, 7), (0, 4), (13, 17), (33, 129), (256, 1000)]


@pytest.mark.parametrize("backend, activation, shape, dtype",
                         per_target(ACTIVATION_SHAPES, ACTIVATIONS, on_simulator=_float64_on_largest),
                         indirect=["backend"])
def test_activations(backend, activation, shape, dtype, rng):
    t = backend
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y_ref = K.activation_forward(z, activation, alpha=0.1, backend="numpy")
    zd = t.put(z)
    assert_close(t.get(K.activation_forward(zd, activation, alpha=0.1, backend=t.name)), y_ref, dtype)
    saved = _saved(activation, y_ref, z)
    saved_d = {k: t.put(v) for k, v in saved.items()}
    dz_ref = K.activation_backward(dy, activation, alpha=0.1, backend="numpy", **saved)
    assert_close(t.get(K.activation_backward(t.put(dy), activation, alpha=0.1, backend=t.name, **saved_d)),
                 dz_ref, dtype)
    # documented in-place use
    z2, dy2 = t.put(z.copy()), t.put(dy.copy())
    assert K.activation_forward(z2, activation, alpha=0.1, out=z2, backend=t.name) is z2
    assert_close(t.get(z2), y_ref, dtype)
    assert K.activation_backward(dy2, activation, alpha=0.1, out=dy2, backend=t.name, **saved_d) is dy2
    assert_close(t.get(dy2), dz_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS if not A.get(a).rowwise])
def test_elementwise_activations_on_any_shape(backend, activation, dtype, rng):
    z = rng.standard_normal((3, 4, 5)).astype(dtype)
    assert_close(backend.get(K.activation_forward(backend.put(z), activation, backend=backend.name)),
                 K.activation_forward(z, activation, backend="numpy"), dtype)


@pytest.mark.parametrize("backend, shape, dtype",
                         per_target([(1, 1), (1, 10), (7, 3), (9, 6), (32, 10), (129, 1000)],
                                    on_simulator=_float64_on_largest), indirect=["backend"])
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_softmax_cross_entropy(backend, targets, shape, dtype, rng):
    t = backend
    logits = (rng.standard_normal(shape) * 5).astype(dtype)
    if targets == "labels":
        labels = rng.integers(0, shape[1], size=shape[0])
    else:
        labels = rng.random(shape).astype(dtype)
        labels /= labels.sum(axis=1, keepdims=True)
    _check_loss(t, K.softmax_cross_entropy, "dlogits", logits, labels, dtype)
    assert K.softmax_cross_entropy(t.put(logits), t.put(labels), need_grad=False, backend=t.name)[1] is None


def _check_loss(t, fn, grad_name, first, second, dtype):
    """fn(first, second) on target t against the NumPy reference: the loss (a float) and its
    gradient, into a new array and in place over ``first``."""
    loss_ref, grad_ref = fn(first, second, backend="numpy")
    first_d, second_d = t.put(first), t.put(second)
    loss, grad = fn(first_d, second_d, backend=t.name)
    assert isinstance(loss, float)
    assert_close(loss, loss_ref, dtype)
    assert_close(t.get(grad), grad_ref, dtype)
    inplace = t.put(first.copy())
    loss2, grad2 = fn(inplace, second_d, **{grad_name: inplace}, backend=t.name)
    assert grad2 is inplace
    assert_close(loss2, loss_ref, dtype)
    assert_close(t.get(grad2), grad_ref, dtype)


@pytest.mark.parametrize("backend, shape, dtype",
                         per_target([(1,), (7, 3), (13, 17), (32, 10), (100003,)], on_simulator=_float64_on_largest),
                         indirect=["backend"])
def test_mse_loss(backend, shape, dtype, rng):
    t = backend
    pred = rng.standard_normal(shape).astype(dtype)
    target = rng.standard_normal(shape).astype(dtype)
    _check_loss(t, K.mse_loss, "dpred", pred, target, dtype)


@pytest.mark.parametrize("backend, shape, dtype",
                         per_target([(1,), (7, 3), (13, 17), (32, 10), (100003,)], on_simulator=_float64_on_largest),
                         indirect=["backend"])
def test_sigmoid_cross_entropy(backend, shape, dtype, rng):
    """0/1 labels and soft targets, logits out to +-40 (where sigmoid saturates in float32)."""
    t = backend
    logits = (rng.standard_normal(shape) * 8).astype(dtype)
    logits.reshape(-1)[:2] = [40.0, -40.0][:logits.size]
    for targets in ((rng.random(shape) < 0.5).astype(dtype), rng.random(shape).astype(dtype)):
        _check_loss(t, K.sigmoid_cross_entropy, "dlogits", logits, targets, dtype)


#: (13, 17): more elements than the simulator geometry's 64-thread grids, so every thread strides
SIZES = [(1,), (7,), (13, 17), (100003,)]


def _run_steps(update, t, shape, dtype, rng, n_state):
    p0 = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(4)]
    p_ref = p0.copy()
    s_ref = [np.zeros_like(p0) for _ in range(n_state)]
    for step, g in enumerate(grads, start=1):
        update("numpy", p_ref, g, s_ref, step)
    p = t.put(p0.copy())
    s = [t.put(np.zeros_like(p0)) for _ in range(n_state)]
    for step, g in enumerate(grads, start=1):
        update(t.name, p, t.put(g), s, step)
    assert_close(t.get(p), p_ref, dtype)
    for a, b in zip(s, s_ref):
        assert_close(t.get(a), b, dtype)


@pytest.mark.parametrize("backend, shape, dtype", per_target(SIZES, on_simulator=_float64_on_largest),
                         indirect=["backend"])
@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 0.01), (0.9, True, 0.0)])
def test_sgd_update(backend, momentum, nesterov, wd, shape, dtype, rng):
    def update(be, p, g, s, t):
        K.sgd_update(p, g, lr=0.05, momentum=momentum, velocity=s[0], nesterov=nesterov, weight_decay=wd, backend=be)
    _run_steps(update, backend, shape, dtype, rng, 1)


@pytest.mark.parametrize("backend, shape, dtype", per_target(SIZES, on_simulator=_float64_on_largest),
                         indirect=["backend"])
@pytest.mark.parametrize("wd,decoupled,amsgrad", [(0.0, False, False), (0.1, False, True), (0.01, True, False)])
def test_adam_update(backend, wd, decoupled, amsgrad, shape, dtype, rng):
    def update(be, p, g, s, t):
        K.adam_update(p, g, s[0], s[1], step=t, lr=1e-2, weight_decay=wd, decoupled_weight_decay=decoupled,
                      amsgrad=amsgrad, vmax=s[2], backend=be)
    _run_steps(update, backend, shape, dtype, rng, 3)


@pytest.mark.parametrize("backend, shape, dtype", per_target(SIZES, on_simulator=_float64_on_largest),
                         indirect=["backend"])
@pytest.mark.parametrize("wd,momentum,centered", [(0.0, 0.0, False), (0.01, 0.9, True), (0.0, 0.5, False)])
def test_rmsprop_update(backend, wd, momentum, centered, shape, dtype, rng):
    def update(be, p, g, s, t):
        K.rmsprop_update(p, g, s[0], lr=1e-2, weight_decay=wd, momentum=momentum, momentum_buf=s[1],
                         centered=centered, grad_avg=s[2], backend=be)
    _run_steps(update, backend, shape, dtype, rng, 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", [2.0, np.inf])
def test_clip_grad_norm(backend, norm_type, dtype, rng):
    t = backend
    shapes = t.shapes([(1,), (128, 784), (128,), (10, 128), (100003,), (13, 17), (0,), (9, 10)])
    grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ref = [g.copy() for g in grads]
    norm_ref = K.clip_grad_norm(ref, 1.0, norm_type=norm_type, backend="numpy")
    got = [t.put(g) for g in grads]
    norm = K.clip_grad_norm(got, 1.0, norm_type=norm_type, backend=t.name)
    assert isinstance(norm, float)
    assert_close(norm, norm_ref, dtype)
    for g, r in zip(got, ref):
        assert_close(t.get(g), r, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_value(backend, dtype, rng):
    t = backend
    shapes = t.shapes([(5,), (64, 33), (100003,), (13, 17), (0,)])
    grads = [rng.standard_normal(s).astype(dtype) * 3 for s in shapes]
    ref = [g.copy() for g in grads]
    got = [t.put(g) for g in grads]
    K.clip_grad_value(ref, 1.5, backend="numpy")
    K.clip_grad_value(got, 1.5, backend=t.name)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(t.get(g), r)


# ----------------------------------------------------------------------------- normalization
#: (batch, features): one element, one row, one column, fewer rows than a chunk, a chunk (64)
#: and one row past it, an empty batch, a wide layer over several chunks; the simulator keeps
#: those with every dimension <= 17 (its geometry's reductions are crossed by 9x13 and 17x3)
NORM_SHAPES = [(1, 1), (2, 1), (1, 7), (5, 7), (9, 13), (17, 3), (0, 4), (64, 9), (65, 33), (300, 513)]
#: (gamma given, beta given): the affine part whole, scale only, none
AFFINE = [(True, True), (True, False), (False, False)]


def _norm_data(rng, shape, dtype, mean=0.0):
    """x with columns of different means and scales, gamma, beta, dy."""
    batch, n = shape
    x = rng.standard_normal(shape) * rng.uniform(0.5, 2.0, n) + mean + rng.standard_normal(n)
    gamma, beta = rng.uniform(0.5, 1.5, n), rng.standard_normal(n)
    return (x.astype(dtype), gamma.astype(dtype), beta.astype(dtype),
            rng.standard_normal(shape).astype(dtype))


def _assert_all_close(t, got, ref, dtype):
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        if r is None:
            assert g is None
        else:
            assert_close(t.get(g), r, dtype)


@pytest.mark.parametrize("backend, shape, dtype", per_target(NORM_SHAPES, on_simulator=_float64_on_largest),
                         indirect=["backend"])
@pytest.mark.parametrize("affine", AFFINE, ids=["gamma-beta", "gamma", "plain"])
def test_layernorm(backend, affine, shape, dtype, rng):
    t = backend
    x, gamma, beta, dy = _norm_data(rng, shape, dtype)
    gamma, beta = (gamma if affine[0] else None), (beta if affine[1] else None)
    ref = K.layernorm_forward(x, gamma, beta, eps=1e-3, backend="numpy")
    xd, gd, bd = t.put(x), t.put(gamma), t.put(beta)
    _assert_all_close(t, K.layernorm_forward(xd, gd, bd, eps=1e-3, backend=t.name), ref, dtype)
    outs = (t.empty(shape, dtype), t.empty(shape[:1], dtype), t.empty(shape[:1], dtype))
    got = K.layernorm_forward(xd, gd, bd, eps=1e-3, out=outs[0], mean_out=outs[1], rstd_out=outs[2], backend=t.name)
    assert all(g is o for g, o in zip(got, outs))
    _assert_all_close(t, got, ref, dtype)
    mean, rstd = ref[1], ref[2]
    grads_ref = K.layernorm_backward(dy, x, gamma, mean, rstd, backend="numpy")
    assert (grads_ref[1] is None) == (gamma is None)
    got = K.layernorm_backward(t.put(dy), xd, gd, t.put(mean), t.put(rstd), backend=t.name)
    _assert_all_close(t, got, grads_ref, dtype)
    got = K.layernorm_backward(t.put(dy), xd, gd, t.put(mean), t.put(rstd), need_dx=False, need_dbeta=False,
                               backend=t.name)
    _assert_all_close(t, got, (None, grads_ref[1], None), dtype)


@pytest.mark.parametrize("backend, shape, dtype",
                         per_target([s for s in NORM_SHAPES if s[0] >= 2], on_simulator=_float64_on_largest),
                         indirect=["backend"])
@pytest.mark.parametrize("affine", AFFINE, ids=["gamma-beta", "gamma", "plain"])
@pytest.mark.parametrize("unbiased", [True, False], ids=["unbiased", "biased"])
def test_batchnorm(backend, unbiased, affine, shape, dtype, rng):
    """Training with the running statistics updated, training without them, inference on them,
    and the backward pass through the batch statistics."""
    t = backend
    x, gamma, beta, dy = _norm_data(rng, shape, dtype, mean=3.0)
    gamma, beta = (gamma if affine[0] else None), (beta if affine[1] else None)
    rm, rv = rng.standard_normal(shape[1]).astype(dtype), rng.uniform(0.5, 2, shape[1]).astype(dtype)
    xd, gd, bd = t.put(x), t.put(gamma), t.put(beta)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    ref = K.batchnorm_forward(x, gamma, beta, running_mean=rm_ref, running_var=rv_ref, momentum=0.2,
                              unbiased_running_var=unbiased, backend="numpy")
    rm_d, rv_d = t.put(rm), t.put(rv)
    got = K.batchnorm_forward(xd, gd, bd, running_mean=rm_d, running_var=rv_d, momentum=0.2,
                              unbiased_running_var=unbiased, backend=t.name)
    _assert_all_close(t, got + (rm_d, rv_d), ref + (rm_ref, rv_ref), dtype)
    _assert_all_close(t, K.batchnorm_forward(xd, gd, bd, backend=t.name),
                      K.batchnorm_forward(x, gamma, beta, backend="numpy"), dtype)
    inference = K.batchnorm_forward(x, gamma, beta, running_mean=rm, running_var=rv, training=False,
                                    backend="numpy")
    _assert_all_close(t, K.batchnorm_forward(xd, gd, bd, running_mean=t.put(rm), running_var=t.put(rv),
                                             training=False, backend=t.name), inference, dtype)
    mean, rstd = ref[1], ref[2]
    grads_ref = K.batchnorm_backward(dy, x, gamma, mean, rstd, backend="numpy")
    got = K.batchnorm_backward(t.put(dy), xd, gd, t.put(mean), t.put(rstd), backend=t.name)
    _assert_all_close(t, got, grads_ref, dtype)
    dx = t.empty(shape, dtype)
    got = K.batchnorm_backward(t.put(dy), xd, gd, t.put(mean), t.put(rstd), dx=dx, need_dbeta=False, backend=t.name)
    assert got[0] is dx
    _assert_all_close(t, got, (grads_ref[0], grads_ref[1], None), dtype)


# ------------------------------------------------------------------------------------ dropout

@pytest.mark.parametrize("backend, shape, dtype",
                         per_target([(1, 1), (5, 7), (13, 17), (0, 3), (300, 513)], on_simulator=_float64_on_largest),
                         indirect=["backend"])
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.9])
def test_dropout(backend, rate, shape, dtype, rng):
    """The mask is a pure function of (seed, index) and y, dx one rounding each: the same bits as
    the reference on every backend."""
    t = backend
    x, dy = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    y_ref, mask_ref = K.dropout_forward(x, rate, seed=12345, backend="numpy")
    y, mask = K.dropout_forward(t.put(x), rate, seed=12345, backend=t.name)
    np.testing.assert_array_equal(t.get(mask), mask_ref)
    np.testing.assert_array_equal(t.get(y), y_ref)
    dx_ref = K.dropout_backward(dy, mask_ref, rate, backend="numpy")
    np.testing.assert_array_equal(t.get(K.dropout_backward(t.put(dy), mask, rate, backend=t.name)), dx_ref)
    # in place, over x and over dy
    x2, dy2 = t.put(x.copy()), t.put(dy.copy())
    assert K.dropout_forward(x2, rate, seed=12345, out=x2, backend=t.name)[0] is x2
    np.testing.assert_array_equal(t.get(x2), y_ref)
    assert K.dropout_backward(dy2, mask, rate, out=dy2, backend=t.name) is dy2
    np.testing.assert_array_equal(t.get(dy2), dx_ref)
