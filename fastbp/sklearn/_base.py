"""What MLPClassifier and MLPRegressor share: parameters, the network and its training.

The procedure is scikit-learn's (``sklearn/neural_network/_multilayer_perceptron.py``), step for
step, so that its users see the same behaviour; the arithmetic is fastbp's. The network is a
:class:`fastbp.nn.Sequential` of Dense layers whose weights live in one flat buffer;
``coefs_`` and ``intercepts_`` are views into it. For a batch of ``b`` rows the objective is
scikit-learn's

    loss(y, f(X)) + alpha / (2 b) * sum_l ||W_l||^2

(the penalty through :class:`fastbp.nn.regularizers.PerSampleL2`), with the loss summed over the
output columns and averaged over the rows: softmax cross-entropy (multiclass), binary
cross-entropy of a sigmoid output per column (binary, multi-label; ``loss_weights`` = number of
columns turns fastbp's mean over all elements into that sum) and half the squared error
(regression; ``loss_weights`` = columns / 2). The gradient is therefore scikit-learn's:
``(f(X) - y) / b`` at the output's logits and ``alpha W / b`` for each kernel.

Adam places eps as scikit-learn does (added to sqrt(v) before the bias correction:
``nn.Adam(uncorrected_epsilon=True)``). Departures, each documented where it is made: SGD's velocity holds gradients, not steps, so a learning rate
that changes mid-training ('invscaling', 'adaptive') scales the whole velocity at once; sparse
input is densified. (The regressor trains on half the squared error summed over its outputs, as
scikit-learn's gradient does, and reports loss_ as scikit-learn does, with the mean over the
outputs; its L-BFGS is given the objective that matches the gradient.)
"""
from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, shuffle
from sklearn.utils.validation import check_is_fitted
from sklearn.utils._param_validation import Interval, Options, StrOptions

from .. import nn

#: scikit-learn's activation names -> fastbp's
ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu", "softmax": "softmax"}
STOCHASTIC_SOLVERS = ("sgd", "adam")
#: rows per forward pass in predict (bounded memory for any number of samples)
PREDICT_ROWS = 4096


