"""The public kernels: one function each; validate once, allocate outputs, dispatch.

Layout follows Keras: ``x`` is (batch, in), ``w`` is (in, out), ``b`` is (out,),
``y = act(x @ w + b)``. Every function takes ``backend=`` (see :func:`fastbp.use_backend`) and
optional output buffers, so a training loop can run without allocating. Validation rules are in
:mod:`fastbp._checks`; activation formulas in :mod:`fastbp.activations`.
"""
from __future__ import annotations

import math

from . import _checks as chk
from . import activations as A
from . import formulas as F
from ._backend import select

__all__ = [
    "linear_forward", "linear_backward", "activation_forward", "activation_backward",
    "softmax_cross_entropy", "mse_loss", "sigmoid_cross_entropy", "sgd_update", "adam_update", "rmsprop_update",
    "clip_grad_norm", "clip_grad_value", "layernorm_forward", "layernorm_backward", "batchnorm_forward",
    "batchnorm_backward", "dropout_forward", "dropout_backward",
]


def _activation(fn, activation, alpha):
    try:
        act = A.get(activation)
    except ValueError as exc:
        raise ValueError(f"{fn}: {exc}") from None
    alpha = chk.nonnegative(fn, "alpha", alpha)
    return act, alpha


def _saved_for_derivative(fn, act, y, z, batch_shape, dtype):
    """The array the derivative of ``act`` is computed from (y, z or None), checked."""
    if act.needs == A.NEEDS_NOTHING:
        return None
    name, given = ("y", y) if act.needs == A.NEEDS_OUTPUT else ("z", z)
    if given is None:
        what = "output y" if name == "y" else "pre-activation z (keep it with linear_forward(..., preact_out=z))"
        raise ValueError(f"{fn}: activation {act.name!r} differentiates from the {what}; pass {name}=")
    given = chk.float_array(fn, name, given)
    chk.shape(fn, name, given, batch_shape, "to match dy")
    if given.dtype != dtype:
        raise TypeError(f"{fn}: all float arrays of one call must share a dtype; got dy: {dtype}, {name}: {given.dtype}")
    return given


def _placed(fn, be, **arrays):
    """Require every array to be where backend ``be`` computes (host or GPU)."""
    chk.same_device(fn, be.DEVICE, be.NAME, arrays)


def _copy_back(be, result, work):
    """After an in-place call (see :func:`fastbp._checks.output_in_place`): result = work."""
    if work is not result:
        be.copy_(result, work)


# ------------------------------------------------------------------------------------ layers

def linear_forward(x, w, b=None, activation="linear", *, alpha=A.DEFAULT_ALPHA, out=None,
                   preact_out=None, backend=None):
    """y = act(x @ w + b), bias and activation applied in the product's epilogue.

    x: (batch, in); w: (in, out); b: (out,) or None. ``out`` receives y (batch, out);
    ``preact_out``, when given, receives z = x @ w + b (needed later by ``linear_backward`` for
    activations that differentiate from z: gelu, gelu_tanh, silu, softplus). Returns y.
    """
    fn = "linear_forward"
    act, alpha = _activation(fn, activation, alpha)
    x = chk.float_array(fn, "x", x, 2)
    w = chk.float_array(fn, "w", w, 2)
    b = None if b is None else chk.float_array(fn, "b", b, 1)
    dtype = chk.common_dtype(fn, x=x, w=w, b=b)
    batch, n_in = x.shape
    chk.nonempty_features(fn, "x", n_in, "column (input feature)")
    chk.shape(fn, "w", w, (n_in, None), f"(rows = x's {n_in} columns)")
    n_out = w.shape[1]
    chk.nonempty_features(fn, "w", n_out, "column (output unit)")
    if b is not None:
        chk.shape(fn, "b", b, (n_out,), "(one bias per column of w)")
    be = select(backend, x, w)
    inputs = {"x": x, "w": w, "b": b}
    y = chk.output(fn, "out", out, (batch, n_out), dtype, inputs, be.empty)
    z = None
    if preact_out is not None:
        z = chk.writable(fn, "preact_out", preact_out, (batch, n_out), dtype, inputs)
        chk.disjoint(fn, out=y, preact_out=z)
    _placed(fn, be, x=x, w=w, b=b, out=y, preact_out=z)
    be.linear_forward(x, w, b, act.code, alpha, y, z)
    return y


