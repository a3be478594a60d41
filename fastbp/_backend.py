"""Backend registry, availability probing and selection.

Selection order for every kernel call: the ``backend=`` argument, then the innermost
``with fastbp.use_backend(name):`` block (per thread and per asyncio task), then the
``FASTBP_BACKEND`` environment variable, then automatic: arrays on an NVIDIA GPU go to
``cuda``; host arrays go to the first available of ``numba``, ``cython``, ``numpy``.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import threading
from dataclasses import dataclass, field

from numpy import ndarray as _ndarray  # host arrays: the fast path of auto_backend

ENV_VAR = "FASTBP_BACKEND"


def _env_reader(var: str):
    """A function returning os.environ.get(var), fast: os.environ.get raises and catches a KeyError
    inside when the variable is absent, so read the mapping os.environ keeps in sync underneath
    instead (CPython), still on every call."""
    try:
        data, key, decode = os.environ._data, os.environ.encodekey(var), os.environ.decodevalue
    except AttributeError:  # another Python: the plain lookup
        return lambda: os.environ.get(var)

    def read() -> str | None:
        value = data.get(key)
        return None if value is None else decode(value)
    return read


_environment_choice = _env_reader(ENV_VAR)
_background_compile = _env_reader("FASTBP_BACKGROUND_COMPILE")


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot run here; the message says why."""


@dataclass
class _Entry:
    name: str
    module: str  # import path of the module implementing the protocol of fastbp.backends
    device: str  # "cpu" or "cuda"
    auto_rank: int | None  # position in the automatic order for its device (None: never automatic)
    description: str
    standby: str | None = None  # module serving automatic calls while the backend compiles (see select)
    _loaded: object = field(default=None, repr=False)
    _reason: str | None = field(default=None, repr=False)
    _probed: bool = field(default=False, repr=False)


_REGISTRY: dict[str, _Entry] = {}
_LOCK = threading.Lock()
_AUTO: dict[str, str] = {}  # device -> automatic choice, cleared when the registry changes
_AUTO_MODULE: dict[tuple, object] = {}  # (device, standby enabled) -> the module automatic calls get
_CURRENT = contextvars.ContextVar("fastbp_backend", default=None)


def register_backend(name: str, module: str, *, device: str = "cpu", auto_rank: int | None = None,
                     description: str = "", standby: str | None = None) -> None:
    """Register a backend: ``module`` is imported on first use and checked against the kernel
    protocol (:class:`fastbp.backends.KernelBackend`); an ImportError (raised by the module itself
    with a reason, or by a missing dependency) or a missing protocol function makes the backend
    unavailable, with the reason. ``standby``: a module with the same protocol that serves the
    calls for which the backend was chosen automatically, while :func:`standby_enabled` (it may
    run another backend where this one has no compiled code yet)."""
    with _LOCK:
        _REGISTRY[name] = _Entry(name, module, device, auto_rank, description, standby)
        _AUTO.clear()
        _AUTO_MODULE.clear()


def _probe(entry: _Entry) -> None:
    if entry._probed:
        return
    with _LOCK:
        if entry._probed:
            return
        try:
            module = importlib.import_module(entry.module)
            from .backends import missing_members

            missing = missing_members(module)
            if missing:
                raise TypeError(f"module {entry.module} does not implement the kernel protocol "
                                f"(fastbp.backends.KernelBackend): no {', '.join(missing)}")
            for attr, value in (("NAME", entry.name), ("DEVICE", entry.device)):
                if not hasattr(module, attr):  # what kernels.py reads to keep arrays where they belong
                    setattr(module, attr, value)
            entry._loaded = module
        except Exception as exc:  # any failure to import means: not available, and why
            entry._reason = f"{type(exc).__name__}: {exc}"
        entry._probed = True


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; registered backends: {', '.join(_REGISTRY)}") from None


def backend_status() -> dict[str, str | None]:
    """Map every registered backend to None (available) or the reason it is unavailable."""
    status = {}
    for entry in list(_REGISTRY.values()):
        _probe(entry)
        status[entry.name] = entry._reason
    return status


def is_available(name: str) -> bool:
    """Whether backend ``name`` can run here (probing that one only)."""
    entry = _entry(name)
    _probe(entry)
    return entry._reason is None


def available_backends() -> list[str]:
    """Names of the backends that can run here, in registration order."""
    return [name for name, reason in backend_status().items() if reason is None]


