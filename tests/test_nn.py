"""fastbp.nn: the Keras-style API, exactness against a plain NumPy implementation, and MNIST."""
import math
import subprocess
import sys

import numpy as np
import pytest
from helpers import cpu_backends

from fastbp import nn

BACKENDS = cpu_backends()


def _data(rng, n=40, n_in=6, classes=3):
    x = rng.standard_normal((n, n_in))
    y = rng.integers(0, classes, n)
    return x, y


def _numpy_reference_training(weights, x, y, epochs, batch, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    """Dense(5, tanh) -> Dense(3, softmax), sparse CE, Adam: the same steps, written out in NumPy."""
    w1, c1, w2, c2 = (w.astype(np.float64) for w in weights)
    params = [w1, c1, w2, c2]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = 0
    for _ in range(epochs):
        for start in range(0, len(x), batch):
            xb, yb = x[start:start + batch], y[start:start + batch]
            h = np.tanh(xb @ w1 + c1)
            logits = h @ w2 + c2
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(yb)), yb] -= 1
            g = p / len(yb)
            grads = [None, None, h.T @ g, g.sum(axis=0)]
            dh = (g @ w2.T) * (1 - h * h)
            grads[0], grads[1] = xb.T @ dh, dh.sum(axis=0)
            t += 1
            for i, (param, grad) in enumerate(zip(params, grads)):
                m[i] = b1 * m[i] + (1 - b1) * grad
                v[i] = b2 * v[i] + (1 - b2) * grad * grad
                param -= lr / (1 - b1**t) * m[i] / (np.sqrt(v[i]) / math.sqrt(1 - b2**t) + eps)
    return params


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_matches_a_plain_numpy_implementation(backend, rng):
    x, y = _data(rng)
    model = nn.Sequential([nn.Dense(5, activation="tanh", input_shape=(6,)), nn.Dense(3, activation="softmax")],
                          seed=3, backend=backend, dtype=np.float64)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = model.get_weights()
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    expected = _numpy_reference_training(start, x, y, epochs=3, batch=8)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba backend unavailable")
@pytest.mark.parametrize("optimizer", [
    lambda: nn.Adam(clipnorm=0.05), lambda: nn.SGD(0.05, momentum=0.9, nesterov=True, clipvalue=0.01),
    lambda: nn.RMSprop(momentum=0.5, centered=True, global_clipnorm=0.1),
    lambda: nn.AdamW(learning_rate=nn.CosineDecay(1e-2, 20), amsgrad=True)])
