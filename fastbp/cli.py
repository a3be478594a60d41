"""The ``fastbp`` command."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastbp", description="fast, exact backpropagation kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print backends (and why any is unavailable), versions, threads and BLAS")
    warm = sub.add_parser("warmup", help="run every kernel once (compiles and caches the numba kernels)")
    warm.add_argument("--backend", default=None, help="backend to warm up (default: the automatic choice)")
    train = sub.add_parser("train", help="train the classic MNIST MLP (784-128-10, Adam) and evaluate it")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--backend", default=None, help="kernel backend (default: the automatic choice)")
    train.add_argument("--data", default=None, help="folder with the MNIST .gz files (default: FASTBP_DATA, cache)")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    train.add_argument("--plot", metavar="FILE", default=None, help="save loss/accuracy curves as a PNG (matplotlib)")
    train.add_argument("--save", metavar="FILE", default=None,
                       help="save the trained model (nn.load_model reads it) when training ends")
    train.add_argument("--backup-dir", metavar="DIR", default=None,
                       help="back up the training state there after every epoch; run the same command again "
                            "after an interruption to resume where it stopped")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel over the ranks of an MPI job: mpiexec -n 4 fastbp train --distributed "
                            "(batch size is the global batch; needs the mpi extra)")
    args = parser.parse_args(argv)
    if args.command == "info":
        from . import show_config

        show_config()
    elif args.command == "warmup":
        import time

        t0 = time.perf_counter()
        from ._backend import selected_name
        from ._warmup import run_every_kernel

        t_import = time.perf_counter() - t0
        backend = selected_name(args.backend)  # by name: Numba compiles here and now, not in the background
        seconds = run_every_kernel(backend)
        print(f"backend {backend}: import {t_import:.2f} s, every kernel once {seconds:.2f} s")
    elif args.command == "train":
        return _train(args)
    return 0


def _train(args) -> int:
    from . import nn
    from .datasets import load_mnist

    try:
        (x_train, y_train), (x_test, y_test) = load_mnist(args.data)
    except FileNotFoundError as exc:  # (the message says where it looked and what to do)
        print(f"fastbp train: {exc}", file=sys.stderr)
        return 2
    x_train = x_train.reshape(-1, 784) / 255.0
    x_test = x_test.reshape(-1, 784) / 255.0
    model = nn.Sequential([nn.Dense(128, activation="relu", input_shape=(784,)),
                           nn.Dense(10, activation="softmax")], seed=args.seed, backend=args.backend)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    dp = None
    if args.distributed:
        from .distributed import DataParallel

        dp = DataParallel()
    first = dp is None or dp.rank == 0  # prints and writes files
    callbacks = [nn.BackupAndRestore(args.backup_dir)] if args.backup_dir else []
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=args.verbose,
                        validation_data=(x_test, y_test), callbacks=callbacks, distribution=dp)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0, distribution=dp)
    if not first:
        return 0
    if dp is not None:
        print(f"trained on {dp.size} ranks, global batch {args.batch_size}")
    print(f"test loss {loss:.4f} - test accuracy {accuracy:.4f}")
    if args.save:
        model.save(args.save)
        print(f"model saved to {args.save}")
    if args.plot:
        save_curves(history, args.plot)
        print(f"curves saved to {args.plot}")
    _say_what_compiles()
    return 0


def _say_what_compiles() -> None:
    """At exit, what Numba still compiles in the background (it finishes after this process)."""
    if "fastbp.backends.numba_cpu.background" not in sys.modules:
        return
    from .backends.numba_cpu import background

    busy, pid = background.compiling(), background.worker_pid()
    if busy and pid is not None:
        print(f"numba is still compiling {', '.join(busy)} in the background (pid {pid}); it goes on after this "
              "command ends, and the next run uses it")


def save_curves(history, path) -> None:
    """Loss and accuracy per epoch (training and validation) as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib (or the 'plot' extra)") from None
    h = history.history
    epochs = [e + 1 for e in history.epoch]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for name, style in ((key, "-o"), (f"val_{key}", "--s")):
            if name in h:
                ax.plot(epochs, h[name], style, label=name)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
