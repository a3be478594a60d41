"""The background compile worker (started by :mod:`.background`; not for direct use).

Reads one JSON line per job from standard input (module, function name, the pickled Numba
signature, a lock file), compiles ``module.name`` for that signature with Numba's disk cache on
(which writes it there), and answers one JSON line per job on standard output (the job's fields
plus ``ok``, and ``seconds`` and ``compiled`` (False: it was found in the cache) or ``error``). Jobs run one after another at low priority; each holds
an exclusive lock on its lock file while it compiles, so another worker given the same job waits
and then finds it in the cache. Ends when its input ends (its parent exited) and the jobs read
so far are done.
"""
from __future__ import annotations

import base64
import fcntl
import importlib
import json
import os
import pickle
import sys
import time


def _compile(job) -> dict:
    module = importlib.import_module(job["module"])
    dispatcher = getattr(module, job["name"])
    sig = pickle.loads(base64.b64decode(job["sig"]))
    t = time.perf_counter()
    os.makedirs(os.path.dirname(job["lock"]), exist_ok=True)
    with open(job["lock"], "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker compiling it: wait, then load its result
        try:
            dispatcher.compile(sig)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return {"ok": True, "seconds": time.perf_counter() - t, "compiled": dispatcher.stats.cache_misses.get(sig, 0) > 0}


def _answer(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # the parent is gone: the cache is what matters
        pass


def main() -> int:
    try:
        os.nice(19)  # the caller's own work comes first
    except OSError:
        pass
    for line in sys.stdin:
        try:
            job = json.loads(line)
        except ValueError:
            continue
        try:
            result = _compile(job)
        except Exception as exc:  # noqa: BLE001 (reported to the parent, which keeps its alternative)
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        _answer(json.dumps({**job, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
