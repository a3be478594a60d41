"""Numba compiling in a background process while the caller runs something else.

A fresh install has no compiled Numba code: the first call of a kernel would wait seconds, the
first ``fit()`` a minute. Instead, a caller that has an alternative (the cython backend, compiled
ahead of time) asks :func:`ready` whether a dispatcher's code for a signature exists (compiled in
this process, or in Numba's disk cache, which it then loads), runs the alternative when not, and
:func:`submit`\\ s the signature. One worker process per fastbp process (started on the first
submission, at low priority) compiles the submitted signatures one after another with
``cache=True``, so the code lands in Numba's disk cache; when a signature is done, a thread of
this process loads it from there and later calls run Numba's code.

Guarantees: the worker never blocks the interpreter's exit (it is a separate process; it finishes
the signatures already submitted after this process ends, so the next process starts warm); two
compilations of one signature never run at once (a lock file per signature in the cache folder,
across processes); :func:`status` says what is compiling, for progress output.

``FASTBP_BACKGROUND_COMPILE=0`` turns all of this off (:func:`enabled`): Numba then compiles on
first call, in the caller, as ``fastbp warmup`` does.

:func:`watch` lets a standby caller find out cheaply: it hooks the dispatcher's
``_compile_for_args`` (what Numba calls when no compiled signature matches) so that inside
:func:`standby` a missing signature raises :class:`NotReady` instead of compiling; calls that
match a compiled signature take Numba's usual fast path, and calls outside :func:`standby`
(explicit ``backend="numba"``, users' own ``@njit`` code) compile as always.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import pickle
import subprocess
import sys
import threading
import time

from ..._backend import standby_enabled as enabled  # noqa: F401  (FASTBP_BACKGROUND_COMPILE is not 0)
from .._cpu.threads import compiling_in_background as _busy  # (the cython kernels leave the worker a core)


class NotReady(Exception):
    """Inside :func:`standby`: the dispatcher ``dispatcher`` has no code for ``sig`` yet."""

    def __init__(self, dispatcher, sig):
        super().__init__(f"{_name(dispatcher)}{sig} is not compiled yet")
        self.dispatcher, self.sig = dispatcher, sig


_LOCAL = threading.local()


@contextlib.contextmanager
def standby():
    """Calls of :func:`watch`\\ ed dispatchers in this block raise NotReady instead of compiling."""
    before = getattr(_LOCAL, "active", False)
    _LOCAL.active = True
    try:
        yield
    finally:
        _LOCAL.active = before


def watch(dispatcher):
    """Hook ``dispatcher`` so that :func:`standby` works for it (once per dispatcher); returns it."""
    if getattr(dispatcher, "_fastbp_watched", False):
        return dispatcher
    compile_for_args = dispatcher._compile_for_args

    def _compile_for_args(*args, **kws):
        if getattr(_LOCAL, "active", False):
            sig = tuple(dispatcher.typeof_pyval(a) for a in args)
            if not ready(dispatcher, sig):
                raise NotReady(dispatcher, sig)
        return compile_for_args(*args, **kws)

    dispatcher._compile_for_args = _compile_for_args
    dispatcher._fastbp_watched = True
    return dispatcher


def _name(dispatcher) -> str:
    return f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}"


def _key(dispatcher, sig) -> tuple:
    return _name(dispatcher), tuple(sig)


def ready(dispatcher, sig) -> bool:
    """Whether ``dispatcher`` has code for ``sig`` now: compiled in this process, or in Numba's
    disk cache (loaded then, which takes a fraction of a second). Never compiles."""
    sig = tuple(sig)
    if sig in dispatcher.overloads:
        return True
    state = _jobs.get(_key(dispatcher, sig))
    if state == "compiling" or (state or "").startswith("failed"):
        return False  # (a cache entry being written may be incomplete; a failed one stays missing)
    return _load_cached(dispatcher, sig)


def _load_cached(dispatcher, sig) -> bool:
    """Numba's ``Dispatcher.compile`` without its last resort, compiling: add the overload for
    ``sig`` from the disk cache when it is there. With no cache file at all (a fresh install) this
    returns before Numba initializes its code generator."""
    from numba.core.compiler_lock import global_compiler_lock

    cache_file = getattr(dispatcher._cache, "_cache_file", None)
    if cache_file is None or not os.path.exists(cache_file._index_path):
        return False
    with global_compiler_lock:
        if sig in dispatcher.overloads:
            return True
        cres = dispatcher._cache.load_overload(sig, dispatcher.targetctx)
        if cres is None:
            return False
        dispatcher._cache_hits[sig] += 1
        if not cres.objectmode:
            dispatcher.targetctx.insert_user_function(cres.entry_point, cres.fndesc, [cres.library])
        dispatcher.add_overload(cres)
        return True


# --------------------------------------------------------------------------- the worker client

_LOCK = threading.Lock()
_jobs: dict = {}  # key -> "compiling" | "done" | "failed: ..."
_labels: dict = {}  # key -> how status() names it
_worker = None  # the worker process (subprocess.Popen)


def submit(dispatcher, sig, what: str | None = None) -> None:
    """Have the worker compile ``dispatcher`` for ``sig`` (once per process; a signature already
    done or compiling is ignored). ``what``: how :func:`status` names it (default: the function)."""
    sig = tuple(sig)
    key = _key(dispatcher, sig)
    with _LOCK:
        if key in _jobs:
            return
        _set(key, "compiling")
        _labels[key] = what or dispatcher.py_func.__qualname__
        try:
            worker = _start_worker()
            line = json.dumps({"module": dispatcher.py_func.__module__, "name": dispatcher.py_func.__name__,
                               "sig": base64.b64encode(pickle.dumps(sig)).decode(), "lock": _lock_path(dispatcher, sig)})
            worker.stdin.write(line + "\n")
            worker.stdin.flush()
        except (OSError, ValueError) as exc:  # no worker: the caller keeps its alternative
            _set(key, f"failed: could not start the compile worker ({exc})")


def _set(key, state) -> None:
    """Record a job's state (under _LOCK), counting those compiling."""
    _busy[0] += (state == "compiling") - (_jobs.get(key) == "compiling")
    _jobs[key] = state


