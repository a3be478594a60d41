"""Every validation rule of fastbp._checks raises its documented error, naming the argument and
showing what was expected and what was received; and the documented acceptances hold."""
import math

import numpy as np
import pytest

from fastbp import kernels as K

f32, f64 = np.float32, np.float64


def layer(batch=4, n_in=3, n_out=2, dtype=f32):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((batch, n_in)).astype(dtype), rng.standard_normal((n_in, n_out)).astype(dtype),
            rng.standard_normal(n_out).astype(dtype))


# ------------------------------------------------------------------------- array type and dtype

@pytest.mark.parametrize("bad", [[[1.0, 2.0]], 3.0, (1.0,), "x"])
def test_non_arrays_are_refused_with_type_error(bad):
    _, w, _ = layer()
    with pytest.raises(TypeError, match=r"linear_forward: x must be a numpy.ndarray; got "):
        K.linear_forward(bad, w)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.complex64, object, np.float16])
def test_non_float_dtypes_are_refused(dtype):
    x, w, _ = layer()
    with pytest.raises(TypeError, match=rf"linear_forward: x must have dtype float32 or float64; got {np.dtype(dtype)}"):
        K.linear_forward(x.astype(dtype), w)


def test_mixed_dtypes_are_refused():
    x, w, b = layer()
    with pytest.raises(TypeError, match=r"share a dtype; got x: float32, w: float64, b: float32"):
        K.linear_forward(x, w.astype(f64), b)


def test_wrong_ndim_is_refused():
    x, w, _ = layer()
    with pytest.raises(ValueError, match=r"linear_forward: x must be 2-D; got array of shape \(12,\)"):
        K.linear_forward(x.ravel(), w)


# ----------------------------------------------------------------------------------- shapes

def test_shape_mismatches_name_expected_and_received():
    x, w, b = layer()
    with pytest.raises(ValueError, match=r"w must have shape \(3, \?\) .*; got \(4, 2\)"):
        K.linear_forward(x, np.zeros((4, 2), f32))
    with pytest.raises(ValueError, match=r"b must have shape \(2,\) .*; got \(3,\)"):
        K.linear_forward(x, w, np.zeros(3, f32))
    with pytest.raises(ValueError, match=r"linear_backward: dy must have shape \(4, 2\) .*; got \(4, 3\)"):
        K.linear_backward(np.zeros((4, 3), f32), x, w)
    with pytest.raises(ValueError, match=r"linear_backward: y must have shape \(4, 2\) .*; got \(2, 2\)"):
        K.linear_backward(np.zeros((4, 2), f32), x, w, y=np.zeros((2, 2), f32), activation="relu")
    with pytest.raises(ValueError, match=r"mse_loss: target must have shape \(2, 3\) .*; got \(3, 2\)"):
        K.mse_loss(np.zeros((2, 3)), np.zeros((3, 2)))


def test_zero_features_are_refused():
    with pytest.raises(ValueError, match=r"x must have at least one column"):
        K.linear_forward(np.zeros((3, 0), f32), np.zeros((0, 2), f32))
    with pytest.raises(ValueError, match=r"w must have at least one column"):
        K.linear_forward(np.zeros((3, 2), f32), np.zeros((2, 0), f32))


# ---------------------------------------------------------------------------- output buffers

def test_output_buffer_rules():
    x, w, b = layer()
    with pytest.raises(ValueError, match=r"out must have shape \(4, 2\); got \(4, 3\)"):
        K.linear_forward(x, w, out=np.zeros((4, 3), f32))
    with pytest.raises(TypeError, match=r"out must have dtype float32; got float64"):
        K.linear_forward(x, w, out=np.zeros((4, 2), f64))
    with pytest.raises(ValueError, match=r"out must be C-contiguous"):
        K.linear_forward(x, w, out=np.zeros((2, 4), f32).T)
    ro = np.zeros((4, 2), f32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"out must be writeable"):
        K.linear_forward(x, w, out=ro)
    with pytest.raises(TypeError, match=r"out must be a numpy.ndarray; got list"):
        K.linear_forward(x, w, out=[[0.0, 0.0]] * 4)


