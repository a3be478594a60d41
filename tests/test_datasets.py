"""fastbp.datasets.load_mnist: lookup order, checksums, the error when nothing is found."""
import shutil

import numpy as np
import pytest

from fastbp.datasets import MNIST_FILES, load_mnist


def test_load_mnist_returns_keras_shapes_and_uint8(mnist_dir):
    (x_train, y_train), (x_test, y_test) = load_mnist(mnist_dir, download=False)
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    # class counts published with the data set
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(y_train)[0] == 5923


def test_environment_variable_is_used(mnist_dir, monkeypatch):
    monkeypatch.setenv("FASTBP_DATA", str(mnist_dir))
    (_, y_train), _ = load_mnist(download=False)
    assert len(y_train) == 60000


def test_nothing_found_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTBP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError) as err:
        load_mnist(tmp_path / "nowhere", download=False)
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and str(tmp_path / "cache" / "fastbp") in message
    assert "FASTBP_DATA" in message and "load_mnist(path=...)" in message


def test_a_corrupted_file_is_refused(mnist_dir, tmp_path):
    for name in MNIST_FILES:
        shutil.copy(mnist_dir / name, tmp_path / name)
    with open(tmp_path / "t10k-labels-idx1-ubyte.gz", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz is not the published MNIST file"):
        load_mnist(tmp_path, download=False)
