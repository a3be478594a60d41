"""Writes ``_formulas.pxd``, the cython backend's copy of :mod:`fastbp.formulas`, at build time.

scikit-learn writes its loss formulas once in a Tempita template; fastbp writes them once as the
Python functions that the numba and cuda backends compile, and this module translates those same
functions to Cython (``setup.py`` runs it before cythonizing; ``python -m
fastbp.backends.cython._codegen`` does it by hand). The translation works on the syntax tree:

* ``def f(a: Real, b: Elem) -> Elem`` becomes ``cdef inline floating f(double a, floating b)
  noexcept nogil`` (``Real``: double, ``Elem``: the fused ``floating``, ``Code``: int, ``bool``:
  bint, ``Bits``: uint64_t, ``tuple[...]``: a C tuple); local variables are declared with the
  function's precision (``floating`` when any argument is ``Elem``, ``uint64_t`` when every
  argument is ``Bits``, else ``double``); the bitwise operators are allowed on ``Bits`` only;
* ``math.f(x)`` becomes libc's ``f(x)`` (``math.sqrt``: ``sqrtf`` for float, ``sqrt`` for
  double, as Numba compiles it); functions of ``Elem`` arguments may call no other ``math``
  function (Numba would evaluate it in float32, C in double: the backends would drift);
* ``float(x)`` becomes a conversion to double, ``abs`` ``fabs``; module constants and the
  activation codes become C constants with the same values (``repr`` of a double round-trips).

Anything else is refused with an error naming the formula, so a formula that cannot be compiled
the same way everywhere does not build. The generated file carries a digest of its sources;
the extension refuses to load when the sources changed after it was built.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import sys
import types
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2]  # .../fastbp
OUTPUT = Path(__file__).resolve().parent / "_formulas.pxd"
#: the files the generated code depends on (their digest is built into the extension)
SOURCES = ("activations.py", "formulas.py", "backends/cython/_codegen.py")

_TYPES = {"Real": "double", "Elem": "floating", "Code": "int", "bool": "bint", "int": "int", "float": "double",
          "Bits": "uint64_t"}
_LIBC = {"exp", "log", "log1p", "tanh", "erf", "pow"}


class FormulaError(ValueError):
    """A formula uses something the translation cannot compile the same way as Numba."""


def sources_digest(package: Path = PACKAGE) -> str:
    """SHA-256 over the names and contents of :data:`SOURCES` (what the extension checks at import)."""
    h = hashlib.sha256()
    for rel in SOURCES:
        h.update(rel.encode())
        h.update(hashlib.sha256((package / rel).read_bytes()).digest())
    return h.hexdigest()


def _load(package: Path):
    """fastbp.activations and fastbp.formulas, imported from their files without importing fastbp
    itself (no NumPy, no Numba at build time)."""
    saved = {k: sys.modules.get(k) for k in ("fastbp", "fastbp.activations", "fastbp.formulas")}
    stub = types.ModuleType("fastbp")
    stub.__path__ = [str(package)]
    sys.modules["fastbp"] = stub
    try:
        loaded = []
        for name in ("activations", "formulas"):
            spec = importlib.util.spec_from_file_location(f"fastbp.{name}", package / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            loaded.append(module)
        return loaded
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _ctype(node, where) -> str:
    if isinstance(node, ast.Name) and node.id in _TYPES:
        return _TYPES[node.id]
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "tuple":
        elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        return "(" + ", ".join(_ctype(e, where) for e in elts) + ")"
    raise FormulaError(f"{where}: annotate with Real, Elem, Code, bool or tuple[...]; got {ast.unparse(node)}")


class _Rewrite(ast.NodeTransformer):
    """math.f -> f, float(x) -> fb_double(x), abs -> fabs; refuse what is outside the subset."""

    def __init__(self, name, formulas, constants, elem, bits=False):
        self.name, self.formulas, self.constants, self.elem, self.bits = name, formulas, constants, elem, bits

    def _fail(self, node, what):
        raise FormulaError(f"formula {self.name} (line {node.lineno}): {what}: {ast.unparse(node)}")

    def visit_Call(self, node):
        self.generic_visit(node)
        if node.keywords:
            self._fail(node, "keyword arguments")
        fn = node.func
        if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) and fn.value.id == "math":
            if fn.attr == "sqrt":
                return ast.Call(ast.Name("fb_sqrt", ast.Load()), node.args, [])
            if fn.attr not in _LIBC:
                self._fail(node, f"math.{fn.attr} is not in the translated set {sorted(_LIBC | {'sqrt'})}")
            if self.elem:
                self._fail(node, f"math.{fn.attr} in a formula of Elem arguments (its precision would differ)")
            return ast.Call(ast.Name(fn.attr, ast.Load()), node.args, [])
        if isinstance(fn, ast.Name) and fn.id == "float":
            return ast.Call(ast.Name("fb_double", ast.Load()), node.args, [])
        if isinstance(fn, ast.Name) and fn.id == "abs":
            return ast.Call(ast.Name("fabs", ast.Load()), node.args, [])
        if isinstance(fn, ast.Name) and fn.id in self.formulas:
            return node
        self._fail(node, "a call of something other than math, float, abs or a formula")

    def visit_Name(self, node):
        if node.id in self.constants and not isinstance(node.ctx, ast.Store):
            return node  # a C constant of the same name
        return node

    def generic_visit(self, node):
        allowed = (ast.Expr, ast.Assign, ast.Return, ast.If, ast.IfExp, ast.BinOp, ast.UnaryOp, ast.BoolOp,
                   ast.Compare, ast.Call, ast.Name, ast.Constant, ast.Tuple, ast.Attribute, ast.Load, ast.Store,
                   ast.operator, ast.unaryop, ast.boolop, ast.cmpop)
        if not isinstance(node, allowed):
            self._fail(node, f"{type(node).__name__} is outside the formula subset")
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Pow, ast.FloorDiv, ast.Mod, ast.MatMult)):
            self._fail(node, "** // % @ (C and Python disagree or it is slow)")
        if (isinstance(node, ast.BinOp) and isinstance(node.op, (ast.LShift, ast.RShift, ast.BitAnd, ast.BitOr,
                                                                 ast.BitXor)) and not self.bits):
            self._fail(node, "a bitwise operator in a formula whose arguments are not all Bits")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str)):
            self._fail(node, "a constant that is not a number")
        return super().generic_visit(node)


def _function(node: ast.FunctionDef, formulas, constants) -> str:
    where = f"formula {node.name}"
    if node.args.vararg or node.args.kwarg or node.args.kwonlyargs or node.args.defaults:
        raise FormulaError(f"{where}: plain positional arguments only")
    params = [(a.arg, _ctype(a.annotation, f"{where}, argument {a.arg}") if a.annotation is not None else None)
              for a in node.args.args]
    for arg, ctype in params:
        if ctype is None:
            raise FormulaError(f"{where}: argument {arg} has no annotation")
    if node.returns is None:
        raise FormulaError(f"{where}: no return annotation")
    ret = _ctype(node.returns, f"{where}, return")
    elem = any(c == "floating" for _, c in params)
    bits = all(c == "uint64_t" for _, c in params)
    if "floating" in ret and not elem:
        raise FormulaError(f"{where}: returns Elem without an Elem argument")
    body = list(node.body)
    doc = ast.get_docstring(node)
    if doc:
        body = body[1:]
    names = {a for a, _ in params}
    local = []
    for stmt in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if not isinstance(target, ast.Name):
                    raise FormulaError(f"{where} (line {stmt.lineno}): assign to plain names only")
                if target.id not in names and target.id not in local:
                    local.append(target.id)
    rewrite = _Rewrite(node.name, formulas, constants, elem, bits)
    body = [rewrite.visit(stmt) for stmt in body]
    lines = [f"cdef inline {ret} {node.name}({', '.join(f'{c} {a}' for a, c in params)}) noexcept nogil:"]
    if doc:
        lines.append(f'    """{" ".join(doc.split())}"""')
    if local:
        lines.append(f"    cdef {'floating' if elem else 'uint64_t' if bits else 'double'} {', '.join(local)}")
    for stmt in body:
        lines += ["    " + line for line in ast.unparse(stmt).splitlines()]
    return "\n".join(lines)


#: the formulas that are primitives (bit casts), in C: memcpy, which compilers turn into a move
_PRIMITIVES = {
    "bits_of": "cdef inline uint64_t bits_of(double x) noexcept nogil:\n"
               '    """The IEEE 754 bits of the double x."""\n'
               "    cdef uint64_t b\n    memcpy(&b, &x, 8)\n    return b",
    "float_of": "cdef inline double float_of(uint64_t b) noexcept nogil:\n"
                '    """The double whose IEEE 754 bits are b."""\n'
                "    cdef double x\n    memcpy(&x, &b, 8)\n    return x",
}


def generate(package: Path = PACKAGE) -> str:
    """The text of ``_formulas.pxd`` for the sources under ``package``."""
    activations, formulas = _load(package)
    tree = ast.parse((package / "formulas.py").read_text())
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    missing = [name for name in formulas.__all__ if name not in defs]
    if missing:
        raise FormulaError(f"fastbp.formulas.__all__ names {missing}, which are not functions of the module")
    constants = {k: v for k, v in vars(formulas).items() if k.isupper() and isinstance(v, (int, float))}
    words = {k: constants[k] for k in formulas.BITS_CONSTANTS}
    codes = sorted((a.code, a.name.upper()) for a in activations.BY_CODE.values())
    out = [
        "# Generated by fastbp/backends/cython/_codegen.py from fastbp/formulas.py: do not edit.",
        "# cython: language_level=3",
        "from libc.math cimport erf, exp, fabs, log, log1p, pow, sqrt, sqrtf, tanh",
        "from libc.stdint cimport uint64_t",
        "from libc.string cimport memcpy",
        "",
        "ctypedef fused floating:",
        "    float",
        "    double",
        "",
        "# activation codes (fastbp.activations)",
        "cdef enum:",
        *[f"    {name} = {code}" for code, name in codes],
        "",
        'cdef extern from *:',
        '    """',
        f'    #define FASTBP_FORMULAS_DIGEST "{sources_digest(package)}"',
        *[f"    #define FASTBP_{k} {v!r}" for k, v in constants.items() if isinstance(v, float)],
        *[f"    #define FASTBP_{k} {v:#x}ULL" for k, v in words.items()],
        '    """',
        '    const char* FORMULAS_DIGEST "FASTBP_FORMULAS_DIGEST"',
        *[f'    const double {k} "FASTBP_{k}"' for k, v in constants.items() if isinstance(v, float)],
        *[f'    const uint64_t {k} "FASTBP_{k}"' for k in words],
        "",
        "",
        "cdef inline double fb_double(double x) noexcept nogil:",
        "    return x",
        "",
        "",
        "cdef inline floating fb_sqrt(floating x) noexcept nogil:",
        "    if floating is float:",
        "        return sqrtf(x)",
        "    else:",
        "        return sqrt(x)",
    ]
    for name in formulas.__all__:
        if name in formulas.PRIMITIVES:
            out += ["", "", _PRIMITIVES[name]]
            continue
        out += ["", "", _function(defs[name], set(formulas.__all__), constants)]
    return "\n".join(out) + "\n"


def write(path: Path = OUTPUT, package: Path = PACKAGE) -> bool:
    """Write the generated file when its text changed; True when it was written."""
    text = generate(package)
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


if __name__ == "__main__":
    print(f"{OUTPUT}: {'written' if write() else 'up to date'}")
