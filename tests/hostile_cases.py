"""Hostile inputs for every public kernel: the cases, and a worker that runs them.

Each case is one valid call with one argument replaced by something hostile (wrong ndim or
shape, another dtype, integer/bool/complex/object arrays, strided/Fortran/negative-stride views,
read-only or aliasing outputs, NaN/Inf, labels out of range, lists, scalars, absurd sizes, bad
scalars). Its expected outcome follows from the documented rules (README "What inputs are
accepted"): a documented error (its class), or a result equal to the NumPy reference computed on
clean copies of the same values (NaN where the reference has NaN).

Run as a script (``python hostile_cases.py BACKEND START``) it runs the cases from START on,
printing one JSON line before and after each, so that the parent test (test_reliability.py) can
tell which case crashed the process and go on from the next one in a new process.
"""
from __future__ import annotations

import copy
import json
import math
import os
import sys
import traceback

import numpy as np

IN, OUT, INPLACE, LABELS = "in", "out", "inplace", "labels"


def _base(kernel, rng, dtype=np.float32):
    """(function name, {arg: (value, role)}, {keyword: scalar}) of one valid small call."""
    f = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    if kernel == "linear_forward":
        return {"x": (f(5, 7), IN), "w": (f(7, 3), IN), "b": (f(3), IN), "out": (np.empty((5, 3), dtype), OUT),
                "preact_out": (np.empty((5, 3), dtype), OUT)}, {"activation": "gelu"}
    if kernel == "linear_backward":
        y = np.abs(f(5, 3))
        return {"dy": (f(5, 3), IN), "x": (f(5, 7), IN), "w": (f(7, 3), IN), "y": (y, IN),
                "dx": (np.empty((5, 7), dtype), OUT), "dw": (np.empty((7, 3), dtype), OUT),
                "db": (np.empty(3, dtype), OUT), "dz": (np.empty((5, 3), dtype), OUT)}, {"activation": "relu"}
    if kernel == "activation_forward":
        return {"z": (f(4, 6), IN), "out": (np.empty((4, 6), dtype), OUT)}, {"name": "tanh"}
    if kernel == "activation_backward":
        return {"dy": (f(4, 6), IN), "y": (np.tanh(f(4, 6)), IN), "out": (np.empty((4, 6), dtype), OUT)}, {"name": "tanh"}
    if kernel == "softmax_cross_entropy":
        return {"logits": (f(6, 4), IN), "labels": (rng.integers(0, 4, 6), LABELS),
                "dlogits": (np.empty((6, 4), dtype), OUT)}, {}
    if kernel == "mse_loss":
        return {"pred": (f(4, 5), IN), "target": (f(4, 5), IN), "dpred": (np.empty((4, 5), dtype), OUT)}, {}
    if kernel == "sigmoid_cross_entropy":
        return {"logits": (f(4, 5), IN), "targets": (f(4, 5), IN), "dlogits": (np.empty((4, 5), dtype), OUT)}, {}
    if kernel == "sgd_update":
        return {"param": (f(9), INPLACE), "grad": (f(9), IN), "velocity": (np.zeros(9, dtype), INPLACE)}, \
            {"lr": 0.1, "momentum": 0.9}
    if kernel == "adam_update":
        return {"param": (f(9), INPLACE), "grad": (f(9), IN), "m": (np.zeros(9, dtype), INPLACE),
                "v": (np.zeros(9, dtype), INPLACE)}, {"step": 1, "lr": 0.01}
    if kernel == "rmsprop_update":
        return {"param": (f(9), INPLACE), "grad": (f(9), IN), "sq_avg": (np.zeros(9, dtype), INPLACE)}, {"lr": 0.01}
    if kernel == "clip_grad_norm":
        return {"g0": (f(3, 4), INPLACE), "g1": (f(5), INPLACE)}, {"max_norm": 1.0}
    if kernel == "clip_grad_value":
        return {"g0": (f(3, 4), INPLACE), "g1": (f(5), INPLACE)}, {"clip_value": 0.5}
    if kernel == "layernorm_forward":
        return {"x": (f(5, 7), IN), "gamma": (f(7), IN), "beta": (f(7), IN), "out": (np.empty((5, 7), dtype), OUT),
                "mean_out": (np.empty(5, dtype), OUT), "rstd_out": (np.empty(5, dtype), OUT)}, {"eps": 1e-5}
    if kernel == "batchnorm_forward":
        return {"x": (f(5, 7), IN), "gamma": (f(7), IN), "beta": (f(7), IN),
                "running_mean": (f(7), INPLACE), "running_var": (np.abs(f(7)), INPLACE),
                "out": (np.empty((5, 7), dtype), OUT), "mean_out": (np.empty(7, dtype), OUT),
                "rstd_out": (np.empty(7, dtype), OUT)}, {"eps": 1e-5, "momentum": 0.1, "training": True}
    if kernel in ("layernorm_backward", "batchnorm_backward"):
        stats = 5 if kernel == "layernorm_backward" else 7
        return {"dy": (f(5, 7), IN), "x": (f(5, 7), IN), "gamma": (f(7), IN), "mean": (f(stats), IN),
                "rstd": (np.abs(f(stats)), IN), "dx": (np.empty((5, 7), dtype), OUT),
                "dgamma": (np.empty(7, dtype), OUT), "dbeta": (np.empty(7, dtype), OUT)}, {}
    if kernel == "dropout_forward":
        return {"x": (f(5, 7), IN), "out": (np.empty((5, 7), dtype), OUT),
                "mask_out": (np.empty((5, 7), np.uint8), OUT)}, {"rate": 0.3, "seed": 7}
    if kernel == "dropout_backward":
        return {"dy": (f(5, 7), IN), "mask": ((rng.random((5, 7)) > 0.3).astype(np.uint8), IN),
                "out": (np.empty((5, 7), dtype), OUT)}, {"rate": 0.3}
    raise ValueError(kernel)


