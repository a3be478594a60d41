"""Shared parameters and helpers of the asv suite.

The ``backend`` parameter holds fastbp's backends ("fastbp:numba", ...) and the peers the
dashboard compares them with ("numpy": plain NumPy expressions, "torch": PyTorch CPU; for the
training epoch also "tensorflow": Keras on TensorFlow CPU, and "sklearn": MLPClassifier).
``bench_environment`` records which BLAS each of them calls and the CPU.
A contender that cannot run here raises NotImplementedError in ``setup``, which asv shows as
skipped. Compilation happens in ``setup``, never in the timed region.
"""
import os
from pathlib import Path

import numpy as np

FASTBP_BACKENDS = ["fastbp:numba", "fastbp:cython", "fastbp:numpy"]
PEERS = ["numpy", "torch"]
BACKENDS = FASTBP_BACKENDS + PEERS
DTYPES = ["float32", "float64"]
#: the MNIST layers (batch 32 and 128) and a large one
LAYER_SHAPES = ["32x784x128", "128x784x128", "128x128x10", "1024x1024x1024"]
THREADS = 2


def shape_of(text):
    return tuple(int(v) for v in text.split("x"))


def fastbp_backend(backend):
    """The fastbp backend name, or NotImplementedError when it cannot run here (also for older
    commits without the backend machinery, so that history runs skip instead of failing)."""
    try:
        import fastbp
        from fastbp import kernels  # noqa: F401
    except ImportError as exc:
        raise NotImplementedError(f"fastbp at this commit: {exc}") from None

    name = backend.split(":", 1)[1]
    reason = fastbp.backend_status().get(name, "unknown backend")
    if reason is not None:
        raise NotImplementedError(f"{name}: {reason}")
    fastbp.set_num_threads(THREADS)
    return name


def torch_or_skip():
    if os.environ.get("FASTBP_BENCH_NO_TORCH"):  # (ci/bench_quick.sh: PyTorch is in the test extra)
        raise NotImplementedError("PyTorch contenders are off (FASTBP_BENCH_NO_TORCH)")
    try:
        import torch
    except ImportError:
        raise NotImplementedError("torch is not installed") from None
    torch.set_num_threads(THREADS)
    return torch


def tensorflow_or_skip():
    """TensorFlow, on THREADS threads, or NotImplementedError when it is not installed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise NotImplementedError("tensorflow is not installed (the compare extra)") from None
    try:
        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    except RuntimeError:  # already initialized in this process: the setting stands
        pass
    return tf


def sklearn_or_skip():
    try:
        import sklearn.neural_network
    except ImportError:
        raise NotImplementedError("scikit-learn is not installed (the sklearn extra)") from None
    return sklearn.neural_network


def runnable_or_skip(backend):
    """NotImplementedError (asv: skipped) when ``backend`` cannot run here, without importing or
    starting the peer: for benchmarks that run it in a process of their own (asv counts an
    exception raised by the benchmark itself, this one too, as a failure, so it belongs in setup)."""
    import importlib.util

    if backend.startswith("fastbp:"):
        fastbp_backend(backend)
        return
    if backend == "torch" and os.environ.get("FASTBP_BENCH_NO_TORCH"):
        raise NotImplementedError("PyTorch contenders are off (FASTBP_BENCH_NO_TORCH)")
    module = {"torch": "torch", "tensorflow": "tensorflow", "sklearn": "sklearn", "numpy": "numpy"}[backend]
    if importlib.util.find_spec(module) is None:
        raise NotImplementedError(f"{module} is not installed (the compare extra)")


def contender(backend, fastbp, numpy, torch):
    """The callable timed for ``backend``, made by the builder for its kind: ``fastbp(K, name)``
    (fastbp's kernels module and backend name), ``numpy()``, or ``torch(torch)``. It is called
    once here, so compilation and first-touch costs stay out of the timed region."""
    if backend.startswith("fastbp:"):
        name = fastbp_backend(backend)  # (first: skips cleanly on commits without the kernels)
        from fastbp import kernels as K

        fn = fastbp(K, name)
    elif backend == "numpy":
        fn = numpy()
    else:
        fn = torch(torch_or_skip())
    fn()
    return fn


def layer(shape, dtype, seed=0):
    batch, n_in, n_out = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = (rng.standard_normal(n_out) * 0.1).astype(dtype)
    return x, w, b


def mnist_dir():
    """FASTBP_DATA, or ../shared/data beside the checkout; NotImplementedError when absent."""
    from fastbp.datasets import MNIST_FILES

    here = Path(__file__).resolve()
    for root in (os.environ.get("FASTBP_DATA"), *(p / "shared" / "data" for p in here.parents)):
        if root:
            for d in (Path(root), Path(root) / "mnist"):
                if all((d / f).is_file() for f in MNIST_FILES):
                    return d
    raise NotImplementedError("MNIST files not found (set FASTBP_DATA)")


def best_seconds(fn, repeat=5):
    import time

    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def fastbp_mnist_epoch(x, y, batch, backend=None):
    """A function running one epoch of the classic example on fastbp (compiled and warmed up)."""
    from fastbp import nn

    model = nn.Sequential([nn.Dense(128, activation="relu", input_shape=(784,)),
                           nn.Dense(10, activation="softmax")], seed=0, backend=backend)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:batch * 4], y[:batch * 4], batch_size=batch, epochs=1, verbose=0)  # compile, warm up
    return lambda: model.fit(x, y, batch_size=batch, epochs=1, verbose=0)


def torch_mnist_epoch(x, y, batch):
    """The same epoch as PyTorch's standard eager loop: nn.Sequential, Adam (Keras's eps), CE."""
    torch = torch_or_skip()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    def epoch():
        perm = torch.randperm(len(tx))
        for i in range(0, len(tx), batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(tx[idx]), ty[idx]).backward()
            opt.step()
    return epoch


def tensorflow_mnist_epoch(x, y, batch):
    """The same epoch in Keras on TensorFlow (the seed's own framework): Sequential, Adam, sparse CE,
    shuffled batches; compiled and warmed up on a slice."""
    tf = tensorflow_or_skip()
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((784,)), tf.keras.layers.Dense(128, activation="relu"),
                                 tf.keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x[:batch * 4], y[:batch * 4], batch_size=batch, epochs=1, verbose=0)
    return lambda: model.fit(x, y, batch_size=batch, epochs=1, verbose=0)


def sklearn_mnist_epoch(x, y, batch):
    """The same epoch in scikit-learn: MLPClassifier (128 relu, Adam at 1e-3, log-loss), one
    ``partial_fit`` over the data (one pass, shuffled batches); its BLAS on THREADS threads."""
    from threadpoolctl import threadpool_limits

    neural = sklearn_or_skip()
    model = neural.MLPClassifier(hidden_layer_sizes=(128,), solver="adam", learning_rate_init=1e-3,
                                 batch_size=batch, random_state=0)
    classes = np.arange(10)
    model.partial_fit(x[:batch * 4], y[:batch * 4], classes=classes)

    def epoch():
        with threadpool_limits(THREADS, user_api="blas"):
            model.partial_fit(x, y)
    return epoch


#: the epoch builders by contender name (fastbp's take a backend too)
EPOCHS = {"torch": torch_mnist_epoch, "tensorflow": tensorflow_mnist_epoch, "sklearn": sklearn_mnist_epoch}