def linear_backward(dy, x, w, y=None, z=None, activation="linear", *, alpha=A.DEFAULT_ALPHA,
                    dx=None, dw=None, db=None, dz=None, need_dx=True, need_db=True, backend=None):
    """Gradients of a dense layer y = act(x @ w + b), given dy = dL/dy:

    dz = dy * act'(.) (fused), dw = x.T @ dz, db = sum over the batch of dz, dx = dz @ w.T.

    Pass ``y`` for linear, relu, leaky_relu, sigmoid, tanh, softmax, log_softmax (derivative from
    the output) and ``z`` for gelu, gelu_tanh, silu, softplus (from the pre-activation).
    ``need_dx=False`` skips dx (the first layer); ``need_db=False`` skips db (no bias).
    ``dz`` is an optional (batch, out) work buffer that receives dL/dz; it may be ``dy`` itself
    (dy is then overwritten). Returns ``(dx, dw, db)``, with None for what was not asked.
    """
    fn = "linear_backward"
    act, alpha = _activation(fn, activation, alpha)
    need_dx = chk.flag(fn, "need_dx", need_dx)
    need_db = chk.flag(fn, "need_db", need_db)
    dy = chk.float_array(fn, "dy", dy, 2)
    x = chk.float_array(fn, "x", x, 2)
    w = chk.float_array(fn, "w", w, 2)
    dtype = chk.common_dtype(fn, dy=dy, x=x, w=w)
    batch, n_in = x.shape
    chk.nonempty_features(fn, "x", n_in, "column (input feature)")
    chk.shape(fn, "w", w, (n_in, None), f"(rows = x's {n_in} columns)")
    n_out = w.shape[1]
    chk.nonempty_features(fn, "w", n_out, "column (output unit)")
    chk.shape(fn, "dy", dy, (batch, n_out), "(x's batch by w's columns)")
    saved = _saved_for_derivative(fn, act, y, z, (batch, n_out), dtype)
    be = select(backend, dy, x, w)
    inputs = {"dy": dy, "x": x, "w": w, "y" if act.needs == A.NEEDS_OUTPUT else "z": saved}
    dz_ = work_dz = None  # linear without dz, or in place: dz is dy, nothing to write (the backend reads dy)
    if act.code != A.LINEAR or dz is not None:
        dz_, work_dz = chk.output_in_place(fn, "dz", dz, (batch, n_out), dtype, inputs, be.empty, ("dy",))
        if act.code == A.LINEAR and work_dz is not dz_:
            dz_ = work_dz = None
    outs = {"dz": work_dz}
    dw = chk.output(fn, "dw", dw, (n_in, n_out), dtype, {**inputs, **outs}, be.empty)
    outs["dw"] = dw
    db = chk.output(fn, "db", db, (n_out,), dtype, {**inputs, **outs}, be.empty) if need_db else None
    outs["db"] = db
    dx = chk.output(fn, "dx", dx, (batch, n_in), dtype, {**inputs, **outs}, be.empty) if need_dx else None
    _placed(fn, be, dy=dy, x=x, w=w, saved=saved, dz=dz_, dx=dx, dw=dw, db=db)
    be.linear_backward(dy, x, w, saved, act.code, alpha, work_dz, dx, dw, db)
    _copy_back(be, dz_, work_dz)
    return dx, dw, db


def activation_forward(z, name, *, alpha=A.DEFAULT_ALPHA, out=None, backend=None):
    """y = act(z) elementwise (softmax, log_softmax: along each row of a 2-D z).

    ``out`` may be ``z`` itself (in place). Returns y.
    """
    fn = "activation_forward"
    act, alpha = _activation(fn, name, alpha)
    z = chk.float_array(fn, "z", z, 2 if act.rowwise else None)
    if act.rowwise:
        chk.nonempty_features(fn, "z", z.shape[1], "column (class)")
    be = select(backend, z)
    y, work = chk.output_in_place(fn, "out", out, z.shape, z.dtype, {"z": z}, be.empty, ("z",))
    _placed(fn, be, z=z, out=y)
    be.activation_forward(z, act.code, alpha, work)
    _copy_back(be, y, work)
    return y


def activation_backward(dy, name, *, y=None, z=None, alpha=A.DEFAULT_ALPHA, out=None, backend=None):
    """dz = dy * act'(.): from ``y`` for relu, leaky_relu, sigmoid, tanh, softmax, log_softmax,
    from ``z`` for gelu, gelu_tanh, silu, softplus (see :mod:`fastbp.activations`).

    ``out`` may be ``dy`` itself (in place). Returns dz.
    """
    fn = "activation_backward"
    act, alpha = _activation(fn, name, alpha)
    dy = chk.float_array(fn, "dy", dy, 2 if act.rowwise else None)
    if act.rowwise:
        chk.nonempty_features(fn, "dy", dy.shape[1], "column (class)")
    saved = _saved_for_derivative(fn, act, y, z, dy.shape, dy.dtype)
    be = select(backend, dy)
    inputs = {"dy": dy, "y" if act.needs == A.NEEDS_OUTPUT else "z": saved}
    dz, work = chk.output_in_place(fn, "out", out, dy.shape, dy.dtype, inputs, be.empty, ("dy",))
    _placed(fn, be, dy=dy, saved=saved, out=dz)
    be.activation_backward(dy, saved, act.code, alpha, work)
    _copy_back(be, dz, work)
    return dz


