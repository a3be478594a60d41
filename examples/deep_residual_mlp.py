"""The vanishing gradient on MNIST: a deep plain network of sigmoid layers against the same depth
with residual connections and layer normalization (Keras's functional API on fastbp).

    python examples/deep_residual_mlp.py                      # 24 sigmoid layers of width 64, 2 epochs
    python examples/deep_residual_mlp.py --plot curves.png    # both learning curves in one PNG

The plain network's gradient shrinks by sigmoid' <= 1/4 (times the weights) at every layer, so its
first layers barely learn and it stays near chance (about 10%). The residual network adds each
layer's output to its input (h + Dense(h)), a path the gradient crosses unchanged, and normalizes
each sum (LayerNormalization), so every layer learns: it reaches about 95% in two epochs. Both use
Glorot initialization and Adam at batch 128 (the same contrast PyTorch shows with the same layers).
"""
import argparse
import time

import numpy as np

from fastbp import nn
from fastbp.datasets import load_mnist


def plain(depth, width, seed):
    """``depth`` Dense(width, sigmoid) layers, then Dense(10, softmax)."""
    inputs = nn.Input((784,))
    h = inputs
    for _ in range(depth):
        h = nn.Dense(width, activation="sigmoid")(h)
    return nn.Model(inputs, nn.Dense(10, activation="softmax")(h), name="plain", seed=seed)


def residual(depth, width, seed):
    """The same ``depth`` sigmoid layers: the first maps the input to ``width``; each of the others
    is a residual block h = LayerNormalization(h + Dense(width, sigmoid)(h)); then Dense(10, softmax)."""
    inputs = nn.Input((784,))
    h = nn.Dense(width, activation="sigmoid")(inputs)
    for _ in range(depth - 1):
        h = nn.LayerNormalization()(nn.Add()([h, nn.Dense(width, activation="sigmoid")(h)]))
    return nn.Model(inputs, nn.Dense(10, activation="softmax")(h), name="residual", seed=seed)


class LearningCurve(nn.Callback):
    """The epoch's running mean loss and accuracy every ``every`` steps."""

    def __init__(self, every):
        self.every = every
        self.steps, self.loss, self.accuracy = [], [], []
        self._epoch_start = 0

    @property
    def batch_interval(self):
        return self.every

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = len(self.steps) and self.steps[-1]

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(self._epoch_start + batch + 1)
        self.loss.append(logs["loss"])
        self.accuracy.append(logs["accuracy"])


def train(model, data, epochs, batch_size, every):
    (x_train, y_train), (x_test, y_test) = data
    model.compile(optimizer=nn.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    curve = LearningCurve(every)
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[curve])
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"{model.name:>8}: {len(model.nodes)} nodes, {model.count_params():,} weights; "
          f"{seconds / epochs:.2f} s per epoch ({history.params['path']}); test loss {loss:.4f}, "
          f"test accuracy {accuracy:.4f}")
    return curve, accuracy


def plot(curves, path, depth, width):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for name, curve in curves.items():
        ax_loss.plot(curve.steps, curve.loss, label=name)
        ax_acc.plot(curve.steps, curve.accuracy, label=name)
    ax_loss.set(xlabel="training step", ylabel="loss (running mean of the epoch)", yscale="log")
    ax_acc.set(xlabel="training step", ylabel="accuracy (running mean of the epoch)", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"MNIST, {depth} sigmoid layers of width {width}: plain vs residual + LayerNormalization")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"learning curves written to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=24, help="sigmoid layers in each network (default 24)")
    parser.add_argument("--width", type=int, default=64, help="units per layer (default 64)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help="folder with the MNIST files (default: FASTBP_DATA, ...)")
    parser.add_argument("--plot", metavar="PNG", help="write both learning curves to this PNG file")
    args = parser.parse_args(argv)
    (x_train, y_train), (x_test, y_test) = load_mnist(args.data)
    data = ((x_train.reshape(-1, 784) / np.float32(255), y_train), (x_test.reshape(-1, 784) / np.float32(255), y_test))
    curves, accuracies = {}, {}
    for build in (plain, residual):
        model = build(args.depth, args.width, args.seed)
        curves[model.name], accuracies[model.name] = train(model, data, args.epochs, args.batch_size, every=10)
    if args.plot:
        plot(curves, args.plot, args.depth, args.width)
    return accuracies


if __name__ == "__main__":
    main()
