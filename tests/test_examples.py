"""The examples of the layers issue, run as a user runs them (on real MNIST).

examples/deep_residual_mlp.py: one epoch of 24 sigmoid layers of width 64 stays at chance (the
gradient reaching the first layers is scaled by sigmoid' <= 1/4 per layer), the same depth with
residual connections and layer normalization passes 90% (it reaches about 93% after one epoch
and 95.6% after two here); both learning curves are drawn.
examples/keras_mnist_mlp.py is Keras's script with only its imports changed: the Keras names it
imports exist and behave as Keras's (its 20 epochs are measured in the CHANGELOG, not here).
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deep_residual_example_shows_the_vanishing_gradient(mnist_dir, tmp_path):
    pytest.importorskip("matplotlib")
    example = _load("deep_residual_mlp")
    png = tmp_path / "curves.png"
    accuracy = example.main(["--epochs", "1", "--data", str(mnist_dir), "--plot", str(png)])
    assert accuracy["plain"] < 0.2
    assert accuracy["residual"] > 0.9
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_keras_names_the_mnist_mlp_example_imports(mnist_dir, monkeypatch):
    from fastbp import nn as keras
    from fastbp.nn.datasets import mnist
    from fastbp.nn.layers import Dense, Dropout
    from fastbp.nn.models import Sequential
    from fastbp.nn.optimizers import RMSprop

    monkeypatch.setenv("FASTBP_DATA", str(mnist_dir))
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28) and x_train.dtype == np.uint8
    onehot = keras.utils.to_categorical(y_test, 10)
    assert onehot.shape == (10000, 10) and onehot.dtype == np.float32
    np.testing.assert_array_equal(onehot.argmax(axis=1), y_test)
    np.testing.assert_array_equal(onehot.sum(axis=1), 1)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        keras.utils.to_categorical([0, 3], 3)
    assert RMSprop().learning_rate == 0.001 and issubclass(Sequential, keras.Model)
    model = Sequential()
    model.add(Dense(512, activation="relu", input_shape=(784,)))
    model.add(Dropout(0.2))
    model.add(Dense(10, activation="softmax"))
    model.compile(loss="categorical_crossentropy", optimizer=RMSprop(), metrics=["accuracy"])
    x = x_train[:512].reshape(512, 784).astype("float32") / 255
    history = model.fit(x, keras.utils.to_categorical(y_train[:512], 10), batch_size=128, epochs=2, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0]
