"""Keras's ``keras.models`` names: Sequential, Model, load_model."""
from .model import Model, Sequential
from .saving import load_model

__all__ = ["Model", "Sequential", "load_model"]
