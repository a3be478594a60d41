"""Every scalar formula of the compiled kernels, written once.

These are plain Python functions of scalars that use only :mod:`math`. Each compiled backend
compiles these same functions for its target, so a formula cannot change in one backend only:

* ``numba`` : ``numba.njit(inline="always")``, inlined into the ``@njit`` kernels;
* ``cuda``  : ``numba.cuda.jit(device=True)``, inlined into the ``@cuda.jit`` kernels;
* ``cython``: translated to ``cdef inline ... noexcept nogil`` C functions at build time
  (``fastbp/backends/cython/_codegen.py`` writes ``_formulas.pxd`` from this file; the compiled
  extension refuses to load when this file changed after it was built).

:func:`fastbp.backends._formulas.compile_formulas` makes the first two. The NumPy reference
(:mod:`fastbp.backends.numpy_ref`) is written independently, vectorized, as the tests' oracle.

Annotations give the precision of each argument and result, which the Cython translation
declares and the Numba targets follow by the same promotion rules (float32 op float64 -> float64):

* ``Real``: float64 (C ``double``). Transcendental activations are evaluated in float64 and
  rounded once when stored, so float32 results are correctly rounded or within one unit of it.
* ``Elem``: the dtype of the arrays (float32 or float64; Cython's fused ``floating``). The
  optimizer updates run in the array dtype with their scalars rounded once to it beforehand, as
  PyTorch's do.
* ``Code``: an integer activation code (:mod:`fastbp.activations`).
* ``Bits``: a 64-bit unsigned word (C ``uint64_t``, Numba ``uint64``) for the counter-based
  random generator. Arithmetic on words is modulo 2^64: every product or sum that may exceed 64
  bits is masked with ``& MASK64`` (a no-op in the compiled targets, where words wrap; exact in
  Python, whose integers do not). Word constants are listed in ``BITS_CONSTANTS``.

The rules of the subset the translator accepts: one ``return`` per branch, ``if``/``else``
statements and ``a if c else b`` expressions, assignments to plain names, arithmetic and
comparisons, calls of ``math`` functions, ``float()``, ``abs()`` and other formulas of this module,
module constants. Integer literals (``z * 0 + 0``) keep the operand's precision in every target.
"""
from __future__ import annotations

import math
import struct

from .activations import GELU, GELU_TANH, LEAKY_RELU, LINEAR, LOG_SOFTMAX, RELU, SIGMOID, SILU, SOFTMAX, TANH

Real = float
Elem = float
Code = int
Bits = int

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_C = 0.044715
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# the counter-based generator of dropout masks (SplitMix64's constants: Steele, Lea & Flood 2014)
MASK64 = 0xFFFFFFFFFFFFFFFF
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
MIX64_M1 = 0xBF58476D1CE4E5B9
MIX64_M2 = 0x94D049BB133111EB
# exp: Cody and Waite's reduction x = k ln 2 + r (ln 2 in two parts, fdlibm's: k ln2_hi is exact
# for |k| < 2048), Taylor's polynomial of degree 13 on |r| <= ln(2) / 2 (truncation below 5e-18
# relative), 2^k from the exponent field
INV_LN2 = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
ROUND_MAGIC = 6755399441055744.0  # 1.5 * 2^52: (v + ROUND_MAGIC) - ROUND_MAGIC rounds |v| < 2^51 to an integer
EXP_BIAS_MAGIC = 4503599627371519.0  # 2^52 + 1023: its low bits hold k + 1023 after kf is added
EXP_OVERFLOW = 709.782712893384  # exp(x) > DBL_MAX above
EXP_UNDERFLOW = -745.1332191019412  # exp(x) < half the least subnormal below
EXP_HUGE = 1e300
EXP_FIELD = 0x7FF
INV_FACTORIALS = tuple(1.0 / math.factorial(n) for n in range(14))
C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13 = INV_FACTORIALS[2:]
#: the constants that are 64-bit words (compiled as uint64, never as int64 or float)
BITS_CONSTANTS = ("MASK64", "GOLDEN_GAMMA", "MIX64_M1", "MIX64_M2", "EXP_FIELD")
#: formulas that are each target's own primitive (a bit cast), not compiled from these bodies
PRIMITIVES = ("bits_of", "float_of")

