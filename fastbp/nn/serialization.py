"""Objects to JSON-able configs and back (Keras's ``serialize`` / ``deserialize``).

A registered class is written as ``{"class_name": name, "config": obj.get_config()}`` and rebuilt
as ``cls(**config)`` (or ``cls.from_config(config)`` where the class has one); a registered
function (an initializer) as ``{"function": name}``. Configs nest: an optimizer's schedule, a
layer's regularizer. Every built-in layer, optimizer, schedule, loss, regularizer and initializer is
registered; a user's own class or function is registered with :func:`register_serializable` or
passed to ``load_model(custom_objects=...)``.
"""
from __future__ import annotations

import math

_REGISTRY: dict = {}


def register_serializable(obj=None, *, name=None):
    """Register a class (with ``get_config``) or a function under ``name`` (default: its
    ``__qualname__``) so that models using it can be saved and loaded; usable as a decorator."""
    def register(target):
        key = name or target.__qualname__
        if not isinstance(key, str) or not key:
            raise ValueError(f"register_serializable: name must be a non-empty string; got {key!r}")
        other = _REGISTRY.get(key)
        if other is not None and other is not target:
            raise ValueError(f"register_serializable: {key!r} is already registered for {other!r}")
        _REGISTRY[key] = target
        return target
    return register if obj is None else register(obj)


def _name_of(obj):
    for key, value in _REGISTRY.items():
        if value is obj:
            return key
    return None


def serialize(obj, where="value"):
    """The JSON-able form of ``obj`` (None, a bool, a finite or non-finite number, a string, a list
    or tuple of those, or a registered object); ``where`` names it in errors."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int) or _is_numpy(obj, "integer"):
        return int(obj)
    if isinstance(obj, float) or _is_numpy(obj, "floating"):
        value = float(obj)
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(obj, (list, tuple)):
        return [serialize(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if callable(obj) and not isinstance(obj, type) and not hasattr(obj, "get_config"):
        key = _name_of(obj)
        if key is None:
            raise ValueError(f"cannot save {where}: the function {obj!r} is not registered; decorate it with "
                             "fastbp.nn.register_serializable (and pass it in custom_objects when loading)")
        return {"function": key}
    key = _name_of(type(obj))
    if key is None or not hasattr(obj, "get_config"):
        raise ValueError(f"cannot save {where}: {type(obj).__qualname__} is not registered; give it get_config() "
                         "and decorate it with fastbp.nn.register_serializable")
    config = obj.get_config()
    return {"class_name": key, "config": {k: serialize(v, f"{where}.{k}") for k, v in config.items()}}


def deserialize(data, custom_objects=None, where="value"):
    """The object :func:`serialize` wrote; ``custom_objects`` (name -> class or function) is looked
    up before the registry."""
    if isinstance(data, list):
        return [deserialize(v, custom_objects, f"{where}[{i}]") for i, v in enumerate(data)]
    if not isinstance(data, dict):
        return data
    if set(data) == {"float"}:
        return float(data["float"])
    if set(data) == {"function"}:
        return _lookup(data["function"], custom_objects, where)
    if set(data) != {"class_name", "config"} or not isinstance(data["config"], dict):
        raise ValueError(f"{where}: expected a serialized object (class_name and config); got keys {sorted(data)}")
    cls = _lookup(data["class_name"], custom_objects, where)
    config = {k: deserialize(v, custom_objects, f"{where}.{k}") for k, v in data["config"].items()}
    try:
        return cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: cannot rebuild {data['class_name']} from its config: {e}") from e


def _lookup(key, custom_objects, where):
    if not isinstance(key, str):
        raise ValueError(f"{where}: expected a registered name; got {key!r}")
    obj = (custom_objects or {}).get(key) or _REGISTRY.get(key)
    if obj is None:
        raise ValueError(f"{where}: unknown object {key!r}; register it with fastbp.nn.register_serializable "
                         "or pass it in custom_objects")
    return obj


def _is_numpy(obj, kind):
    import numpy as np

    return isinstance(obj, getattr(np, kind))
