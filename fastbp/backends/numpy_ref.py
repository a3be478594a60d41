"""The reference backend: plain NumPy, written for clarity. It is the oracle of the tests.

Each function computes the formula in its docstring in the input dtype, then writes the
result into the output buffers it was given (see :mod:`fastbp.backends` for the protocol).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special

from .. import activations as A
from ..formulas import GELU_C as _GELU_C
from ..formulas import INV_SQRT_2 as _INV_SQRT_2
from ..formulas import INV_SQRT_2PI as _INV_SQRT_2PI
from ..formulas import SQRT_2_OVER_PI as _SQRT_2_OVER_PI

NAME, DEVICE = "numpy", "cpu"
empty = np.empty


def copy_(dst, src):
    np.copyto(dst, src)


def _sigmoid(z):
    """1 / (1 + exp(-z)), without overflow: exp of a non-positive number only."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def activate(z, code, alpha):
    """Return f(z) for the activation ``code`` (a new array). relu and leaky_relu give +0.0, never
    -0.0, where the unit is off (z * 0 + 0); NaN stays NaN."""
    if code == A.LINEAR:
        return z.copy()
    if code == A.RELU:
        return np.where(z > 0, z, z * 0 + 0)
    if code == A.LEAKY_RELU:
        return np.where(z > 0, z, z * alpha + 0).astype(z.dtype, copy=False)
    if code == A.SIGMOID:
        return _sigmoid(z)
    if code == A.TANH:
        return np.tanh(z)
    if code == A.GELU:
        return 0.5 * z * (1 + special.erf(z * _INV_SQRT_2))
    if code == A.GELU_TANH:
        return 0.5 * z * (1 + np.tanh(_SQRT_2_OVER_PI * (z + _GELU_C * z**3)))
    if code == A.SILU:
        return z * _sigmoid(z)
    if code == A.SOFTPLUS:
        return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))
    if code == A.SOFTMAX:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if code == A.LOG_SOFTMAX:
        shifted = z - z.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    raise ValueError(f"unknown activation code {code}")


def activation_grad(dy, saved, code, alpha):
    """Return dz = dy * f'(.) (a new array); ``saved`` is y or z as the activation table says."""
    if code == A.LINEAR:
        return dy.copy()
    if code == A.RELU:
        return np.where(saved > 0, dy, dy * 0 + 0)
    if code == A.LEAKY_RELU:
        return np.where(saved > 0, dy, dy * alpha + 0).astype(dy.dtype, copy=False)
    if code == A.SIGMOID:
        return dy * saved * (1 - saved)
    if code == A.TANH:
        return dy * (1 - saved * saved)
    if code == A.GELU:
        z = saved
        cdf = 0.5 * (1 + special.erf(z * _INV_SQRT_2))
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * z * z)
        return dy * (cdf + z * pdf)
    if code == A.GELU_TANH:
        z = saved
        t = np.tanh(_SQRT_2_OVER_PI * (z + _GELU_C * z**3))
        dt = _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * z * z)
        return dy * (0.5 * (1 + t) + 0.5 * z * (1 - t * t) * dt)
    if code == A.SILU:
        s = _sigmoid(saved)
        return dy * s * (1 + saved * (1 - s))
    if code == A.SOFTPLUS:
        return dy * _sigmoid(saved)
    if code == A.SOFTMAX:
        return saved * (dy - (dy * saved).sum(axis=1, keepdims=True))
    if code == A.LOG_SOFTMAX:
        return dy - np.exp(saved) * dy.sum(axis=1, keepdims=True)
    raise ValueError(f"unknown activation code {code}")


def linear_forward(x, w, b, code, alpha, y, z):
    """z = x @ w + b;  y = f(z)."""
    pre = x @ w
    if b is not None:
        pre += b
    if z is not None:
        z[...] = pre
    y[...] = activate(pre, code, alpha)


def linear_backward(dy, x, w, saved, code, alpha, dz, dx, dw, db):
    """dz = dy * f'(.);  dw = x.T @ dz;  db = sum_rows(dz);  dx = dz @ w.T  (dz None: linear, dz is dy)."""
    if dz is None:
        dz = dy
    else:
        dz[...] = activation_grad(dy, saved, code, alpha)
    dw[...] = x.T @ dz
    if db is not None:
        db[...] = dz.sum(axis=0)
    if dx is not None:
        dx[...] = dz @ w.T


def activation_forward(z, code, alpha, y):
    """y = f(z)."""
    y[...] = activate(z, code, alpha)


def activation_backward(dy, saved, code, alpha, dz):
    """dz = dy * f'(.)."""
    dz[...] = activation_grad(dy, saved, code, alpha)


