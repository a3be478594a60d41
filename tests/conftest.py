import os
import shutil

import numpy as np
import pytest

# The cuda backend's tests run on a real GPU where there is one, and on Numba's CUDA simulator
# everywhere else (CI): the choice must be made before numba.cuda is first imported.
if "NUMBA_ENABLE_CUDASIM" not in os.environ and not (os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi")):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

# Numba compiles on first call in the suite, as before background compilation existed: the tests
# of the default (background compilation, the cython kernels serving meanwhile) set it themselves
# (tests/test_instant_start.py), in processes of their own with caches of their own.
os.environ.setdefault("FASTBP_BACKGROUND_COMPILE", "0")


@pytest.fixture
def rng():
    return np.random.default_rng(20261126)


def _mnist_dir():
    import os
    from pathlib import Path

    from fastbp.datasets import MNIST_FILES

    for candidate in (os.environ.get("FASTBP_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if candidate:
            for d in (Path(candidate), Path(candidate) / "mnist"):
                if all((d / f).is_file() for f in MNIST_FILES):
                    return d
    return None


@pytest.fixture(scope="session")
def mnist_dir():
    """The folder with the MNIST files: $FASTBP_DATA, else ../shared/data beside the checkout."""
    d = _mnist_dir()
    if d is None:
        pytest.skip("MNIST files not found (set FASTBP_DATA)")
    return d
