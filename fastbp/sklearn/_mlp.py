"""MLPClassifier and MLPRegressor: scikit-learn's parameters and methods, fastbp's training."""
from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import column_or_1d
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import BaseMLP

_PARAMETERS = """
    Parameters are scikit-learn's ``sklearn.neural_network`` ones, with its defaults; ``backend``
    picks fastbp's kernels (None: the usual selection, see :func:`fastbp.use_backend`). Fitted
    attributes are scikit-learn's; ``coefs_`` and ``intercepts_`` are views into the network's flat
    parameter buffer (assigning new arrays works too). See :mod:`fastbp.sklearn._base` for where
    the arithmetic departs from scikit-learn's.
"""


def _store_parameters(estimator, arguments):
    """Every __init__ argument as an attribute of the same name, unchanged (scikit-learn's rule:
    __init__ stores its parameters and does nothing else)."""
    for name, value in arguments.items():
        if name != "self":
            setattr(estimator, name, value)


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = """Multi-layer perceptron classifier minimizing the log-loss with L-BFGS, SGD or Adam:
    softmax cross-entropy for several classes, a logistic output per column for two classes and for
    multi-label targets.
""" + _PARAMETERS

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, backend=None):
        _store_parameters(self, locals())

    _score_function = staticmethod(accuracy_score)

    def _is_classifier(self):
        return True

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                                     f"call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(bool)

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _fastbp_loss(self):
        if self.out_activation_ == "softmax":
            return "sparse_categorical_crossentropy", None
        return "binary_crossentropy", float(self.n_outputs_)  # summed over the columns, as scikit-learn's

    def _fastbp_targets(self, Y, dtype):
        if self.out_activation_ == "softmax":
            return np.ascontiguousarray(Y.argmax(axis=1), dtype=np.intp)
        return np.ascontiguousarray(Y, dtype=dtype)

    def _validation_targets(self, Y_val):
        return self._label_binarizer.inverse_transform(Y_val)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y); ``classes`` (all the labels) is required on the first call."""
        self._validate_params()
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, incremental=True)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def predict_proba(self, X):
        """Probability of each class, shape (n_samples, n_classes) (per label for multi-label)."""
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X):
        """log of predict_proba."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    __doc__ = """Multi-layer perceptron regressor minimizing half the squared error with L-BFGS, SGD or
    Adam (an identity output). ``loss`` is 'squared_error' only (scikit-learn's 'poisson' needs an
    exponential output fastbp does not have).
""" + _PARAMETERS

    _parameter_constraints: dict = {**BaseMLP._parameter_constraints, "loss": [StrOptions({"squared_error"})]}
    _score_function = staticmethod(r2_score)

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, backend=None):
        _store_parameters(self, locals())

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _out_activation(self):
        return "identity"

    def _fastbp_loss(self):
        # fastbp's mean over all elements x columns / 2 = half the squared error summed over the
        # outputs, averaged over the rows: gradient (f(X) - y) / rows, scikit-learn's
        return "mean_squared_error", self.n_outputs_ / 2.0

    def _fastbp_targets(self, Y, dtype):
        return np.ascontiguousarray(Y.reshape(len(Y), -1), dtype=dtype)

    def _reported_loss(self, loss, penalty):
        # scikit-learn's loss_: 0.5 mean over rows and outputs (the trained loss / outputs)
        return loss / self.n_outputs_ + penalty

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y):
        """One epoch over (X, y)."""
        self._validate_params()
        return self._fit(X, y, incremental=True)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred
