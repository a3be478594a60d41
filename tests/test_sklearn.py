"""fastbp.sklearn: scikit-learn's own estimator checks, and the same training as scikit-learn's MLP.

scikit-learn is a test dependency (the ``test`` extra): these tests run wherever the suite runs.
"""
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is in the test extra; install it")
from sklearn.datasets import make_classification, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


# scikit-learn checks its own MLPs with max_iter=100 (sklearn/utils/_test_common/instance_generator.py)
@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