# ------------------------------------------------------------------------------------ losses

def softmax_cross_entropy(logits, labels, *, dlogits=None, need_grad=True, backend=None):
    """Mean softmax cross-entropy over the batch and its gradient, in one stable pass.

    logits: (batch, classes). ``labels``: integer class indices (batch,), or float probability
    targets (batch, classes) of the logits' dtype (not checked to sum to 1).

    loss = mean_i [logsumexp(z_i) - z_i,label]  (or mean_i sum_j t_ij [logsumexp(z_i) - z_ij]);
    dlogits = (softmax(z) - onehot(label)) / batch  (or (softmax(z) sum_j t_ij - t) / batch).

    This is PyTorch's ``cross_entropy(reduction="mean")`` and Keras's (sparse) categorical
    cross-entropy ``from_logits=True``. Stable for logits of any finite magnitude. ``dlogits`` may
    be ``logits`` itself (in place). Returns ``(loss, dlogits)`` with ``dlogits`` None when
    ``need_grad=False``. An empty batch raises ValueError.
    """
    fn = "softmax_cross_entropy"
    need_grad = chk.flag(fn, "need_grad", need_grad)
    logits = chk.float_array(fn, "logits", logits, 2)
    batch, classes = logits.shape
    if batch == 0:
        raise ValueError(f"{fn}: logits must have at least one row (the mean over an empty batch is undefined); got {logits.shape}")
    chk.nonempty_features(fn, "logits", classes, "column (class)")
    chk.array(fn, "labels", labels)
    if labels.dtype.kind == "f":
        targets = chk.float_array(fn, "labels", labels, 2)
        chk.common_dtype(fn, logits=logits, labels=targets)
        chk.shape(fn, "labels", targets, logits.shape, "(probability targets, like logits)")
        labels = None
    else:
        labels = chk.labels(fn, "labels", labels, batch, classes)
        targets = None
    be = select(backend, logits)
    grad = work = None
    if need_grad:
        inputs = {"logits": logits, "labels": targets if targets is not None else labels}
        grad, work = chk.output_in_place(fn, "dlogits", dlogits, logits.shape, logits.dtype, inputs, be.empty,
                                         ("logits",))
    _placed(fn, be, logits=logits, labels=labels if targets is None else targets, dlogits=grad)
    loss = be.softmax_cross_entropy(logits, labels, targets, work)
    _copy_back(be, grad, work)
    return loss, grad


def mse_loss(pred, target, *, dpred=None, need_grad=True, backend=None):
    """Mean squared error over all n elements and its gradient.

    loss = sum((pred - target)^2) / n;  dpred = 2 (pred - target) / n.

    The factor 2 / n makes ``dpred`` the exact gradient of this loss (PyTorch's ``MSELoss`` and
    Keras's ``MeanSquaredError`` give the same loss for 2-D inputs). ``dpred`` may be ``pred``
    itself (in place). Returns ``(loss, dpred)``; an empty input raises ValueError.
    """
    return _elementwise_loss("mse_loss", ("pred", pred), ("target", target), ("dpred", dpred), need_grad, backend)


def sigmoid_cross_entropy(logits, targets, *, dlogits=None, need_grad=True, backend=None):
    """Mean binary cross-entropy of sigmoid(logits) against ``targets`` over all n elements, and
    its gradient, in one stable pass.

    loss = sum(max(z, 0) - z t + log1p(exp(-|z|))) / n  (= -mean[t log s + (1 - t) log(1 - s)],
    s = sigmoid(z));  dlogits = (sigmoid(z) - t) / n.

    This is PyTorch's ``binary_cross_entropy_with_logits(reduction="mean")`` and Keras's
    ``BinaryCrossentropy(from_logits=True)``; ``targets`` (like ``logits``, same dtype) are 0/1
    labels or probabilities (not checked to lie in [0, 1]). Stable for logits of any finite
    magnitude. ``dlogits`` may be ``logits`` itself (in place). Returns ``(loss, dlogits)`` with
    ``dlogits`` None when ``need_grad=False``; an empty input raises ValueError.
    """
    return _elementwise_loss("sigmoid_cross_entropy", ("logits", logits), ("targets", targets), ("dlogits", dlogits),
                             need_grad, backend)


