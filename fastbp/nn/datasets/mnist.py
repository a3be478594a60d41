"""``keras.datasets.mnist``: :func:`load_data` is :func:`fastbp.datasets.load_mnist`."""
from ...datasets import load_mnist


def load_data(path=None):
    """``((x_train, y_train), (x_test, y_test))``, uint8, as Keras's ``mnist.load_data()`` returns
    them; the files are found (or downloaded) as :func:`fastbp.datasets.load_mnist` says."""
    return load_mnist(path)
