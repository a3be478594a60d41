"""Dropout, LayerNormalization, BatchNormalization, Add and the functional API (nn.Input, nn.Model).

The whole model's gradient is checked against central differences of its loss in float64 (each
layer's kernel has its own finite-difference test in test_gradients.py; here the graph's
backward pass is under test: the order of the nodes, gradients added where a tensor feeds two
nodes, a layer used twice). Keras's semantics: dropout only in fit, the moving statistics of
batch normalization (momentum 0.99, the biased batch variance) used in evaluate and predict.
"""
import numpy as np
import pytest
from helpers import cpu_backends, numerical_grad

from fastbp import nn

BACKENDS = cpu_backends()
# central differences with h = 1e-6 in float64 (see test_gradients.py)
FD_RTOL, FD_ATOL = 1e-6, 1e-8


def _residual_model(seed=0, dtype=np.float64, dropout=0.0, backend=None, width=6, n_in=5, classes=3):
    """Dense -> LayerNormalization -> Dense(tanh) -> Add with its input -> (Dropout) ->
    BatchNormalization -> Dense softmax (the issue's graph)."""
    inputs = nn.Input((n_in,))
    h = nn.Dense(width, activation="relu")(inputs)
    h = nn.LayerNormalization()(h)
    h = nn.Add()([h, nn.Dense(width, activation="tanh")(h)])
    if dropout:
        h = nn.Dropout(dropout, seed=11)(h)
    h = nn.BatchNormalization()(h)
    outputs = nn.Dense(classes, activation="softmax")(h)
    return nn.Model(inputs=inputs, outputs=outputs, seed=seed, dtype=dtype, backend=backend)


