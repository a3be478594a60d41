"""Keras's functional API: :func:`Input`, layers called on symbolic tensors, and the graph of
nodes a :class:`fastbp.nn.Model` is built from.

    inputs = nn.Input(shape=(784,))
    h = nn.Dense(64, activation="relu")(inputs)
    h = nn.Add()([h, nn.Dense(64, activation="tanh")(h)])
    model = nn.Model(inputs=inputs, outputs=nn.Dense(10, activation="softmax")(h))

A symbolic tensor records the layer that produces it and the tensors it reads; calling a layer
builds it for its input width at once, so a mismatch is reported where it is made. The model
orders the nodes so that each comes after the nodes it reads (its output's node last) and
numbers the tensors by slot: 0 is the model's input, i + 1 the output of node i.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class SymbolicTensor:
    """A (batch, width) tensor of a model being built: ``layer`` (None for an :func:`Input`)
    produces it from the symbolic tensors ``inputs``."""

    __slots__ = ("width", "layer", "inputs", "name")

    def __init__(self, width: int, layer=None, inputs=(), name=None):
        self.width, self.layer, self.inputs, self.name = width, layer, tuple(inputs), name

    @property
    def shape(self):
        return (None, self.width)

    @property
    def label(self) -> str:
        """What made the tensor, for messages: the layer's name, or the input's."""
        return self.layer.label if self.layer is not None else f"Input{'' if self.name is None else ' ' + self.name}"

    def __repr__(self):
        return f"<SymbolicTensor shape={self.shape} from {self.label}>"


def Input(shape, name=None):  # noqa: N802  (Keras's name)
    """A symbolic input of ``shape`` (the features of one sample, e.g. ``(784,)`` or ``(28, 28)``:
    flattened, as fit() flattens the samples)."""
    dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if not dims or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
        raise ValueError(f"Input: shape must be a tuple of positive integers (the features of one sample); got {shape!r}")
    return SymbolicTensor(int(np.prod(dims)), name=name)


def call_layer(layer, inputs) -> SymbolicTensor:
    """``layer(inputs)`` on symbolic tensors: checks the number and widths of the inputs, builds the
    layer for their width, and returns its output tensor."""
    tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    for t in tensors:
        if not isinstance(t, SymbolicTensor):
            raise TypeError(f"layer {layer.label!r} was called on a {type(t).__name__}; fastbp layers are called on "
                            "symbolic tensors (nn.Input(...) and other layers' outputs) to build an nn.Model, which "
                            "then computes on arrays (fit, predict)")
    if layer.n_inputs is None:
        if len(tensors) < 2:
            raise ValueError(f"layer {layer.label!r} ({type(layer).__name__}) takes a list of two or more tensors; "
                             f"got {len(tensors)}")
        if len({t.width for t in tensors}) > 1:
            shapes = ", ".join(f"{t.label} {t.shape}" for t in tensors)
            raise ValueError(f"layer {layer.label!r} ({type(layer).__name__}) needs inputs of one shape; got {shapes}")
    elif len(tensors) != layer.n_inputs:
        raise ValueError(f"layer {layer.label!r} ({type(layer).__name__}) takes one tensor; got {len(tensors)}")
    return SymbolicTensor(layer.build(tensors[0].width), layer, tensors)


class Node(NamedTuple):
    """One application of a layer in a model: ``inputs`` are the slots it reads (0: the model's
    input, i + 1: the output of node i)."""

    layer: object
    inputs: tuple


def _one(what, tensors):
    if isinstance(tensors, (list, tuple)):
        if len(tensors) != 1:
            raise ValueError(f"Model: fastbp models have one {what} tensor; got {len(tensors)}")
        tensors = tensors[0]
    if not isinstance(tensors, SymbolicTensor):
        raise TypeError(f"Model: {what}s must be symbolic tensors (nn.Input(...) and layers' outputs); "
                        f"got {type(tensors).__name__}")
    return tensors


def graph(inputs, outputs) -> list[Node]:
    """The nodes between ``inputs`` and ``outputs`` in an order where every node comes after those
    it reads and the output's node is last. Raises ValueError when a node reads a tensor that does
    not come from ``inputs`` (another Input), or when the output is the input itself."""
    source, target = _one("input", inputs), _one("output", outputs)
    if target is source:
        raise ValueError("Model: the output is the input itself; the model has no layers")
    slot = {id(source): 0}
    nodes = []
    stack = [(target, None, False)]
    while stack:  # depth first, a node after the tensors it reads (iterative: deep models)
        tensor, reader, expanded = stack.pop()
        if id(tensor) in slot:
            continue
        if tensor.layer is None:
            raise ValueError(f"Model: the graph is not connected to the model's input: layer {reader.label!r} reads "
                             f"{tensor.label}, which is not the input given to Model")
        if expanded:
            nodes.append(Node(tensor.layer, tuple(slot[id(t)] for t in tensor.inputs)))
            slot[id(tensor)] = len(nodes)
            continue
        stack.append((tensor, reader, True))
        for t in reversed(tensor.inputs):
            if id(t) not in slot:
                stack.append((t, tensor.layer, False))
    return nodes
