"""Saving and loading models and weights (:mod:`fastbp.nn.archive` files, written atomically).

A model file holds everything training needs to continue as if it never stopped: the architecture
(:meth:`Model.get_config`), the weights, the compile settings (optimizer with its
hyper-parameters and schedule, loss, metrics, loss weight), the optimizer's state (step count and
its moment/velocity buffers), the model's random generator (shuffling) and, in backups written
during ``fit`` (:class:`~fastbp.nn.checkpoints.BackupAndRestore`), the position in training (epoch,
step, that epoch's sample order and running sums). A weights file holds only the weights, as
``arr_0.npy``, ``arr_1.npy``, ... in layer order (``np.load`` reads it).
"""
from __future__ import annotations

import typing

import numpy as np

from .._version import __version__
from .archive import Archive, write_archive
from .callbacks import FitPosition
from .serialization import deserialize, serialize

MODEL_MANIFEST, WEIGHTS_MANIFEST = "fastbp_model.json", "fastbp_weights.json"
MODEL_FORMAT, WEIGHTS_FORMAT = "fastbp.model", "fastbp.weights"
FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)
_KINDS = {MODEL_MANIFEST: "a fastbp model file (nn.load_model reads it)",
          WEIGHTS_MANIFEST: "a fastbp weights file (model.load_weights reads it)"}
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


# ------------------------------------------------------------------------------- model files

def save_model(model, path, position: FitPosition | None = None) -> None:
    """Write ``model`` (and, for a backup, the training ``position``) to ``path``, atomically."""
    manifest = {"format": MODEL_FORMAT, "format_version": FORMAT_VERSION, "fastbp_version": __version__,
                **_describe(model)}
    arrays = {}
    if model.built:
        for i, layer in enumerate(model.layers):
            for j, w in enumerate(layer.weights):
                arrays[_weight_name(i, j)] = w
    opt = model.optimizer
    if opt is not None:
        manifest["optimizer_state"] = {"iterations": int(opt.iterations), "slots": len(opt._state)}
        for k, slot in enumerate(opt._state):
            arrays[f"optimizer/{k}.npy"] = slot
    manifest["rng"] = _json_state(model._rng.bit_generator.state)
    if position is not None:
        manifest["position"] = {"epoch": int(position.epoch), "step": int(position.step),
                                "totals": [float(t) for t in position.totals],
                                "global_step": int(position.global_step), "has_order": position.order is not None}
        if position.order is not None:
            arrays["position/order.npy"] = np.asarray(position.order, np.int64)
    write_archive(path, MODEL_MANIFEST, manifest, arrays)


def load_model(path, custom_objects=None, compile=True):
    """The model saved in ``path`` (by ``model.save`` or a checkpoint), compiled as it was (unless
    ``compile=False``), with its weights, optimizer state and random state: training continues
    exactly where the saved model stopped. ``custom_objects``: name -> class or function for
    objects registered under those names when the model was saved."""
    from .model import Model

    with _open_model(path) as archive:
        manifest = archive.manifest
        model = _rebuild(archive, lambda data, where: deserialize(data, custom_objects, where), Model)
        if compile and manifest.get("compile") is not None:
            model.compile(**_compile_arguments(archive, manifest["compile"], custom_objects))
        _assign_state(model, _read_state(archive, model, optimizer=compile))
    return model


class Backup(typing.NamedTuple):
    """A backup read and checked by :func:`read_backup`: ``position`` (a FitPosition or None) and
    ``apply()``, which writes its weights, optimizer state and random state into the model."""
    position: FitPosition | None
    apply: typing.Callable[[], None]