def _check_model_gradient(model, x, y):
    """model.grads after a full-batch backward pass against central differences of the loss."""
    x, y = model._prepare(x, y)
    model._loss_and_gradient(x, y)
    analytic = model.grads.copy()

    def loss():
        return model._loss_and_gradient(x, y)[0]

    np.testing.assert_allclose(analytic, numerical_grad(loss, model.params), rtol=FD_RTOL, atol=FD_ATOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dropout", [0.0, 0.5], ids=["no-dropout", "dropout"])
def test_residual_graph_gradient_matches_finite_differences(backend, dropout, rng):
    model = _residual_model(dropout=dropout, backend=backend)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((20, 5))
    _check_model_gradient(model, x, rng.integers(0, 3, 20))


@pytest.mark.parametrize("backend", BACKENDS)
def test_shared_layer_and_a_tensor_read_three_times(backend, rng):
    """One Dense applied twice (its gradient is the sum over both uses), and a tensor that feeds
    three nodes (an Add of it with itself and a Dense of it)."""
    inputs = nn.Input((4,))
    shared = nn.Dense(4, activation="tanh")
    h = nn.Dense(4, activation="sigmoid")(inputs)
    a = shared(h)
    b = shared(a)
    s = nn.Add()([h, h, b])
    outputs = nn.Dense(2)(nn.LayerNormalization(center=False)(s))
    model = nn.Model(inputs, outputs, seed=3, dtype=np.float64, backend=backend)
    assert len(model.layers) == 5 and len(model.nodes) == 6
    model.compile(optimizer="sgd", loss="mse")
    _check_model_gradient(model, rng.standard_normal((9, 4)), rng.standard_normal((9, 2)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_chain_model_is_a_sequential(backend, rng):
    """The same layers as a functional chain and as a Sequential: the same initial weights, the same
    training, bit for bit."""
    def layers():
        return [nn.Dense(8, activation="relu"), nn.Dense(3, activation="softmax")]

    inputs = nn.Input((5,))
    h = inputs
    for layer in layers():
        h = layer(h)
    functional = nn.Model(inputs=inputs, outputs=h, seed=4, backend=backend)
    sequential = nn.Sequential(layers(), seed=4, backend=backend)
    x, y = rng.standard_normal((50, 5)).astype(np.float32), rng.integers(0, 3, 50)
    logs = []
    for model in (functional, sequential):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        logs.append(model.fit(x, y, epochs=2, batch_size=16, verbose=0).history)
    for a, b in zip(functional.get_weights(), sequential.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert logs[0] == logs[1]


def test_dropout_is_active_in_fit_only(rng):
    model = nn.Sequential([nn.Dense(6, activation="relu", input_shape=(4,)), nn.Dropout(0.5, seed=1), nn.Dense(2)],
                          seed=0, dtype=np.float64, backend="numpy")
    plain = nn.Sequential([nn.Dense(6, activation="relu", input_shape=(4,)), nn.Dense(2)], seed=0,
                          dtype=np.float64, backend="numpy")
    model.compile(optimizer="sgd", loss="mse")
    plain.compile(optimizer="sgd", loss="mse")
    plain.set_weights(model.get_weights())
    x = rng.standard_normal((8, 4))
    np.testing.assert_array_equal(model.predict(x), plain.predict(x))
    assert model.evaluate(x, np.zeros((8, 2)), verbose=0) == plain.evaluate(x, np.zeros((8, 2)), verbose=0)
    # in training: y = relu(x w + b) mask / (1 - rate), the mask of step 0 from the layer's seed
    xp, _ = model._prepare(x)
    plan = model._plan(8)
    model._forward(xp, plan, 8, training=True)
    hidden = plan["y"][0][:8]
    mask = plan["buffers"][1]["mask"][:8]
    assert 0 < mask.sum() < mask.size
    np.testing.assert_array_equal(plan["y"][1][:8], np.where(mask == 1, hidden * 2.0, hidden * 0))


def test_dropout_masks_follow_the_step_and_resume_exactly(rng, tmp_path):
    """Each step draws a new mask (seed_t from the layer's seed and the step number); a model saved
    mid-training and loaded continues with the masks an uninterrupted fit would have drawn."""
    def model():
        m = nn.Sequential([nn.Dense(16, activation="relu", input_shape=(6,)), nn.Dropout(0.3), nn.Dense(3)],
                          seed=9, dtype=np.float64, backend="numpy")
        m.compile(optimizer="adam", loss=nn.SparseCategoricalCrossentropy(from_logits=True))
        return m
    x, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)
    straight = model()
    straight.fit(x, y, epochs=4, batch_size=10, verbose=0, shuffle=False)
    first = model()
    first.fit(x, y, epochs=2, batch_size=10, verbose=0, shuffle=False)
    first.save(tmp_path / "m.fastbp")
    resumed = nn.load_model(tmp_path / "m.fastbp")
    assert resumed.layers[1].seed == first.layers[1].seed  # drawn at build, saved in the config
    resumed.fit(x, y, epochs=4, initial_epoch=2, batch_size=10, verbose=0, shuffle=False)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)
    d = straight.layers[1]
    assert d.step_seed(0) != d.step_seed(1)


def test_batch_normalization_moving_statistics_follow_keras(rng):
    """After one step on batch x: moving_mean = 0.99 * 0 + 0.01 * mean(x), moving_variance =
    0.99 * 1 + 0.01 * var(x) (biased); evaluate and predict normalize with them."""
    bn = nn.BatchNormalization()
    model = nn.Sequential([bn], seed=0, dtype=np.float64, backend="numpy")
    model.compile(optimizer=nn.SGD(learning_rate=0.0), loss="mse")
    x = rng.standard_normal((32, 5)) * 3 + 7
    model.fit(x, np.zeros((32, 5)), batch_size=32, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(bn.moving_mean, 0.01 * x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.moving_variance, 0.99 + 0.01 * x.var(axis=0), rtol=1e-12)
    expected = (x - bn.moving_mean) / np.sqrt(bn.moving_variance + 1e-3)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-12)
    names = [w.shape for w in model.get_weights()]
    assert names == [(5,)] * 4  # gamma, beta, moving_mean, moving_variance (Keras's order)
    assert model.count_params() == 20 and model.params.size == 10


def test_layer_normalization_without_scale_or_center(rng):
    model = nn.Sequential([nn.LayerNormalization(scale=False, center=False, input_shape=(7,))], seed=0,
                          dtype=np.float64, backend="numpy")
    x = rng.standard_normal((4, 7)) * 5 + 2
    expected = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-12)
    assert model.count_params() == 0


def test_bad_graphs_are_refused_by_name():
    inputs = nn.Input((4,))
    a = nn.Dense(3, name="three")(inputs)
    b = nn.Dense(5, name="five")(inputs)
    with pytest.raises(ValueError, match=r"'adder' \(Add\) needs inputs of one shape; got three \(None, 3\), "
                                         r"five \(None, 5\)"):
        nn.Add(name="adder")([a, b])
    with pytest.raises(ValueError, match="takes a list of two or more"):
        nn.Add()(a)
    other = nn.Input((4,), name="other")
    with pytest.raises(ValueError, match="not connected to the model's input: layer 'right' reads Input other"):
        _disconnected(inputs, other)
    reused = nn.Dense(2, name="reused")
    reused(inputs)
    with pytest.raises(ValueError, match="'reused' was built for inputs of width 4 and is reused on width 3"):
        reused(a)
    with pytest.raises(TypeError, match="called on a ndarray"):
        nn.Dense(2)(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="takes several inputs"):
        nn.Sequential([nn.Dense(2), nn.Add()])
    with pytest.raises(ValueError, match="the output is the input itself"):
        nn.Model(inputs, inputs)
    with pytest.raises(ValueError, match="one input tensor"):
        nn.Model([inputs, other], a)
    with pytest.raises(ValueError, match="rate must be a number in \\[0, 1\\)"):
        nn.Dropout(1.0)
    with pytest.raises(ValueError, match="epsilon must be a finite number > 0"):
        nn.LayerNormalization(epsilon=0)
    with pytest.raises(ValueError, match="axis must be -1"):
        nn.BatchNormalization(axis=0)


def _disconnected(inputs, other):
    h = nn.Dense(3, name="left")(inputs)
    return nn.Model(inputs, nn.Add(name="adder2")([h, nn.Dense(3, name="right")(other)]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_functional_model_saves_loads_and_resumes(backend, rng, tmp_path):
    x, y = rng.standard_normal((64, 5)).astype(np.float32), rng.integers(0, 3, 64)
    model = _residual_model(seed=2, dtype=np.float32, dropout=0.2, backend=backend)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    model.save(tmp_path / "r.fastbp")
    loaded = nn.load_model(tmp_path / "r.fastbp")
    assert type(loaded) is nn.Model and [type(n.layer) for n in loaded.nodes] == [type(n.layer) for n in model.nodes]
    assert [n.inputs for n in loaded.nodes] == [n.inputs for n in model.nodes]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    h1 = model.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    h2 = loaded.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    assert h1 == h2
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.save_weights(tmp_path / "w.fastbp")
    fresh = _residual_model(seed=5, dtype=np.float32, dropout=0.2, backend=backend)
    fresh.load_weights(tmp_path / "w.fastbp")
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))


def test_summary_names_the_connections(capsys):
    model = _residual_model()
    model.summary()
    out = capsys.readouterr().out
    assert "add_3 (Add)" in out and "layer_normalization_1, dense_2" in out
    assert "Non-trainable params: 12" in out


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba backend unavailable")
@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "mse"])
def test_compiled_graph_steps_give_the_python_loops_weights(loss, rng, monkeypatch):
    """The compiled interpreter runs graphs (Add of a tensor that feeds several nodes, dropout
    masks per step, layer and batch normalization with and without gamma and beta, the moving
    statistics): the same weights, moving statistics and losses as the Python loop, bit for bit."""
    from fastbp.nn.compiled import supports

    x = rng.standard_normal((70, 6)).astype(np.float32)
    y = rng.integers(0, 3, 70) if loss != "mse" else rng.standard_normal((70, 3)).astype(np.float32)

    def make():
        inputs = nn.Input((6,))
        d = nn.Dropout(0.25)(inputs)
        h = nn.Dense(8, activation="gelu")(d)
        h = nn.LayerNormalization(center=False)(h)
        t = nn.Dense(8, activation="tanh", use_bias=False)(h)
        s = nn.Add()([h, t, h])
        s = nn.BatchNormalization(momentum=0.9, scale=False)(s)
        s = nn.Dropout(0.5)(nn.Activation("relu")(s))
        s = nn.LayerNormalization()(nn.Add()([s, nn.BatchNormalization()(t)]))
        out = nn.Dense(3, activation="softmax" if loss != "mse" else "linear")(s)
        model = nn.Model(inputs, out, seed=7, backend="numba")
        model.compile(optimizer=nn.Adam(1e-2), loss=loss, metrics=["accuracy"])
        return model

    assert supports(make())
    results = []
    for compiled in (True, False):
        model = make()
        monkeypatch.setattr(model, "_use_compiled", lambda compiled=compiled: compiled)
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        results.append((model.get_weights(), history.history, history.params["path"]))
    (w_c, h_c, path_c), (w_p, h_p, path_p) = results
    assert path_c == "numba compiled steps" and "Python loop" in path_p
    for a, b in zip(w_c, w_p):
        np.testing.assert_array_equal(a, b)
    assert h_c == h_p