def softmax_cross_entropy(logits, labels, targets, dlogits):
    """loss = mean_i (logsumexp(z_i) - z_i[label_i])   or   mean_i sum_j t_ij (logsumexp(z_i) - z_ij);
    dlogits = (softmax(z) - onehot) / batch          or   (softmax(z) sum_j t_ij - t) / batch.
    """
    batch = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    neg_logp = log_sum - shifted  # -log softmax, >= 0, no cancellation at large logits
    if labels is not None:
        rows = np.arange(batch)
        per_row = neg_logp[rows, labels]
    else:
        per_row = (targets * neg_logp).sum(axis=1)
    loss = float(np.sum(per_row, dtype=np.float64) / batch)
    if dlogits is not None:
        prob = np.exp(-neg_logp)
        if labels is not None:
            prob[rows, labels] -= 1
            grad = prob
        else:
            grad = prob * targets.sum(axis=1, keepdims=True) - targets
        dlogits[...] = grad / batch
    return loss


def mse_loss(pred, target, dpred):
    """loss = mean((pred - target)^2) over all n elements;  dpred = 2 (pred - target) / n."""
    diff = pred - target
    loss = float(np.sum(diff * diff, dtype=np.float64) / diff.size)
    if dpred is not None:
        dpred[...] = (2 / diff.size) * diff
    return loss


def sigmoid_cross_entropy(logits, targets, dlogits):
    """loss = mean over all n elements of max(z, 0) - z t + log1p(exp(-|z|));
    dlogits = (sigmoid(z) - t) / n."""
    z, t = logits.astype(np.float64), targets.astype(np.float64)
    loss = float(np.sum(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))) / z.size)
    if dlogits is not None:
        dlogits[...] = (_sigmoid(z) - t) / z.size
    return loss


def sgd_update(p, g, velocity, lr, momentum, nesterov, weight_decay):
    """PyTorch's SGD (dampening 0):  g' = g + wd p;  v = mu v + g';
    p -= lr (g' + mu v) with Nesterov, else p -= lr v  (p -= lr g' when mu = 0)."""
    g = g + weight_decay * p if weight_decay else g
    if momentum:
        velocity *= momentum
        velocity += g
        g = g + momentum * velocity if nesterov else velocity
    p -= lr * g