def _elementwise_loss(fn, first, second, out, need_grad, backend):
    """The checks, output and dispatch of a mean over all elements of a loss of two like arrays
    (``first``/``second``/``out``: (argument name, value)); the backend function is ``fn``.
    The gradient may be written over ``first`` (in place)."""
    (a_name, a), (b_name, b), (g_name, g) = first, second, out
    need_grad = chk.flag(fn, "need_grad", need_grad)
    a = chk.float_array(fn, a_name, a)
    b = chk.float_array(fn, b_name, b)
    chk.common_dtype(fn, **{a_name: a, b_name: b})
    chk.shape(fn, b_name, b, a.shape, f"(like {a_name})")
    if a.size == 0:
        raise ValueError(f"{fn}: {a_name} must have at least one element (the mean over nothing is undefined); "
                         f"got {a.shape}")
    be = select(backend, a, b)
    grad = work = None
    if need_grad:
        grad, work = chk.output_in_place(fn, g_name, g, a.shape, a.dtype, {a_name: a, b_name: b}, be.empty, (a_name,))
    _placed(fn, be, **{a_name: a, b_name: b, g_name: grad})
    loss = getattr(be, fn)(a, b, work)
    _copy_back(be, grad, work)
    return loss, grad


# -------------------------------------------------------------------------------- optimizers

def _param_and_grad(fn, param, grad):
    param = chk.float_type(fn, "param", param)  # written in place: never copied
    grad = chk.float_array(fn, "grad", grad)
    dtype = chk.common_dtype(fn, param=param, grad=grad)
    chk.writable(fn, "param", param, param.shape, dtype, {"grad": grad})
    chk.shape(fn, "grad", grad, param.shape, "(like param)")
    return param, grad, dtype


def _states(fn, param, grad, dtype, *named):
    """The optimizer's state arrays, checked: ``named`` holds (name, array, needed) in order; each
    needed one is required, shaped like param, of its dtype, writeable and disjoint from param,
    grad and the states before it; one not needed comes back as None."""
    taken = {"param": param, "grad": grad}
    checked = []
    for name, a, needed in named:
        if needed and a is None:
            raise ValueError(f"{fn}: {name} is required (a zero-initialized array shaped like param)")
        a = chk.writable(fn, name, a, param.shape, dtype, taken) if needed else None
        taken[name] = a
        checked.append(a)
    return checked


def sgd_update(param, grad, *, lr, momentum=0.0, velocity=None, nesterov=False, weight_decay=0.0,
               backend=None):
    """One in-place SGD step, PyTorch's formula (dampening 0; Keras's SGD is the same update
    for a constant learning rate):

    g' = g + weight_decay * p;  with momentum mu > 0: v = mu v + g' and
    p -= lr * (g' + mu v) (Nesterov) or p -= lr * v;  without momentum: p -= lr * g'.

    ``velocity`` (zero-initialized, like param) is required when momentum > 0.
    """
    fn = "sgd_update"
    lr = chk.real(fn, "lr", lr, low=0.0)  # 0 is allowed: a schedule may reach it (CosineDecay)
    momentum = chk.nonnegative(fn, "momentum", momentum)
    weight_decay = chk.nonnegative(fn, "weight_decay", weight_decay)
    nesterov = chk.flag(fn, "nesterov", nesterov)
    if nesterov and momentum == 0:
        raise ValueError(f"{fn}: nesterov=True needs momentum > 0; got momentum={momentum}")
    param, grad, dtype = _param_and_grad(fn, param, grad)
    (velocity,) = _states(fn, param, grad, dtype, ("velocity", velocity, momentum > 0))
    be = select(backend, param, grad)
    _placed(fn, be, param=param, grad=grad, velocity=velocity)
    be.sgd_update(param, grad, velocity, lr, momentum, nesterov, weight_decay)


def adam_update(param, grad, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False, vmax=None, backend=None):
    """One in-place Adam / AdamW step at step number ``step`` (1 for the first update).

    PyTorch's formula, with its defaults (eps = 1e-8, added to the bias-corrected sqrt(v)):
    AdamW (``decoupled_weight_decay=True``): p *= 1 - lr * wd;  Adam: g' = g + wd * p;
    m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2;  amsgrad: vmax = max(vmax, v), used as v;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).

    Keras adds eps to the uncorrected sqrt(v) and defaults to eps = 1e-7; the two differ only in
    how eps is scaled. ``m``, ``v`` (and ``vmax`` with amsgrad) are zero-initialized arrays
    shaped like param, updated in place.
    """
    fn = "adam_update"
    step = chk.integer(fn, "step", step, low=1)
    lr = chk.real(fn, "lr", lr, low=0.0)  # 0 is allowed: a schedule may reach it (CosineDecay)
    beta1 = chk.unit_interval(fn, "beta1", beta1)
    beta2 = chk.unit_interval(fn, "beta2", beta2)
    eps = chk.nonnegative(fn, "eps", eps)
    weight_decay = chk.nonnegative(fn, "weight_decay", weight_decay)
    decoupled = chk.flag(fn, "decoupled_weight_decay", decoupled_weight_decay)
    amsgrad = chk.flag(fn, "amsgrad", amsgrad)
    param, grad, dtype = _param_and_grad(fn, param, grad)
    m, v, vmax = _states(fn, param, grad, dtype, ("m", m, True), ("v", v, True), ("vmax", vmax, amsgrad))
    be = select(backend, param, grad)
    _placed(fn, be, param=param, grad=grad, m=m, v=v, vmax=vmax)
    be.adam_update(param, grad, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay, decoupled)