KERNELS = ["linear_forward", "linear_backward", "activation_forward", "activation_backward",
           "softmax_cross_entropy", "mse_loss", "sigmoid_cross_entropy", "sgd_update", "adam_update",
           "rmsprop_update", "clip_grad_norm", "clip_grad_value", "layernorm_forward", "layernorm_backward",
           "batchnorm_forward", "batchnorm_backward", "dropout_forward", "dropout_backward"]

#: positional arguments of each kernel, in order (the rest are keywords)
POSITIONAL = {"linear_forward": ["x", "w", "b"], "linear_backward": ["dy", "x", "w"],
              "activation_forward": ["z", "name"], "activation_backward": ["dy", "name"],
              "softmax_cross_entropy": ["logits", "labels"], "mse_loss": ["pred", "target"],
              "sigmoid_cross_entropy": ["logits", "targets"],
              "sgd_update": ["param", "grad"], "adam_update": ["param", "grad", "m", "v"],
              "rmsprop_update": ["param", "grad", "sq_avg"], "layernorm_forward": ["x", "gamma", "beta"],
              "batchnorm_forward": ["x", "gamma", "beta"],
              "layernorm_backward": ["dy", "x", "gamma", "mean", "rstd"],
              "batchnorm_backward": ["dy", "x", "gamma", "mean", "rstd"], "dropout_forward": ["x", "rate"],
              "dropout_backward": ["dy", "mask", "rate"]}


def _strided(a):
    """A non-contiguous view with a's values (every other column of a wider array)."""
    wide = np.empty(a.shape[:-1] + (2 * a.shape[-1],), a.dtype) if a.ndim else a.copy()
    wide[..., ::2] = a
    return wide[..., ::2]


def _negative(a):
    """A negative-stride view with a's values."""
    rev = a[..., ::-1].copy()
    return rev[..., ::-1]


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _absurd(a):
    """A read-only broadcast view claiming 2**46 rows (copying it cannot succeed)."""
    shape = (2**46,) + a.shape[1:]  # 2**48 bytes and more: beyond any address space
    return np.lib.stride_tricks.as_strided(a.reshape(-1)[:1], shape=shape, strides=(0,) * a.ndim, writeable=False)


