"""The memory one training epoch takes, measured in a process of its own.

    python epoch_memory.py CONTENDER BATCH      (prints megabytes)

The framework is imported, MNIST loaded, the model built and warmed up (its compiled code loaded
or compiled, its buffers allocated: the builders of common.py train on a slice; PyTorch's epoch
runs once); then the resident set size is the baseline, and one full epoch runs while a thread
samples the RSS every millisecond. Printed: peak RSS minus the baseline, in MB (10^6 bytes): what
the epoch itself allocates (per-step temporaries, caches that grow). The process's own peak
(asv's ``peakmem_``) would count the interpreter, the framework's libraries and the dataset.
"""
import os
import sys
import threading
import time
from pathlib import Path


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(contender, batch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import common

    if contender.startswith("fastbp:"):
        name = common.fastbp_backend(contender)

        def build(x, y, b):
            return common.fastbp_mnist_epoch(x, y, b, name)
    else:
        build = common.EPOCHS[contender]
        {"torch": common.torch_or_skip, "tensorflow": common.tensorflow_or_skip,
         "sklearn": common.sklearn_or_skip}[contender]()
    from fastbp.datasets import load_mnist

    (x, y), _ = load_mnist(common.mnist_dir(), download=False)
    x = (x.reshape(-1, 784) / 255.0).astype("float32")
    run = build(x, y, batch)
    if contender == "torch":
        run()  # (its builder does not warm up on a slice)
    base = peak = rss_bytes()
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(0.001)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run()
    done.set()
    sampler.join()
    peak = max(peak, rss_bytes())
    print((peak - base) / 1e6)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
