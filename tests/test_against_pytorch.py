"""A residual graph trained by fastbp and by PyTorch (a test-only dependency) from the same
weights: Dense -> LayerNormalization -> Dense(tanh) -> Add with its input -> BatchNormalization ->
Dense softmax, three full-batch SGD steps, float32.

Both compute the same float32 function with different summation orders and fusions, so each
value differs by a few units of roundoff (2^-24) times the length of the sums it comes from
(<= 64 here), amplified by at most the few operations between steps: far below the 1e-4
relative tolerance, which a wrong term of any gradient exceeds at once.
"""
import numpy as np
import pytest
from helpers import cpu_backends

from fastbp import nn

torch = pytest.importorskip("torch", reason="PyTorch is in the test extra")

RTOL = 1e-4
N_IN, WIDTH, CLASSES, ROWS = 12, 16, 5, 64


def _fastbp_model(backend):
    inputs = nn.Input((N_IN,))
    h = nn.Dense(WIDTH)(inputs)
    h = nn.LayerNormalization()(h)
    h = nn.Add()([h, nn.Dense(WIDTH, activation="tanh")(h)])
    h = nn.BatchNormalization()(h)
    outputs = nn.Dense(CLASSES, activation="softmax")(h)
    return nn.Model(inputs, outputs, seed=0, backend=backend)


class _TorchModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dense1 = torch.nn.Linear(N_IN, WIDTH)
        self.norm1 = torch.nn.LayerNorm(WIDTH, eps=1e-3)  # Keras's epsilon
        self.dense2 = torch.nn.Linear(WIDTH, WIDTH)
        self.norm2 = torch.nn.BatchNorm1d(WIDTH, eps=1e-3, momentum=0.01)  # Keras's momentum 0.99
        self.dense3 = torch.nn.Linear(WIDTH, CLASSES)

    def forward(self, x):
        h = self.norm1(self.dense1(x))
        h = h + torch.tanh(self.dense2(h))
        return self.dense3(self.norm2(h))  # logits: cross_entropy applies the softmax


def _copy_weights(model, net):
    """fastbp's initial weights into the PyTorch network (Keras's kernel (in, out) is torch's weight.T)."""
    w = model.get_weights()
    pairs = [(net.dense1.weight, w[0].T), (net.dense1.bias, w[1]), (net.norm1.weight, w[2]), (net.norm1.bias, w[3]),
             (net.dense2.weight, w[4].T), (net.dense2.bias, w[5]), (net.norm2.weight, w[6]), (net.norm2.bias, w[7]),
             (net.dense3.weight, w[10].T), (net.dense3.bias, w[11])]
    with torch.no_grad():
        for target, value in pairs:
            target.copy_(torch.from_numpy(np.ascontiguousarray(value)))


@pytest.mark.parametrize("backend", cpu_backends())
def test_three_sgd_steps_match_pytorch(backend):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((ROWS, N_IN)) * 2 + 0.5).astype(np.float32)
    y = rng.integers(0, CLASSES, ROWS)
    model = _fastbp_model(backend)
    model.compile(optimizer=nn.SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (no idle PyTorch pool beside fastbp's threads in the rest of the run)
    try:
        torch.manual_seed(0)
        net = _TorchModel()
        _copy_weights(model, net)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        losses = []
        for _ in range(3):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(tx), ty)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    history = model.fit(x, y, batch_size=ROWS, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=RTOL)
    w = model.get_weights()
    expected = [net.dense1.weight.T, net.dense1.bias, net.norm1.weight, net.norm1.bias, net.dense2.weight.T,
                net.dense2.bias, net.norm2.weight, net.norm2.bias, net.norm2.running_mean, None, net.dense3.weight.T,
                net.dense3.bias]
    for got, want in zip(w, expected):
        if want is None:  # PyTorch's running variance is the unbiased one, Keras's moving variance the biased
            continue
        want = want.detach().numpy()
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * float(np.max(np.abs(want))))
    assert not np.allclose(w[0], _fastbp_model(backend).get_weights()[0])  # the weights did move
