"""A model lowered to a flat op table and trained by one compiled interpreter (numba backend):
:mod:`.lowering` builds the tables and buffers, :mod:`.interpreter` runs whole steps,
:mod:`.thread_tuner` picks the thread count chunk by chunk. Importing this package needs no
Numba (``supports`` says False where the numba backend does not run)."""


def supports(model) -> bool:
    """Whole steps run in compiled code when the kernels resolve to the numba backend, every
    layer has an op in the interpreter and no layer is used in two nodes (a shared layer's weight
    gradients are added: the Python loop does that)."""
    from ..._backend import selected_name
    from ..layers import Activation, Add, BatchNormalization, Dense, Dropout, LayerNormalization

    kinds = (Dense, Activation, Dropout, LayerNormalization, BatchNormalization, Add)
    try:
        return selected_name(model.backend) == "numba" and len(model.layers) == len(model.nodes) and all(
            type(layer) in kinds for layer in model.layers)
    except Exception:  # no backend at all: the Python loop reports it properly
        return False


def lower(model, x, y, batch, standby=False, halves=False):
    """:func:`.lowering.lower` (imported here: it compiles with Numba)."""
    from .lowering import lower as _lower

    return _lower(model, x, y, batch, standby, halves)


__all__ = ["lower", "supports"]