# ------------------------------------------------------------------------------- activations


def is_rowwise(code: Code) -> bool:
    """True for the activations computed along whole rows (softmax, log_softmax)."""
    return code == SOFTMAX or code == LOG_SOFTMAX


def bits_of(x: Real) -> Bits:
    """The IEEE 754 bits of the double x (a primitive: each target's own bit cast)."""
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def float_of(b: Bits) -> Real:
    """The double whose IEEE 754 bits are b (a primitive: each target's own bit cast)."""
    return struct.unpack("<d", struct.pack("<Q", b))[0]


def exponent_bits(b: Bits) -> Bits:
    """The low 11 bits of b as a double's exponent field."""
    return (b & EXP_FIELD) << 52


def pow2(kf: Real) -> Real:
    """2^k for an integer-valued kf in [-1022, 1023], exactly, from the exponent field."""
    return float_of(exponent_bits(bits_of(kf + EXP_BIAS_MAGIC)))


def exponential(x: Real) -> Real:
    """exp(x) within 2 units in the last place of the double result (subnormal results rounded
    once), in arithmetic only: no library call, so a loop of it vectorizes, and the same bits on
    every target. x = k ln 2 + r, exp(r) by Taylor's polynomial, scaled by 2^(k/2), then by
    2^(k - k/2): both factors are normal and the first product is exact, so a subnormal result is
    rounded once. NaN stays NaN; +inf above EXP_OVERFLOW, 0 below EXP_UNDERFLOW."""
    kf = (x * INV_LN2 + ROUND_MAGIC) - ROUND_MAGIC
    r = (x - kf * LN2_HI) - kf * LN2_LO
    p = 1.0 + r * (1.0 + r * (C2 + r * (C3 + r * (C4 + r * (C5 + r * (C6 + r * (C7 + r * (C8 + r * (
        C9 + r * (C10 + r * (C11 + r * (C12 + r * C13))))))))))))
    half = (kf * 0.5 + ROUND_MAGIC) - ROUND_MAGIC
    y = p * pow2(half) * pow2(kf - half)
    return 0.0 if x < EXP_UNDERFLOW else (EXP_HUGE * EXP_HUGE if x > EXP_OVERFLOW else y)


def sigmoid(z: Real) -> Real:
    """1 / (1 + exp(-z)), taking exp of a non-positive number only (no overflow), with
    :func:`exponential` (vectorizes; the same bits on every target)."""
    e = exponential(-abs(z))
    return 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)


def relu(z: Elem) -> Elem:
    """max(z, 0) with +0.0 for every z <= 0 (also -0.0); NaN stays NaN."""
    return z if z > 0 else z * 0 + 0


def relu_derivative(dy: Elem, y: Elem) -> Elem:
    """dy * 1[y > 0], with +0.0 where the unit is off; a NaN dy stays NaN."""
    return dy if y > 0 else dy * 0 + 0


def leaky_relu(z: Real, alpha: Real) -> Real:
    """z if z > 0 else alpha z, with +0.0 (never -0.0) for z = -0.0 or alpha = 0."""
    return z if z > 0 else z * alpha + 0


def leaky_relu_derivative(dy: Real, y: Real, alpha: Real) -> Real:
    """dy if y > 0 else alpha dy (alpha >= 0 keeps the sign of y), +0.0 rather than -0.0."""
    return dy if y > 0 else dy * alpha + 0


def gelu(z: Real) -> Real:
    """z Phi(z) = z/2 (1 + erf(z / sqrt 2)) (the exact form)."""
    return 0.5 * z * (1.0 + math.erf(z * INV_SQRT_2))


