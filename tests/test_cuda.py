"""The cuda backend against the NumPy reference, on device arrays.

Without a GPU (CI) this runs on Numba's CUDA simulator (tests/conftest.py sets
``NUMBA_ENABLE_CUDASIM=1``) with tiny launch geometries (``config.SIMULATOR``: 8x8 product tiles,
4x4 threads, grids of 4 blocks) and shapes chosen to cross every tile and grid boundary and leave
partial tiles. On a real GPU the same tests run with the default geometry, plus the ``gpu``-marked
ones (interop with PyTorch/CuPy, large shapes). ``ci/gpu_check.sh`` runs them there.
"""
import math

import numpy as np
import pytest
from helpers import ACTIVATIONS, assert_close, layer_data

import fastbp
from fastbp import activations as A
from fastbp import kernels as K

pytestmark = pytest.mark.skipif("cuda" not in fastbp.available_backends(),
                                reason="the cuda backend is unavailable (fastbp info says why)")

if "cuda" in fastbp.available_backends():
    from numba import cuda

    from fastbp.backends.cuda import _jit, config

    SIMULATED = _jit.SIMULATOR
else:
    SIMULATED = True

gpu = pytest.mark.skipif(SIMULATED, reason="needs a real NVIDIA GPU (this run uses Numba's CUDA simulator)")

#: (batch, in, out): crosses the 8x8 tiles and the 4-deep inner step of the simulator geometry
SHAPES = [(9, 13, 11), (1, 1, 1), (3, 5, 17)]


@pytest.fixture(autouse=True, scope="module")
def geometry():
    if not SIMULATED:
        yield
        return
    previous = config.configure(**config.SIMULATOR)
    yield
    config.restore(previous)


def dev(a):
    return cuda.to_device(a)


def host(a):
    return a.copy_to_host()


def _saved(act, y, z):
    needs = A.get(act).needs
    return {"y": y} if needs == A.NEEDS_OUTPUT else {"z": z} if needs == A.NEEDS_PREACT else {}


def _to_dev(d):
    return {k: dev(v) for k, v in d.items()}


#: every activation in float32; float64 on three (the simulator is slow; a real GPU runs all)
FORWARD_CASES = [(a, np.float32) for a in ACTIVATIONS] + [
    (a, np.float64) for a in (ACTIVATIONS if not SIMULATED else ("relu", "gelu", "softmax"))]


@pytest.mark.parametrize("activation, dtype", FORWARD_CASES, ids=lambda v: getattr(v, "__name__", v))
def test_linear_forward(activation, dtype, rng):
    shape = SHAPES[0]
    x, w, b = layer_data(rng, *shape, dtype, activation)
    z_ref = np.empty(shape[::2], dtype)
    y_ref = K.linear_forward(x, w, b, activation, alpha=0.1, preact_out=z_ref, backend="numpy")
    z = cuda.device_array(shape[::2], dtype)
    y = K.linear_forward(dev(x), dev(w), dev(b), activation, alpha=0.1, preact_out=z)
    assert isinstance(y, type(z))
    assert_close(host(z), z_ref, dtype)
    assert_close(host(y), y_ref, dtype)


@pytest.mark.parametrize("shape", SHAPES[1:] + [(0, 3, 2)], ids=lambda s: "x".join(map(str, s)))
def test_linear_forward_edges(shape, rng):
    x, w, b = layer_data(rng, *shape, np.float32, "relu")
    y_ref = K.linear_forward(x, w, None, "relu", backend="numpy")
    y = K.linear_forward(dev(x), dev(w), None, "relu")
    assert y.shape == y_ref.shape
    assert_close(host(y), y_ref, np.float32)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_backward(activation, rng):
    dtype = np.float32
    batch, n_in, n_out = shape = SHAPES[0]
    x, w, b = layer_data(rng, *shape, dtype, activation)
    z = np.empty((batch, n_out), dtype)
    y = K.linear_forward(x, w, b, activation, alpha=0.1, preact_out=z, backend="numpy")
    dy = rng.standard_normal((batch, n_out)).astype(dtype)
    saved = _saved(activation, y, z)
    ref = K.linear_backward(dy, x, w, activation=activation, alpha=0.1, backend="numpy", **saved)
    got = K.linear_backward(dev(dy), dev(x), dev(w), activation=activation, alpha=0.1, **_to_dev(saved))
    for g, r in zip(got, ref):
        assert_close(host(g), r, dtype)