def rmsprop_update(param, grad, sq_avg, *, lr=1e-2, rho=0.99, eps=1e-8, weight_decay=0.0,
                   momentum=0.0, momentum_buf=None, centered=False, grad_avg=None, backend=None):
    """One in-place RMSprop step, PyTorch's formula and defaults (``rho`` is PyTorch's alpha):

    g' = g + wd * p;  s = rho s + (1 - rho) g'^2;  centered: a = rho a + (1 - rho) g', s' = s - a^2;
    d = sqrt(s') + eps;  momentum mu > 0: buf = mu buf + g' / d, p -= lr * buf;  else p -= lr g' / d.

    Keras puts eps inside the square root and defaults to rho = 0.9, eps = 1e-7, lr = 1e-3.
    ``sq_avg`` (and ``grad_avg`` when centered, ``momentum_buf`` when momentum > 0) are
    zero-initialized arrays shaped like param, updated in place.
    """
    fn = "rmsprop_update"
    lr = chk.real(fn, "lr", lr, low=0.0)  # 0 is allowed: a schedule may reach it (CosineDecay)
    rho = chk.unit_interval(fn, "rho", rho)
    eps = chk.nonnegative(fn, "eps", eps)
    weight_decay = chk.nonnegative(fn, "weight_decay", weight_decay)
    momentum = chk.nonnegative(fn, "momentum", momentum)
    centered = chk.flag(fn, "centered", centered)
    param, grad, dtype = _param_and_grad(fn, param, grad)
    sq_avg, grad_avg, momentum_buf = _states(fn, param, grad, dtype, ("sq_avg", sq_avg, True),
                                             ("grad_avg", grad_avg, centered), ("momentum_buf", momentum_buf, momentum > 0))
    be = select(backend, param, grad)
    _placed(fn, be, param=param, grad=grad, sq_avg=sq_avg, grad_avg=grad_avg, momentum_buf=momentum_buf)
    be.rmsprop_update(param, grad, sq_avg, grad_avg, momentum_buf, lr, rho, eps, weight_decay, momentum)


def _grad_list(fn, grads):
    """A list of gradient arrays to modify in place: each float, C-contiguous, writeable, disjoint."""
    if not isinstance(grads, (list, tuple)):
        grads = [grads]
    checked = {}
    for i, g in enumerate(grads):
        name = f"grads[{i}]"
        chk.float_type(fn, name, g)
        checked[name] = chk.writable(fn, name, g, g.shape, g.dtype, checked)
    return list(checked.values())


def clip_grad_norm(grads, max_norm, *, norm_type=2.0, eps=1e-6, backend=None):
    """Scale a list of gradient arrays in place so that their global norm is at most ``max_norm``.

    norm = sqrt(sum over all arrays of sum(g^2)) (``norm_type=2``) or max |g| (``norm_type=inf``);
    if norm > max_norm: every g *= max_norm / (norm + eps). PyTorch's ``clip_grad_norm_``
    (Keras's ``global_clipnorm`` scales by max_norm / norm). A non-finite norm scales by 0 or NaN,
    like PyTorch. Arrays may differ in shape and size but share a dtype. Returns the norm
    (a float) measured before clipping.
    """
    fn = "clip_grad_norm"
    max_norm = chk.positive(fn, "max_norm", max_norm)
    eps = chk.nonnegative(fn, "eps", eps)
    if norm_type not in (2, 2.0, math.inf):
        raise ValueError(f"{fn}: norm_type must be 2 or math.inf; got {norm_type!r}")
    grads = _grad_list(fn, grads)
    if not grads:
        return 0.0
    chk.common_dtype(fn, **{f"grads[{i}]": g for i, g in enumerate(grads)})
    be = select(backend, *grads)
    _placed(fn, be, **{f"grads[{i}]": g for i, g in enumerate(grads)})
    if norm_type == math.inf:
        norm = be.max_abs(grads)
    else:
        norm = math.sqrt(be.sum_of_squares(grads))
    coef = max_norm / (norm + eps)
    if not coef >= 1.0:  # also true for NaN
        be.scale_(grads, coef)
    return norm


def clip_grad_value(grads, clip_value, *, backend=None):
    """Clamp every element of every gradient array to [-clip_value, clip_value], in place
    (PyTorch's ``clip_grad_value_``, Keras's ``clipvalue``)."""
    fn = "clip_grad_value"
    clip_value = chk.positive(fn, "clip_value", clip_value)
    grads = _grad_list(fn, grads)
    if not grads:
        return
    chk.common_dtype(fn, **{f"grads[{i}]": g for i, g in enumerate(grads)})
    be = select(backend, *grads)
    _placed(fn, be, **{f"grads[{i}]": g for i, g in enumerate(grads)})
    be.clip_value_(grads, clip_value)