def gelu_derivative(dy: Real, z: Real) -> Real:
    """dy (Phi(z) + z phi(z))."""
    cdf = 0.5 * (1.0 + math.erf(z * INV_SQRT_2))
    return dy * (cdf + z * INV_SQRT_2PI * math.exp(-0.5 * z * z))


def gelu_tanh(z: Real) -> Real:
    """z/2 (1 + tanh(k (z + c z^3))), k = sqrt(2/pi), c = 0.044715."""
    return 0.5 * z * (1.0 + math.tanh(SQRT_2_OVER_PI * (z + GELU_C * z * z * z)))


def gelu_tanh_derivative(dy: Real, z: Real) -> Real:
    """dy (1/2 (1 + t) + z/2 (1 - t^2) k (1 + 3 c z^2)), t = tanh(k (z + c z^3))."""
    t = math.tanh(SQRT_2_OVER_PI * (z + GELU_C * z * z * z))
    dt = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * z * z)
    return dy * (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * dt)


def silu_derivative(dy: Real, z: Real) -> Real:
    """dy s (1 + z (1 - s)), s = sigmoid(z)."""
    s = sigmoid(z)
    return dy * s * (1.0 + z * (1.0 - s))


def softplus(z: Real) -> Real:
    """log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)) (no overflow)."""
    return (z if z > 0.0 else 0.0) + math.log1p(math.exp(-abs(z)))


def act_forward(z: Real, code: Code, alpha: Real) -> Real:
    """f(z) for an elementwise activation code (the rowwise ones are not elementwise)."""
    z = float(z)
    if code == LINEAR:
        return z
    if code == RELU:
        return relu(z)
    if code == LEAKY_RELU:
        return leaky_relu(z, alpha)
    if code == SIGMOID:
        return sigmoid(z)
    if code == TANH:
        return math.tanh(z)
    if code == GELU:
        return gelu(z)
    if code == GELU_TANH:
        return gelu_tanh(z)
    if code == SILU:
        return z * sigmoid(z)
    return softplus(z)


def act_derivative(dy: Real, s: Real, code: Code, alpha: Real) -> Real:
    """dy * f'(.) for an elementwise activation; ``s`` is y or z, as fastbp.activations says."""
    dy = float(dy)
    s = float(s)
    if code == LINEAR:
        return dy
    if code == RELU:
        return relu_derivative(dy, s)
    if code == LEAKY_RELU:
        return leaky_relu_derivative(dy, s, alpha)
    if code == SIGMOID:
        return dy * s * (1.0 - s)
    if code == TANH:
        return dy * (1.0 - s * s)
    if code == GELU:
        return gelu_derivative(dy, s)
    if code == GELU_TANH:
        return gelu_tanh_derivative(dy, s)
    if code == SILU:
        return silu_derivative(dy, s)
    return dy * sigmoid(s)  # softplus: f' = sigmoid(z)


def softmax_term(z: Real, row_max: Real, inv_total: Real) -> Real:
    """softmax(z)_j = exp(z_j - max) / sum_k exp(z_k - max)."""
    return math.exp(float(z) - row_max) * inv_total


def log_softmax_term(z: Real, log_sum_exp: Real) -> Real:
    """log_softmax(z)_j = z_j - log sum_k exp(z_k)."""
    return float(z) - log_sum_exp


def softmax_derivative_term(dy: Real, y: Real, dot: Real) -> Real:
    """softmax: dz_j = y_j (dy_j - sum_k dy_k y_k)."""
    return float(y) * (float(dy) - dot)


def log_softmax_derivative_term(dy: Real, y: Real, dy_sum: Real) -> Real:
    """log_softmax: dz_j = dy_j - exp(y_j) sum_k dy_k."""
    return float(dy) - math.exp(float(y)) * dy_sum


# ------------------------------------------------------------------------------------ losses


