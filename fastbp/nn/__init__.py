"""fastbp.nn: Keras-style layers, model, losses, optimizers and schedules over fastbp's kernels.

    from fastbp import nn
    model = nn.Sequential([nn.Dense(128, activation="relu", input_shape=(784,)),
                           nn.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=10)
    loss, accuracy = model.evaluate(x_test, y_test)
    model.save("mnist.fastbp")                 # everything; nn.load_model("mnist.fastbp") resumes

    inputs = nn.Input(shape=(784,))            # the functional API: graphs with residual connections
    h = nn.Dense(64, activation="relu")(inputs)
    h = nn.LayerNormalization()(nn.Add()([h, nn.Dense(64, activation="tanh")(h)]))
    model = nn.Model(inputs=inputs, outputs=nn.Dense(10, activation="softmax")(h))
"""
from . import datasets, initializers, losses, models, optimizers, regularizers, schedules, utils
from .callbacks import Callback, CSVLogger, EarlyStopping, History, TerminateOnNaN
from .checkpoints import BackupAndRestore, ModelCheckpoint
from .functional import Input
from .layers import Activation, Add, BatchNormalization, Dense, Dropout, Layer, LayerNormalization
from .losses import BinaryCrossentropy, CategoricalCrossentropy, MeanSquaredError, SparseCategoricalCrossentropy
from .model import Model, Sequential
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop
from .saving import load_model
from .serialization import register_serializable
from .schedules import CosineDecay, ExponentialDecay, LearningRateSchedule, PiecewiseConstantDecay

__all__ = [
    "Model", "Sequential", "Input", "Dense", "Activation", "Dropout", "LayerNormalization", "BatchNormalization",
    "Add", "Layer", "SGD", "Adam", "AdamW", "RMSprop", "Optimizer",
    "ExponentialDecay", "PiecewiseConstantDecay", "CosineDecay", "LearningRateSchedule",
    "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "BinaryCrossentropy", "MeanSquaredError", "Callback", "History",
    "BackupAndRestore", "ModelCheckpoint", "EarlyStopping", "TerminateOnNaN", "CSVLogger", "load_model",
    "register_serializable",
    "datasets", "initializers", "losses", "models", "optimizers", "regularizers", "schedules", "utils",
]