def test_outputs_must_not_overlap_inputs():
    x = np.zeros((4, 4), f32)
    w = np.zeros((4, 4), f32)
    with pytest.raises(ValueError, match=r"linear_forward: out must not overlap x"):
        K.linear_forward(x, w, out=x)
    big = np.zeros((8, 4), f32)
    with pytest.raises(ValueError, match=r"out must not overlap z \(only the very same array as z is allowed\)"):
        K.activation_forward(big[:6], "relu", out=big[2:])
    with pytest.raises(ValueError, match=r"out and preact_out must not overlap"):
        K.linear_forward(x, w, out=big[:4], preact_out=big[:4])
    dy = np.zeros((4, 4), f32)
    with pytest.raises(ValueError, match=r"dw must not overlap dy"):
        K.linear_backward(dy, x, w, dw=dy)


def test_documented_in_place_use_is_allowed_and_correct():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((5, 3))
    expected = np.maximum(z, 0)
    assert K.activation_forward(z, "relu", out=z, backend="numpy") is z
    np.testing.assert_array_equal(z, expected)
    logits = rng.standard_normal((4, 3))
    _, ref = K.softmax_cross_entropy(logits, np.array([0, 1, 2, 0]), backend="numpy")
    _, got = K.softmax_cross_entropy(logits, np.array([0, 1, 2, 0]), dlogits=logits, backend="numpy")
    assert got is logits
    np.testing.assert_allclose(got, ref, rtol=1e-15)


# ------------------------------------------------------------------------------------- labels

def test_label_rules():
    logits = np.zeros((3, 4), f32)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\) for 4 classes; got 4"):
        K.softmax_cross_entropy(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\) for 4 classes; got -1"):
        K.softmax_cross_entropy(logits, np.array([0, -1, 1]))
    with pytest.raises(TypeError, match=r"labels must be an integer array of class indices; got dtype bool"):
        K.softmax_cross_entropy(logits, np.array([True, False, True]))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\) .*; got \(2,\)"):
        K.softmax_cross_entropy(logits, np.array([0, 1]))
    with pytest.raises(TypeError, match=r"labels must be a numpy.ndarray; got list"):
        K.softmax_cross_entropy(logits, [0, 1, 2])
    with pytest.raises(TypeError, match=r"share a dtype; got logits: float32, labels: float64"):
        K.softmax_cross_entropy(logits, np.full((3, 4), 0.25))
    # any integer width is accepted (MNIST labels are uint8)
    loss, _ = K.softmax_cross_entropy(logits, np.array([0, 3, 1], np.uint8))
    assert loss == pytest.approx(math.log(4), rel=1e-6)


def test_losses_refuse_an_empty_batch():
    with pytest.raises(ValueError, match=r"mean over an empty batch is undefined"):
        K.softmax_cross_entropy(np.zeros((0, 3), f32), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match=r"mean over nothing is undefined"):
        K.mse_loss(np.zeros((0, 3)), np.zeros((0, 3)))


# ----------------------------------------------------------------------------- activations

def test_activation_rules():
    x, w, b = layer()
    with pytest.raises(ValueError, match=r"linear_forward: activation must be one of linear, relu, .*; got 'rleu'"):
        K.linear_forward(x, w, activation="rleu")
    with pytest.raises(ValueError, match=r"alpha must be finite and in \[0.0, inf\]; got -0.1"):
        K.linear_forward(x, w, activation="leaky_relu", alpha=-0.1)
    dy = np.zeros((4, 2), f32)
    with pytest.raises(ValueError, match=r"'relu' differentiates from the output y; pass y="):
        K.linear_backward(dy, x, w, activation="relu")
    with pytest.raises(ValueError, match=r"'gelu' differentiates from the pre-activation z .*; pass z="):
        K.linear_backward(dy, x, w, y=dy, activation="gelu")
    with pytest.raises(ValueError, match=r"activation_forward: z must be 2-D"):
        K.activation_forward(np.zeros(3), "softmax")
    assert K.activation_forward(np.zeros(3), None).shape == (3,)  # None means linear
    assert K.activation_forward(np.ones(2), "swish")[0] == pytest.approx(1 / (1 + math.exp(-1)))


