"""Normalization statistics that do not lose digits, and dropout masks that are good random draws.

Stability: x = mean + N(0, 1) for means 0, 100 and 1e4. The reference is computed from the same
values in extended precision (np.longdouble, two passes). The kernels sum in float64, so their
mean carries a rounding error of at most about n u |mean| (n terms, u = 2^-53), which moves every
xhat = (x - mean) rstd by about n u |mean| / std. The bound below is 4 n u (|mean| / std + 1)
plus the output's own rounding (float32: 2^-24 relative). The textbook one-pass formula
E[x^2] - E[x]^2 loses about n u mean^2 / var of the variance instead: 1e-8 of it at mean 1e4 even
in float64, some thousand times over this bound.

Dropout: P(keep) = 1 - rate within 5 standard deviations over 10^6 draws, no correlation between
neighbouring elements or between two seeds beyond 5 / sqrt(n), and the mask a pure function of
(seed, flat index): the same for any shape of the same size and any thread count.
"""
import numpy as np
import pytest
from helpers import DTYPES, cpu_backends

import fastbp
from fastbp import formulas as F
from fastbp import kernels as K

BACKENDS = cpu_backends()
LONG = np.longdouble
U64 = 2.0 ** -53
TOO_COARSE = np.finfo(LONG).eps > 1e-18  # where long double is plain double (not x86-64 Linux)


def _reference(x, axis, eps):
    """(y, mean, rstd) of a normalization without the affine part, in long double."""
    xl = x.astype(LONG)
    mean = xl.mean(axis=axis, keepdims=True)
    var = ((xl - mean) ** 2).mean(axis=axis, keepdims=True)
    rstd = 1 / np.sqrt(var + LONG(eps))
    return (xl - mean) * rstd, mean, rstd


@pytest.mark.skipif(TOO_COARSE, reason="no extended-precision long double on this platform for the reference")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("center", [0.0, 100.0, 1e4])
@pytest.mark.parametrize("kind", ["layernorm", "batchnorm"])
def test_statistics_keep_their_digits_at_large_means(kind, center, dtype, backend):
    rng = np.random.default_rng(5)
    n = 512
    x = (center + rng.standard_normal((n, n))).astype(dtype)
    axis = 1 if kind == "layernorm" else 0
    y, mean, rstd = getattr(K, f"{kind}_forward")(x, eps=1e-5, backend=backend)
    y_ref, mean_ref, rstd_ref = _reference(x, axis, 1e-5)
    bound = 4 * n * U64 * (center + 1)  # std is 1
    out_u = 2.0 ** -24 if dtype is np.float32 else U64
    np.testing.assert_array_less(np.abs(y - y_ref).astype(np.float64), bound + 2 * out_u * np.abs(y_ref) + 1e-300)
    np.testing.assert_allclose(rstd.astype(np.float64), np.squeeze(rstd_ref).astype(np.float64),
                               rtol=bound + 2 * out_u)
    # the mean's error is relative to the mean absolute value of x (center + about 1), not to the mean
    np.testing.assert_allclose(mean.astype(np.float64), np.squeeze(mean_ref).astype(np.float64), rtol=out_u,
                               atol=n * U64 * (center + 1))


@pytest.mark.skipif(TOO_COARSE, reason="no extended-precision long double on this platform for the reference")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("center", [0.0, 1e4])
@pytest.mark.parametrize("kind", ["layernorm", "batchnorm"])
def test_backward_keeps_its_digits_at_large_means(kind, center, backend):
    """float64: dx against the long double formula with the same mean and rstd (the saved ones)."""
    rng = np.random.default_rng(6)
    n = 256
    x = center + rng.standard_normal((n, n))
    dy = rng.standard_normal((n, n))
    axis = 1 if kind == "layernorm" else 0
    _, mean, rstd = getattr(K, f"{kind}_forward")(x, backend=backend)
    dx = getattr(K, f"{kind}_backward")(dy, x, None, mean, rstd, backend=backend)[0]
    m, r = (mean[:, None], rstd[:, None]) if axis == 1 else (mean, rstd)
    xhat = (x.astype(LONG) - m.astype(LONG)) * r.astype(LONG)
    g = dy.astype(LONG)
    ref = r * (g - g.mean(axis=axis, keepdims=True) - xhat * (g * xhat).mean(axis=axis, keepdims=True))
    bound = 8 * n * U64 * (center + 1) * float(np.max(np.abs(ref)))
    np.testing.assert_array_less(np.abs(dx - ref).astype(np.float64), bound)


def test_the_generator_is_splitmix64():
    """mix64(seed + gamma) is the first SplitMix64 output of seed 0 (0xE220A8397B1DCDAF, the
    published value); the reference's vectorized generator equals the formula element by element."""
    assert F.mix64(F.GOLDEN_GAMMA) == 0xE220A8397B1DCDAF
    from fastbp.backends.numpy_ref import dropout_mask

    key, threshold = F.mix64(2024), int(0.37 * 2**32 + 0.5)
    expected = [F.dropout_keep(key, i, threshold) for i in range(2000)]
    np.testing.assert_array_equal(dropout_mask(2000, key, threshold), expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_masks_are_independent_draws(backend, rate):
    n = 1_000_000
    x = np.ones(n, np.float32)
    _, mask = K.dropout_forward(x, rate, seed=17, backend=backend)
    _, other = K.dropout_forward(x, rate, seed=18, backend=backend)
    p = 1 - rate
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(mask.mean() - p) < 5 * sigma
    m = mask.astype(np.float64) - p
    o = other.astype(np.float64) - p
    var = p * (1 - p)
    assert abs(np.mean(m[1:] * m[:-1]) / var) < 5 / np.sqrt(n)  # neighbours
    assert abs(np.mean(m[1000:] * m[:-1000]) / var) < 5 / np.sqrt(n)  # a row apart
    assert abs(np.mean(m * o) / var) < 5 / np.sqrt(n)  # two seeds


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_mask_depends_on_seed_and_flat_index_only(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 1000)).astype(np.float32)
    y, mask = K.dropout_forward(x, 0.5, seed=5, backend=backend)
    y2, mask2 = K.dropout_forward(x.reshape(3, 20, 1000), 0.5, seed=5, backend=backend)
    np.testing.assert_array_equal(mask2.reshape(60, 1000), mask)
    np.testing.assert_array_equal(K.dropout_forward(x[:7], 0.5, seed=5, backend=backend)[1], mask[:7])
    assert not np.array_equal(K.dropout_forward(x, 0.5, seed=6, backend=backend)[1], mask)
    np.testing.assert_array_equal(y, np.where(mask == 1, x * np.float32(2.0), x * 0))
    before = fastbp.get_num_threads()
    try:
        fastbp.set_num_threads(1)
        np.testing.assert_array_equal(K.dropout_forward(x, 0.5, seed=5, backend=backend)[1], mask)
    finally:
        fastbp.set_num_threads(before)


def test_dropout_rate_zero_keeps_everything_and_seed_range():
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    y, mask = K.dropout_forward(x, 0.0, seed=2**64 - 1, backend="numpy")
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == np.uint8 and mask.all()
