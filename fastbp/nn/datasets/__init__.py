"""Keras's ``keras.datasets`` names: ``from fastbp.nn.datasets import mnist; mnist.load_data()``."""
from . import mnist

__all__ = ["mnist"]