# ------------------------------------------------------------------------------------ scalars

def test_zero_learning_rate_updates_nothing():
    """lr = 0 is a valid rate (a CosineDecay schedule ends there): every optimizer leaves the
    parameters as they were (their state still advances)."""
    g = np.array([0.5, -2.0, 3.0])
    for update, state in ((K.sgd_update, {"momentum": 0.9, "velocity": np.zeros(3)}),
                          (K.adam_update, {"m": np.zeros(3), "v": np.zeros(3), "step": 1}),
                          (K.rmsprop_update, {"sq_avg": np.zeros(3)})):
        p = np.array([1.0, 2.0, 3.0])
        update(p, g, lr=0.0, **state)
        np.testing.assert_array_equal(p, [1.0, 2.0, 3.0])


@pytest.mark.parametrize("kwargs,exc,pattern", [
    ({"lr": -1.0}, ValueError, r"lr must be finite and in \[0.0, inf\]; got -1.0"),
    ({"lr": math.nan}, ValueError, r"lr must be finite"),
    ({"lr": math.inf}, ValueError, r"lr must be finite"),
    ({"lr": True}, TypeError, r"lr must be a real number; got bool"),
    ({"lr": "0.1"}, TypeError, r"lr must be a real number; got str"),
    ({"step": 0}, ValueError, r"step must be >= 1; got 0"),
    ({"step": 1.0}, TypeError, r"step must be an integer; got float"),
    ({"beta1": 1.0}, ValueError, r"beta1 must be finite and in \[0.0, 1.0\); got 1.0"),
    ({"beta2": -0.1}, ValueError, r"beta2 must be finite and in \[0.0, 1.0\)"),
    ({"eps": -1e-8}, ValueError, r"eps must be finite and in \[0.0, inf\]"),
    ({"weight_decay": -0.1}, ValueError, r"weight_decay must be finite"),
    ({"amsgrad": 1}, TypeError, r"amsgrad must be True or False; got 1"),
    ({"amsgrad": True}, ValueError, r"vmax is required"),
])
def test_adam_scalar_rules(kwargs, exc, pattern):
    """(A rate of 0 is allowed, and updates nothing: test_zero_learning_rate_updates_nothing.)"""
    p = np.zeros(3)
    args = {"step": 1, **kwargs}
    with pytest.raises(exc, match="adam_update: " + pattern):
        K.adam_update(p, np.zeros(3), np.zeros(3), np.zeros(3), **args)


def test_sgd_and_rmsprop_rules():
    p, g = np.zeros(3), np.zeros(3)
    with pytest.raises(ValueError, match=r"sgd_update: velocity is required"):
        K.sgd_update(p, g, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"sgd_update: nesterov=True needs momentum > 0"):
        K.sgd_update(p, g, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"sgd_update: momentum must be finite"):
        K.sgd_update(p, g, lr=0.1, momentum=-0.5, velocity=np.zeros(3))
    with pytest.raises(ValueError, match=r"rmsprop_update: grad_avg is required"):
        K.rmsprop_update(p, g, np.zeros(3), centered=True)
    with pytest.raises(ValueError, match=r"rmsprop_update: momentum_buf is required"):
        K.rmsprop_update(p, g, np.zeros(3), momentum=0.9)
    with pytest.raises(ValueError, match=r"rmsprop_update: rho must be finite and in \[0.0, 1.0\)"):
        K.rmsprop_update(p, g, np.zeros(3), rho=1.0)


# ------------------------------------------------------------------------ in-place arrays

