"""The classic MNIST example trained data-parallel on every rank of an MPI job.

    pip install ".[mpi]"                                   # mpi4py and MPICH from PyPI
    mpiexec -n 2 python examples/distributed_mnist.py      # 2 ranks, global batch 128

Every rank loads the data and builds the same model; each computes the gradient of its share of
each global batch of 128 rows, one Allreduce sums them, and every rank takes the same step. Only
rank 0 prints. On a cluster: ``mpiexec -n 4 --hostfile hosts --bind-to none python ...`` (see the
README's section on distributed training).
"""
import fastbp
from fastbp import nn
from fastbp.datasets import load_mnist
from fastbp.distributed import DataParallel

dp = DataParallel()
(x_train, y_train), (x_test, y_test) = load_mnist()
x_train = x_train.reshape(-1, 784) / 255.0
x_test = x_test.reshape(-1, 784) / 255.0

model = nn.Sequential([nn.Dense(128, activation="relu", input_shape=(784,)),
                       nn.Dense(10, activation="softmax")], seed=0)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, batch_size=128, epochs=5, validation_data=(x_test, y_test), distribution=dp)
loss, accuracy = model.evaluate(x_test, y_test, verbose=0, distribution=dp)
if dp.rank == 0:
    threads = dp.threads or fastbp.get_num_threads()
    print(f"{dp.size} ranks x {threads} threads: test loss {loss:.4f}, test accuracy {accuracy:.4f}")
