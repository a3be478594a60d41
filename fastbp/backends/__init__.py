"""Backends: modules that implement the kernel protocol below on one kind of hardware.

The public functions in :mod:`fastbp.kernels` validate their arguments, allocate any output
the caller did not pass (with the backend's ``empty``), and call the backend function of the
same name. A backend function may therefore assume: every array is C-contiguous, of one float
dtype (labels: ``intp``), with the documented shapes; outputs are allocated and do not overlap
inputs except where noted; scalars are valid Python numbers; activations come as integer codes
(:mod:`fastbp.activations`).

Protocol (outputs are written in place; nothing returned unless noted)::

    NAME, DEVICE                                            # the registered name, "cpu" or "cuda"
    empty(shape, dtype) -> array
    linear_forward(x, w, b, code, alpha, y, z)              # b, z may be None
    linear_backward(dy, x, w, saved, code, alpha, dz, dx, dw, db)
                                                            # saved: y, z or None (per activation);
                                                            # dz may be dy; dx, db may be None
    activation_forward(z, code, alpha, y)                   # y may be z
    activation_backward(dy, saved, code, alpha, dz)         # dz may be dy
    softmax_cross_entropy(logits, labels, targets, dlogits) -> float
                                                            # one of labels/targets is None;
                                                            # dlogits may be None or logits
    mse_loss(pred, target, dpred) -> float                  # dpred may be None or pred
    sgd_update(p, g, velocity, lr, momentum, nesterov, weight_decay)
    adam_update(p, g, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay, decoupled)
    rmsprop_update(p, g, sq_avg, grad_avg, momentum_buf, lr, rho, eps, weight_decay, momentum)
    sum_of_squares(arrays) -> float                         # accumulated in float64
    max_abs(arrays) -> float
    scale_(arrays, factor)                                  # a *= factor, in place
    clip_value_(arrays, clip)                               # a = clamp(a, -clip, clip), in place

Backends are registered in :mod:`fastbp._backend`; the conformance suite in ``tests/`` runs
every registered, available backend against ``numpy_ref``.
"""
