"""relu and leaky_relu never produce a negative zero, on every backend and every path.

relu(z) = max(z, 0) is +0.0 for z <= 0, -0.0 included; leaky_relu(z) is +0.0 for z = +-0.0, and
for every z < 0 when alpha = 0; their derivatives are +0.0 where the unit is inactive, whatever
the sign of dy. A kernel that writes ``z * (z > 0)``, ``alpha * z`` or ``dy * mask`` gets -0.0
there instead (equal to +0.0, so assert_close cannot see it: these tests look at np.signbit).
A -0.0 is harmless in a sum but shows in ``1 / y``, ``copysign``, ``atan2`` and in bitwise
comparisons between backends. NaN inputs stay NaN (``z > 0 ? z : 0`` would make them 0).

Each path is checked: the fused epilogue of linear_forward (with and without bias and
preact_out, on a small shape and on shapes that take the CPU backends' tiled, parallel path),
activation_forward (also in place), linear_backward's dz and activation_backward.
"""
import numpy as np
import pytest
from helpers import DTYPES, Target

import fastbp
from fastbp import kernels as K

TARGETS = [Target(b) for b in fastbp.available_backends()]

#: (activation, alpha): relu, leaky_relu with a slope, leaky_relu with slope 0 (relu again)
CASES = [("relu", 0.1), ("leaky_relu", 0.1), ("leaky_relu", 0.0)]
case_ids = ["relu", "leaky_relu", "leaky_relu_alpha0"]

#: (batch, in, out): one serial tile on the CPU backends; then tiled and parallel products
LAYER_SHAPES = [(9, 13, 11), (128, 784, 128), (257, 300, 65)]
#: elementwise: one chunk; then several (parallel) chunks
ELEMENTWISE_SHAPES = [(3, 7), (300, 257)]


def per_target(shapes):
    return [pytest.param(t.name, s, id=f"{t.name}-{'x'.join(map(str, s))}") for t in TARGETS for s in t.shapes(shapes)]


@pytest.fixture
def backend(request):
    with Target(request.param) as target:
        yield target


def _output_problems(y, alpha, act, what):
    """y = relu(.) / leaky_relu(.) of something: its zeros must be +0.0 and, for relu (or
    alpha = 0), nothing may have the sign bit set but NaN. Returns the problems, as text."""
    problems = []
    bad = (y == 0) & np.signbit(y)
    if bad.any():
        first = [int(i) for i in np.argwhere(bad)[0]]
        problems.append(f"{what}: {int(bad.sum())} of {y.size} elements are -0.0 (first at {first})")
    if act == "relu" or alpha == 0:
        neg = np.signbit(y) & ~np.isnan(y) & ~bad
        if neg.any():
            problems.append(f"{what}: {int(neg.sum())} elements are negative, e.g. {y[neg][:4]}")
    return problems


