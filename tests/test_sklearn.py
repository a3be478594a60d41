"""fastbp.sklearn: scikit-learn's own estimator checks, and the same training as scikit-learn's MLP.

scikit-learn is a test dependency (the ``test`` extra), so these run wherever the suite runs.
Where fastbp follows scikit-learn's procedure step for step (initialization, shuffling, batches,
penalty, optimizer formulas, stopping rules), float64 training reaches scikit-learn's weights up to
the order of summation: a reassociated sum of n terms differs by at most n u (u = 2^-53 = 1.1e-16;
n <= 300 here, so 3.3e-14 relative to its largest term) per step, and at most 100 steps run, so
the weights agree to 3.3e-12 of their largest magnitude unless the training amplifies differences
(it does not on these well-conditioned problems: the measured gaps are ~1e-15).
"""
import json
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse

pytest.importorskip("sklearn", reason="scikit-learn is in the test extra")
from sklearn import neural_network as sk  # noqa: E402
from sklearn.datasets import make_classification, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastbp import sklearn as fb  # noqa: E402
from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from fastbp.sklearn._version_check import check_sklearn_version  # noqa: E402

#: 300 summands at most per reassociated sum, 100 steps at most: see the module docstring
WEIGHT_RTOL = 300 * 2.0 ** -53 * 100


def _array_api_in_subprocess(estimator, check):
    """check_array_api_input needs SCIPY_ARRAY_API=1 before SciPy is imported: run it in a fresh
    interpreter with it set (in this process the check would only skip)."""
    code = f"""
import json, warnings
warnings.simplefilter("ignore")
from sklearn.utils.estimator_checks import check_array_api_input
from fastbp.sklearn import {type(estimator).__name__} as E
check_array_api_input({type(estimator).__name__!r}, E(**json.loads({json.dumps(json.dumps(estimator.get_params()))})),
                      **json.loads({json.dumps(json.dumps(check.keywords))}))
print("checked")
"""
    env = dict(os.environ, SCIPY_ARRAY_API="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "checked" in done.stdout, done.stderr[-3000:]


# scikit-learn checks its own MLPs with max_iter=100 (sklearn/utils/_test_common/instance_generator.py)
@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100)])
def test_sklearn_estimator_checks(estimator, check):
    if getattr(check, "func", check).__name__ == "check_array_api_input":
        _array_api_in_subprocess(estimator, check)
    else:
        check(estimator)


# ------------------------------------------------------------ the same training as sklearn's

def _problems():
    X, y = make_classification(n_samples=300, n_features=12, n_classes=3, n_informative=6, random_state=0)
    Xr, yr = make_regression(n_samples=300, n_features=12, n_targets=2, random_state=0, noise=1.0)
    Xm, ym = make_multilabel_classification(n_samples=300, n_features=12, n_classes=4, random_state=0)
    return {"multiclass": ("MLPClassifier", X, y), "binary": ("MLPClassifier", X, y == 1),
            "multilabel": ("MLPClassifier", Xm, ym), "regression": ("MLPRegressor", Xr, yr[:, 0] / 100),
            "regression-2-outputs": ("MLPRegressor", Xr, yr / 100)}


PROBLEMS = _problems()
SOLVERS = {
    "adam": dict(solver="adam", learning_rate_init=0.01),
    "sgd-nesterov": dict(solver="sgd", learning_rate_init=0.05),
    "sgd-invscaling": dict(solver="sgd", momentum=0.0, learning_rate="invscaling", learning_rate_init=0.5),
    "sgd-early-stopping": dict(solver="sgd", early_stopping=True, learning_rate_init=0.05),
    "lbfgs": dict(solver="lbfgs"),
    "adam-logistic-no-shuffle": dict(solver="adam", activation="logistic", shuffle=False, alpha=0.0),
}


def _fit_both(problem, params, **extra):
    name, X, y = PROBLEMS[problem]
    kw = dict(hidden_layer_sizes=(9, 7), random_state=1, max_iter=8, alpha=1e-3, batch_size=32)
    kw.update(params)
    kw.update(extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return getattr(sk, name)(**kw).fit(X, y), getattr(fb, name)(**kw).fit(X, y), X, y


def _assert_same_weights(a, b):
    for want, got in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=WEIGHT_RTOL * np.abs(want).max())


