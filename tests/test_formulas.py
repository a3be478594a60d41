"""fastbp/formulas.py is the one source of every scalar formula: each compiled backend compiles it,
and the cython translation refuses what it cannot compile the same way as Numba."""
import ast
import inspect
import math
import textwrap

import pytest

from fastbp import activations as A
from fastbp import formulas as F
from fastbp.backends.cython import _codegen


def test_every_formula_is_listed_and_annotated():
    functions = {name for name, obj in vars(F).items() if inspect.isfunction(obj) and obj.__module__ == F.__name__}
    assert functions == set(F.__all__)
    for name in F.__all__:
        sig = inspect.signature(getattr(F, name))
        assert sig.return_annotation is not inspect.Signature.empty, name
        assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values()), name


def test_rowwise_codes_come_from_the_activation_table():
    for act in A.BY_CODE.values():
        assert F.is_rowwise(act.code) == act.rowwise, act.name


def test_the_cython_translation_covers_every_formula():
    text = _codegen.generate()
    for name in F.__all__:
        assert f" {name}(" in text, name
    for act in A.BY_CODE.values():
        assert f"    {act.name.upper()} = {act.code}" in text
    assert f"FASTBP_SQRT_2_OVER_PI {F.SQRT_2_OVER_PI!r}" in text
    assert _codegen.sources_digest() in text


def test_the_built_extension_was_generated_from_these_formulas():
    pytest.importorskip("fastbp.backends.cython.backend")
    from fastbp.backends.cython import backend

    for module in (backend._ew, backend._lin, backend._loss):
        assert module.formulas_digest() == _codegen.sources_digest()


def _translate(source):
    node = ast.parse(textwrap.dedent(source)).body[0]
    return _codegen._function(node, {node.name}, {})


def test_the_translation_declares_types_and_maps_math():
    out = _translate('''
        def f(x: Elem, lo: Elem) -> tuple[Elem, Elem]:
            """doc"""
            y = math.sqrt(x) + lo
            return y, abs(y)
    ''')
    assert out.splitlines()[0] == "cdef inline (floating, floating) f(floating x, floating lo) noexcept nogil:"
    assert "    cdef floating y" in out
    assert "fb_sqrt(x)" in out and "fabs(y)" in out
    out = _translate('''
        def g(z: Real, code: Code) -> Real:
            return math.exp(float(z)) if code == 1 else 0.0
    ''')
    assert "double z, int code" in out and "exp(fb_double(z))" in out


@pytest.mark.parametrize("source, complaint", [
    ("def f(x: Elem) -> Elem:\n    return math.exp(x)", "precision would differ"),
    ("def f(x: Real) -> Real:\n    return math.cos(x)", "not in the translated set"),
    ("def f(x: Real) -> Real:\n    return x ** 2", "\\*\\*"),
    ("def f(x: Real) -> Real:\n    for i in range(3):\n        x = x + 1\n    return x", "outside the formula subset"),
    ("def f(x) -> Real:\n    return x", "no annotation"),
    ("def f(x: Real) -> Elem:\n    return x", "without an Elem argument"),
    ("def f(x: Real) -> Real:\n    return len(x)", "a call of something other"),
])
def test_the_translation_refuses_what_numba_would_compute_otherwise(source, complaint):
    with pytest.raises(_codegen.FormulaError, match=complaint):
        _translate(source)


def test_formulas_run_as_plain_python():
    assert F.relu(-3.0) == 0.0 and math.copysign(1.0, F.relu(-0.0)) == 1.0
    assert math.copysign(1.0, F.leaky_relu(-0.0, 0.1)) == 1.0 and F.leaky_relu(-2.0, 0.1) == pytest.approx(-0.2)
    assert F.sigmoid(-800.0) == 0.0 and F.sigmoid(800.0) == 1.0
    assert F.clamp(float("nan"), -1.0, 1.0) != F.clamp(float("nan"), -1.0, 1.0)
    assert F.bias_correction(0.9, 2) == pytest.approx(1 - 0.81)


def _ulps(got, want):
    """|got - want| in units in the last place of the double nearest ``want`` (a long double)."""
    import numpy as np

    nearest = want.astype(np.float64)
    return np.abs(got.astype(np.longdouble) - want) / np.spacing(np.abs(nearest)).astype(np.longdouble)


def test_exponential_is_within_two_ulps_and_the_same_compiled():
    """exponential(x) against exp in long double over the whole range (normal results within 2
    ulps: the polynomial's truncation is below 5e-18 relative, Horner's rounding and the reduction
    add at most about 1.5 ulp), the subnormal results within one subnormal step, the special values
    exact; the numba-compiled formula gives the Python formula's bits."""
    import numpy as np

    if np.finfo(np.longdouble).eps > 1e-18:
        pytest.skip("no extended-precision long double for the reference")
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.uniform(-708, 709.7, 20000), rng.uniform(-2, 2, 5000), rng.uniform(-1e-8, 1e-8, 500),
                         np.arange(-700, 700) * math.log(2)])
    got = np.array([F.exponential(float(x)) for x in xs])
    assert np.max(_ulps(got, np.exp(xs.astype(np.longdouble)))) <= 2
    sub = rng.uniform(-745.13, -708.4, 2000)
    got_sub = np.array([F.exponential(float(x)) for x in sub])
    assert np.max(np.abs(got_sub - np.exp(sub.astype(np.longdouble)).astype(np.float64))) <= 5e-324
    assert F.exponential(0.0) == 1.0 and F.exponential(-745.2) == 0.0 and F.exponential(709.79) == math.inf
    assert F.exponential(-math.inf) == 0.0 and F.exponential(math.inf) == math.inf
    assert math.isnan(F.exponential(math.nan))
    try:
        from fastbp.backends.numba_cpu._formulas import F as NF
        from numba import njit
    except ImportError:
        return

    @njit
    def compiled(x, out):
        for i in range(x.size):
            out[i] = NF.exponential(x[i])

    out = np.empty_like(xs)
    compiled(xs, out)
    np.testing.assert_array_equal(out, got)
