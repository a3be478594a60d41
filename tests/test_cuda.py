"""What is particular to the cuda backend: device-array placement and interop, launch geometry.

What every backend must compute (layers, activations, losses, optimizers, clipping, in-place
uses) is checked for cuda by the conformance suite, tests/test_conformance.py, on device arrays.

Without a GPU (CI) this runs on Numba's CUDA simulator (tests/conftest.py sets
``NUMBA_ENABLE_CUDASIM=1``) with tiny launch geometries (``config.SIMULATOR``: 8x8 product tiles,
4x4 threads, grids of 4 blocks) and shapes chosen to cross every tile and grid boundary and leave
partial tiles. On a real GPU the same tests run with the default geometry, plus the ``gpu``-marked
ones (interop with PyTorch/CuPy, large shapes). ``ci/gpu_check.sh`` runs them there.
"""
import numpy as np
import pytest
from helpers import assert_close, layer_data

import fastbp
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


@pytest.mark.parametrize("bad", [6, -1])
def test_cross_entropy_labels_out_of_range(bad, rng):
    labels = np.array([0, bad, 2])
    with pytest.raises(ValueError, match=rf"labels must lie in \[0, 6\) for 6 classes; got {bad}"):
        K.softmax_cross_entropy(dev(rng.standard_normal((3, 6))), dev(labels))


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
