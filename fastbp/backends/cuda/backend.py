"""The cuda backend: the kernel protocol of :mod:`fastbp.backends` over ``@cuda.jit`` kernels.

Arrays are Numba device arrays (the public API has already turned CuPy arrays, PyTorch CUDA
tensors and other ``__cuda_array_interface__`` / DLPack arrays into views of the same memory);
outputs it allocates are :class:`numba.cuda.cudadrv.devicearray.DeviceNDArray`. Losses and norms
come back as Python floats, which waits for the device. Launch geometry: :mod:`.config`.

Importing this module fails (and the backend reports itself unavailable, with the reason) when
numba-cuda is not installed or no GPU and driver are found; ``NUMBA_ENABLE_CUDASIM=1`` runs it on
Numba's CUDA simulator instead.
"""
from __future__ import annotations

import functools

import numpy as np

try:
    from numba import cuda
except ImportError as exc:  # numba without its CUDA target (numba-cuda: the "cuda" extra)
    raise ImportError(f"numba.cuda cannot be imported ({exc}); install fastbp[cuda]") from None

if not cuda.is_available():
    raise ImportError("no CUDA GPU and driver found (numba.cuda.is_available() is False); "
                      "NUMBA_ENABLE_CUDASIM=1 runs the kernels on Numba's CUDA simulator")

from ... import activations as A  # noqa: E402
from ... import formulas  # noqa: E402
from . import config  # noqa: E402
from . import elementwise as ew  # noqa: E402
from . import dropout as drop  # noqa: E402
from . import gemm, reduce, rows  # noqa: E402
from . import normalization as norm  # noqa: E402

NAME, DEVICE = "cuda", "cuda"


def empty(shape, dtype):
    return cuda.device_array(shape, dtype)


def copy_(dst, src):
    dst.copy_to_device(src)


def _flat(a):
    return a.reshape(a.size)


