"""fastbp without Numba: the cython backend alone runs the kernels and fastbp.nn (the Python loop).

ci/build_wheels.sh checks this on an installed wheel in a venv without Numba; this test checks the
source tree on every run, in a subprocess where importing numba fails."""
import subprocess
import sys
import textwrap

import pytest

import fastbp

pytestmark = pytest.mark.skipif("cython" not in fastbp.available_backends(), reason="needs the cython backend")

_SCRIPT = textwrap.dedent("""
    import sys

    class NoNumba:
        def find_spec(self, name, path=None, target=None):
            if name == "numba" or name.startswith("numba."):
                raise ImportError("numba is hidden from this process")

    sys.meta_path.insert(0, NoNumba())
    import numpy as np
    import fastbp
    from fastbp import nn
    status = fastbp.backend_status()
    assert status["numba"] is not None and status["cython"] is None, status
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(5,)), nn.Dense(2, activation="softmax")], seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert "numba" not in sys.modules
    print("ok", fastbp._backend.auto_backend())
""")


def test_fit_on_the_cython_backend_with_numba_missing():
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["ok", "cython"]