def _layer_inputs(rng, shape, dtype):
    """x, w, b whose pre-activations have every sign, exact zeros (zero columns of w with a zero
    bias, of either sign; zero rows of x) and a NaN row (a NaN in x)."""
    batch, n_in, n_out = shape
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = (rng.standard_normal(n_out) * 0.1).astype(dtype)
    w[:, 1::4] = 0
    b[1::8] = 0.0
    b[5::8] = -0.0
    x[2] = 0
    x[4, n_in // 2] = np.nan
    return x, w, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend, shape", per_target(LAYER_SHAPES), indirect=["backend"])
@pytest.mark.parametrize("act, alpha", CASES, ids=case_ids)
def test_fused_forward(backend, act, alpha, shape, dtype, rng):
    t = backend
    x, w, b = _layer_inputs(rng, shape, dtype)
    xd, wd = t.put(x), t.put(w)
    failures = []
    for bias in (b, None):
        for with_preact in (True, False):
            what = f"{t.name} linear_forward {act} alpha={alpha} bias={bias is not None} preact_out={with_preact}"
            z = t.empty(shape[::2], dtype) if with_preact else None
            y = t.get(K.linear_forward(xd, wd, t.put(bias), act, alpha=alpha, preact_out=z, backend=t.name))
            z_ref = K.linear_forward(x, w, bias, "linear", backend="numpy")  # (NaN in row 4 only)
            assert ((y == 0) & ~np.isnan(z_ref)).any(), "no zero outputs: the case tests nothing"
            if not np.isnan(y[4]).all():
                failures.append(f"{what}: NaN inputs gave {y[4][~np.isnan(y[4])][:4]}")
            if np.isnan(np.delete(y, 4, axis=0)).any():
                failures.append(f"{what}: NaN outside the NaN row")
            failures += _output_problems(y, alpha, act, what)
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend, shape", per_target(ELEMENTWISE_SHAPES), indirect=["backend"])
@pytest.mark.parametrize("act, alpha", CASES, ids=case_ids)
def test_activation_forward(backend, act, alpha, shape, dtype, rng):
    t = backend
    z = rng.standard_normal(shape).astype(dtype)
    flat = z.reshape(-1)
    flat[0::5] = -0.0
    flat[1::5] = 0.0
    flat[7::11] = np.nan
    nan = np.isnan(z)
    failures = []
    for in_place in (False, True):
        what = f"{t.name} activation_forward {act} alpha={alpha}{' in place' if in_place else ''}"
        zd = t.put(z.copy())
        y = t.get(K.activation_forward(zd, act, alpha=alpha, out=zd if in_place else None, backend=t.name))
        np.testing.assert_array_equal(np.isnan(y), nan, err_msg=f"{what}: NaN must stay NaN, and only NaN")
        np.testing.assert_array_equal(y[z > 0], z[z > 0])
        failures += _output_problems(y, alpha, act, what)
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


def _inactive_problems(dz, inactive, what):
    """dz must be +0.0 exactly where the unit is inactive. Returns the problems, as text."""
    got = dz[inactive]
    bad = (got != 0) | np.signbit(got)
    if not bad.any():
        return []
    return [f"{what}: {int(bad.sum())} of {got.size} inactive units have dz != +0.0, e.g. {got[bad][:4]}"]


def _saved_output(rng, shape, dtype):
    """A relu output y (half +0.0, a few -0.0, the rest positive) and dy of both signs, never 0."""
    y = np.abs(rng.standard_normal(shape)).astype(dtype) + dtype(0.1)
    flat = y.reshape(-1)
    flat[0::2] = 0.0
    flat[0::6] = -0.0
    dy = rng.standard_normal(shape).astype(dtype)
    dy[dy == 0] = 1
    dy.reshape(-1)[0::4] = -np.abs(dy.reshape(-1)[0::4])  # negative dy on inactive units for sure
    return y, dy


BACKWARD_CASES = [("relu", 0.1), ("leaky_relu", 0.0)]


def _check_derivative(t, dz_of, y, dy, what, labels):
    """dz_of(dy on the target, in_place) -> dz, run into a buffer of its own and in place over dy:
    dz is dy where the unit is on (y > 0), +0.0 where it is off. ``labels``: (in place, buffer)."""
    inactive = ~(y > 0)
    failures = []
    for in_place in (False, True):
        case = what + labels[0 if in_place else 1]
        dz = t.get(dz_of(t.put(dy.copy()), in_place))
        np.testing.assert_array_equal(dz[~inactive], dy[~inactive], err_msg=case)
        failures += _inactive_problems(dz, inactive, case)
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
backward_ids = ["relu", "leaky_relu_alpha0"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend, shape", per_target(LAYER_SHAPES), indirect=["backend"])
@pytest.mark.parametrize("act, alpha", BACKWARD_CASES, ids=backward_ids)
def test_fused_backward_dz(backend, act, alpha, shape, dtype, rng):
    t = backend
    batch, n_in, n_out = shape
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    w = rng.standard_normal((n_in, n_out)).astype(dtype)
    y, dy = _saved_output(rng, (batch, n_out), dtype)
    xd, wd, yd = t.put(x), t.put(w), t.put(y)

    def dz_of(dyd, in_place):
        dz = dyd if in_place else t.empty(dy.shape, dtype)
        K.linear_backward(dyd, xd, wd, y=yd, activation=act, alpha=alpha, dz=dz, backend=t.name)
        return dz

    _check_derivative(t, dz_of, y, dy, f"{t.name} linear_backward {act} alpha={alpha} dz", ("=dy", " buffer"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend, shape", per_target(ELEMENTWISE_SHAPES), indirect=["backend"])
@pytest.mark.parametrize("act, alpha", BACKWARD_CASES, ids=backward_ids)
def test_activation_backward(backend, act, alpha, shape, dtype, rng):
    t = backend
    y, dy = _saved_output(rng, shape, dtype)
    yd = t.put(y)

    def dz_of(dyd, in_place):
        return K.activation_backward(dyd, act, y=yd, alpha=alpha, out=dyd if in_place else None, backend=t.name)

    _check_derivative(t, dz_of, y, dy, f"{t.name} activation_backward {act} alpha={alpha}", (" in place", ""))
