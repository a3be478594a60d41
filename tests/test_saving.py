"""Model files, weights files and atomic writes (fastbp.nn.saving, archive, atomic): round trips of
every layer, optimizer, schedule, loss and regularizer that continue training bit for bit; bad files
(truncated at many offsets, bit flips, wrong version, not a model, shapes that disagree) as clear
ValueErrors; a failed write leaves the old file."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

from fastbp import nn
from fastbp.nn import archive, atomic, saving


def _data(rng, n=60, n_in=6, out=3, kind="sparse"):
    x = rng.standard_normal((n, n_in))
    if kind == "sparse":
        return x, rng.integers(0, out, n)
    if kind == "onehot":
        return x, np.eye(out)[rng.integers(0, out, n)]
    if kind == "binary":
        return x, (rng.random((n, out)) < 0.5).astype(float)
    return x, rng.standard_normal((n, out))


# (layers, optimizer, loss, target kind, dtype): every layer type, optimizer, schedule, loss and
# regularizer appears at least once
CASES = {
    "dense-relu-adam-exponential": (
        lambda: [nn.Dense(8, activation="relu", input_shape=(6,)), nn.Dense(3, activation="softmax")],
        lambda: nn.Adam(nn.ExponentialDecay(0.01, 5, 0.8, staircase=True)), "sparse_categorical_crossentropy",
        "sparse", np.float32),
    "activation-layer-sgd-nesterov-piecewise": (
        lambda: [nn.Dense(7, input_shape=(6,), kernel_initializer="he_normal", use_bias=False),
                 nn.Activation("leaky_relu", alpha=0.1), nn.Dense(3, activation="softmax")],
        lambda: nn.SGD(nn.PiecewiseConstantDecay([4, 9], [0.1, 0.05, 0.01]), momentum=0.9, nesterov=True,
                       clipvalue=0.5), "categorical_crossentropy", "onehot", np.float64),
    "regularized-rmsprop-centered-cosine": (
        lambda: [nn.Dense(9, activation="tanh", input_shape=(6,), kernel_regularizer=nn.regularizers.L2(1e-3),
                          bias_initializer="ones"),
                 nn.Dense(3, kernel_regularizer=nn.regularizers.PerSampleL2(1e-2), kernel_initializer="glorot_normal")],
        lambda: nn.RMSprop(nn.CosineDecay(0.01, 20, alpha=0.1), momentum=0.5, centered=True, global_clipnorm=2.0),
        "mse", "dense", np.float32),
    "sigmoid-adamw-amsgrad": (
        lambda: [nn.Dense(5, activation="gelu", input_shape=(6,), kernel_initializer="he_uniform"),
                 nn.Dense(3, activation="sigmoid")],
        lambda: nn.AdamW(0.01, amsgrad=True, clipnorm=1.0), "binary_crossentropy", "binary", np.float32),
    "from-logits-adam-uncorrected-sgd-plain": (
        lambda: [nn.Dense(6, activation="silu", input_shape=(6,)), nn.Dense(3)],
        lambda: nn.Adam(0.005, uncorrected_epsilon=True, weight_decay=0.01),
        nn.SparseCategoricalCrossentropy(from_logits=True), "sparse", np.float64),
    "sgd-plain-softplus": (
        lambda: [nn.Dense(4, activation="softplus", input_shape=(6,)), nn.Dense(3, activation="sigmoid")],
        lambda: nn.SGD(0.05), nn.BinaryCrossentropy(), "binary", np.float32),
}


def _model(case, backend):
    layers, optimizer, loss, kind, dtype = CASES[case]
    model = nn.Sequential(layers(), seed=4, backend=backend, dtype=dtype)
    model.compile(optimizer=optimizer(), loss=loss, metrics=["accuracy"], loss_weights=0.5 if kind == "dense" else None)
    return model, kind


def _same_state(a, b):
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert a.optimizer.iterations == b.optimizer.iterations
    assert len(a.optimizer._state) == len(b.optimizer._state)
    for sa, sb in zip(a.optimizer._state, b.optimizer._state):
        np.testing.assert_array_equal(sa, sb)
    assert a._rng.bit_generator.state == b._rng.bit_generator.state


@pytest.mark.parametrize("backend", ["numpy", None])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_loaded_model_continues_training_bit_for_bit(case, backend, rng, tmp_path):
    model, kind = _model(case, backend)
    x, y = _data(rng, kind=kind)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = tmp_path / "model.fastbp"
    model.save(path)
    loaded = nn.load_model(path)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert saving._describe(loaded) == saving._describe(model)  # architecture and compile settings
    _same_state(model, loaded)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    h1 = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    h2 = loaded.fit(x, y, epochs=2, batch_size=8, verbose=0)
    _same_state(model, loaded)
    assert h1.history == h2.history


def test_saving_before_build_and_before_compile(tmp_path, rng):
    path = tmp_path / "m.fastbp"
    unbuilt = nn.Sequential([nn.Dense(3, activation="softmax")], seed=1, name="tiny")
    unbuilt.save(path)
    again = nn.load_model(path)
    assert not again.built and again.optimizer is None and again.name == "tiny"
    uncompiled = nn.Sequential([nn.Dense(3, activation="softmax", input_shape=(4,))], seed=1)
    uncompiled.build()
    uncompiled.save(path)
    again = nn.load_model(path)
    assert again.built and again.optimizer is None
    np.testing.assert_array_equal(again.get_weights()[0], uncompiled.get_weights()[0])
    model, kind = _model("dense-relu-adam-exponential", "numpy")
    model.fit(*_data(rng), epochs=1, batch_size=8, verbose=0)
    model.save(path)
    assert nn.load_model(path, compile=False).optimizer is None


def test_custom_objects_are_registered_or_refused(tmp_path):
    class Halving(nn.LearningRateSchedule):
        def __init__(self, rate):
            self.rate = rate

        def __call__(self, step):
            return self.rate / (1 + step)

    model = nn.Sequential([nn.Dense(2, input_shape=(3,))])
    model.compile(optimizer=nn.SGD(Halving(0.1)), loss="mse")
    with pytest.raises(ValueError, match="Halving is not registered"):
        model.save(tmp_path / "m.fastbp")
    model.compile(optimizer=nn.SGD(lambda step: 0.1), loss="mse")
    with pytest.raises(ValueError, match="learning_rate: the function .* is not registered"):
        model.save(tmp_path / "m.fastbp")
    assert not os.listdir(tmp_path)  # nothing half-written
    nn.register_serializable(Halving, name="test_saving.Halving")
    model.compile(optimizer=nn.SGD(Halving(0.1)), loss="mse")
    model.save(tmp_path / "m.fastbp")
    loaded = nn.load_model(tmp_path / "m.fastbp")
    assert isinstance(loaded.optimizer.learning_rate, Halving) and loaded.optimizer.learning_rate.rate == 0.1
    with pytest.raises(ValueError, match="already registered"):
        nn.register_serializable(dict, name="test_saving.Halving")


def test_weights_files_round_trip_and_refuse_what_does_not_fit(tmp_path, rng):
    model, _ = _model("dense-relu-adam-exponential", "numpy")
    model.build()
    path = tmp_path / "w.weights"  # the path is used as given (no suffix appended)
    model.save_weights(path)
    assert os.listdir(tmp_path) == ["w.weights"]
    with np.load(path) as data:  # a plain .npz to NumPy
        for i, w in enumerate(model.get_weights()):
            np.testing.assert_array_equal(data[f"arr_{i}"], w)
    before = model.get_weights()
    model.fit(*_data(rng), epochs=1, batch_size=8, verbose=0)
    model.load_weights(path)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    legacy = tmp_path / "legacy.npz"
    np.savez(legacy, *[w + 1 for w in before])  # earlier save_weights wrote plain .npz files
    model.load_weights(legacy)
    np.testing.assert_array_equal(model.get_weights()[0], before[0] + 1)
    other = nn.Sequential([nn.Dense(9, activation="relu", input_shape=(6,)), nn.Dense(3, activation="softmax")])
    other.build()
    current = model.get_weights()
    for bad in (legacy, path):
        with pytest.raises(ValueError, match=r"(shape|needs)"):
            other.load_weights(bad)
    smaller = nn.Sequential([nn.Dense(3, input_shape=(6,))])
    with pytest.raises(ValueError, match="this model has 2 weights"):
        smaller.load_weights(path)
    model.save(tmp_path / "m.fastbp")
    with pytest.raises(ValueError, match="this is a fastbp model file"):
        model.load_weights(tmp_path / "m.fastbp")
    with pytest.raises(ValueError, match="this is a fastbp weights file"):
        nn.load_model(path)
    for a, b in zip(model.get_weights(), current):  # failed loads changed nothing
        np.testing.assert_array_equal(a, b)


def _saved_model_bytes(tmp_path, rng):
    model, _ = _model("activation-layer-sgd-nesterov-piecewise", "numpy")
    model.fit(*_data(rng, kind="onehot"), epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "good.fastbp"
    model.save(path)
    return model, path.read_bytes()


def test_truncated_files_are_clear_errors(tmp_path, rng):
    _, blob = _saved_model_bytes(tmp_path, rng)
    bad = tmp_path / "bad.fastbp"
    offsets = sorted(set(np.linspace(0, len(blob) - 1, 60).astype(int)) | set(range(len(blob) - 30, len(blob))))
    for cut in offsets:
        bad.write_bytes(blob[:cut])
        with pytest.raises(ValueError, match=str(bad)):
            nn.load_model(bad)


def test_bit_flips_are_detected_or_harmless(tmp_path, rng):
    """Flipping any one bit gives a clear error, or (a flip in a zip field that holds no content:
    a timestamp, version-made-by, an attribute) a model identical to the saved one. Never a crash,
    and never different weights or settings."""
    model, blob = _saved_model_bytes(tmp_path, rng)
    bad = tmp_path / "bad.fastbp"
    flips = rng.integers(0, len(blob) * 8, 300)
    harmless = 0
    for bit in flips:
        corrupted = bytearray(blob)
        corrupted[bit // 8] ^= 1 << (bit % 8)
        bad.write_bytes(bytes(corrupted))
        try:
            loaded = nn.load_model(bad)
        except ValueError as e:
            assert str(bad) in str(e)
            continue
        harmless += 1
        assert saving._describe(loaded) == saving._describe(model)
        _same_state(loaded, model)
    assert harmless < len(flips) // 2  # nearly every byte of the file is covered by a checksum


def _rewrite(path, out, edit_manifest=None, edit_arrays=None):
    """Copy a model file with its manifest and arrays edited, checksums recomputed (a consistent
    file that says something wrong)."""
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read(saving.MODEL_MANIFEST))
        arrays = {n: np.load(io.BytesIO(zf.read(n))) for n in manifest["arrays"]}
    del manifest["arrays"]
    if edit_manifest:
        edit_manifest(manifest)
    if edit_arrays:
        edit_arrays(arrays)
    archive.write_archive(out, saving.MODEL_MANIFEST, manifest, arrays)


def test_wrong_version_not_a_model_and_disagreeing_shapes(tmp_path, rng):
    _, blob = _saved_model_bytes(tmp_path, rng)
    good = tmp_path / "good.fastbp"
    bad = tmp_path / "bad.fastbp"
    _rewrite(good, bad, lambda m: m.update(format_version=2))
    with pytest.raises(ValueError, match=r"bad.fastbp: format version 2 cannot be read by this fastbp"):
        nn.load_model(bad)
    _rewrite(good, bad, lambda m: m["model"]["config"]["layers"][0]["config"].update(units=8))
    with pytest.raises(ValueError, match=r"layer 0 \(Dense\) weight weights/0/0.npy: the saved array has shape "
                                         r"\(6, 7\), the saved architecture needs \(6, 8\)"):
        nn.load_model(bad)
    _rewrite(good, bad, edit_arrays=lambda a: a.pop("weights/2/1.npy"))
    with pytest.raises(ValueError, match=r"missing \['weights/2/1.npy'\]"):
        nn.load_model(bad)
    _rewrite(good, bad, edit_arrays=lambda a: a.update({"optimizer/0.npy": a["optimizer/0.npy"][:-1]}))
    with pytest.raises(ValueError, match="optimizer buffer 0: the saved array has shape"):
        nn.load_model(bad)
    _rewrite(good, bad, lambda m: m["model"].update(class_name="Nonexistent"))
    with pytest.raises(ValueError, match="unknown object 'Nonexistent'"):
        nn.load_model(bad)
    _rewrite(good, bad, lambda m: m["rng"].update(bit_generator="os.system"))
    with pytest.raises(ValueError, match="unknown bit generator"):
        nn.load_model(bad)
    for content in (b"", b"hello, not a zip", json.dumps({"format": "fastbp.model"}).encode()):
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=r"bad.fastbp: (the file is empty|not a fastbp file)"):
            nn.load_model(bad)
    with open(bad, "wb") as f:
        np.savez(f, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastbp.model file"):
        nn.load_model(bad)
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr(saving.MODEL_MANIFEST, "{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        nn.load_model(bad)
    with zipfile.ZipFile(bad, "w") as zf:  # a pickle where an array should be: refused, never unpickled
        zf.writestr(saving.MODEL_MANIFEST, blob and zipfile.ZipFile(good).read(saving.MODEL_MANIFEST))
        buf = io.BytesIO()
        np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
        for name in zipfile.ZipFile(good).namelist()[1:]:
            zf.writestr(name, buf.getvalue())
    with pytest.raises(ValueError, match="SHA-256 does not match"):
        nn.load_model(bad)
    with pytest.raises(FileNotFoundError, match="no such file"):
        nn.load_model(tmp_path / "missing.fastbp")
    with pytest.raises(ValueError, match="is a directory"):
        nn.load_model(tmp_path)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, rng, monkeypatch):
    model, blob = _saved_model_bytes(tmp_path, rng)
    path = tmp_path / "good.fastbp"
    os.chmod(path, 0o640)

    def broken(f):
        f.write(b"partial")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        atomic.atomic_write(path, broken)
    assert path.read_bytes() == blob and sorted(os.listdir(tmp_path)) == ["good.fastbp"]
    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError("I/O error")
    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="I/O error"):
        model.save(path)
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    assert path.read_bytes() == blob and sorted(os.listdir(tmp_path)) == ["good.fastbp"]
    model.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o640  # a replaced file keeps its permissions
    link = tmp_path / "link.fastbp"
    link.symlink_to(path)
    model.save(link)  # through a symbolic link: the target is replaced, the link stays
    assert link.is_symlink() and nn.load_model(link).optimizer.iterations == model.optimizer.iterations
    with pytest.raises(IsADirectoryError):
        model.save(tmp_path)