def cross_entropy_term(z: Real, row_max: Real, log_total: Real) -> Real:
    """-log softmax(z)_j = log sum_k exp(z_k - max) - (z_j - max) (>= 0, no cancellation)."""
    return log_total - (float(z) - row_max)


def cross_entropy_grad(e: Real, inv_total: Real, target_sum: Real, target: Real, inv_batch: Real) -> Real:
    """d loss / d z_j = (softmax_j sum_k t_k - t_j) / batch, with e = exp(z_j - max) (one-hot t:
    target_sum = 1, target = 1[j = label])."""
    return (e * inv_total * target_sum - float(target)) * inv_batch


def squared_error(pred: Real, target: Real) -> Real:
    """(pred - target)^2."""
    d = float(pred) - float(target)
    return d * d


def squared_error_grad(pred: Real, target: Real, scale: Real) -> Real:
    """scale (pred - target), scale = 2 / n for the mean."""
    return scale * (float(pred) - float(target))


def binary_cross_entropy_term(z: Real, target: Real) -> Real:
    """-t log sigmoid(z) - (1 - t) log(1 - sigmoid(z)) = max(z, 0) - z t + log1p(exp(-|z|)), from
    the logit z: exp of a non-positive number only, no log of a rounded probability."""
    z = float(z)
    return (z if z > 0.0 else 0.0) - z * float(target) + math.log1p(math.exp(-abs(z)))


def binary_cross_entropy_term_grad(z: Real, target: Real, scale: Real) -> tuple[Real, Real]:
    """(the term, its derivative scale (sigmoid(z) - t)), scale = 1 / n for the mean, from one
    e = exp(-|z|): sigmoid(z) = 1 / (1 + e) for z >= 0, e / (1 + e) below (:func:`sigmoid`'s
    values exactly)."""
    z = float(z)
    t = float(target)
    e = math.exp(-abs(z))
    s = 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
    return (z if z > 0.0 else 0.0) - z * t + math.log1p(e), scale * (s - t)


# -------------------------------------------------------------------------------- optimizers


def sgd_step(p: Elem, g: Elem, lr: Elem, wd: Elem) -> Elem:
    """p - lr (g + wd p)."""
    return p - lr * (g + wd * p)


def sgd_momentum_step(p: Elem, g: Elem, v: Elem, lr: Elem, mu: Elem, wd: Elem) -> tuple[Elem, Elem]:
    """v' = mu v + g + wd p;  p' = p - lr v'.  Returns (p', v')."""
    v = mu * v + g + wd * p
    return p - lr * v, v


def sgd_nesterov_step(p: Elem, g: Elem, v: Elem, lr: Elem, mu: Elem, wd: Elem) -> tuple[Elem, Elem]:
    """g' = g + wd p;  v' = mu v + g';  p' = p - lr (g' + mu v').  Returns (p', v')."""
    g = g + wd * p
    v = mu * v + g
    return p - lr * (g + mu * v), v


def bias_correction(beta: Real, step: Real) -> Real:
    """1 - beta^t, with libm's pow (the same on every CPU backend; Numba's ``**`` of an integer
    power multiplies repeatedly, which can differ in the last bit)."""
    return 1.0 - math.pow(beta, float(step))


def uncorrected_epsilon(eps: Real, beta2: Real, step: Real) -> Real:
    """eps / sqrt(1 - beta2^t): the eps that, added to the bias-corrected sqrt(v_hat), gives
    Kingma & Ba's "epsilon hat" placement (eps added to sqrt(v), as scikit-learn and TensorFlow 1
    do): m_hat / (sqrt(v_hat) + eps_t) = sqrt(1 - b2^t) m_hat / (sqrt(v) + eps)."""
    return eps / math.sqrt(bias_correction(beta2, step))


