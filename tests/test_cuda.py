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


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_pipelined_products_give_the_plain_kernels_bits(dtype, rng):
    """The pipelined product kernel (GemmTiles.pipelined) against the plain one with the same
    tiles: forward with bias, preact and gelu, dw (transposed a) and dx (transposed b), on shapes
    that cross tiles and inner steps and leave partial ones. Each output sums its products in the
    same order in both kernels, so the bits agree; and both agree with the reference."""
    from dataclasses import replace

    batch, n_in, n_out = 9, 13, 11  # 8x8 tiles, inner steps of 4: two partial tiles each way
    x, w, b = layer_data(rng, batch, n_in, n_out, dtype, "gelu")
    dy = rng.standard_normal((batch, n_out)).astype(dtype)
    z_ref = np.empty((batch, n_out), dtype)
    y_ref = K.linear_forward(x, w, b, "gelu", preact_out=z_ref, backend="numpy")
    grads_ref = K.linear_backward(dy, x, w, z=z_ref, activation="gelu", backend="numpy")
    base = config.current().gemm(np.dtype(dtype))
    if base.tm % 4 or base.tn % 4:  # the simulator's 2x2 blocks: 4x4 blocks of 2x2 threads instead
        base = config.GemmTiles(8, 8, 4, 4, 4)
    results = []
    for pipelined in (False, True):
        tiles = replace(base, pipelined=pipelined)
        previous = config.configure(gemm32=tiles, gemm64=tiles)
        try:
            z = cuda.device_array((batch, n_out), dtype)
            y = K.linear_forward(dev(x), dev(w), dev(b), "gelu", preact_out=z)
            grads = K.linear_backward(dev(dy), dev(x), dev(w), z=z, activation="gelu")
            results.append([host(a) for a in (y, z, *grads)])
        finally:
            config.restore(previous)
    for plain, piped, ref in zip(*results, [y_ref, z_ref, *grads_ref]):
        assert_close(piped, ref, dtype)
        assert plain.tobytes() == piped.tobytes()


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


# ------------------------------------------------------------------------------- reliability