def test_in_place_arrays_must_be_contiguous_writeable_and_disjoint():
    g = np.zeros(4)
    with pytest.raises(ValueError, match=r"adam_update: param must be C-contiguous"):
        K.adam_update(np.zeros(8)[::2], g, np.zeros(4), np.zeros(4), step=1)
    ro = np.zeros(4)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"adam_update: m must be writeable"):
        K.adam_update(np.zeros(4), g, ro, np.zeros(4), step=1)
    p = np.zeros(4)
    with pytest.raises(ValueError, match=r"adam_update: param must not overlap grad"):
        K.adam_update(p, p, np.zeros(4), np.zeros(4), step=1)
    m = np.zeros(4)
    with pytest.raises(ValueError, match=r"adam_update: v must not overlap m"):
        K.adam_update(np.zeros(4), g, m, m, step=1)
    with pytest.raises(ValueError, match=r"adam_update: grad must have shape \(4,\) \(like param\); got \(5,\)"):
        K.adam_update(np.zeros(4), np.zeros(5), np.zeros(4), np.zeros(4), step=1)
    with pytest.raises(TypeError, match=r"adam_update: m must have dtype float32; got float64"):
        K.adam_update(np.zeros(4, f32), np.zeros(4, f32), np.zeros(4), np.zeros(4), step=1)
    with pytest.raises(TypeError, match=r"sgd_update: param must be a numpy.ndarray; got list"):
        K.sgd_update([0.0], np.zeros(1), lr=0.1)


def test_clip_rules():
    with pytest.raises(ValueError, match=r"clip_grad_norm: norm_type must be 2 or math.inf; got 1"):
        K.clip_grad_norm([np.zeros(3)], 1.0, norm_type=1)
    with pytest.raises(ValueError, match=r"clip_grad_norm: max_norm must be finite and in \(0.0, inf\]"):
        K.clip_grad_norm([np.zeros(3)], 0.0)
    a = np.zeros(6)
    with pytest.raises(ValueError, match=r"clip_grad_norm: grads\[1\] must not overlap grads\[0\]"):
        K.clip_grad_norm([a[:4], a[2:]], 1.0)
    with pytest.raises(ValueError, match=r"clip_grad_value: grads\[0\] must be C-contiguous"):
        K.clip_grad_value([np.zeros((3, 3)).T], 1.0)
    with pytest.raises(TypeError, match=r"clip_grad_norm: all float arrays of one call must share a dtype"):
        K.clip_grad_norm([np.zeros(3), np.zeros(3, f32)], 1.0)
    g = np.array([3.0, 4.0])  # a single array is accepted as a list of one
    assert K.clip_grad_norm(g, 1.0) == 5.0


# ------------------------------------------------------------- what is accepted and how

@pytest.mark.parametrize("view", ["fortran", "strided", "negative_stride", "transposed"])
def test_non_contiguous_inputs_are_copied_and_give_the_right_result(view):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((10, 12))
    x = {"fortran": np.asfortranarray(base[:5, :6]), "strided": base[::2, ::2],
         "negative_stride": base[::-2, ::-2], "transposed": base[:6, :5].T}[view]
    w = np.asfortranarray(rng.standard_normal((x.shape[1], 3)))
    expected = np.maximum(np.ascontiguousarray(x) @ w, 0)
    np.testing.assert_allclose(K.linear_forward(x, w, activation="relu"), expected, rtol=1e-13)


def test_empty_batch_gives_empty_outputs_and_zero_parameter_gradients():
    x = np.zeros((0, 3), f32)
    w = np.ones((3, 2), f32)
    y = K.linear_forward(x, w, np.ones(2, f32), "relu")
    assert y.shape == (0, 2) and y.dtype == f32
    dx, dw, db = K.linear_backward(np.zeros((0, 2), f32), x, w, y=y, activation="relu")
    assert dx.shape == (0, 3)
    np.testing.assert_array_equal(dw, np.zeros((3, 2)))
    np.testing.assert_array_equal(db, np.zeros(2))
    assert K.activation_forward(np.zeros((0, 4)), "softmax").shape == (0, 4)