class BaseMLP(BaseEstimator):
    """The shared part; subclasses define the output layer, the loss and the target encoding."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "backend": [None, str],
    }

    # ------------------------------------------------------------------ subclass interface

    def _validate_input(self, X, y, incremental, reset):
        """(X, Y): X validated, Y 2-D as scikit-learn trains on it (one-hot bool / float)."""
        raise NotImplementedError

    def _out_activation(self) -> str:
        raise NotImplementedError

    def _fastbp_loss(self):
        """(loss for nn.compile, loss_weights)."""
        raise NotImplementedError

    def _fastbp_targets(self, Y, dtype):
        """Y as the fastbp model trains on it."""
        raise NotImplementedError

    #: score used for early stopping's validation (accuracy_score / r2_score, as scikit-learn's)
    _score_function = None

    def _score(self, X, y):
        """The validation score of (X, y), NaN when the network's outputs are not finite."""
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return self._score_function(y, y_pred)

    def fit(self, X, y):
        """Fit the model to data matrix X and target(s) y (class labels or a label-indicator
        matrix for the classifier, values for the regressor). Returns self."""
        self._validate_params()
        return self._fit(X, y, incremental=False)

    def predict(self, X):
        """The predicted classes (label-indicator rows for multi-label) or values, shape
        (n_samples,) or (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        raise NotImplementedError

    # ------------------------------------------------------------------------- the network

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if np.any(np.array(sizes) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(s) for s in sizes]

    def _build(self, layer_units, dtype):
        """The fastbp network with scikit-learn's Glorot-uniform initialization of every weight
        (bound sqrt(6 / (fan_in + fan_out)), sqrt(2 / ...) for logistic), drawn in its order."""
        regularizer = nn.regularizers.PerSampleL2(self.alpha) if self.alpha > 0 else None
        hidden = ACTIVATIONS[self.activation]
        layers = [nn.Dense(units, activation=hidden if i < len(layer_units) - 2 else
                           ACTIVATIONS[self.out_activation_], kernel_regularizer=regularizer)
                  for i, units in enumerate(layer_units[1:])]
        model = nn.Sequential(layers, backend=self.backend, dtype=dtype)
        model.build(layer_units[0])
        factor = 2.0 if self.activation == "logistic" else 6.0
        for layer, fan_in, fan_out in zip(model.layers, layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            layer.kernel[...] = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            layer.bias[...] = self._random_state.uniform(-bound, bound, fan_out)
        self._model = model
        self._layer_units = list(layer_units)
        self.coefs_ = [layer.kernel for layer in model.layers]
        self.intercepts_ = [layer.bias for layer in model.layers]

    def _sync_weights(self):
        """Make the network compute with ``coefs_`` / ``intercepts_`` as they are now (a user may
        have replaced or edited them; after unpickling they are copies)."""
        model = self._model
        if len(self.coefs_) != len(model.layers) or len(self.intercepts_) != len(model.layers):
            raise ValueError(f"coefs_ and intercepts_ must hold {len(model.layers)} arrays each (one per layer); "
                             f"got {len(self.coefs_)} and {len(self.intercepts_)}")
        replaced = False
        for layer, coef, intercept in zip(model.layers, self.coefs_, self.intercepts_):
            for mine, given in ((layer.kernel, coef), (layer.bias, intercept)):
                if given is not mine:
                    given = np.asarray(given)
                    if given.shape != mine.shape:
                        raise ValueError(f"coefs_/intercepts_ must keep their shapes: expected {mine.shape}; "
                                         f"got {given.shape}")
                    mine[...] = given
                    replaced = True
        if replaced:  # from now on the views again
            self.coefs_ = [layer.kernel for layer in model.layers]
            self.intercepts_ = [layer.bias for layer in model.layers]

    def __setstate__(self, state):
        super().__setstate__(state)
        if "_model" in self.__dict__:  # point coefs_/intercepts_ at the unpickled buffer again
            self._sync_weights()

    def _initialize(self, Y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation()
        self._build(layer_units, dtype)
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]
        if hasattr(self, "_optimizer"):
            del self._optimizer
        if self.solver in STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _compile(self, optimizer):
        loss, weight = self._fastbp_loss()
        self._model.compile(optimizer=optimizer, loss=loss, loss_weights=weight)

    # --------------------------------------------------------------------------- fitting

    def _fit(self, X, y, incremental=False):
        hidden = self._hidden_sizes()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        X = _dense(X)
        n_samples, n_features = X.shape
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        layer_units = [n_features] + hidden + [Y.shape[1]]
        if not first_pass and layer_units != self._layer_units:
            raise ValueError(f"{type(self).__name__}: warm_start/partial_fit needs the network it trained "
                             f"(layer sizes {self._layer_units}); got layer sizes {layer_units} "
                             "(hidden_layer_sizes or the number of outputs changed)")
        self.n_outputs_ = Y.shape[1]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(Y, layer_units, X.dtype)
        else:
            self._sync_weights()
            X = X.astype(self._model.dtype, copy=False)
        if self.solver in STOCHASTIC_SOLVERS:
            self._fit_stochastic(X, Y, incremental)
        else:
            self._fit_lbfgs(X, Y)
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may contain large "
                             "values and need to be preprocessed.")
        return self

    def _new_optimizer(self):
        if self.solver == "sgd":
            return nn.SGD(learning_rate=self.learning_rate_init, momentum=self.momentum,
                          nesterov=self.nesterovs_momentum and self.momentum > 0)
        return nn.Adam(learning_rate=self.learning_rate_init, beta_1=self.beta_1, beta_2=self.beta_2,
                       epsilon=self.epsilon, uncorrected_epsilon=True)  # scikit-learn's placement of eps

    def _fit_stochastic(self, X, Y, incremental):
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._new_optimizer()
            self._compile(self._optimizer)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            stratify = Y if self._is_classifier() and self.n_outputs_ == 1 else None
            X_train, X_val, Y_train, Y_val = train_test_split(X, Y, random_state=self._random_state,
                                                              test_size=self.validation_fraction, stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of "
                                 "your dataset.")
            y_val = self._validation_targets(Y_val)
        else:
            X_train, Y_train, X_val, y_val = X, Y, None, None
        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        model = self._model
        x_train = np.ascontiguousarray(X_train, dtype=model.dtype)
        run_epoch = model._epoch_runner(x_train, self._fastbp_targets(Y_train, model.dtype), batch_size)
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    sample_idx = shuffle(sample_idx, random_state=self._random_state)
                total_loss, _, penalties = run_epoch(sample_idx)
                self.n_iter_ += 1
                self.loss_ = self._reported_loss((total_loss - penalties) / n_samples, penalties / n_samples)
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                self._update_no_improvement_count(early_stopping, X_val, y_val)
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    self._optimizer.learning_rate = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d consecutive epochs."
                               % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d consecutive epochs."
                               % (self.tol, self.n_iter_no_change))
                    if self._trigger_stopping(msg):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the optimization "
                                  "hasn't converged yet." % self.max_iter, ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if early_stopping:  # the best weights seen
            for mine, best in zip(self.coefs_ + self.intercepts_, self._best_coefs + self._best_intercepts):
                mine[...] = best

    def _trigger_stopping(self, msg) -> bool:
        """scikit-learn's rule: stop, except that 'adaptive' SGD first divides its rate by 5
        until it is at most 1e-6."""
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if self._optimizer.learning_rate <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._optimizer.learning_rate /= 5.0
        if self.verbose:
            print(msg + " Setting learning rate to %f" % self._optimizer.learning_rate)
        return False

    def _update_no_improvement_count(self, early_stopping, X_val, y_val):
        if early_stopping:
            score = self._score(X_val, y_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [i.copy() for i in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _fit_lbfgs(self, X, Y):
        """L-BFGS-B (SciPy) over the flat parameter buffer, with fastbp's full-batch loss and
        gradient; options as scikit-learn sets them (maxfun, maxiter, gtol = tol)."""
        model = self._model
        self._compile(nn.SGD())  # (the loss is what matters; L-BFGS takes the steps)
        x = np.ascontiguousarray(X, dtype=model.dtype)
        targets = self._fastbp_targets(Y, model.dtype)

        def objective(theta):
            model.params[...] = theta
            loss, penalty = model._loss_and_gradient(x, targets)
            return loss + penalty, model.grads.astype(np.float64)

        callback = None
        if self.verbose:
            iterations = []

            def callback(intermediate_result):
                iterations.append(intermediate_result.fun)
                print("Iteration %d, loss = %.8f" % (len(iterations), intermediate_result.fun))
        result = scipy.optimize.minimize(objective, model.params.astype(np.float64), method="L-BFGS-B", jac=True,
                                         callback=callback,
                                         options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol})
        if result.status != 0:
            message = result.message.decode("latin1") if isinstance(result.message, bytes) else result.message
            warnings.warn(f"lbfgs failed to converge after {result.nit} iteration(s) (status={result.status}):\n"
                          f"{message}\n\nIncrease the number of iterations to improve the convergence "
                          f"(max_iter={self.max_iter}).\nYou might also want to scale the data as shown in:\n"
                          "    https://scikit-learn.org/stable/modules/preprocessing.html", ConvergenceWarning)
        self.n_iter_ = min(result.nit, self.max_iter)
        model.params[...] = result.x
        loss, penalty = model._loss_and_gradient(x, targets)
        self.loss_ = self._reported_loss(loss, penalty)
        model._plans = {}  # the full-batch buffers are not kept

    def _is_classifier(self):
        return False

    def _reported_loss(self, loss, penalty):
        """loss_ as scikit-learn reports it, from the trained objective's (loss, penalty)."""
        return loss + penalty

    def _validation_targets(self, Y_val):
        return Y_val

    # -------------------------------------------------------------------------- predicting

    def _forward_pass_fast(self, X, check_input=True):
        """The network's outputs (probabilities for a softmax or logistic output)."""
        if check_input:
            from sklearn.utils.validation import validate_data

            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        self._sync_weights()
        return self._model.predict(_dense(X), batch_size=PREDICT_ROWS)

    def _check_solver(self):
        if self.solver not in STOCHASTIC_SOLVERS:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is not "
                                 "stochastic.")
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _dense(X):
    """Sparse input densified (the kernels multiply dense matrices); dense input as it is, copied
    only when read-only (the compiled loop is specialized for writable arrays)."""
    if scipy.sparse.issparse(X):
        return X.toarray()
    if not X.flags.writeable:
        return np.array(X)
    return X
