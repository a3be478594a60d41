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
