"""A model lowered to a flat op table and trained by one compiled interpreter (numba backend):
:mod:`.lowering` builds the tables and buffers, :mod:`.interpreter` runs whole steps,
:mod:`.thread_tuner` picks the thread count chunk by chunk."""
from .lowering import lower, supports

__all__ = ["lower", "supports"]
