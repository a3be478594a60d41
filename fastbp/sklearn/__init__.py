"""scikit-learn estimators trained by fastbp: drop-in ``MLPClassifier`` and ``MLPRegressor``.

    from fastbp.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(128,), batch_size=128, max_iter=10).fit(X, y)

They take :mod:`sklearn.neural_network`'s parameters with its defaults, follow its training
procedure (initialization, shuffling, batches, L2 penalty, stopping rules, early stopping, the
learning-rate schedules, L-BFGS through SciPy), and train on fastbp's kernels: the compiled
training loop of :mod:`fastbp.nn` over one flat parameter buffer. Needs scikit-learn (the
``sklearn`` extra).
"""
try:
    import sklearn as _sklearn
except ImportError as error:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("fastbp.sklearn needs scikit-learn >= 1.6: pip install 'fastbp[sklearn]' "
                      "(or pip install 'scikit-learn>=1.6')") from error

from ._version_check import check_sklearn_version

check_sklearn_version(_sklearn.__version__)

from ._mlp import MLPClassifier, MLPRegressor  # noqa: E402

__all__ = ["MLPClassifier", "MLPRegressor"]
