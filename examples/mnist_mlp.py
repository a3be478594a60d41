"""The classic Keras MNIST example on fastbp: only the imports differ.

    python examples/mnist_mlp.py          # MNIST from FASTBP_DATA, the user cache, or a download
"""
from fastbp import nn
from fastbp.datasets import load_mnist

(x_train, y_train), (x_test, y_test) = load_mnist()
x_train = x_train.reshape(-1, 784) / 255.0
x_test = x_test.reshape(-1, 784) / 255.0

model = nn.Sequential([nn.Dense(128, activation="relu", input_shape=(784,)),
                       nn.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=10)
loss, accuracy = model.evaluate(x_test, y_test)
print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f}")
