"""Keras's ``keras.utils.to_categorical``."""
import numpy as np


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot rows of the integer class labels ``y`` (any shape; a trailing axis of length 1 is
    dropped, as in Keras): ``out[..., c] = 1`` where ``y == c``. ``num_classes`` defaults to
    ``max(y) + 1``; a label outside [0, num_classes) is a ValueError."""
    y = np.asarray(y)
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        raise ValueError(f"to_categorical: y must hold integer class labels; got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"to_categorical: labels must lie in [0, {num_classes}); got {int(y.min())} .. {int(y.max())}")
    out = np.zeros(y.shape + (num_classes,), dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out