# (not regression-2-outputs with lbfgs: scikit-learn's L-BFGS gets the squared error averaged over
# the outputs with the gradient of its sum, fastbp gives it a matching pair; see
# test_lbfgs_multi_output_regression_objective_is_consistent)
@pytest.mark.parametrize("problem, solver", [(p, s) for p in PROBLEMS for s in SOLVERS
                                             if (p, s) != ("regression-2-outputs", "lbfgs")])
def test_trains_as_sklearns_mlp(problem, solver):
    a, b, X, y = _fit_both(problem, SOLVERS[solver])
    _assert_same_weights(a, b)
    assert b.n_iter_ == a.n_iter_ and b.t_ == a.t_
    assert b.loss_ == pytest.approx(a.loss_, rel=1e-12)
    for attr in ("loss_curve_", "validation_scores_"):
        if getattr(a, attr, None) is not None:
            np.testing.assert_allclose(getattr(b, attr), getattr(a, attr), rtol=1e-12)
    for attr in ("best_loss_", "best_validation_score_"):
        if getattr(a, attr, None) is not None:
            assert getattr(b, attr) == pytest.approx(getattr(a, attr), rel=1e-12)
    for attr in ("n_layers_", "n_outputs_", "out_activation_", "n_features_in_"):
        assert getattr(b, attr) == getattr(a, attr)
    if hasattr(a, "predict_proba"):
        np.testing.assert_array_equal(b.predict(X), a.predict(X))
        np.testing.assert_array_equal(b.classes_, a.classes_)
        np.testing.assert_allclose(b.predict_proba(X), a.predict_proba(X), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(b.predict_log_proba(X), a.predict_log_proba(X), rtol=1e-10, atol=1e-12)
    else:
        want = a.predict(X)
        np.testing.assert_allclose(b.predict(X), want, rtol=0, atol=WEIGHT_RTOL * np.abs(want).max())
    assert b.score(X, y) == pytest.approx(a.score(X, y), rel=1e-12)


def test_lbfgs_multi_output_regression_objective_is_consistent():
    """fastbp's L-BFGS objective is half the squared error summed over the outputs (+ penalty), the
    function whose gradient it returns: its finite differences match the gradient."""
    _, X, y = PROBLEMS["regression-2-outputs"]
    est = MLPRegressor(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=3, random_state=0, alpha=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X[:40], y[:40])
    model = est._model
    x = np.ascontiguousarray(X[:40])
    t = est._fastbp_targets(y[:40], model.dtype)
    theta = model.params.copy()

    def f(p):
        model.params[...] = p
        return sum(model._loss_and_gradient(x, t))

    f(theta)
    grad = model.grads.copy()
    h = 1e-6
    for i in (0, 7, len(theta) - 1):
        e = np.zeros_like(theta)
        e[i] = h
        numeric = (f(theta + e) - f(theta - e)) / (2 * h)
        assert numeric == pytest.approx(grad[i], rel=1e-6, abs=1e-9)
    model.params[...] = theta
    diff = est.predict(x) - y[:40]
    loss, penalty = model._loss_and_gradient(x, t)
    assert loss == pytest.approx(0.5 * (diff ** 2).sum() / 40, rel=1e-10)


def test_stopping_rules_and_adaptive_rate_as_sklearns():
    """tol / n_iter_no_change stop at the same epoch; 'adaptive' divides the rate by 5 at the same
    epochs (compared through the rate each optimizer ends with)."""
    a, b, *_ = _fit_both("multiclass", dict(solver="adam", tol=0.05, n_iter_no_change=2), max_iter=200)
    assert a.n_iter_ < 200 and b.n_iter_ == a.n_iter_
    _assert_same_weights(a, b)
    a, b, *_ = _fit_both("multiclass", dict(solver="sgd", momentum=0.0, learning_rate="adaptive", tol=0.02,
                                            n_iter_no_change=2, learning_rate_init=0.2), max_iter=60)
    assert b.n_iter_ == a.n_iter_
    assert a._optimizer.learning_rate < 0.2 and b._optimizer.learning_rate == pytest.approx(a._optimizer.learning_rate)
    _assert_same_weights(a, b)


def test_partial_fit_and_warm_start_as_sklearns():
    _, X, y = PROBLEMS["multiclass"]
    kw = dict(hidden_layer_sizes=(8,), random_state=0, batch_size=50, solver="sgd", learning_rate_init=0.05)
    a, b = sk.MLPClassifier(**kw), MLPClassifier(**kw)
    for est in (a, b):
        est.partial_fit(X[:150], y[:150], classes=[0, 1, 2])
        est.partial_fit(X[150:], y[150:])
        est.partial_fit(X, y)
    _assert_same_weights(a, b)
    assert b.n_iter_ == a.n_iter_ == 1 and b.t_ == a.t_ == 600
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a, b = (cls(warm_start=True, max_iter=3, **kw) for cls in (sk.MLPClassifier, MLPClassifier))
        for est in (a, b):
            est.fit(X, y)
            est.fit(X, y)
    _assert_same_weights(a, b)
    with pytest.raises(ValueError, match="`y` has classes not in `self.classes_`"):
        MLPClassifier(**kw).partial_fit(X, y, classes=[0, 1, 2]).partial_fit(X, y + 5)
    with pytest.raises(ValueError, match="warm_start/partial_fit needs the network it trained"):
        est = MLPClassifier(warm_start=True, max_iter=1, **kw).fit(X, y)
        est.set_params(hidden_layer_sizes=(4,)).fit(X, y)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")  # as scikit-learn's: L-BFGS is not stochastic
    with pytest.raises(AttributeError, match="has no attribute 'partial_fit'"):
        MLPClassifier(solver="lbfgs").partial_fit(X, y, classes=[0, 1, 2])


def test_float32_trains_in_float32_on_the_compiled_loop():
    from fastbp._backend import selected_name

    _, X, y = PROBLEMS["multiclass"]
    est = MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=0).fit(X.astype(np.float32), y)
    assert all(c.dtype == np.float32 for c in est.coefs_ + est.intercepts_)
    assert est.predict_proba(X.astype(np.float32)).dtype == np.float32
    assert est._model._use_compiled() == (selected_name(None) == "numba")
    ref = MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=0).fit(X, y)
    assert abs(est.score(X, y) - ref.score(X, y)) <= 0.02  # float32 rounding only: the same model within 6/300