def test_compiled_steps_give_the_python_loops_weights(optimizer, rng, monkeypatch):
    """On numba, fit() runs whole steps in compiled code; the Python loop over the same kernels
    must reach the same weights (the same kernels in the same order, so the same bits)."""
    x, y = _data(rng, n=50)

    def make():
        model = nn.Sequential([nn.Dense(7, activation="gelu", input_shape=(6,)), nn.Activation("silu"),
                               nn.Dense(3, activation="softmax", use_bias=False)], seed=1, backend="numba")
        model.compile(optimizer=optimizer(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    h_c, h_p = _both_loops(make, x, y, monkeypatch)
    np.testing.assert_allclose(h_c["loss"], h_p["loss"], rtol=1e-12)


def _both_loops(make_model, x, y, monkeypatch):
    """Two epochs of make_model() in the compiled loop and in the Python loop: the same weights,
    bit for bit, and the same accuracy; returns both histories."""
    results = []
    for compiled in (True, False):
        model = make_model()
        monkeypatch.setattr(model, "_use_compiled", lambda compiled=compiled: compiled)
        history = model.fit(x.astype(np.float32), y, batch_size=16, epochs=2, verbose=0)
        results.append((model.get_weights(), history.history))
    (w_c, h_c), (w_p, h_p) = results
    for a, b in zip(w_c, w_p):
        np.testing.assert_array_equal(a, b)
    assert h_c["accuracy"] == h_p["accuracy"]
    return h_c, h_p


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba backend unavailable")
@pytest.mark.parametrize("rows, cols", [(5, 3), (64, 511), (100, 784)])  # serial, serial, parallel
def test_compiled_batch_gather_is_numpy_take(rows, cols, rng):
    from fastbp.nn.compiled.interpreter import gather_rows

    src = rng.standard_normal((300, cols))
    order = rng.permutation(300)
    for lo in (0, 17):
        dst = np.full((rows, cols), np.nan)
        gather_rows(src, order, lo, dst)
        np.testing.assert_array_equal(dst, src[order[lo:lo + rows]])


def test_api_summary_weights_predict_evaluate(tmp_path, rng, capsys):
    model = nn.Sequential(seed=0)
    model.add(nn.Dense(128, activation="relu", input_shape=(784,)))
    model.add(nn.Dense(10, activation="softmax"))
    model.summary()
    out = capsys.readouterr().out
    assert "Total params: 101,770" in out and "(None, 128)" in out
    model.compile(optimizer=nn.Adam(), loss=nn.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    x = rng.random((64, 784)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    probs = model.predict(x)
    assert probs.shape == (64, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    loss, acc = model.evaluate(x, y, verbose=0)
    assert 0 <= acc <= 1 and loss == pytest.approx(-np.mean(np.log(probs[np.arange(64), y])), rel=1e-4)
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(784, 128), (128,), (128, 10), (10,)]
    np.testing.assert_array_equal(weights[1], 0)  # zero biases, Keras's default
    limit = math.sqrt(6 / (784 + 128))  # glorot uniform
    assert np.abs(weights[0]).max() <= limit and np.abs(weights[0]).max() > 0.9 * limit
    model.save_weights(tmp_path / "w.npz")
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(model.get_weights()[0], weights[0])
    model.load_weights(tmp_path / "w.npz")
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="expected shape"):
        model.set_weights([w.T for w in weights])


def test_fit_history_validation_callbacks_and_verbosity(rng, capsys):
    x, y = _data(rng, n=100)
    seen = []

    class Recorder(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, sorted(logs)))

    model = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(6,)), nn.Dense(3, activation="softmax")], seed=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=10, validation_split=0.2, verbose=2, callbacks=[Recorder()])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Epoch")]
    assert len(lines) == 3 and "val_accuracy" in lines[0]
    assert history.epoch == [0, 1, 2]
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert seen == [(e, ["accuracy", "loss", "val_accuracy", "val_loss"]) for e in range(3)]
    model.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_same_seed_same_run(rng):
    x, y = _data(rng, n=64)
    runs = []
    for _ in range(2):
        model = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(6,)), nn.Dense(3, activation="softmax")],
                              seed=42)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_categorical_and_sparse_cross_entropy_agree_and_mse_trains(rng):
    x, y = _data(rng, n=48)
    onehot = np.eye(3)[y]
    weights = []
    for loss, target in (("sparse_categorical_crossentropy", y), ("categorical_crossentropy", onehot)):
        model = nn.Sequential([nn.Dense(4, activation="relu", input_shape=(6,)), nn.Dense(3, activation="softmax")],
                              seed=5, dtype=np.float64)
        model.compile(optimizer="rmsprop", loss=loss, metrics=["accuracy"])
        model.fit(x, target, epochs=2, batch_size=12, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    reg = nn.Sequential([nn.Dense(16, activation="tanh", input_shape=(6,)), nn.Dense(1)], seed=0)
    reg.compile(optimizer=nn.Adam(0.01), loss="mse")
    target = x[:, :1] * 2 - x[:, 1:2]
    history = reg.fit(x, target, epochs=30, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]


def test_compile_refuses_the_log_of_a_probability_it_cannot_fuse():
    model = nn.Sequential([nn.Dense(3, activation="sigmoid", input_shape=(4,))])
    with pytest.raises(ValueError, match="needs a softmax last layer"):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="from_logits=True\\) needs a linear last layer"):
        model.compile(optimizer="adam", loss=nn.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="unknown optimizer"):
        model.compile(optimizer="adamax", loss="mse")


