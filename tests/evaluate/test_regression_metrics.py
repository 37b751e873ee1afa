"""Regression metrics (dl4cv_jax/evaluate/regression.py) against scikit-learn."""

import numpy as np
import pytest
from sklearn import metrics

from dl4cv_jax.evaluate.regression import regression_metrics


@pytest.mark.parametrize("outputs", [1, 3])
def test_equal_to_scikit_learn(outputs):
    rng = np.random.default_rng(outputs)
    target = rng.normal(size=(40, outputs)).squeeze()
    prediction = target + rng.normal(0, 0.3, size=target.shape)
    ours = regression_metrics(target, prediction)
    assert ours["mse"] == pytest.approx(metrics.mean_squared_error(target, prediction), abs=1e-12)
    assert ours["rmse"] == pytest.approx(metrics.root_mean_squared_error(target, prediction), abs=1e-12)
    assert ours["mae"] == pytest.approx(metrics.mean_absolute_error(target, prediction), abs=1e-12)
    assert ours["r2"] == pytest.approx(metrics.r2_score(target, prediction), abs=1e-12)
    assert ours["median_absolute_error"] == pytest.approx(metrics.median_absolute_error(target, prediction), abs=1e-12)
    if outputs == 1:
        assert ours["max_error"] == pytest.approx(metrics.max_error(target, prediction), abs=1e-12)


def test_constant_target_r2_as_scikit_learn():
    assert regression_metrics([2.0, 2.0], [2.0, 2.0])["r2"] == metrics.r2_score([2.0, 2.0], [2.0, 2.0]) == 1.0
    assert regression_metrics([2.0, 2.0], [1.0, 2.0])["r2"] == metrics.r2_score([2.0, 2.0], [1.0, 2.0]) == 0.0