def test_linear_backward_in_place_and_options(rng):
    dtype = np.float64
    batch, n_in, n_out = 5, 6, 9
    x, w, _ = layer_data(rng, batch, n_in, n_out, dtype, "tanh")
    y = K.linear_forward(x, w, None, "tanh", backend="numpy")
    dy = rng.standard_normal((batch, n_out))
    ref = K.linear_backward(dy, x, w, y=y, activation="tanh", backend="numpy")
    dy_d = dev(dy)
    dw = cuda.device_array((n_in, n_out), dtype)
    dx, dw_, db = K.linear_backward(dy_d, x=dev(x), w=dev(w), y=dev(y), activation="tanh", dz=dy_d, dw=dw,
                                    need_dx=False, need_db=False)
    assert dx is None and db is None and dw_ is dw
    assert_close(host(dw), ref[1], dtype)
    assert_close(host(dy_d), K.activation_backward(dy, "tanh", y=y, backend="numpy"), dtype)


def test_linear_backward_empty_batch(rng):
    x = np.zeros((0, 3), np.float32)
    w = rng.standard_normal((3, 2)).astype(np.float32)
    dx, dw, db = K.linear_backward(dev(np.zeros((0, 2), np.float32)), dev(x), dev(w))
    assert dx.shape == (0, 3)
    np.testing.assert_array_equal(host(dw), 0)
    np.testing.assert_array_equal(host(db), 0)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activations(activation, rng):
    dtype = np.float32
    z = (rng.standard_normal((5, 7)) * 3).astype(dtype)
    dy = rng.standard_normal((5, 7)).astype(dtype)
    y_ref = K.activation_forward(z, activation, alpha=0.1, backend="numpy")
    assert_close(host(K.activation_forward(dev(z), activation, alpha=0.1)), y_ref, dtype)
    saved = _saved(activation, y_ref, z)
    dz_ref = K.activation_backward(dy, activation, alpha=0.1, backend="numpy", **saved)
    dy_d = dev(dy)
    out = K.activation_backward(dy_d, activation, alpha=0.1, out=dy_d, **_to_dev(saved))  # in place
    assert out is dy_d
    assert_close(host(dy_d), dz_ref, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_softmax_cross_entropy(targets, dtype, rng):
    logits = (rng.standard_normal((7, 6)) * 4).astype(dtype)
    logits[0, 0] = 1e4  # stable for huge logits
    logits[1] = -1e4
    if targets == "labels":
        labels = rng.integers(0, 6, 7)
    else:
        labels = rng.random((7, 6)).astype(dtype)
        labels /= labels.sum(axis=1, keepdims=True)
    loss_ref, g_ref = K.softmax_cross_entropy(logits, labels, backend="numpy")
    loss, g = K.softmax_cross_entropy(dev(logits), dev(labels))
    assert isinstance(loss, float)
    assert math.isclose(loss, loss_ref, rel_tol=1e-12 if dtype is np.float64 else 2e-6)
    assert_close(host(g), g_ref, dtype)
    d = dev(logits)  # in place
    loss2, g2 = K.softmax_cross_entropy(d, dev(labels), dlogits=d)
    assert g2 is d and loss2 == loss
    assert_close(host(d), g_ref, dtype)


@pytest.mark.parametrize("bad", [6, -1])
def test_cross_entropy_labels_out_of_range(bad, rng):
    labels = np.array([0, bad, 2])
    with pytest.raises(ValueError, match=rf"labels must lie in \[0, 6\) for 6 classes; got {bad}"):
        K.softmax_cross_entropy(dev(rng.standard_normal((3, 6))), dev(labels))


def test_mse_loss(rng):
    pred = rng.standard_normal((9, 10)).astype(np.float32)
    target = rng.standard_normal((9, 10)).astype(np.float32)
    loss_ref, g_ref = K.mse_loss(pred, target, backend="numpy")
    p = dev(pred)
    loss, g = K.mse_loss(p, dev(target), dpred=p)
    assert g is p
    assert math.isclose(loss, loss_ref, rel_tol=2e-6)
    assert_close(host(p), g_ref, np.float32)


N_PARAMS = 77  # > the simulator grid's 64 threads: every thread strides


def _optimizer_case(rng, dtype, *names):
    return {n: rng.standard_normal(N_PARAMS).astype(dtype) for n in names}


def _check_update(fn, arrays, dtype, **options):
    ref = {k: v.copy() for k, v in arrays.items()}
    got = _to_dev(arrays)
    for step in (1, 2, 3):
        extra = {"step": step} if fn is K.adam_update else {}
        fn(**ref, **options, **extra, backend="numpy")
        fn(**got, **options, **extra)
    for k in ref:
        assert_close(host(got[k]), ref[k], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_update(momentum, nesterov, dtype, rng):
    arrays = _optimizer_case(rng, dtype, "param", "grad")
    if momentum:
        arrays["velocity"] = np.zeros(N_PARAMS, dtype)
    _check_update(K.sgd_update, arrays, dtype, lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=0.01)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decoupled, amsgrad", [(False, False), (True, False), (False, True)])
def test_adam_update(decoupled, amsgrad, dtype, rng):
    arrays = _optimizer_case(rng, dtype, "param", "grad")
    arrays["m"] = np.zeros(N_PARAMS, dtype)
    arrays["v"] = np.zeros(N_PARAMS, dtype)
    if amsgrad:
        arrays["vmax"] = np.zeros(N_PARAMS, dtype)
    _check_update(K.adam_update, arrays, dtype, lr=0.01, weight_decay=0.1, decoupled_weight_decay=decoupled,
                  amsgrad=amsgrad)


@pytest.mark.parametrize("centered, momentum", [(False, 0.0), (True, 0.9)])
def test_rmsprop_update(centered, momentum, rng):
    dtype = np.float32
    arrays = _optimizer_case(rng, dtype, "param", "grad")
    arrays["sq_avg"] = np.zeros(N_PARAMS, dtype)
    if centered:
        arrays["grad_avg"] = np.zeros(N_PARAMS, dtype)
    if momentum:
        arrays["momentum_buf"] = np.zeros(N_PARAMS, dtype)
    _check_update(K.rmsprop_update, arrays, dtype, lr=0.01, weight_decay=0.01, momentum=momentum, centered=centered)


@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_clip_grad_norm_and_value(norm_type, rng):
    grads = [rng.standard_normal((9, 10)) * 3, rng.standard_normal(70), np.zeros(0)]
    ref = [g.copy() for g in grads]
    got = [dev(g) for g in grads]
    norm_ref = K.clip_grad_norm(ref, 1.5, norm_type=norm_type, backend="numpy")
    norm = K.clip_grad_norm(got, 1.5, norm_type=norm_type)
    assert math.isclose(norm, norm_ref, rel_tol=1e-12)
    for g, r in zip(got, ref):
        assert_close(host(g), r, np.float64)
    got = [dev(r) for r in ref]  # the same start for both (the norm-clipped arrays differ in the last bit)
    K.clip_grad_value(ref, 0.2, backend="numpy")
    K.clip_grad_value(got, 0.2)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(host(g), r)


def test_bitwise_reproducible(rng):
    x, w, b = layer_data(rng, 9, 13, 11, np.float32, "relu")
    dy = rng.standard_normal((9, 11)).astype(np.float32)
    first = [host(a) for a in K.linear_backward(dev(dy), dev(x), dev(w), y=dev(np.abs(dy)), activation="relu")]
    again = [host(a) for a in K.linear_backward(dev(dy), dev(x), dev(w), y=dev(np.abs(dy)), activation="relu")]
    for f, a in zip(first, again):
        np.testing.assert_array_equal(f, a)
    labels = rng.integers(0, 11, 9)
    losses = {K.softmax_cross_entropy(dev(dy), dev(labels))[0] for _ in range(2)}
    assert len(losses) == 1


# ---------------------------------------------------------------------------- placement rules

def test_device_arrays_dispatch_to_cuda_automatically(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    w = rng.standard_normal((4, 2)).astype(np.float32)
    y = K.linear_forward(dev(x), dev(w))  # no backend named: device arrays pick cuda
    assert not isinstance(y, np.ndarray)
    assert_close(host(y), x @ w, np.float32)


def test_host_arrays_are_refused_by_cuda(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    w = rng.standard_normal((4, 2)).astype(np.float32)
    with pytest.raises(TypeError, match=r"backend 'cuda' takes device arrays; x is a host numpy.ndarray"):
        K.linear_forward(x, w, backend="cuda")
    with pytest.raises(TypeError, match=r"backend 'cuda' takes device arrays; w is a host numpy.ndarray"):
        K.linear_forward(dev(x), w)  # mixed: the device array picks cuda, the host one is refused
    with pytest.raises(TypeError, match=r"backend 'numpy' runs on the CPU; x is a device array"):
        K.linear_forward(dev(x), dev(w), backend="numpy")


def test_device_views_must_be_contiguous(rng):
    x = dev(rng.standard_normal((4, 6)).astype(np.float32))
    w = dev(rng.standard_normal((3, 2)).astype(np.float32))
    with pytest.raises(ValueError, match=r"x must be C-contiguous on the device"):
        K.linear_forward(x[:, ::2], w)


def test_device_outputs_checked(rng):
    x = dev(rng.standard_normal((3, 4)).astype(np.float32))
    w = dev(rng.standard_normal((4, 2)).astype(np.float32))
    with pytest.raises(ValueError, match=r"out must have shape \(3, 2\)"):
        K.linear_forward(x, w, out=cuda.device_array((2, 3), np.float32))
    with pytest.raises(TypeError, match=r"out must have dtype float32"):
        K.linear_forward(x, w, out=cuda.device_array((3, 2), np.float64))
    g = dev(rng.standard_normal(5))
    with pytest.raises(ValueError, match=r"must not overlap"):
        K.adam_update(g, g, dev(np.zeros(5)), dev(np.zeros(5)), step=1)


# ------------------------------------------------------------------------- real hardware only

@gpu
def test_large_shapes_default_geometry(rng):
    for shape in [(128, 784, 128), (257, 1000, 130)]:
        x, w, b = layer_data(rng, *shape, np.float32, "relu")
        ref = K.linear_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), "relu",
                               backend="numpy")
        y = host(K.linear_forward(dev(x), dev(w), dev(b), "relu"))
        assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 1e-5


@gpu
def test_torch_and_cupy_arrays_without_copies(rng):
    x = rng.standard_normal((64, 32)).astype(np.float32)
    w = rng.standard_normal((32, 16)).astype(np.float32)
    ref = np.maximum(x @ w, 0)
    tried = 0
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        tx, tw = torch.from_numpy(x).cuda(), torch.from_numpy(w).cuda()
        out = torch.empty((64, 16), device="cuda")
        y = K.linear_forward(tx, tw, None, "relu", out=out)
        assert y.__cuda_array_interface__["data"][0] == out.data_ptr()  # written in place, no copy
        assert_close(out.cpu().numpy(), ref, np.float32)
        tried += 1
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        cx, cw = cupy.asarray(x), cupy.asarray(w)
        y = K.linear_forward(cx, cw, None, "relu")
        assert_close(cupy.asnumpy(cupy.asarray(y)), ref, np.float32)
        y = K.linear_forward(cupy.from_dlpack(cx.toDlpack()), cw, None, "relu")
        assert_close(cupy.asnumpy(cupy.asarray(y)), ref, np.float32)
        tried += 1
    assert tried, "neither PyTorch with CUDA nor CuPy is installed on this GPU machine"