def test_schedules_follow_keras_formulas():
    assert nn.ExponentialDecay(0.1, 10, 0.5)(20) == pytest.approx(0.025)
    assert nn.ExponentialDecay(0.1, 10, 0.5, staircase=True)(19) == pytest.approx(0.05)
    pw = nn.PiecewiseConstantDecay([100, 200], [1.0, 0.5, 0.1])
    assert [pw(0), pw(100), pw(101), pw(200), pw(201)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    cd = nn.CosineDecay(1.0, 100, alpha=0.1)
    assert cd(0) == pytest.approx(1.0) and cd(50) == pytest.approx(0.55) and cd(100) == pytest.approx(0.1)
    assert cd(1000) == pytest.approx(0.1)


def test_a_schedule_drives_the_optimizer(rng):
    opt = nn.SGD(learning_rate=nn.PiecewiseConstantDecay([0], [1.0, 0.25]))
    params = np.ones(3, np.float32)
    grads = np.ones(3, np.float32)
    opt.apply(params, grads, [(0, 3)])  # step 0: lr 1
    np.testing.assert_array_equal(params, 0)
    opt.apply(params, grads.copy(), [(0, 3)])  # step 1: lr 0.25
    np.testing.assert_array_equal(params, -0.25)
    assert opt.iterations == 2


def test_clipping_options():
    grads = np.array([3.0, 4.0, 0.0, 12.0], np.float32)  # variable norms 5 and 12, global 13
    p = np.zeros(4, np.float32)
    nn.SGD(1.0, clipnorm=1.0).apply(p, grads.copy(), [(0, 2), (2, 4)])
    np.testing.assert_allclose(-p, [0.6, 0.8, 0.0, 1.0], rtol=1e-5)
    p[:] = 0
    nn.SGD(1.0, global_clipnorm=1.0).apply(p, grads.copy(), [(0, 2), (2, 4)])
    np.testing.assert_allclose(-p, grads / 13, rtol=1e-5)
    p[:] = 0
    nn.SGD(1.0, clipvalue=2.0).apply(p, grads.copy(), [(0, 2), (2, 4)])
    np.testing.assert_array_equal(-p, [2.0, 2.0, 0.0, 2.0])


def test_initializers():
    rng = np.random.default_rng(0)
    w = nn.initializers.he_normal((400, 300), rng)
    assert w.std() == pytest.approx(math.sqrt(2 / 400), rel=0.02) and np.abs(w).max() <= 2 * math.sqrt(2 / 400) / 0.8796 + 1e-6
    g = nn.initializers.glorot_normal((400, 300), rng)
    assert g.std() == pytest.approx(math.sqrt(2 / 700), rel=0.02)
    u = nn.initializers.he_uniform((400, 300), rng)
    assert np.abs(u).max() <= math.sqrt(6 / 400)
    with pytest.raises(ValueError, match="unknown initializer"):
        nn.Dense(3, kernel_initializer="orthogonal")


def test_classic_mnist_example_reaches_keras_accuracy(mnist_dir):
    """The classic Keras example, only the imports changed: >= 97.5 % test accuracy."""
    from fastbp.datasets import load_mnist

    (x_train, y_train), (x_test, y_test) = load_mnist(mnist_dir, download=False)
    x_train = x_train.reshape(-1, 784) / 255.0
    x_test = x_test.reshape(-1, 784) / 255.0
    model = nn.Sequential([nn.Dense(128, activation="relu", input_shape=(784,)),
                           nn.Dense(10, activation="softmax")], seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=10, verbose=0)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy >= 0.975
    assert loss < 0.1


def test_fastbp_train_command_saves_curves(mnist_dir, tmp_path):
    png = tmp_path / "curves.png"
    out = subprocess.run([sys.executable, "-m", "fastbp.cli", "train", "--epochs", "1", "--data", str(mnist_dir),
                          "--verbose", "2", "--plot", str(png), "--seed", "0"],
                         capture_output=True, text=True, check=True).stdout
    assert "Epoch 1/1" in out and "test accuracy" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------- binary cross-entropy, regularizers, loss weights


def _multilabel_data(rng, n=45, n_in=6, labels=3):
    x = rng.standard_normal((n, n_in))
    y = (rng.random((n, labels)) < 0.4).astype(np.float64)
    return x, y


def _bce_l2_model(backend, dtype, regularizer, loss_weight, seed=4):
    model = nn.Sequential([nn.Dense(5, activation="tanh", input_shape=(6,), kernel_regularizer=regularizer),
                           nn.Dense(3, activation="sigmoid", kernel_regularizer=regularizer)],
                          seed=seed, backend=backend, dtype=dtype)
    model.compile(optimizer=nn.SGD(0.1, momentum=0.9), loss="binary_crossentropy", metrics=["accuracy"],
                  loss_weights=loss_weight)
    return model


def _numpy_bce_l2_training(weights, x, y, batch, coefficient, loss_weight, lr=0.1, mu=0.9):
    """Dense(5, tanh) -> Dense(3, sigmoid), binary cross-entropy (mean over all elements) times
    loss_weight, plus coefficient(b) / 2 * sum(kernel^2) per kernel, SGD with momentum: written
    out in NumPy. Returns the weights and the epoch's mean loss (penalty included)."""
    w1, c1, w2, c2 = (w.astype(np.float64) for w in weights)
    params = [w1, c1, w2, c2]
    vel = [np.zeros_like(p) for p in params]
    total = 0.0
    for start in range(0, len(x), batch):
        xb, yb = x[start:start + batch], y[start:start + batch]
        b = len(xb)
        c = coefficient(b)
        h = np.tanh(xb @ w1 + c1)
        z = h @ w2 + c2
        s = 1 / (1 + np.exp(-z))
        loss = -np.mean(yb * np.log(s) + (1 - yb) * np.log(1 - s)) * loss_weight
        total += (loss + 0.5 * c * ((w1 ** 2).sum() + (w2 ** 2).sum())) * b
        g = (s - yb) / yb.size * loss_weight
        grads = [None, None, h.T @ g + c * w2, g.sum(axis=0)]
        dh = (g @ w2.T) * (1 - h * h)
        grads[0], grads[1] = xb.T @ dh + c * w1, dh.sum(axis=0)
        for i, (param, grad) in enumerate(zip(params, grads)):
            vel[i] = mu * vel[i] + grad
            param -= lr * vel[i]
    return params, total / len(x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("regularizer, coefficient", [
    (nn.regularizers.L2(0.02), lambda b: 0.04), (nn.regularizers.PerSampleL2(0.3), lambda b: 0.3 / b)],
    ids=["keras-L2", "per-sample-L2"])
def test_binary_cross_entropy_with_l2_matches_numpy(backend, regularizer, coefficient, rng):
    """One epoch in float64, the last batch partial (45 rows, batch 10): the penalty's coefficient
    follows the batch size where it should. Float64 sums in another order: 1e-10 relative."""
    x, y = _multilabel_data(rng)
    model = _bce_l2_model(backend, np.float64, regularizer, 1.7)
    start = model.get_weights()
    history = model.fit(x, y, batch_size=10, epochs=1, shuffle=False, verbose=0)
    expected, loss = _numpy_bce_l2_training(start, x, y, 10, coefficient, 1.7)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert history.history["loss"][0] == pytest.approx(loss, rel=1e-10)
    prob = model.predict(x)
    s = 1 / (1 + np.exp(-(np.tanh(x @ expected[0] + expected[1]) @ expected[2] + expected[3])))
    np.testing.assert_allclose(prob, s, rtol=1e-10)


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba backend unavailable")
@pytest.mark.parametrize("regularizer", [nn.regularizers.L2(0.01), nn.regularizers.PerSampleL2(0.5)])
def test_compiled_steps_give_the_python_loops_weights_with_bce_and_l2(regularizer, rng, monkeypatch):
    x, y = _multilabel_data(rng, n=53)
    h_c, h_p = _both_loops(lambda: _bce_l2_model("numba", np.float32, regularizer, 0.5), x, y, monkeypatch)
    assert h_c["loss"] == h_p["loss"]  # the same float64 sums in the same order


def test_binary_accuracy_is_kerass(rng):
    """Keras's binary accuracy: the fraction of outputs where (probability > 0.5) == target."""
    model = nn.Sequential([nn.Dense(2, activation="sigmoid", input_shape=(2,), use_bias=False)], seed=0)
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    model.set_weights([np.eye(2, dtype=np.float32)])
    x = np.array([[1.0, -1.0], [1.0, 1.0], [-1.0, -1.0], [0.0, 2.0]], np.float32)
    y = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], np.float32)  # right: 2, 1, 1, 2 of 2 (z = 0 is 0)
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert accuracy == pytest.approx(6 / 8)
    z = x
    assert loss == pytest.approx(np.mean(np.logaddexp(0, z) - z * y), rel=1e-6)


