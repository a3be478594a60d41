"""Backend registry, availability reasons and the selection order."""
import numpy as np
import pytest

import fastbp
from fastbp import _backend
from fastbp import kernels as K


def test_numpy_reference_is_always_available():
    assert "numpy" in fastbp.available_backends()
    assert fastbp.backend_status()["numpy"] is None


def test_unavailable_backends_say_why():
    for name, reason in fastbp.backend_status().items():
        if reason is not None:
            assert reason.strip()
            with pytest.raises(fastbp.BackendUnavailableError, match=f"backend '{name}' is unavailable: "):
                K.linear_forward(np.ones((1, 1)), np.ones((1, 1)), backend=name)


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match=r"unknown backend 'nope'; registered backends: numpy, numba, cython, cuda"):
        K.mse_loss(np.ones(2), np.ones(2), backend="nope")
    with pytest.raises(ValueError, match="unknown backend"):
        with fastbp.use_backend("nope"):
            pass


class _Recorder:
    """A backend that records that it was chosen, delegating to the reference."""

    def __init__(self):
        import fastbp.backends.numpy_ref as ref

        self.ref = ref
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self.ref, name)

    def mse_loss(self, *args):
        self.calls += 1
        return self.ref.mse_loss(*args)


@pytest.fixture
def recorders(monkeypatch):
    """Two registered fake backends, 'rec_a' and 'rec_b', and the default environment."""
    import sys
    import types

    recs = {}
    for name in ("rec_a", "rec_b"):
        mod = types.ModuleType(f"_fastbp_test_{name}")
        rec = _Recorder()
        mod.__getattr__ = rec.__getattr__
        mod.mse_loss = rec.mse_loss
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
        fastbp.register_backend(name, mod.__name__)
        recs[name] = rec
    monkeypatch.delenv(_backend.ENV_VAR, raising=False)
    yield recs
    for name in recs:
        _backend._REGISTRY.pop(name)


def _run(**kw):
    K.mse_loss(np.ones(2), np.zeros(2), **kw)


def test_selection_order_argument_context_environment(recorders, monkeypatch):
    a, b = recorders["rec_a"], recorders["rec_b"]
    monkeypatch.setenv(_backend.ENV_VAR, "rec_a")
    _run()
    assert (a.calls, b.calls) == (1, 0)  # environment
    with fastbp.use_backend("rec_b"):
        _run()
        assert (a.calls, b.calls) == (1, 1)  # context beats environment
        _run(backend="rec_a")
        assert (a.calls, b.calls) == (2, 1)  # argument beats context
        with fastbp.use_backend("rec_a"):
            _run()
            assert (a.calls, b.calls) == (3, 1)  # innermost context
        _run()
        assert (a.calls, b.calls) == (3, 2)  # restored on exit
    monkeypatch.delenv(_backend.ENV_VAR)
    _run()
    assert (a.calls, b.calls) == (3, 2)  # automatic: neither fake backend has an auto rank


def test_context_is_per_thread(recorders):
    import threading

    seen = []
    with fastbp.use_backend("rec_a"):
        t = threading.Thread(target=lambda: seen.append(_backend.selected_name()))
        t.start()
        t.join()
        assert _backend.selected_name() == "rec_a"
    assert seen == [_backend.auto_backend()]


def test_automatic_choice_prefers_compiled_cpu_backends():
    status = fastbp.backend_status()
    expected = next(n for n in ("numba", "cython", "numpy") if status[n] is None)
    assert _backend.auto_backend(np.ones(2)) == expected


def test_failed_import_makes_a_backend_unavailable_with_the_reason():
    fastbp.register_backend("broken", "fastbp_no_such_module_for_test")
    try:
        reason = fastbp.backend_status()["broken"]
        assert reason.startswith("ModuleNotFoundError: No module named 'fastbp_no_such_module_for_test'")
        assert "broken" not in fastbp.available_backends()
    finally:
        _backend._REGISTRY.pop("broken")