def adam_update(p, g, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """PyTorch's Adam/AdamW at step t (t >= 1):
    AdamW: p *= 1 - lr wd;  Adam: g' = g + wd p;
    m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2;  (amsgrad: vmax = max(vmax, v), used for v)
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    """
    if weight_decay and decoupled:
        p *= 1 - lr * weight_decay
    elif weight_decay:
        g = g + weight_decay * p
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    if vmax is not None:
        np.maximum(vmax, v, out=vmax)
        v = vmax
    bias1 = 1 - beta1**step
    bias2 = 1 - beta2**step
    denom = np.sqrt(v) / math.sqrt(bias2) + eps
    p -= (lr / bias1) * m / denom


def rmsprop_update(p, g, sq_avg, grad_avg, momentum_buf, lr, rho, eps, weight_decay, momentum):
    """PyTorch's RMSprop (its ``alpha`` is ``rho`` here):
    g' = g + wd p;  s = rho s + (1 - rho) g'^2;  centered: a = rho a + (1 - rho) g', s' = s - a^2;
    d = sqrt(s') + eps;  momentum: buf = mu buf + g'/d, p -= lr buf;  else p -= lr g'/d.
    """
    g = g + weight_decay * p if weight_decay else g
    sq_avg *= rho
    sq_avg += (1 - rho) * g * g
    if grad_avg is not None:
        grad_avg *= rho
        grad_avg += (1 - rho) * g
        denom = np.sqrt(sq_avg - grad_avg * grad_avg) + eps
    else:
        denom = np.sqrt(sq_avg) + eps
    if momentum_buf is not None:
        momentum_buf *= momentum
        momentum_buf += g / denom
        p -= lr * momentum_buf
    else:
        p -= lr * (g / denom)


def sum_of_squares(arrays):
    """sum over all arrays of sum(a^2), accumulated in float64."""
    return float(sum(np.sum(np.square(a, dtype=np.float64)) for a in arrays))


def max_abs(arrays):
    """max over all arrays of max|a| (0 for no elements; NaN if any element is NaN)."""
    peaks = [np.max(np.abs(a)) for a in arrays if a.size]
    return float(np.max(peaks)) if peaks else 0.0


def scale_(arrays, factor):
    """a *= factor for every array."""
    for a in arrays:
        a *= a.dtype.type(factor)


def clip_value_(arrays, clip):
    """a = clamp(a, -clip, clip) for every array."""
    for a in arrays:
        np.clip(a, -clip, clip, out=a)


# ----------------------------------------------------------------------------- normalization

def _moments(x, axis):
    """(mean, biased variance) of x along ``axis`` in float64, by two passes (no E[x^2] - E[x]^2)."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axis)
    dev = x64 - np.expand_dims(mean, axis)
    return mean, (dev * dev).mean(axis=axis)


def _affine(xhat, gamma, beta):
    """xhat gamma + beta (either may be None: 1 and 0)."""
    if gamma is not None:
        xhat = xhat * gamma
    if beta is not None:
        xhat = xhat + beta
    return xhat


def layernorm_forward(x, gamma, beta, eps, y, mean, rstd):
    """Per row i: mean_i, var_i = biased variance;  rstd_i = 1 / sqrt(var_i + eps);
    y = (x - mean_i) rstd_i gamma + beta."""
    mu, var = _moments(x, 1)
    r = 1.0 / np.sqrt(var + eps)
    y[...] = _affine((x - mu[:, None]) * r[:, None], gamma, beta)
    mean[...] = mu
    rstd[...] = r


def layernorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    """xhat = (x - mean_i) rstd_i;  g = dy gamma;  dx = rstd_i (g - mean_j(g) - xhat mean_j(g xhat));
    dgamma = sum_i dy xhat;  dbeta = sum_i dy."""
    dy64 = dy.astype(np.float64)
    r = rstd.astype(np.float64)[:, None]
    xhat = (x - mean.astype(np.float64)[:, None]) * r
    g = dy64 * gamma if gamma is not None else dy64
    if dx is not None:
        dx[...] = r * (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True))
    if dgamma is not None:
        dgamma[...] = (dy64 * xhat).sum(axis=0)
    if dbeta is not None:
        dbeta[...] = dy64.sum(axis=0)


def batchnorm_forward(x, gamma, beta, eps, running_mean, running_var, momentum, training, unbiased, y, mean, rstd):
    """Per column j. Training: the batch's mean_j and biased var_j normalize, and the running
    statistics (when given) become (1 - momentum) running + momentum stat, with the unbiased
    variance var_j n / (n - 1) (``unbiased``, PyTorch) or var_j (Keras). Otherwise the running
    statistics normalize. rstd_j = 1 / sqrt(var_j + eps);  y = (x - mean_j) rstd_j gamma + beta."""
    if training:
        mu, var = _moments(x, 0)
        if running_mean is not None:
            n = x.shape[0]
            running_mean[...] = (1.0 - momentum) * running_mean.astype(np.float64) + momentum * mu
            running_var[...] = ((1.0 - momentum) * running_var.astype(np.float64)
                                + momentum * (var * n / (n - 1) if unbiased else var))
    else:
        mu, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    r = 1.0 / np.sqrt(var + eps)
    y[...] = _affine((x - mu) * r, gamma, beta)
    mean[...] = mu
    rstd[...] = r


def batchnorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    """The gradient through the batch statistics (training): xhat = (x - mean_j) rstd_j;
    dbeta = sum_i dy;  dgamma = sum_i dy xhat;  dx = gamma_j rstd_j (dy - dbeta / n - xhat dgamma / n)."""
    dy64 = dy.astype(np.float64)
    r = rstd.astype(np.float64)
    xhat = (x - mean.astype(np.float64)) * r
    sum_dy = dy64.sum(axis=0)
    sum_dy_xhat = (dy64 * xhat).sum(axis=0)
    if dx is not None:
        n = x.shape[0]
        scale = r * gamma if gamma is not None else r
        dx[...] = scale * (dy64 - sum_dy / n - xhat * (sum_dy_xhat / n))
    if dgamma is not None:
        dgamma[...] = sum_dy_xhat
    if dbeta is not None:
        dbeta[...] = sum_dy


# ------------------------------------------------------------------------------------ dropout

def dropout_mask(size, key, threshold):
    """keep_i = top 32 bits of SplitMix64's mix(key + i gamma) >= threshold, i = 0 .. size - 1
    (uint64 arithmetic wraps modulo 2^64), as a bool array."""
    from ..formulas import GOLDEN_GAMMA, MIX64_M1, MIX64_M2

    z = np.uint64(key) + np.arange(size, dtype=np.uint64) * np.uint64(GOLDEN_GAMMA)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX64_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX64_M2)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(32)) >= np.uint64(threshold)


def dropout_forward(x, key, threshold, scale, y, mask):
    """mask = the kept elements (1) of x.ravel() in order;  y = x scale where kept, x 0 where dropped."""
    keep = dropout_mask(x.size, key, threshold).reshape(x.shape)
    mask[...] = keep
    y[...] = np.where(keep, x * scale, x * 0)


def dropout_backward(dy, mask, scale, dx):
    """dx = dy scale where kept, dy 0 where dropped."""
    dx[...] = np.where(mask != 0, dy * scale, dy * 0)
