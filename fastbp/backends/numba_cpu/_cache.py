"""Numba's disk cache for fastbp's kernels, invalidated by a change of any file they compile from.

Numba checks a cached function against the stamp of the one file that defines it. fastbp's
kernels inline code from other files (the formulas, the tile plans, the BLAS binding, the
dispatch), so a change there would leave cached kernels running the old code. :func:`install`
puts, ahead of Numba's own cache locators, the same locators with one difference for functions
defined inside fastbp: their source stamp also covers the contents of every file in
:data:`COMPILED_FROM`. Editing any of them retires every cached fastbp kernel at once.
"""
from __future__ import annotations

import hashlib
import os

from numba.core import caching

_PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # .../fastbp

#: the files (or folders of .py files) that fastbp's @njit code is compiled from, under fastbp/
COMPILED_FROM = ("activations.py", "formulas.py", "backends/_formulas.py", "backends/_cpu", "backends/numba_cpu",
                 "nn/compiled")
#: files in those folders that no @njit code is compiled from (the background compiling machinery)
NOT_COMPILED_FROM = ("backends/numba_cpu/background.py", "backends/numba_cpu/compile_worker.py",
                     "backends/numba_cpu/standby.py")


def _files():
    for rel in COMPILED_FROM:
        path = os.path.join(_PACKAGE, rel)
        if os.path.isdir(path):
            yield from sorted(os.path.join(path, f) for f in os.listdir(path)
                              if f.endswith(".py") and f"{rel}/{f}" not in NOT_COMPILED_FROM)
        else:
            yield path


def sources_digest() -> str:
    """SHA-256 over the names and contents of the files in :data:`COMPILED_FROM`."""
    h = hashlib.sha256()
    for path in _files():
        h.update(os.path.relpath(path, _PACKAGE).encode())
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


_DIGEST = None


def _fastbp_locator(base):
    class Locator(base):
        __doc__ = f"{base.__name__}, stamped with every file fastbp's kernels compile from"

        def get_source_stamp(self):
            return super().get_source_stamp(), _DIGEST

        @classmethod
        def from_function(cls, py_func, py_file):
            if not os.path.abspath(py_file).startswith(_PACKAGE + os.sep):
                return None
            return super().from_function(py_func, py_file)

    Locator.__name__ = Locator.__qualname__ = f"Fastbp{base.__name__}"
    return Locator


def install() -> None:
    """Put the fastbp locators first in Numba's list (once); call before any ``cache=True`` kernel
    of fastbp is decorated."""
    global _DIGEST
    if _DIGEST is not None:
        return
    _DIGEST = sources_digest()
    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # (the name before Numba 0.61)
    impl._locator_classes = [_fastbp_locator(c) for c in impl._locator_classes] + list(impl._locator_classes)