def adam_moments(p: Elem, g: Elem, m: Elem, v: Elem, shrink: Elem, wd_l2: Elem, b1: Elem, c1: Elem, b2: Elem,
                 c2: Elem) -> tuple[Elem, Elem, Elem]:
    """p' = shrink p (AdamW's decoupled decay, shrink = 1 - lr wd; else 1);  g' = g + wd_l2 p'
    (Adam's L2 term);  m' = b1 m + c1 g';  v' = b2 v + c2 g'^2 (c = 1 - b).  Returns (p', m', v')."""
    p = p * shrink
    g = g + wd_l2 * p
    return p, b1 * m + c1 * g, b2 * v + c2 * g * g


def adam_param(p: Elem, m: Elem, v: Elem, step_size: Elem, inv_sqrt_bc2: Elem, eps: Elem) -> Elem:
    """p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), with step_size = lr / (1 - b1^t)
    and inv_sqrt_bc2 = 1 / sqrt(1 - b2^t)."""
    return p - step_size * m / (math.sqrt(v) * inv_sqrt_bc2 + eps)


def running_max(old: Elem, new: Elem) -> Elem:
    """AMSGrad's max(vmax, v) (a NaN v is kept)."""
    return old if old > new else new


def rmsprop_square(p: Elem, g: Elem, s: Elem, wd: Elem, rho: Elem, one_minus_rho: Elem) -> tuple[Elem, Elem]:
    """g' = g + wd p;  s' = rho s + (1 - rho) g'^2.  Returns (g', s')."""
    g = g + wd * p
    return g, rho * s + one_minus_rho * g * g


def moving_average(a: Elem, x: Elem, rho: Elem, one_minus_rho: Elem) -> Elem:
    """rho a + (1 - rho) x (centered RMSprop's mean gradient)."""
    return rho * a + one_minus_rho * x


def rmsprop_direction(g: Elem, s: Elem, eps: Elem) -> Elem:
    """g' / (sqrt(s) + eps)."""
    return g / (math.sqrt(s) + eps)


def momentum_buffer(buf: Elem, step: Elem, mu: Elem) -> Elem:
    """mu buf + step."""
    return mu * buf + step


def descend(p: Elem, lr: Elem, step: Elem) -> Elem:
    """p - lr step."""
    return p - lr * step


def l2_gradient(g: Elem, p: Elem, c: Elem) -> Elem:
    """g + c p: the gradient of an L2 penalty (c / 2) sum(p^2) added to g."""
    return g + c * p


# --------------------------------------------------------------------- norms and clipping


def clamp(x: Elem, lo: Elem, hi: Elem) -> Elem:
    """min(max(x, lo), hi); NaN stays NaN."""
    return hi if x > hi else (lo if x < lo else x)


def abs_max(acc: Real, x: Real) -> Real:
    """max(acc, |x|), where a NaN, once seen, stays."""
    x = abs(float(x))
    return x if x > acc or x != x else acc


def nan_max(acc: Real, x: Real) -> Real:
    """max(acc, x), where a NaN, once seen, stays."""
    x = float(x)
    return x if x > acc or x != x else acc


def square(x: Real) -> Real:
    """x^2 (in float64 for the global gradient norm)."""
    x = float(x)
    return x * x


# ----------------------------------------------------------------------------- normalization


def chan_merge(n_a: Real, mean_a: Real, m2_a: Real, n_b: Real, mean_b: Real, m2_b: Real) -> tuple[Real, Real]:
    """Chan, Golub & LeVeque's merge of two groups' (count n, mean, sum of squared deviations M2):
    the union's (mean, M2) with n = n_a + n_b, delta = mean_b - mean_a,
    mean = mean_a + delta n_b / n, M2 = M2_a + M2_b + delta^2 n_a n_b / n. No cancellation: a
    large common mean never meets a small variance in one difference of squares. An empty first
    group (n_a = 0, mean_a = M2_a = 0) gives (mean_b, M2_b) exactly."""
    n = n_a + n_b
    delta = mean_b - mean_a
    return mean_a + delta * (n_b / n), m2_a + m2_b + delta * delta * (n_a * n_b / n)