def read_backup(model, path) -> Backup:
    """Read and check a backup written by :func:`save_model` for ``model``: the same model,
    compiled the same way, and every array and state whole. Nothing of the model changes until
    ``apply()`` is called, so a backup refused here or by fit() (a position that does not fit the
    data) leaves the model as it was."""
    with _open_model(path) as archive:
        saved = {k: archive.manifest.get(k) for k in ("model", "built", "compile")}
        mine = _describe(model)
        for key in ("model", "built", "compile"):
            if saved[key] != mine[key]:
                raise archive.fail(f"this backup was written by a different model or compile() ({key} differs: "
                                   f"saved {saved[key]!r}, now {mine[key]!r}); delete it or use another backup_dir")
        weights = _read_weights(archive, model)
        state = _read_state(archive, model, optimizer=True)
        pos = archive.manifest.get("position")
        position = None
        if pos is not None:
            try:
                order = archive.array("position/order.npy", dtype=np.int64) if pos["has_order"] else None
                position = FitPosition(int(pos["epoch"]), int(pos["step"]), order,
                                       tuple(float(t) for t in pos["totals"]), int(pos["global_step"]))
            except (KeyError, TypeError, ValueError) as e:
                if isinstance(e, ValueError) and str(e).startswith(archive.path):
                    raise
                raise archive.fail(f"the training position is malformed ({e})") from None

    def apply():
        _assign_weights(weights)
        _assign_state(model, state)
    return Backup(position, apply)


def _open_model(path):
    return Archive(path, MODEL_MANIFEST, MODEL_FORMAT, READABLE_VERSIONS, _KINDS)


def _describe(model) -> dict:
    """The JSON-able description of the model that a file stores and a backup is checked against."""
    compiled = None
    if model.optimizer is not None:
        compiled = {"optimizer": serialize(model.optimizer, "optimizer"), "loss": serialize(model.loss, "loss"),
                    "metrics": list(model.metrics), "loss_weights": float(model.loss_weight)}
    return {"model": serialize(model, "model"), "built": {"input_width": int(model.widths[0])} if model.built else None,
            "compile": compiled}


def _compile_arguments(archive, settings, custom_objects):
    """compile()'s arguments from the manifest's compile section."""
    if not isinstance(settings, dict) or set(settings) != {"optimizer", "loss", "metrics", "loss_weights"}:
        raise archive.fail("the compile section is malformed")
    try:
        return {"optimizer": deserialize(settings["optimizer"], custom_objects, "optimizer"),
                "loss": deserialize(settings["loss"], custom_objects, "loss"),
                "metrics": list(settings["metrics"]), "loss_weights": settings["loss_weights"]}
    except (TypeError, ValueError) as e:
        raise archive.fail(f"the compile section cannot be rebuilt ({e})") from None


def _rebuild(archive, load, model_class):
    manifest = archive.manifest
    try:
        model = load(manifest["model"], "model")
    except KeyError:
        raise archive.fail("the manifest has no model") from None
    except ValueError as e:
        raise archive.fail(str(e)) from None
    if not isinstance(model, model_class):
        raise archive.fail(f"the saved model is a {type(model).__name__}, not a model")
    built = manifest.get("built")
    if built is not None:
        try:
            model.build(int(built["input_width"]))
        except (KeyError, TypeError, ValueError) as e:
            raise archive.fail(f"the saved architecture cannot be built ({e})") from None
        _assign_weights(_read_weights(archive, model))
    return model


def _weight_name(i, j):
    return f"weights/{i}/{j}.npy"


def _read_weights(archive, model):
    """[(the model's weight array, the checked saved value)] for every weight."""
    expected = {_weight_name(i, j): (i, w) for i, layer in enumerate(model.layers) for j, w in enumerate(layer.weights)}
    saved = {n for n in archive.names() if n.startswith("weights/")}
    if saved != set(expected):
        missing, extra = sorted(set(expected) - saved), sorted(saved - set(expected))
        raise archive.fail(f"the weights do not match the saved architecture (missing {missing}, unexpected {extra})")
    return [(target, archive.array(name, target.shape, model.dtype,
                                   f"layer {i} ({type(model.layers[i]).__name__}) weight {name}"))
            for name, (i, target) in expected.items()]


def _assign_weights(weights):
    for target, value in weights:
        target[...] = value