def _hostile_device_cases(rng):
    """(description, call, expected exception class or None for "computes, and NaN/Inf propagate")."""
    f = lambda *s: dev(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    x, w, b = f(5, 7), f(7, 3), f(3)
    labels = dev(np.array([0, 1, 2, 1, 0]))
    nan_x = rng.standard_normal((5, 7)).astype(np.float32)
    nan_x[1, 2] = np.nan
    nan_x[3, 0] = np.inf
    return [
        ("x 3-D", lambda: K.linear_forward(dev(np.zeros((1, 5, 7), np.float32)), w), ValueError),
        ("w rows != x columns", lambda: K.linear_forward(x, f(6, 3)), ValueError),
        ("b wrong length", lambda: K.linear_forward(x, w, f(4)), ValueError),
        ("mixed dtypes", lambda: K.linear_forward(x, dev(np.zeros((7, 3)))), TypeError),
        ("int32 device array", lambda: K.linear_forward(dev(np.zeros((5, 7), np.int32)), w), TypeError),
        ("bool device array", lambda: K.activation_forward(dev(np.zeros((5, 7), bool)), "relu"), TypeError),
        ("complex device array", lambda: K.activation_forward(dev(np.zeros((2, 2), np.complex64)), "relu"), TypeError),
        ("non-contiguous device view", lambda: K.linear_forward(f(5, 14)[:, ::2], w), ValueError),
        ("host array for cuda", lambda: K.linear_forward(np.zeros((5, 7), np.float32), w), TypeError),
        ("python list", lambda: K.linear_forward([[1.0] * 7] * 5, w, backend="cuda"), TypeError),
        ("python scalar", lambda: K.mse_loss(1.0, x, backend="cuda"), TypeError),
        ("out aliases x", lambda: K.activation_forward(x, "relu", out=x[:, :]), None),  # the same memory: allowed
        ("out wrong shape", lambda: K.linear_forward(x, w, out=cuda.device_array((3, 5), np.float32)), ValueError),
        ("dw aliases x", lambda: K.linear_backward(f(5, 3), x, w, dw=x), ValueError),
        ("param aliases grad", lambda: K.sgd_update(b, b, lr=0.1), ValueError),
        ("labels out of range", lambda: K.softmax_cross_entropy(f(5, 3), dev(np.array([0, 1, 3, 1, 0]))), ValueError),
        ("labels negative", lambda: K.softmax_cross_entropy(f(5, 3), dev(np.array([0, -2, 1, 1, 0]))), ValueError),
        ("float labels of the wrong shape", lambda: K.softmax_cross_entropy(f(5, 3), f(5)), ValueError),
        ("bool labels", lambda: K.softmax_cross_entropy(f(5, 3), dev(np.ones(5, bool))), TypeError),
        ("labels too short", lambda: K.softmax_cross_entropy(f(5, 3), labels[:4]), ValueError),
        ("empty-batch loss", lambda: K.softmax_cross_entropy(f(0, 3), dev(np.zeros(0, np.int64))), ValueError),
        ("empty batch forward", lambda: K.linear_forward(f(0, 7), w), None),
        ("NaN and Inf propagate", lambda: K.linear_forward(dev(nan_x), w, b, "gelu"), None),
        ("bad lr", lambda: K.adam_update(f(4), f(4), f(4), f(4), step=1, lr=-1.0), ValueError),
        ("bad step", lambda: K.adam_update(f(4), f(4), f(4), f(4), step=0), ValueError),
        ("unknown activation", lambda: K.activation_forward(x, "relux"), ValueError),
    ]


def test_hostile_device_inputs(rng):
    cases = _hostile_device_cases(rng)
    failures = []
    for name, call, expected in cases:
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001  (the outcome is what is checked)
            if expected is None or not isinstance(exc, expected):
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        if expected is not None:
            failures.append(f"{name}: no error (expected {expected.__name__})")
        elif name == "NaN and Inf propagate":
            y = host(result)
            if not (np.isnan(y[1]).all() and np.isnan(y[3]).any() and np.isfinite(y[[0, 2, 4]]).all()):
                failures.append(f"{name}: got {y}")
    print(f"cuda: {len(cases)} hostile cases tried")
    assert not failures, "\n".join(failures)


def test_extreme_values_on_device():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], np.float32)
    loss, grad = K.softmax_cross_entropy(dev(logits), dev(np.array([0, 2, 1])))
    assert np.isclose(loss, (np.log(3) + np.log(2)) / 3, rtol=1e-6)
    expected = np.array([[0, 0, 0], [1 / 3, 1 / 3, -2 / 3], [0.5, -0.5, 0]]) / 3
    assert np.allclose(host(grad), expected, atol=1e-7)
    s = host(K.activation_forward(dev(np.array([[-1e3, 0.0, 1e3]], np.float32)), "sigmoid"))
    np.testing.assert_array_equal(s, [[0.0, 0.5, 1.0]])
    ls = host(K.activation_forward(dev(logits), "log_softmax"))
    assert np.all(np.isfinite(ls)) and np.isclose(ls[0, 1], -2e4)
    p = dev(np.linspace(-1, 1, 70).astype(np.float32))
    before = host(p)
    m, v = dev(np.zeros(70, np.float32)), dev(np.zeros(70, np.float32))
    K.adam_update(p, dev(np.zeros(70, np.float32)), m, v, step=1, eps=1e-30)
    np.testing.assert_array_equal(host(p), before)


@gpu
def test_threads_at_once_on_device(rng):
    """8 Python threads launching kernels at once on independent device arrays. Real GPU only:
    Numba's CUDA simulator cannot launch from several Python threads at once (it finds a GPU
    thread's threadIdx through the current Python thread: AttributeError)."""
    import threading

    errors = []

    def work(seed):
        try:
            r = np.random.default_rng(seed)
            x = r.standard_normal((6, 5)).astype(np.float32)
            w = r.standard_normal((5, 4)).astype(np.float32)
            for _ in range(50):
                y = host(K.linear_forward(dev(x), dev(w), None, "relu"))
                np.testing.assert_allclose(y, np.maximum(x @ w, 0), rtol=1e-5, atol=1e-5)
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