def inverse_std(var: Real, eps: Real) -> Real:
    """rstd = 1 / sqrt(var + eps)."""
    return 1.0 / math.sqrt(var + eps)


def standardize(x: Real, mean: Real, rstd: Real) -> Real:
    """xhat = (x - mean) rstd."""
    return (float(x) - mean) * rstd


def normalize(x: Real, mean: Real, rstd: Real, gamma: Real, beta: Real) -> Real:
    """y = (x - mean) rstd gamma + beta (gamma = 1, beta = 0 without the affine part)."""
    return standardize(x, mean, rstd) * gamma + beta


def normalize_grad(g: Real, xhat: Real, scale: Real, mean_g: Real, mean_g_xhat: Real) -> Real:
    """dx = scale (g - mean(g) - xhat mean(g xhat)): the gradient through xhat = (x - mean) rstd,
    the statistics taken over the group that the means run over. Layer normalization: g = dy gamma,
    scale = rstd (the group is a row); batch normalization: g = dy, scale = gamma rstd (a column)."""
    return scale * (float(g) - mean_g - xhat * mean_g_xhat)


def running_update(running: Real, stat: Real, momentum: Real) -> Real:
    """(1 - momentum) running + momentum stat (PyTorch's momentum; Keras's is 1 - momentum)."""
    return (1.0 - momentum) * running + momentum * stat


# ------------------------------------------------------------------------------------ dropout


def mix64(z: Bits) -> Bits:
    """SplitMix64's output function (Stafford's Mix13): a bijection of 64-bit words whose every
    output bit depends on every input bit. ``mix64(key + i * GOLDEN_GAMMA)`` for i = 0, 1, ... is
    SplitMix64's sequence (which passes BigCrush): a counter-based generator."""
    z = ((z ^ (z >> 30)) * MIX64_M1) & MASK64
    z = ((z ^ (z >> 27)) * MIX64_M2) & MASK64
    return z ^ (z >> 31)


def dropout_keep(key: Bits, index: Bits, threshold: Bits) -> bool:
    """Whether element ``index`` of a dropout mask is kept: the top 32 bits of
    mix64(key + index GOLDEN_GAMMA) (uniform on [0, 2^32)) are >= threshold = round(rate 2^32), so
    P(drop) = threshold / 2^32. A pure function of (key, index): the same mask on every backend
    and thread count; key = mix64(seed)."""
    return (mix64((key + index * GOLDEN_GAMMA) & MASK64) >> 32) >= threshold


def dropout_value(x: Elem, keep: bool, scale: Elem) -> Elem:
    """x scale where kept, x 0 where dropped (scale = 1 / (1 - rate); a dropped Inf or NaN gives
    NaN, as PyTorch's x * mask * scale does)."""
    return x * scale if keep else x * 0


#: every formula, in the order the Cython translation writes them (callees before callers)
__all__ = [
    "is_rowwise", "bits_of", "float_of", "exponent_bits", "pow2", "exponential", "sigmoid", "relu", "relu_derivative", "leaky_relu", "leaky_relu_derivative", "gelu",
    "gelu_derivative", "gelu_tanh", "gelu_tanh_derivative", "silu_derivative", "softplus", "act_forward",
    "act_derivative", "softmax_term", "log_softmax_term", "softmax_derivative_term", "log_softmax_derivative_term",
    "cross_entropy_term", "cross_entropy_grad", "squared_error", "squared_error_grad",
    "binary_cross_entropy_term", "binary_cross_entropy_term_grad", "sgd_step",
    "sgd_momentum_step", "sgd_nesterov_step", "bias_correction", "uncorrected_epsilon", "adam_moments", "adam_param", "running_max", "rmsprop_square",
    "moving_average", "rmsprop_direction", "momentum_buffer", "descend", "l2_gradient", "clamp", "abs_max", "nan_max", "square",
    "chan_merge", "inverse_std", "standardize", "normalize", "normalize_grad", "running_update", "mix64",
    "dropout_keep", "dropout_value",
]