def _grid(n):
    """Elementwise launches: one element per thread (a grid-stride loop, so any grid is correct).
    Every block's loads go out at once, which keeps the memory system busy."""
    g = config.current()
    return max(1, -(-n // g.threads)), g.threads


def _reduction_grid(n):
    """Reductions: a fixed grid (a function of n and the geometry), so sums are reproducible."""
    g = config.current()
    return reduce.grid_1d(n, g.threads, g.max_blocks), g.threads


def _rowwise_launch(m):
    g = config.current()
    return max(1, -(-m // g.rows_per_block)), (g.row_threads, g.rows_per_block)


# ------------------------------------------------------------------------------------ layers

def linear_forward(x, w, b, code, alpha, y, z):
    tiles = config.current().gemm(x.dtype)
    rowwise = formulas.is_rowwise(code)
    gemm.launch(x, w, y, bias=b, preact=z, code=A.LINEAR if rowwise else code, alpha=alpha, tiles=tiles)
    if rowwise and y.shape[0]:
        softmax, _, _ = rows.kernels(config.current().row_threads, config.current().rows_per_block)
        grid, block = _rowwise_launch(y.shape[0])
        softmax[grid, block](y, y, code)


def _dz_and_db(dy, saved, code, alpha, dz, db):
    """dz = dy * act'(saved) and db = column sums of dz, in one pass over dy (two for softmax);
    dz None: the activation is linear and dz is dy (nothing written)."""
    m, n = dy.shape
    write_dz = dz is not None
    dz = dy if dz is None else dz
    g = config.current()
    if formulas.is_rowwise(code):
        _, softmax_backward, _ = rows.kernels(g.row_threads, g.rows_per_block)
        grid, block = _rowwise_launch(m)
        if m:
            softmax_backward[grid, block](dy, saved, dz, code)
        dy, code, write_dz = dz, A.LINEAR, False  # db from the dz just written
    if not write_dz and db is None:
        return
    chunks = max(1, -(-m // g.col_chunk))
    partial = cuda.device_array((chunks, n), np.float64) if db is not None else cuda.device_array((1, 1), np.float64)
    stage1, stage2 = reduce.column_kernels(g.threads, code)
    col_blocks = -(-n // g.threads)
    if m:
        stage1[(col_blocks, chunks), g.threads](dy, dy if saved is None else saved, alpha, dz, write_dz,
                                                db is not None, g.col_chunk, partial)
    if db is not None:
        if not m:
            _fill_zero(partial)
        stage2[col_blocks, g.threads](partial, db)


def linear_backward(dy, x, w, saved, code, alpha, dz, dx, dw, db):
    tiles = config.current().gemm(x.dtype)
    _dz_and_db(dy, saved, code, alpha, dz, db)
    dz = dy if dz is None else dz
    m, k = x.shape
    if m == 0:  # an empty batch: dw is a sum over nothing
        _fill_zero(dw)
    else:
        gemm.launch(x, dz, dw, trans_a=True, tiles=tiles)  # dw = x.T @ dz
    if dx is not None:
        gemm.launch(dz, w, dx, trans_b=True, tiles=tiles)  # dx = dz @ w.T


def _fill_zero(a):
    if a.size:
        grid, threads = _grid(a.size)
        ew.fill_[grid, threads](_flat(a), a.dtype.type(0))


def activation_forward(z, code, alpha, y):
    if z.size == 0:
        return
    if formulas.is_rowwise(code):
        softmax, _, _ = rows.kernels(config.current().row_threads, config.current().rows_per_block)
        grid, block = _rowwise_launch(z.shape[0])
        softmax[grid, block](z, y, code)
        return
    grid, threads = _grid(z.size)
    ew.activation_forward[grid, threads](_flat(z), code, alpha, _flat(y))


def activation_backward(dy, saved, code, alpha, dz):
    if dy.size == 0:
        return
    if formulas.is_rowwise(code):
        _, softmax_backward, _ = rows.kernels(config.current().row_threads, config.current().rows_per_block)
        grid, block = _rowwise_launch(dy.shape[0])
        softmax_backward[grid, block](dy, saved, dz, code)
        return
    grid, threads = _grid(dy.size)
    ew.activation_backward[grid, threads](_flat(dy), _flat(dy if saved is None else saved), code, alpha, _flat(dz))


# ------------------------------------------------------------------------------------ losses

def _sum_on_device(partial, out, slot):
    g = config.current()
    reduce.flat_kernels(g.threads).sum_stage2[1, g.threads](partial, out, slot)


def softmax_cross_entropy(logits, labels, targets, dlogits):
    g = config.current()
    m, n = logits.shape
    _, _, ce = rows.kernels(g.row_threads, g.rows_per_block)
    row_loss = cuda.device_array(m, np.float64)
    info = cuda.to_device(np.array([0, 0], np.int64))  # [largest label >= n, smallest label < 0]
    has_labels = labels is not None
    grid, block = _rowwise_launch(m)
    ce[grid, block](logits, labels if has_labels else info, targets if targets is not None else logits,
                    has_labels, dlogits if dlogits is not None else logits, dlogits is not None, row_loss, info)
    total = cuda.device_array(1, np.float64)
    _sum_on_device(row_loss, total, 0)
    too_large, negative = info.copy_to_host()
    if negative < 0 or too_large > 0:
        from ..._checks import label_range_error

        raise label_range_error("softmax_cross_entropy", "labels", n, negative if negative < 0 else too_large)
    return float(total.copy_to_host()[0]) / m


def mse_loss(pred, target, dpred):
    g = config.current()
    return _flat_loss(reduce.flat_kernels(g.threads).mse_stage1, pred, target, dpred, 2.0)


def sigmoid_cross_entropy(logits, targets, dlogits):
    g = config.current()
    return _flat_loss(reduce.flat_kernels(g.threads).bce_stage1, logits, targets, dlogits, 1.0)


def _flat_loss(stage1, pred, target, grad, grad_factor):
    """mean over all n elements of stage1's terms, and grad = grad_factor / n * (its derivative)
    where grad is not None."""
    n = pred.size
    grid, threads = _reduction_grid(n)
    partial = cuda.device_array(grid, np.float64)
    need_grad = grad is not None
    stage1[grid, threads](_flat(pred), _flat(target), _flat(grad if need_grad else pred), grad_factor / n,
                          need_grad, partial)
    total = cuda.device_array(1, np.float64)
    _sum_on_device(partial, total, 0)
    return float(total.copy_to_host()[0]) / n


# -------------------------------------------------------------------------------- optimizers

def sgd_update(p, g, velocity, lr, momentum, nesterov, weight_decay):
    tp = p.dtype.type
    grid, threads = _grid(p.size)
    has_v = velocity is not None
    ew.sgd_update[grid, threads](_flat(p), _flat(g), _flat(velocity if has_v else p), has_v, tp(lr), tp(momentum),
                                 tp(weight_decay), nesterov)


def adam_update(p, g, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    tp = p.dtype.type
    grid, threads = _grid(p.size)
    amsgrad = vmax is not None
    ew.adam_update[grid, threads](
        _flat(p), _flat(g), _flat(m), _flat(v), _flat(vmax if amsgrad else v), amsgrad,
        tp(beta1), tp(beta2), tp(1.0 - beta1), tp(1.0 - beta2), tp(lr / formulas.bias_correction(beta1, step)),
        tp(1.0 / np.sqrt(formulas.bias_correction(beta2, step))), tp(eps), tp(0.0 if decoupled else weight_decay),
        tp(1.0 - lr * weight_decay if decoupled else 1.0))


def rmsprop_update(p, g, sq_avg, grad_avg, momentum_buf, lr, rho, eps, weight_decay, momentum):
    tp = p.dtype.type
    grid, threads = _grid(p.size)
    centered = grad_avg is not None
    use_buf = momentum_buf is not None
    ew.rmsprop_update[grid, threads](
        _flat(p), _flat(g), _flat(sq_avg), _flat(grad_avg if centered else sq_avg),
        _flat(momentum_buf if use_buf else sq_avg), centered, use_buf,
        tp(lr), tp(rho), tp(1.0 - rho), tp(eps), tp(weight_decay), tp(momentum))


def _per_array(arrays, stage1_index, combine):
    """One float64 partial per array (two-stage reduction each), combined on the host in order."""
    g = config.current()
    kernels = reduce.flat_kernels(g.threads)
    stage1 = kernels[stage1_index]
    stage2 = kernels.sum_stage2 if combine == "sum" else kernels.max_stage2
    results = cuda.device_array(max(1, len(arrays)), np.float64)
    for slot, a in enumerate(arrays):
        grid, threads = _reduction_grid(a.size)
        partial = cuda.device_array(grid, np.float64)
        flat = _flat(a)
        stage1[grid, threads](flat, flat, flat, 0.0, False, partial)  # (t, g, scale: the losses')
        stage2[1, g.threads](partial, results, slot)
    return results.copy_to_host()[:len(arrays)]


def sum_of_squares(arrays):
    return float(sum(_per_array(arrays, 0, "sum")))


def max_abs(arrays):
    return float(functools.reduce(formulas.nan_max, _per_array(arrays, 1, "max"), 0.0))


def scale_(arrays, factor):
    for a in arrays:
        if a.size:
            grid, threads = _grid(a.size)
            ew.scale_[grid, threads](_flat(a), a.dtype.type(factor))


def clip_value_(arrays, clip):
    for a in arrays:
        if a.size:
            grid, threads = _grid(a.size)
            tp = a.dtype.type
            ew.clip_value_[grid, threads](_flat(a), tp(-clip), tp(clip))


# ----------------------------------------------------------------------------- normalization

def _columns_launch(n):
    """Column kernels: one thread per column (stage 1 adds a grid dimension over the chunks)."""
    g = config.current()
    return -(-n // g.threads), g.threads


def _chunks(m):
    """(rows per chunk, chunks) of the column reductions over m rows: a function of the shape and
    the geometry only."""
    chunk = config.current().col_chunk
    return chunk, -(-m // chunk)


def _partials(chunks, n):
    return cuda.device_array((max(1, chunks), n), np.float64)


def layernorm_forward(x, gamma, beta, eps, y, mean, rstd):
    m = x.shape[0]
    if m == 0:
        return
    g = config.current()
    kernels = norm.row_kernels(g.row_threads, g.rows_per_block)
    grid, block = _rowwise_launch(m)
    kernels.layernorm_forward[grid, block](x, mean if gamma is None else gamma, mean if beta is None else beta,
                                           gamma is not None, beta is not None, float(eps), y, mean, rstd)


def layernorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    m, n = x.shape
    if dx is not None and m:
        g = config.current()
        kernels = norm.row_kernels(g.row_threads, g.rows_per_block)
        grid, block = _rowwise_launch(m)
        kernels.layernorm_backward_dx[grid, block](dy, x, mean if gamma is None else gamma, gamma is not None,
                                                   mean, rstd, dx)
    if dgamma is None and dbeta is None:
        return
    chunk, chunks = _chunks(m)
    part_g = _partials(chunks if dgamma is not None else 0, n)
    part_b = _partials(chunks if dbeta is not None else 0, n)
    blocks, threads = _columns_launch(n)
    if chunks:
        norm.layernorm_sums_stage1[(blocks, chunks), threads](dy, x, mean, rstd, chunk, dgamma is not None,
                                                              dbeta is not None, part_g, part_b)
    stand_in = dgamma if dgamma is not None else dbeta
    norm.column_sums_stage2[blocks, threads](part_g, part_b, chunks, stand_in, dgamma is not None,
                                             stand_in if dbeta is None else dbeta, dbeta is not None)


def batchnorm_forward(x, gamma, beta, eps, running_mean, running_var, momentum, training, unbiased, y, mean, rstd):
    m, n = x.shape
    if training and m == 0:  # the statistics of no rows are undefined (the public API refuses it)
        return
    has_running = running_mean is not None and running_var is not None
    blocks, threads = _columns_launch(n)
    chunk, chunks = _chunks(m) if training else (1, 0)
    cmean, cm2 = _partials(chunks, n), _partials(chunks, n)
    if chunks:
        norm.moments_stage1[(blocks, chunks), threads](x, chunk, cmean, cm2)
    mean64 = cuda.device_array(n, np.float64)
    rstd64 = cuda.device_array(n, np.float64)
    norm.batch_statistics[blocks, threads](cmean, cm2, chunks, chunk, m, float(eps), bool(training), bool(unbiased),
                                           running_mean if has_running else mean,
                                           running_var if has_running else mean, has_running, float(momentum),
                                           mean, rstd, mean64, rstd64)
    if m:
        grid, threads = _grid(m * n)
        norm.batchnorm_normalize[grid, threads](x, mean64, rstd64, mean if gamma is None else gamma,
                                                mean if beta is None else beta, gamma is not None,
                                                beta is not None, y)


def batchnorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    m, n = x.shape
    need_dx = dx is not None and m > 0
    if not need_dx and dgamma is None and dbeta is None:
        return
    blocks, threads = _columns_launch(n)
    chunk, chunks = _chunks(m)
    part_dy, part_dyx = _partials(chunks, n), _partials(chunks, n)
    if chunks:
        norm.batchnorm_sums_stage1[(blocks, chunks), threads](dy, x, mean, rstd, chunk, part_dy, part_dyx)
    if need_dx:
        scale, mean_dy, mean_dyx = (cuda.device_array(n, np.float64) for _ in range(3))
    else:
        scale = mean_dy = mean_dyx = part_dy[0]  # typed stand-ins, never written
    norm.batchnorm_sums_stage2[blocks, threads](
        part_dy, part_dyx, chunks, m, mean if gamma is None else gamma, gamma is not None, rstd,
        mean if dgamma is None else dgamma, dgamma is not None, mean if dbeta is None else dbeta, dbeta is not None,
        need_dx, scale, mean_dy, mean_dyx)
    if need_dx:
        grid, threads = _grid(m * n)
        norm.batchnorm_dx[grid, threads](dy, x, mean, rstd, scale, mean_dy, mean_dyx, dx)


# ------------------------------------------------------------------------------------ dropout

def dropout_forward(x, key, threshold, scale, y, mask):
    if x.size == 0:
        return
    grid, threads = _grid(x.size)
    with drop.words_wrap():
        drop.dropout_forward[grid, threads](_flat(x), np.uint64(key), np.uint64(threshold), scale, _flat(y),
                                            _flat(mask))


def dropout_backward(dy, mask, scale, dx):
    if dy.size == 0:
        return
    grid, threads = _grid(dy.size)
    drop.dropout_backward[grid, threads](_flat(dy), _flat(mask), scale, _flat(dx))
