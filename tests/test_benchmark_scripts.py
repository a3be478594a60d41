"""What the benchmark scripts compute besides timings (their floors), checked by hand."""
import importlib
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_the_seed_epoch_has_24_5_gflop_of_products():
    """784-128-10 over 60,000 samples, counted product by product (a multiply-add is 2 flops):
    x @ w1, h @ w2 forward; dw2 = h.T @ dz2, dx2 = dz2 @ w2.T, dw1 = x.T @ dz1 backward; no dx1."""
    n = 60_000
    products = [(n, 784, 128), (n, 128, 10), (128, n, 10), (n, 10, 128), (784, n, 128)]
    by_hand = sum(2 * m * k * p for m, k, p in products)
    assert by_hand == 24_545_280_000
    assert _script("compare_training").epoch_flops(n) == by_hand