# ----------------------------------------------------------------------------- normalization

def _affine_params(fn, x, gamma, beta, eps):
    """x (2-D, at least one column), gamma and beta (None or one per column of x) and eps > 0,
    checked; returns (x, gamma, beta, eps, dtype)."""
    x = chk.float_array(fn, "x", x, 2)
    chk.nonempty_features(fn, "x", x.shape[1], "column (feature)")
    gamma = None if gamma is None else chk.float_array(fn, "gamma", gamma, 1)
    beta = None if beta is None else chk.float_array(fn, "beta", beta, 1)
    dtype = chk.common_dtype(fn, x=x, gamma=gamma, beta=beta)
    for name, a in (("gamma", gamma), ("beta", beta)):
        if a is not None:
            chk.shape(fn, name, a, (x.shape[1],), "(one per column of x)")
    return x, gamma, beta, chk.positive(fn, "eps", eps), dtype


def _statistics_outputs(fn, be, x, y, mean, rstd, stat_shape, dtype, inputs):
    """The forward's outputs (y like x; mean, rstd of ``stat_shape``), given or allocated, checked
    disjoint from the inputs and from each other."""
    y = chk.output(fn, "out", y, x.shape, dtype, inputs, be.empty)
    mean = chk.output(fn, "mean_out", mean, stat_shape, dtype, inputs, be.empty)
    rstd = chk.output(fn, "rstd_out", rstd, stat_shape, dtype, inputs, be.empty)
    chk.disjoint(fn, out=y, mean_out=mean, rstd_out=rstd)
    return y, mean, rstd


def layernorm_forward(x, gamma=None, beta=None, *, eps=1e-5, out=None, mean_out=None, rstd_out=None,
                      backend=None):
    """Layer normalization of each row of x (batch, features):

    mean_i = sum_j x_ij / n,  var_i = sum_j (x_ij - mean_i)^2 / n (biased),
    rstd_i = 1 / sqrt(var_i + eps),  y_ij = (x_ij - mean_i) rstd_i gamma_j + beta_j.

    PyTorch's ``layer_norm`` over the last axis (Keras's ``LayerNormalization``). ``gamma`` and
    ``beta`` (features,) may be None (no scale, no shift). The statistics are computed in float64
    by two passes over each row (stable for any mean), deterministically. Returns
    ``(y, mean, rstd)``; mean and rstd (batch,) in x's dtype, for :func:`layernorm_backward`.
    """
    fn = "layernorm_forward"
    x, gamma, beta, eps, dtype = _affine_params(fn, x, gamma, beta, eps)
    be = select(backend, x)
    inputs = {"x": x, "gamma": gamma, "beta": beta}
    y, mean, rstd = _statistics_outputs(fn, be, x, out, mean_out, rstd_out, (x.shape[0],), dtype, inputs)
    _placed(fn, be, x=x, gamma=gamma, beta=beta, out=y, mean_out=mean, rstd_out=rstd)
    be.layernorm_forward(x, gamma, beta, eps, y, mean, rstd)
    return y, mean, rstd


def _normalization_backward(fn, dy, x, gamma, mean, rstd, dx, dgamma, dbeta, need_dx, need_dbeta, stat_axis,
                            backend):
    """The checks, outputs and dispatch of layernorm_backward (stat_axis 0: one statistic per row)
    and batchnorm_backward (1: per column)."""
    need_dx = chk.flag(fn, "need_dx", need_dx)
    need_dbeta = chk.flag(fn, "need_dbeta", need_dbeta)
    dy = chk.float_array(fn, "dy", dy, 2)
    x = chk.float_array(fn, "x", x, 2)
    mean = chk.float_array(fn, "mean", mean, 1)
    rstd = chk.float_array(fn, "rstd", rstd, 1)
    gamma = None if gamma is None else chk.float_array(fn, "gamma", gamma, 1)
    dtype = chk.common_dtype(fn, dy=dy, x=x, gamma=gamma, mean=mean, rstd=rstd)
    chk.nonempty_features(fn, "x", x.shape[1], "column (feature)")
    chk.shape(fn, "dy", dy, x.shape, "(like x)")
    per = "row" if stat_axis == 0 else "column"
    for name, a in (("mean", mean), ("rstd", rstd)):
        chk.shape(fn, name, a, (x.shape[stat_axis],), f"(one per {per} of x, as the forward returned it)")
    if gamma is not None:
        chk.shape(fn, "gamma", gamma, (x.shape[1],), "(one per column of x)")
    elif dgamma is not None:
        raise ValueError(f"{fn}: dgamma was given but gamma is None (no scale, nothing to differentiate)")
    be = select(backend, dy, x)
    inputs = {"dy": dy, "x": x, "gamma": gamma, "mean": mean, "rstd": rstd}
    features = (x.shape[1],)
    dx = chk.output(fn, "dx", dx, x.shape, dtype, inputs, be.empty) if need_dx else None
    dgamma = chk.output(fn, "dgamma", dgamma, features, dtype, inputs, be.empty) if gamma is not None else None
    dbeta = chk.output(fn, "dbeta", dbeta, features, dtype, inputs, be.empty) if need_dbeta else None
    chk.disjoint(fn, dx=dx, dgamma=dgamma, dbeta=dbeta)
    _placed(fn, be, dy=dy, x=x, gamma=gamma, mean=mean, rstd=rstd, dx=dx, dgamma=dgamma, dbeta=dbeta)
    getattr(be, fn)(dy, x, gamma, mean, rstd, dx, dgamma, dbeta)
    return dx, dgamma, dbeta