# (name, mutator, outcome for an input, outcome for an output / in-place array); outcomes:
# "ok" = the reference's result, an exception class = that error
ARRAY_MUTATIONS = [
    ("extra axis", lambda a: a[None], ValueError, ValueError),
    ("one column less", lambda a: a[..., :-1].copy(), ValueError, ValueError),
    ("other float dtype", lambda a: a.astype(np.float64), TypeError, TypeError),
    ("int32", lambda a: a.astype(np.int32), TypeError, TypeError),
    ("bool", lambda a: a > 0, TypeError, TypeError),
    ("complex64", lambda a: a.astype(np.complex64), TypeError, TypeError),
    ("object", lambda a: a.astype(object), TypeError, TypeError),
    ("strided view", _strided, "ok", ValueError),
    ("Fortran order", lambda a: np.asfortranarray(a) if a.ndim == 2 and min(a.shape) > 1 else _strided(a), "ok",
     ValueError),
    ("negative stride", _negative, "ok", ValueError),
    ("read-only", _readonly, "ok", ValueError),
    ("python list", lambda a: a.tolist(), TypeError, TypeError),
    ("python scalar", lambda a: 1.5, TypeError, TypeError),
    ("None", lambda a: None, None, None),  # outcome depends on whether the argument is optional
    ("NaN", lambda a: np.where(np.arange(a.size).reshape(a.shape) % 3 == 0, np.nan, a).astype(a.dtype), "ok", "skip"),
    ("Inf", lambda a: np.where(np.arange(a.size).reshape(a.shape) % 4 == 1, np.inf, a).astype(a.dtype), "ok", "skip"),
    ("-Inf", lambda a: np.where(np.arange(a.size).reshape(a.shape) % 4 == 1, -np.inf, a).astype(a.dtype), "ok",
     "skip"),
    ("absurd size", _absurd, (MemoryError, ValueError), ValueError),
]

LABEL_MUTATIONS = [
    ("label = classes", lambda a: np.where(np.arange(a.size) == 2, 4, a), ValueError),
    ("label negative", lambda a: np.where(np.arange(a.size) == 1, -1, a), ValueError),
    ("float labels (not probabilities of the right shape)", lambda a: a.astype(np.float32), ValueError),
    ("bool labels", lambda a: a > 1, TypeError),
    ("uint8 labels", lambda a: a.astype(np.uint8), "ok"),
    ("int32 labels, strided", lambda a: _strided(a.astype(np.int32)), "ok"),
    ("labels list", lambda a: a.tolist(), TypeError),
    ("labels 2-D", lambda a: a[:, None], ValueError),
    ("labels too short", lambda a: a[:-1], ValueError),
]

#: the losses: a mean over an empty batch is an error
MEANS = ("softmax_cross_entropy", "mse_loss", "sigmoid_cross_entropy", "batchnorm_forward")
OPTIONAL = {"b", "out", "preact_out", "dx", "dw", "db", "dz", "dlogits", "dpred", "gamma", "beta", "mean_out",
            "rstd_out", "dgamma", "dbeta", "mask_out"}
#: None where the argument is optional but the call then contradicts itself: a dgamma buffer for
#: no gamma; one running statistic without the other
NONE_ERROR = {("layernorm_backward", "gamma"): ValueError, ("batchnorm_backward", "gamma"): ValueError,
              ("batchnorm_forward", "running_mean"): ValueError, ("batchnorm_forward", "running_var"): ValueError}