def _lock_path(dispatcher, sig) -> str:
    """A lock file per (function, signature) beside the function's cache files."""
    folder = os.path.dirname(dispatcher._cache._cache_file._index_path)
    digest = hashlib.sha256(repr(_key(dispatcher, sig)).encode()).hexdigest()[:16]
    return os.path.join(folder, f"fastbp-compile-{digest}.lock")


def _start_worker():
    global _worker
    if _worker is not None and _worker.poll() is None:
        return _worker
    # the worker imports this very fastbp (not one the folder it starts in may hold)
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    code = (f"import sys; sys.path.insert(0, {package_parent!r}); "
            "from fastbp.backends.numba_cpu.compile_worker import main; sys.exit(main())")
    _worker = subprocess.Popen([sys.executable, "-c", code],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               bufsize=1, start_new_session=True)
    threading.Thread(target=_read_results, args=(_worker,), name="fastbp-compile-results", daemon=True).start()
    return _worker


def _read_results(worker) -> None:
    """Mark each finished signature done and load it from the cache (in this thread, so the
    caller's thread goes on with its alternative meanwhile)."""
    import importlib

    for line in worker.stdout:
        try:
            msg = json.loads(line)
            module = importlib.import_module(msg["module"])
            dispatcher = getattr(module, msg["name"])
            sig = pickle.loads(base64.b64decode(msg["sig"]))
        except Exception:  # noqa: BLE001 (a line that is not ours: ignore it)
            continue
        key = _key(dispatcher, sig)
        loaded = False
        if msg.get("ok"):
            try:
                loaded = _load_cached(dispatcher, sig)
            except Exception as exc:  # noqa: BLE001
                msg["error"] = f"{type(exc).__name__}: {exc}"
        with _LOCK:
            if msg.get("ok") and loaded:
                _set(key, "done" if msg.get("compiled") else "done: found in the cache")
            elif msg.get("ok"):
                _set(key, f"failed: {msg.get('error', 'not in the cache after compiling')}")
            else:
                _set(key, f"failed: {msg.get('error')}")
    with _LOCK:  # the worker ended: whatever it did not report will not come
        for key, state in list(_jobs.items()):
            if state == "compiling":
                _set(key, "failed: the compile worker exited")


def status() -> dict:
    """What was submitted in this process: label -> "compiling", "done" (the worker compiled it),
    "done: found in the cache" (another process's worker had meanwhile) or "failed: reason"."""
    with _LOCK:
        return {_labels[k]: v for k, v in _jobs.items()}


def busy() -> bool:
    """Whether the worker is compiling something submitted by this process (cheap)."""
    return _busy[0] > 0


def compiling() -> list[str]:
    """Labels of the signatures the worker is still compiling."""
    return [label for label, state in status().items() if state == "compiling"]


def worker_pid() -> int | None:
    """The worker's process id while it runs."""
    w = _worker
    return w.pid if w is not None and w.poll() is None else None


def wait(timeout: float | None = None) -> bool:
    """Block until nothing submitted is compiling (True) or ``timeout`` seconds passed (False)."""
    end = None if timeout is None else time.monotonic() + timeout
    while compiling():
        if end is not None and time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def _forget_after_fork() -> None:
    """A forked child has no worker of its own (the pipe is its parent's)."""
    global _worker, _LOCK
    _worker = None
    _LOCK = threading.Lock()
    _jobs.clear()
    _labels.clear()
    _busy[0] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