def test_a_module_missing_part_of_the_protocol_is_unavailable_naming_it(monkeypatch):
    import sys
    import types

    from fastbp.backends import PROTOCOL_MEMBERS, numpy_ref

    mod = types.ModuleType("_fastbp_test_incomplete")
    for name in PROTOCOL_MEMBERS:
        if name not in ("adam_update", "copy_"):
            setattr(mod, name, getattr(numpy_ref, name))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    fastbp.register_backend("incomplete", mod.__name__)
    try:
        reason = fastbp.backend_status()["incomplete"]
        assert reason.startswith("TypeError: module _fastbp_test_incomplete does not implement the kernel protocol")
        assert reason.endswith("no copy_, adam_update")
        with pytest.raises(fastbp.BackendUnavailableError, match="no copy_, adam_update"):
            K.mse_loss(np.ones(2), np.ones(2), backend="incomplete")
    finally:
        _backend._REGISTRY.pop("incomplete")


def test_every_backend_implements_the_protocol():
    from fastbp.backends import KernelBackend, missing_members

    for name in fastbp.available_backends():
        module = _backend.load(name)
        assert missing_members(module) == [] and isinstance(module, KernelBackend), name


@pytest.mark.parametrize("m", [5, 31, 64, 128, 784, 1000, 4097])
@pytest.mark.parametrize("rb", [4, 8, 60, 240])
def test_row_tiles_are_balanced(m, rb):
    """Tiles of at most rb rows (a multiple of 4), an even number of them, split between two
    threads (each takes half the tiles, as Numba's and OpenMP's static schedules do) within a few
    rows of each other: 784 rows at 240 used to be 480 against 304."""
    from fastbp.backends._cpu.tiling import balanced_rows

    rows = balanced_rows(m, rb)
    tiles = -(-m // rows)
    assert 0 < rows <= rb and rows % 4 == 0 or rows == m
    if tiles > 1 and rows < rb:
        assert tiles % 2 == 0
        first = min(m, tiles // 2 * rows)
        assert abs(first - (m - first)) <= 4 * tiles
    assert balanced_rows(784, 240) == 196 and balanced_rows(784, 60) == 56


@pytest.mark.parametrize("n", [0, 1, 63, 16384, 16385, 101770, 1_000_000, 10_000_001])
def test_elementwise_chunks_are_even_and_equal(n):
    """Elementwise passes: one chunk up to CHUNK elements, else equal chunks of whole cache lines
    (64 elements), none longer than CHUNK + 63, an even number of them while the count is small
    enough for one chunk more or less to matter (two threads each take half)."""
    from fastbp.backends._cpu.tiling import CHUNK, even_chunk

    size = even_chunk(n)
    chunks = -(-n // size)
    if n <= CHUNK:
        assert chunks <= 1 and size == max(n, 1)
    else:
        assert size % 64 == 0 and size <= CHUNK + 63 and (chunks % 2 == 0 or chunks > 64)
        assert n - (chunks - 1) * size > size - 64 * chunks
    assert even_chunk(101770) == 12736  # 8 chunks, 4 per thread (it was 7 of 16384)


@pytest.mark.parametrize("backend", [b for b in ("numba", "cython") if b in fastbp.available_backends()])
def test_two_large_tiles_halve_the_wider_operand(backend):
    """A product too big for small tiles and small enough for two large ones is cut in two column
    halves when the output is at least as wide as it is tall (each BLAS call then packs half of
    w), in row halves otherwise; either way the result is the float64 product's to float32
    accuracy, and the same bits for 1 and 2 threads."""
    from helpers import assert_close

    from fastbp.backends._cpu.tiling import tile_shape

    assert tile_shape(1024, 1024, 1024, False) == (1024, 512)
    assert tile_shape(200, 600, 500, False) == (200, 300)
    assert tile_shape(600, 200, 500, False) == (300, 200)
    assert tile_shape(200, 600, 500, True) == (100, 600)  # softmax keeps whole rows
    rng = np.random.default_rng(5)
    x = rng.standard_normal((200, 500), dtype=np.float32)
    w = rng.standard_normal((500, 600), dtype=np.float32) / np.float32(np.sqrt(500))
    b = rng.standard_normal(600, dtype=np.float32)
    ref = np.tanh(x.astype(np.float64) @ w.astype(np.float64) + b)
    before = fastbp.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            fastbp.set_num_threads(threads)
            results.append(K.linear_forward(x, w, b, "tanh", backend=backend))
    finally:
        fastbp.set_num_threads(before)
    assert_close(results[1], ref, np.float32)
    assert results[0].tobytes() == results[1].tobytes()