def layernorm_backward(dy, x, gamma, mean, rstd, *, dx=None, dgamma=None, dbeta=None, need_dx=True,
                       need_dbeta=True, backend=None):
    """Gradients of :func:`layernorm_forward` given dy = dL/dy, with mean and rstd as it returned:

    xhat_ij = (x_ij - mean_i) rstd_i,  g_ij = dy_ij gamma_j,
    dx_ij = rstd_i (g_ij - mean_j(g_ij) - xhat_ij mean_j(g_ij xhat_ij)),
    dgamma_j = sum_i dy_ij xhat_ij,  dbeta_j = sum_i dy_ij.

    ``gamma`` None: g = dy and no dgamma. ``need_dx=False`` / ``need_dbeta=False`` skip those.
    Sums in float64, the column sums in fixed chunks of rows (the same bits on any thread count).
    Returns ``(dx, dgamma, dbeta)`` with None for what was not computed.
    """
    return _normalization_backward("layernorm_backward", dy, x, gamma, mean, rstd, dx, dgamma, dbeta, need_dx,
                                   need_dbeta, 0, backend)


def batchnorm_forward(x, gamma=None, beta=None, *, eps=1e-5, running_mean=None, running_var=None, momentum=0.1,
                      training=True, unbiased_running_var=True, out=None, mean_out=None, rstd_out=None,
                      backend=None):
    """Batch normalization of each column of x (batch, features), PyTorch's ``batch_norm``:

    training: mean_j = sum_i x_ij / n, var_j = sum_i (x_ij - mean_j)^2 / n (biased), and, when
    ``running_mean``/``running_var`` are given, in place:
    running_mean = (1 - momentum) running_mean + momentum mean_j,
    running_var = (1 - momentum) running_var + momentum var_j n / (n - 1) (the unbiased variance;
    ``unbiased_running_var=False``: var_j itself, as Keras's moving variance);
    ``training=False``: mean_j = running_mean_j, var_j = running_var_j (both required);
    rstd_j = 1 / sqrt(var_j + eps),  y_ij = (x_ij - mean_j) rstd_j gamma_j + beta_j.

    The batch statistics are merged from fixed chunks of rows by Chan's formula in float64 (one
    pass over x, stable for any mean, the same bits on any thread count). ``momentum`` is
    PyTorch's (Keras's momentum m is 1 - m here). Returns ``(y, mean, rstd)``, mean and rstd
    (features,), for :func:`batchnorm_backward`.
    """
    fn = "batchnorm_forward"
    x, gamma, beta, eps, dtype = _affine_params(fn, x, gamma, beta, eps)
    training = chk.flag(fn, "training", training)
    unbiased = chk.flag(fn, "unbiased_running_var", unbiased_running_var)
    momentum = chk.real(fn, "momentum", momentum, low=0.0, high=1.0)
    batch, features = x.shape
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{fn}: give both running_mean and running_var, or neither")
    if not training and running_mean is None:
        raise ValueError(f"{fn}: training=False normalizes with running_mean and running_var; pass both")
    if training and batch == 0:
        raise ValueError(f"{fn}: training needs at least one row (the batch statistics of no rows are undefined); "
                         f"got {x.shape}")
    if training and running_mean is not None and unbiased and batch < 2:
        raise ValueError(f"{fn}: the unbiased running variance needs at least 2 rows in training (PyTorch's "
                         f"rule); got {batch}; pass unbiased_running_var=False or a larger batch")
    inputs = {"x": x, "gamma": gamma, "beta": beta}
    if running_mean is not None:
        if training:  # updated in place
            running_mean = chk.writable(fn, "running_mean", running_mean, (features,), dtype, inputs)
            running_var = chk.writable(fn, "running_var", running_var, (features,), dtype,
                                       {**inputs, "running_mean": running_mean})
        else:
            running_mean = chk.float_array(fn, "running_mean", running_mean, 1)
            running_var = chk.float_array(fn, "running_var", running_var, 1)
            chk.common_dtype(fn, x=x, running_mean=running_mean, running_var=running_var)
            for name, a in (("running_mean", running_mean), ("running_var", running_var)):
                chk.shape(fn, name, a, (features,), "(one per column of x)")
        inputs.update(running_mean=running_mean, running_var=running_var)
    be = select(backend, x)
    y, mean, rstd = _statistics_outputs(fn, be, x, out, mean_out, rstd_out, (features,), dtype, inputs)
    _placed(fn, be, x=x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var, out=y,
            mean_out=mean, rstd_out=rstd)
    be.batchnorm_forward(x, gamma, beta, eps, running_mean, running_var, momentum, training, unbiased, y, mean, rstd)
    return y, mean, rstd


