"""How many threads the compiled training steps use, chosen chunk by chunk from measured times.

fastbp's results do not depend on the number of threads (tiles and reduction chunks depend on the
shapes only), so the training loop may change it between chunks of steps without changing a
single bit. Where cores are shared (a VM whose vCPUs the host sometimes places where they slow
each other), two threads are not always faster than one (the CHANGELOG has the figures).
``ThreadTuner`` times chunks of about ``CHUNK_S`` seconds on the thread count it is given and on
half of it, runs the faster, and re-times the other every ``PROBE_EVERY`` chunks, since the
machine's state changes.
"""
from __future__ import annotations

import os

#: seconds of training per chunk once the step time is known (a chunk is one compiled call)
CHUNK_S = 0.02
#: steps in a chunk before anything is measured
FIRST_CHUNK = 8
#: chunks between two re-timings of the candidate that is not running: PROBE_EVERY at first and
#: after a switch, doubled each time a re-timing confirms the choice, up to MAX_PROBE_EVERY (a
#: probe of one thread where two are 1.5x faster costs 1/16 of that chunk's time at 8, 1/128 at 64)
PROBE_EVERY = 8
MAX_PROBE_EVERY = 64
#: weight of a new measurement in a candidate's running step time
NEW_WEIGHT = 0.5
#: fewer threads run only when their steps are this much faster (chunk timings are noisier than
#: whole epochs: no flip-flopping)
SWITCH_MARGIN = 0.1


def adaptive_threads_enabled() -> bool:
    """False when ``FASTBP_ADAPTIVE_THREADS=0``: then the compiled steps use the thread count as set."""
    return os.environ.get("FASTBP_ADAPTIVE_THREADS", "1") != "0"


class ThreadTuner:
    """Picks the thread count of each chunk: ``threads`` or ``threads // 2``, whichever steps faster.

    ``choose()`` gives (threads, steps) for the next chunk; ``record(threads, seconds, steps)``
    reports how long it took. Each candidate is timed once first; then the faster runs, judged by
    its running (exponentially weighted) time per step, and the other is re-timed now and then (see
    ``PROBE_EVERY``; a re-timing replaces its old time); half the threads count as faster only when
    ``SWITCH_MARGIN`` faster.
    """

    def __init__(self, threads: int, enabled: bool = True):
        self.candidates = [threads] if threads <= 1 or not enabled else [threads, threads // 2]
        self.step_s = {k: None for k in self.candidates}
        self.probe_every = PROBE_EVERY
        self._since_probe = 0
        self._probing = None
        self._running = None

    def fastest(self) -> int:
        """The candidate to run: the most threads unless half of them step SWITCH_MARGIN faster."""
        most = self.candidates[0]
        if len(self.candidates) > 1 and self.step_s[self.candidates[1]] < (1 - SWITCH_MARGIN) * self.step_s[most]:
            return self.candidates[1]
        return most

    def choose(self) -> tuple[int, int]:
        untimed = [k for k in self.candidates if self.step_s[k] is None]
        if untimed:
            return untimed[0], FIRST_CHUNK
        fast = self.fastest()
        steps = max(1, int(CHUNK_S / self.step_s[fast]))
        if fast != self._running:  # a switch: watch the other closely again
            self._running, self.probe_every, self._since_probe = fast, PROBE_EVERY, 0
        self._since_probe += 1
        if len(self.candidates) > 1 and self._since_probe >= self.probe_every:
            self._since_probe = 0
            self._probing = fast
            return next(k for k in self.candidates if k != fast), max(1, steps // 2)  # (it may be slow)
        return fast, steps

    def record(self, threads: int, seconds: float, steps: int) -> None:
        if steps <= 0 or threads not in self.step_s:
            return
        new = seconds / steps
        old = self.step_s[threads]
        if old is None or self._probing is not None:  # a re-timing replaces a stale time
            self.step_s[threads] = new
        else:
            self.step_s[threads] = (1 - NEW_WEIGHT) * old + NEW_WEIGHT * new
        if self._probing is not None:  # back off while re-timings confirm the choice
            if self.fastest() == self._probing:
                self.probe_every = min(2 * self.probe_every, MAX_PROBE_EVERY)
            self._probing = None