def test_sparse_input_gives_the_dense_results():
    _, X, y = PROBLEMS["multiclass"]
    X = np.where(np.abs(X) > 1, X, 0.0)
    kw = dict(hidden_layer_sizes=(8,), random_state=0, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = MLPClassifier(**kw).fit(X, y)
        for fmt in (scipy.sparse.csr_matrix, scipy.sparse.csc_array, scipy.sparse.coo_matrix):
            est = MLPClassifier(**kw).fit(fmt(X), y)
            _assert_same_weights(dense, est)
            np.testing.assert_array_equal(est.predict_proba(fmt(X)), dense.predict_proba(X))


def test_weights_are_views_and_survive_pickling_and_edits():
    _, X, y = PROBLEMS["regression"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(hidden_layer_sizes=(6,), max_iter=5, random_state=0).fit(X, y)
    assert all(np.shares_memory(c, est._model.params) for c in est.coefs_)
    copy = pickle.loads(pickle.dumps(est))
    assert all(np.shares_memory(c, copy._model.params) for c in copy.coefs_)
    np.testing.assert_array_equal(copy.predict(X), est.predict(X))
    est.coefs_[1] = np.zeros_like(est.coefs_[1])  # a new array: predict uses it
    np.testing.assert_allclose(est.predict(X), np.full(len(X), est.intercepts_[1][0]))
    est.intercepts_[1][...] = 2.5  # an edit in place
    np.testing.assert_array_equal(est.predict(X), np.full(len(X), 2.5))


def test_parameters_and_errors_name_the_argument():
    from sklearn.utils._param_validation import InvalidParameterError

    _, X, y = PROBLEMS["multiclass"]
    with pytest.raises(InvalidParameterError, match="The 'solver' parameter of MLPClassifier must be"):
        MLPClassifier(solver="newton").fit(X, y)
    with pytest.raises(InvalidParameterError, match="The 'loss' parameter of MLPRegressor must be"):
        MLPRegressor(loss="poisson").fit(X, y.astype(float))
    with pytest.raises(ValueError, match=r"hidden_layer_sizes must be > 0, got \[4, 0\]"):
        MLPClassifier(hidden_layer_sizes=(4, 0)).fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="The validation set is too small"):
        MLPClassifier(early_stopping=True, validation_fraction=0.001).fit(X[:40], y[:40])
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
        MLPRegressor(solver="sgd", learning_rate_init=1.0, max_iter=5, random_state=0).fit(X * 1e6, y * 1e6)
    defaults = sk.MLPClassifier().get_params()
    assert MLPClassifier().get_params() == dict(defaults, backend=None)
    assert MLPRegressor().get_params() == dict(sk.MLPRegressor().get_params(), backend=None)


@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_other_backends_train_the_same_model(backend):
    """Off numba the Python loop runs the same steps: the same model to float64 rounding."""
    from helpers import cpu_backends

    if backend not in cpu_backends():
        pytest.fail(f"the {backend} backend should be available here")
    a = _fit_both("binary", SOLVERS["adam"])[1]
    _, X, y = PROBLEMS["binary"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        b = MLPClassifier(hidden_layer_sizes=(9, 7), random_state=1, max_iter=8, alpha=1e-3, batch_size=32,
                          backend=backend, **SOLVERS["adam"]).fit(X, y)
    _assert_same_weights(a, b)


def test_pipeline_and_grid_search():
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, X, y = PROBLEMS["multiclass"]
    grid = {"mlpclassifier__hidden_layer_sizes": [(16,), (32,)], "mlpclassifier__alpha": [1e-4, 1e-2]}
    searches = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for cls in (sk.MLPClassifier, MLPClassifier):  # the same models, so the same search
            pipe = make_pipeline(StandardScaler(), cls(max_iter=30, random_state=0))
            searches.append(GridSearchCV(pipe, grid, cv=3).fit(X, y))
    want, got = searches
    assert got.best_params_ == want.best_params_
    np.testing.assert_allclose(got.cv_results_["mean_test_score"], want.cv_results_["mean_test_score"], rtol=1e-12)
    assert got.score(X, y) == pytest.approx(want.score(X, y), rel=1e-12)


def test_version_and_import_errors_say_how_to_install():
    check_sklearn_version("1.6.0")
    check_sklearn_version("1.10.dev0")
    with pytest.raises(ImportError, match=r"needs scikit-learn >= 1.6; this is 1.5.2: pip install -U"):
        check_sklearn_version("1.5.2")
    code = "import sys; sys.modules['sklearn'] = None\ntry:\n import fastbp.sklearn\nexcept ImportError as e:\n print(e)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "fastbp.sklearn needs scikit-learn >= 1.6: pip install 'fastbp[sklearn]'" in done.stdout, done.stderr


def test_verbose_prints_scikit_learns_lines(capsys):
    _, X, y = PROBLEMS["multiclass"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, verbose=True, random_state=0).fit(X, y)
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, verbose=True, solver="lbfgs", random_state=0).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Iteration 1, loss = ") and lines[1].startswith("Iteration 2, loss = ")
    assert lines[2].startswith("Iteration 1, loss = ")


def test_replaced_weights_of_the_wrong_shape_or_number_are_refused():
    _, X, y = PROBLEMS["regression"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(hidden_layer_sizes=(6,), max_iter=2, random_state=0).fit(X, y)
    est.coefs_[0] = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"coefs_/intercepts_ must keep their shapes: expected \(12, 6\); got \(3, 3\)"):
        est.predict(X)
    est.coefs_ = est.coefs_[:1]
    with pytest.raises(ValueError, match="coefs_ and intercepts_ must hold 2 arrays each"):
        est.predict(X)