def batchnorm_backward(dy, x, gamma, mean, rstd, *, dx=None, dgamma=None, dbeta=None, need_dx=True,
                       need_dbeta=True, backend=None):
    """Gradients of :func:`batchnorm_forward` in training (through the batch statistics), given
    dy = dL/dy and the forward's mean and rstd:

    xhat_ij = (x_ij - mean_j) rstd_j,  dbeta_j = sum_i dy_ij,  dgamma_j = sum_i dy_ij xhat_ij,
    dx_ij = gamma_j rstd_j (dy_ij - dbeta_j / n - xhat_ij dgamma_j / n).

    ``gamma`` None: gamma = 1 and no dgamma. Column sums in float64 over fixed chunks of rows.
    Returns ``(dx, dgamma, dbeta)`` with None for what was not computed.
    """
    return _normalization_backward("batchnorm_backward", dy, x, gamma, mean, rstd, dx, dgamma, dbeta, need_dx,
                                   need_dbeta, 1, backend)


# ------------------------------------------------------------------------------------ dropout

def _dropout_scale(fn, rate, dtype):
    """1 / (1 - rate) rounded to ``dtype``, rate checked to lie in [0, 1)."""
    rate = chk.real(fn, "rate", rate, low=0.0, high=1.0, high_open=True)
    return rate, dtype.type(1.0 / (1.0 - rate))


def dropout_forward(x, rate, *, seed, out=None, mask_out=None, backend=None):
    """Inverted dropout: y = x mask / (1 - rate), mask_i = 1 with probability 1 - rate.

    The mask is a pure function of (seed, i), i the element's index in C order: keep_i when the
    top 32 bits of SplitMix64's mix(mix(seed) + i gamma) are >= round(rate 2^32) (a counter-based
    generator: every element an independent draw, the same mask on every backend and thread
    count). A dropped element is x 0 (0 with x's sign; NaN for an infinite or NaN x, as in
    PyTorch). ``seed``: an integer in [0, 2^64); ``rate`` in [0, 1). ``out`` may be x itself (in
    place); ``mask_out`` a uint8 array like x. Returns ``(y, mask)``, mask uint8 (0 or 1).
    """
    fn = "dropout_forward"
    x = chk.float_array(fn, "x", x)
    rate, scale = _dropout_scale(fn, rate, x.dtype)
    seed = chk.integer(fn, "seed", seed, low=0)
    if seed > F.MASK64:
        raise ValueError(f"{fn}: seed must be < 2**64; got {seed}")
    be = select(backend, x)
    y, work = chk.output_in_place(fn, "out", out, x.shape, x.dtype, {"x": x}, be.empty, ("x",))
    mask = chk.output(fn, "mask_out", mask_out, x.shape, chk.MASK_DTYPE, {"x": x, "out": y}, be.empty)
    _placed(fn, be, x=x, out=y, mask_out=mask)
    be.dropout_forward(x, F.mix64(seed), _drop_threshold(rate), scale, work, mask)
    _copy_back(be, y, work)
    return y, mask


def _drop_threshold(rate):
    """round(rate 2^32): an element is dropped when its 32 random bits fall below it."""
    return int(rate * 4294967296.0 + 0.5)


def dropout_backward(dy, mask, rate, *, out=None, backend=None):
    """dx = dy mask / (1 - rate) (dy 0 where mask is 0), for the mask :func:`dropout_forward`
    returned with the same rate. ``out`` may be dy itself (in place). Returns dx."""
    fn = "dropout_backward"
    dy = chk.float_array(fn, "dy", dy)
    mask = chk.mask_array(fn, "mask", mask, dy.shape)
    _, scale = _dropout_scale(fn, rate, dy.dtype)
    be = select(backend, dy)
    dx, work = chk.output_in_place(fn, "out", out, dy.shape, dy.dtype, {"dy": dy, "mask": mask}, be.empty, ("dy",))
    _placed(fn, be, dy=dy, mask=mask, out=dx)
    be.dropout_backward(dy, mask, scale, work)
    _copy_back(be, dx, work)
    return dx