def _read_state(archive, model, optimizer):
    """The checked optimizer state (``optimizer``: and only when the model is compiled) and
    random generator of the file, as a dict for :func:`_assign_state`."""
    manifest = archive.manifest
    state = {}
    opt = model.optimizer
    if optimizer and opt is not None and manifest.get("optimizer_state") is not None:
        saved = manifest["optimizer_state"]
        try:
            iterations, slots = int(saved["iterations"]), int(saved["slots"])
        except (KeyError, TypeError, ValueError):
            raise archive.fail("the optimizer state is malformed") from None
        if slots not in (0, opt._slots()) or iterations < 0:
            raise archive.fail(f"the optimizer state has {slots} buffers; {type(opt).__name__} keeps {opt._slots()}")
        state["optimizer"] = (iterations, tuple(np.array(archive.array(f"optimizer/{k}.npy", model.params.shape,
                                                                       model.dtype, f"optimizer buffer {k}"))
                                                for k in range(slots)))
    if "rng" in manifest:
        state["rng"] = _generator(archive, manifest["rng"])
    return state


def _assign_state(model, state):
    if "optimizer" in state:
        model.optimizer.iterations, model.optimizer._state = state["optimizer"]
    if "rng" in state:
        model._rng = state["rng"]


def _json_state(state):
    """A bit generator's state with its arrays (MT19937's key) as lists."""
    if isinstance(state, dict):
        return {k: _json_state(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return {"uint32_array": state.tolist()} if state.dtype == np.uint32 else state.tolist()
    if isinstance(state, np.integer):
        return int(state)
    return state


def _numpy_state(state):
    if isinstance(state, dict):
        if set(state) == {"uint32_array"}:
            return np.array(state["uint32_array"], np.uint32)
        return {k: _numpy_state(v) for k, v in state.items()}
    return state


def _generator(archive, state):
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise archive.fail(f"the random state names an unknown bit generator {name!r}")
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = _numpy_state(state)
    except (TypeError, ValueError, KeyError) as e:
        raise archive.fail(f"the random state is malformed ({e})") from None
    return np.random.Generator(bit_generator)


# ----------------------------------------------------------------------------- weights files

def save_weights(model, path) -> None:
    """Write the model's weights (``arr_0.npy``, ... in layer order) to ``path``, atomically."""
    weights = model.get_weights()
    manifest = {"format": WEIGHTS_FORMAT, "format_version": FORMAT_VERSION, "fastbp_version": __version__,
                "shapes": [list(w.shape) for w in weights]}
    write_archive(path, WEIGHTS_MANIFEST, manifest, {f"arr_{i}.npy": w for i, w in enumerate(weights)})


def load_weights(model, path) -> None:
    """Set the model's weights from a file written by :func:`save_weights` (or an earlier
    ``save_weights``'s plain ``.npz`` of ``arr_0``, ...: its zip CRCs and shapes are checked)."""
    model.build()
    targets = [w for layer in model.layers for w in layer.weights]
    names = [f"arr_{i}.npy" for i in range(len(targets))]
    try:
        archive = Archive(path, WEIGHTS_MANIFEST, WEIGHTS_FORMAT, READABLE_VERSIONS, _KINDS)
    except ValueError as e:
        if "no fastbp_weights.json" not in str(e):
            raise
        values = _legacy_npz(path, names, targets, model.dtype)
    else:
        with archive:
            if sorted(archive.names()) != sorted(names):
                raise archive.fail(f"it holds {len(archive.names())} arrays; this model has {len(names)} weights")
            values = [archive.array(n, t.shape, model.dtype, f"weight {i}") for i, (n, t) in enumerate(zip(names, targets))]
    for target, value in zip(targets, values):
        target[...] = value


def _legacy_npz(path, names, targets, dtype):
    from .archive import ArchiveError

    try:
        with np.load(path, allow_pickle=False) as data:
            if sorted(data.files) != sorted(n[:-4] for n in names):
                raise ArchiveError(f"{path}: it holds the arrays {sorted(data.files)}; this model has {len(names)} "
                                   "weights (arr_0 ...)")
            values = [data[n[:-4]] for n in names]
    except ArchiveError:
        raise
    except Exception as e:
        raise ArchiveError(f"{path}: not a readable weights file ({type(e).__name__}: {e})") from None
    for i, (value, target) in enumerate(zip(values, targets)):
        if value.shape != target.shape:
            raise ArchiveError(f"{path}: weight {i} has shape {value.shape}; the model needs {target.shape}")
        if value.dtype.kind != "f":
            raise ArchiveError(f"{path}: weight {i} has dtype {value.dtype}; expected {np.dtype(dtype)}")
    return values