def load(name: str):
    """Return the module of backend ``name``; raise BackendUnavailableError saying why if it cannot run."""
    entry = _entry(name)
    _probe(entry)
    if entry._reason is not None:
        raise BackendUnavailableError(f"backend {name!r} is unavailable: {entry._reason}")
    return entry._loaded


def device_of(name: str) -> str:
    return _entry(name).device


from ._device import is_device_array  # noqa: E402  (GPU arrays go to the ``cuda`` backend)


def _device(arrays) -> str:
    """"cuda" when one of the arrays lives on an NVIDIA GPU, else "cpu"."""
    for a in arrays:
        if type(a) is not _ndarray and is_device_array(a):
            return "cuda"
    return "cpu"


def auto_backend(*arrays) -> str:
    """The backend automatic selection picks for these arrays."""
    return _auto_name(_device(arrays))


def _auto_name(device: str) -> str:
    chosen = _AUTO.get(device)
    if chosen is None:
        chosen = _AUTO[device] = _auto_for(device)
    return chosen


def _auto_for(device: str) -> str:
    ranked = sorted((e for e in _REGISTRY.values() if e.device == device and e.auto_rank is not None),
                    key=lambda e: e.auto_rank)
    for entry in ranked:
        _probe(entry)
        if entry._reason is None:
            return entry.name
    reasons = "; ".join(f"{e.name}: {e._reason}" for e in ranked) or "none registered"
    raise BackendUnavailableError(f"no available backend for {device} arrays ({reasons})")


def selected_name(explicit: str | None = None, *arrays) -> str:
    """Resolve argument > context > environment > automatic to a backend name."""
    return explicit or _CURRENT.get() or _environment_choice() or auto_backend(*arrays)


def is_automatic(explicit: str | None = None) -> bool:
    """True when no backend is named (argument, context or environment): the choice is automatic."""
    return not (explicit or _CURRENT.get() or _environment_choice())


def standby_enabled() -> bool:
    """Background compilation is on (``FASTBP_BACKGROUND_COMPILE`` is not ``0``): automatic calls
    may be served by a backend's standby module (see :func:`register_backend`)."""
    return _background_compile() != "0"


def _automatic(arrays):
    device = _device(arrays)
    key = (device, standby_enabled())
    module = _AUTO_MODULE.get(key)
    if module is None:
        entry = _entry(_auto_name(device))
        module = load(entry.name)
        if key[1] and entry.standby is not None:
            try:
                module = importlib.import_module(entry.standby)
            except ImportError:  # (e.g. no cython backend to stand in): the backend itself
                pass
        _AUTO_MODULE[key] = module
    return module


def select(explicit: str | None = None, *arrays):
    """The backend module for a kernel call (see the module docstring for the order). An
    automatic choice with a standby module gets that module while background compilation is on."""
    name = explicit or _CURRENT.get() or _environment_choice()
    if name is None:
        return _automatic(arrays)
    entry = _REGISTRY.get(name)
    if entry is not None and entry._loaded is not None:
        return entry._loaded  # the common case, without the checks of load()
    return load(name)


@contextlib.contextmanager
def use_backend(name: str):
    """Run the block with ``name`` as the default backend (an explicit ``backend=`` still wins).

    Raises at once if the backend is unknown or unavailable.
    """
    load(name)
    token = _CURRENT.set(name)
    try:
        yield name
    finally:
        _CURRENT.reset(token)


def describe() -> list[tuple[str, str, str | None, str]]:
    """(name, device, reason or None, description) for every registered backend."""
    status = backend_status()
    return [(e.name, e.device, status[e.name], e.description) for e in _REGISTRY.values()]


register_backend("numpy", "fastbp.backends.numpy_ref", auto_rank=2,
                 description="NumPy reference (the oracle)")
register_backend("numba", "fastbp.backends.numba_cpu.backend", auto_rank=0,
                 description="Numba @njit(parallel=True) CPU kernels",
                 standby="fastbp.backends.numba_cpu.standby")
register_backend("cython", "fastbp.backends.cython.backend", auto_rank=1,
                 description="compiled Cython extension (OpenMP, no Numba needed)")
register_backend("cuda", "fastbp.backends.cuda.backend", device="cuda", auto_rank=0,
                 description="numba.cuda GPU kernels")
