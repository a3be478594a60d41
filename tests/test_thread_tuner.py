"""The compiled training loop's thread tuner: what it chooses, and that its choices never change a bit."""
import numpy as np
import pytest
from helpers import cpu_backends

from fastbp.nn.compiled import thread_tuner as T


def _run(tuner, chunks, step_s):
    """Let the tuner run ``chunks`` chunks where a step on k threads takes step_s[k] seconds."""
    picks = []
    for _ in range(chunks):
        threads, steps = tuner.choose()
        picks.append((threads, steps))
        tuner.record(threads, step_s[threads] * steps, steps)
    return picks


def test_each_candidate_is_timed_first_then_the_faster_runs_and_the_other_is_retimed_ever_less_often():
    tuner = T.ThreadTuner(4)
    assert tuner.candidates == [4, 2]
    picks = _run(tuner, 2 + 200, {4: 1e-3, 2: 0.5e-3})
    assert picks[:2] == [(4, T.FIRST_CHUNK), (2, T.FIRST_CHUNK)]
    later = [threads for threads, _ in picks[2:]]
    probes = [n for n, threads in enumerate(later) if threads == 4]
    # the first re-timing after PROBE_EVERY chunks, then gaps doubling up to MAX_PROBE_EVERY
    assert probes[0] == T.PROBE_EVERY - 1
    gaps = np.diff(probes).tolist()
    assert gaps[0] == 2 * T.PROBE_EVERY and gaps[-1] == T.MAX_PROBE_EVERY
    assert all(b == min(2 * a, T.MAX_PROBE_EVERY) for a, b in zip(gaps, gaps[1:]))
    # chunks last about CHUNK_S at the fast candidate's pace; re-timings half of that
    steps = int(T.CHUNK_S / 0.5e-3)
    assert {n for threads, n in picks[2:] if threads == 2} == {steps}
    assert {n for threads, n in picks[2:] if threads == 4} == {steps // 2}


def test_fewer_threads_run_only_when_clearly_faster():
    step_s = {2: 1e-3, 1: (1 - T.SWITCH_MARGIN / 2) * 1e-3}  # one thread faster, within the margin
    tuner = T.ThreadTuner(2)
    later = [threads for threads, _ in _run(tuner, 2 + 100, step_s)[2:]]
    assert later.count(2) > 90
    step_s[1] = (1 - 2 * T.SWITCH_MARGIN) * 1e-3  # now clearly faster: found at the next re-timing
    later = [threads for threads, _ in _run(tuner, T.MAX_PROBE_EVERY + 50, step_s)]
    assert later[-50:].count(1) > 45


def test_the_choice_follows_the_machine_when_it_changes():
    tuner = T.ThreadTuner(2)
    picks = _run(tuner, 2 + 200, {2: 1e-3, 1: 1.2e-3})
    assert [threads for threads, _ in picks[2:]].count(2) > 190
    # two threads become twice as slow (the other vCPU busy, say): the running times show it
    picks = [threads for threads, _ in _run(tuner, 20, {2: 2.4e-3, 1: 1.2e-3})]
    assert picks[0] == 2 and picks[1:].count(1) == 18  # one chunk on two, one re-timing of two
    # and back when they are fast again: found by the next re-timing of two threads, at most
    # 2 * PROBE_EVERY chunks later (the gap doubled once since the switch)
    picks = [threads for threads, _ in _run(tuner, 40, {2: 1e-3, 1: 1.2e-3})]
    later = picks[2 * T.PROBE_EVERY:]
    assert later.count(2) >= len(later) - 2  # apart from re-timings of one thread


def test_running_step_times_weigh_the_newest_measurement():
    tuner = T.ThreadTuner(2)
    tuner.record(2, 8e-3, 8)
    tuner.record(2, 16e-3, 8)
    assert tuner.step_s[2] == pytest.approx((1 - T.NEW_WEIGHT) * 1e-3 + T.NEW_WEIGHT * 2e-3)
    tuner.record(2, 1.0, 0)  # an empty chunk says nothing
    tuner.record(3, 1.0, 8)  # nor does a count that is not a candidate
    assert tuner.step_s == {2: pytest.approx(1.5e-3), 1: None}


@pytest.mark.parametrize("threads, enabled", [(1, True), (2, False)])
def test_one_candidate_when_disabled_or_on_one_thread(threads, enabled):
    tuner = T.ThreadTuner(threads, enabled)
    assert tuner.candidates == [threads]
    assert {k for k, _ in _run(tuner, 3 * T.PROBE_EVERY, {threads: 1e-3})} == {threads}


def test_switch_off_with_the_environment(monkeypatch):
    monkeypatch.delenv("FASTBP_ADAPTIVE_THREADS", raising=False)
    assert T.adaptive_threads_enabled()
    monkeypatch.setenv("FASTBP_ADAPTIVE_THREADS", "0")
    assert not T.adaptive_threads_enabled()


@pytest.mark.skipif("numba" not in cpu_backends(), reason="numba backend unavailable")
def test_changing_threads_between_chunks_gives_the_same_weights(rng, monkeypatch):
    """The tuner may change the thread count between any two chunks: the weights must be the
    bits of a run on a fixed count, and fit() must give the caller's thread count back."""
    import numba

    from fastbp import nn

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads (NUMBA_NUM_THREADS >= 2)")
    x = rng.random((600, 784), dtype=np.float32)  # MNIST's shapes: the parallel tiles are used
    y = rng.integers(0, 10, 600)

    def train():
        model = nn.Sequential([nn.Dense(128, activation="relu", input_shape=(784,)),
                               nn.Dense(10, activation="softmax")], seed=3, backend="numba")
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x, y, batch_size=128, epochs=2, verbose=0)
        return model.get_weights(), history.history

    numba.set_num_threads(2)
    monkeypatch.setenv("FASTBP_ADAPTIVE_THREADS", "0")
    fixed_w, fixed_h = train()
    assert numba.get_num_threads() == 2

    seen = []

    def alternate(self):  # 1, 2, 1, 2, ... threads, two steps per chunk
        seen.append(len(seen) % 2 + 1)
        return seen[-1], 2

    monkeypatch.setenv("FASTBP_ADAPTIVE_THREADS", "1")
    monkeypatch.setattr(T.ThreadTuner, "choose", alternate)
    switched_w, switched_h = train()
    assert set(seen) == {1, 2} and len(seen) >= 4
    assert numba.get_num_threads() == 2
    for a, b in zip(switched_w, fixed_w):
        np.testing.assert_array_equal(a, b)
    assert switched_h == fixed_h


@pytest.mark.skipif("numba" not in cpu_backends(), reason="numba backend unavailable")
def test_a_model_keeps_its_tuner_across_fit_calls(rng):
    """Benchmarks and callbacks often call fit(epochs=1) again and again: what the tuner learnt
    (step times, how seldom to re-time) carries over instead of being measured anew."""
    from fastbp import nn

    x = rng.random((640, 20), dtype=np.float32)  # 20 steps of 32: both candidates get timed
    y = rng.integers(0, 3, 640)
    model = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(20,)), nn.Dense(3, activation="softmax")],
                          seed=0, backend="numba")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    (tuner,) = model._thread_tuners.values()
    assert all(t is not None and t > 0 for t in tuner.step_s.values())
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert list(model._thread_tuners.values()) == [tuner]
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)  # another batch size steps at another pace
    assert len(model._thread_tuners) == 2