REQUIRED_NONE_ERROR = {"y": ValueError, "m": ValueError, "v": ValueError, "sq_avg": ValueError, "velocity": ValueError}
#: kernels whose arrays may have any shape (a list of gradients)
ANY_SHAPE = {"clip_grad_norm", "clip_grad_value"}
#: the documented in-place uses: the output may be this very input
DOCUMENTED_ALIASES = {("linear_backward", "dz", "dy"), ("activation_forward", "out", "z"),
                      ("activation_backward", "out", "dy"), ("softmax_cross_entropy", "dlogits", "logits"),
                      ("mse_loss", "dpred", "pred"), ("sigmoid_cross_entropy", "dlogits", "logits"),
                      ("dropout_forward", "out", "x"), ("dropout_backward", "out", "dy")}

SCALAR_MUTATIONS = {
    "lr": [(-0.1, ValueError), (float("nan"), ValueError), ("0.1", TypeError), (True, TypeError)],
    "step": [(0, ValueError), (1.5, TypeError), (-3, ValueError)],
    "momentum": [(-0.5, ValueError), (float("inf"), ValueError)],
    "max_norm": [(0.0, ValueError), (-1.0, ValueError), (None, TypeError)],
    "clip_value": [(float("nan"), ValueError), ("1", TypeError)],
    "activation": [("nope", ValueError), (3, ValueError)],
    "name": [("softmaxx", ValueError)],
    "eps": [(0.0, ValueError), (-1e-5, ValueError), (float("nan"), ValueError), ("1e-5", TypeError)],
    "rate": [(1.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
             ("0.5", TypeError)],
    "seed": [(-1, ValueError), (2**64, ValueError), (1.5, TypeError), (None, TypeError)],
    "training": [("yes", TypeError), (1, TypeError)],
}


def cases():
    """Every (kernel, description, mutate(args, kws) -> None, expected)."""
    out = []
    for kernel in KERNELS:
        args, kws = _base(kernel, np.random.default_rng(0))
        for arg, (_, role) in args.items():
            if role == LABELS:
                for name, fn, expected in LABEL_MUTATIONS:
                    out.append((kernel, f"{arg}: {name}", ("array", arg, fn), expected))
                continue
            for name, fn, exp_in, exp_out in ARRAY_MUTATIONS:
                if name == "None":
                    if (kernel, arg) in NONE_ERROR:
                        expected = NONE_ERROR[kernel, arg]
                    elif arg in OPTIONAL:
                        expected = "ok"
                    elif arg in REQUIRED_NONE_ERROR:
                        expected = REQUIRED_NONE_ERROR[arg]
                    else:
                        expected = TypeError
                elif kernel in ANY_SHAPE and name in ("extra axis", "one column less"):
                    expected = "ok"
                else:
                    expected = exp_in if role == IN else exp_out
                if expected == "skip":
                    continue
                out.append((kernel, f"{arg}: {name}", ("array", arg, fn), expected))
            if role in (OUT, INPLACE):
                others = [a for a, (_, r) in args.items() if r == IN and a != arg]
                for other in others[:2]:
                    expected = ("ok" if (kernel, arg, other) in DOCUMENTED_ALIASES else
                                TypeError if args[arg][0].dtype != args[other][0].dtype else ValueError)
                    out.append((kernel, f"{arg} is {other}", ("alias", arg, other), expected))
        for key, bad in SCALAR_MUTATIONS.items():
            if key in kws:
                for value, expected in bad:
                    out.append((kernel, f"{key} = {value!r}", ("scalar", key, value), expected))
        out.append((kernel, "empty batch" if kernel not in MEANS else
                    "empty batch (a mean over nothing)", ("empty", None, None),
                    ValueError if kernel in MEANS else "ok"))
    return out


def _empty_batch(kernel, args):
    per_row = ("mean", "rstd", "mean_out", "rstd_out") if kernel.startswith("layernorm") else ()
    for name, (a, role) in list(args.items()):
        if isinstance(a, np.ndarray) and (a.ndim == 2 and name not in ("w", "dw") or name in per_row):
            args[name] = (a[:0].copy(), role)
        elif kernel in ("sgd_update", "adam_update", "rmsprop_update", "clip_grad_norm", "clip_grad_value"):
            args[name] = (a[:0].copy(), role)
    if kernel in ("mse_loss", "sigmoid_cross_entropy"):
        for name in args:
            args[name] = (args[name][0][:0].copy(), args[name][1])


def build(kernel, mutation):
    """(args {name: value}, kws) for the case; aliasing is applied here."""
    args, kws = _base(kernel, np.random.default_rng(1))
    kind, key, payload = mutation
    if kind == "array":
        a, role = args[key]
        args[key] = (payload(a), role)
    elif kind == "alias":
        args[key] = (args[payload][0], args[key][1])
    elif kind == "scalar":
        kws[key] = payload
    elif kind == "empty":
        _empty_batch(kernel, args)
    return {k: v for k, (v, _) in args.items()}, kws


def call(kernel, args, kws, backend, written):
    """Run the kernel; return its return value and the arrays named in ``written`` afterwards."""
    from fastbp import kernels as K

    fn = getattr(K, kernel)
    if kernel in ("clip_grad_norm", "clip_grad_value"):
        ret = fn([args["g0"], args["g1"]], *kws.values(), backend=backend)
        return [ret] + [args[k] for k in written]
    after = dict(args)
    pos = [args.pop(k) if k in args else kws.pop(k) for k in POSITIONAL.get(kernel, [])]
    ret = fn(*pos, **args, **kws, backend=backend)
    return [ret] + [after[k] for k in written]


def _clean(args):
    """Contiguous, writeable copies with the same values, aliasing kept (what the reference gets)."""
    copies = copy.deepcopy(args)
    return {k: np.ascontiguousarray(v) if isinstance(v, np.ndarray) and v.dtype != object else v
            for k, v in copies.items()}


def _same(got, ref):
    if isinstance(ref, (list, tuple)):
        return len(got) == len(ref) and all(_same(g, r) for g, r in zip(got, ref))
    if ref is None:
        return got is None
    if isinstance(ref, float) or np.ndim(ref) == 0 and not isinstance(ref, np.ndarray):
        return (math.isnan(ref) and math.isnan(got)) or math.isclose(got, ref, rel_tol=1e-5, abs_tol=1e-6)
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return got.shape == ref.shape and np.allclose(got, ref, rtol=2e-5, atol=2e-5, equal_nan=True)


def run_case(i, backend):
    kernel, desc, mutation, expected = cases()[i]
    args, kws = build(kernel, mutation)
    roles = _base(kernel, np.random.default_rng(0))[0]
    written = [k for k, (_, role) in roles.items() if role in (OUT, INPLACE) and isinstance(args.get(k), np.ndarray)]
    clean_args = _clean(args) if expected == "ok" else None  # (an absurd-size view cannot be copied)
    clean_kws = dict(kws)
    try:
        got = call(kernel, args, kws, backend, written)
    except Exception as exc:  # noqa: BLE001  (the outcome is what is checked)
        ok = expected != "ok" and isinstance(exc, expected)
        return ok, f"{type(exc).__name__}: {str(exc)[:160]}"
    if expected != "ok":
        return False, f"no error (expected {expected})"
    try:
        ref = call(kernel, clean_args, clean_kws, "numpy", written)
    except Exception as exc:  # noqa: BLE001
        return False, f"reference failed: {type(exc).__name__}: {exc}"
    return _same(got, ref), "result" if _same(got, ref) else f"wrong result {got!r:.300} vs {ref!r:.300}"


def main():
    backend, start = sys.argv[1], int(sys.argv[2])
    n = len(cases())
    crash_at = int(os.environ.get("FASTBP_HOSTILE_CRASH_AT", "-1"))  # tests of the runner itself
    for i in range(start, n):
        print(json.dumps({"start": i}), flush=True)
        if i == crash_at:
            os.abort()
        try:
            ok, detail = run_case(i, backend)
        except Exception:  # noqa: BLE001  (a bug in the harness, reported as a failure)
            ok, detail = False, "harness: " + traceback.format_exc(limit=2)
        print(json.dumps({"done": i, "ok": bool(ok), "detail": detail}), flush=True)


if __name__ == "__main__":
    main()