def test_binary_cross_entropy_and_regularizer_errors():
    model = nn.Sequential([nn.Dense(2, activation="softmax", input_shape=(2,))])
    with pytest.raises(ValueError, match="binary_crossentropy on probabilities needs a sigmoid last layer"):
        model.compile(loss="binary_crossentropy")
    with pytest.raises(ValueError, match="loss_weights must hold one weight"):
        model.compile(loss="mse", loss_weights=[1.0, 2.0])
    for bad in (-1.0, float("nan"), "2", True):
        with pytest.raises(ValueError, match="loss_weights must be a finite number >= 0"):
            model.compile(loss="mse", loss_weights=bad)
    with pytest.raises(ValueError, match=r"L2: l2 must be a finite number >= 0; got -0.1"):
        nn.regularizers.L2(-0.1)
    with pytest.raises(ValueError, match="unknown regularizer 'l3'"):
        nn.Dense(3, kernel_regularizer="l3")
    assert nn.Dense(3, kernel_regularizer="l2").kernel_regularizer.coefficients() == (0.02, 0.0)


def test_pickled_model_keeps_its_flat_buffer(rng):
    """After unpickling, the layers' weights are views into the flat buffer again (so training
    and predict see one set of weights) and the buffers are writable."""
    import pickle

    x, y = _data(rng)
    model = nn.Sequential([nn.Dense(5, activation="tanh", input_shape=(6,)), nn.Dense(3, activation="softmax")],
                          seed=1)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    copy = pickle.loads(pickle.dumps(model))
    assert all(np.shares_memory(w, copy.params) for layer in copy.layers for w in layer.weights)
    assert all(np.shares_memory(g, copy.grads) for layer in copy.layers for g in layer.grads)
    np.testing.assert_array_equal(copy.predict(x), model.predict(x))
    model.fit(x, y, epochs=1, verbose=0, shuffle=False)
    copy.fit(x, y, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
