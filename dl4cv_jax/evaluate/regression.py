"""Regression metrics over arrays of targets and predictions (one value per example, or several outputs per
example, averaged uniformly over outputs as scikit-learn's default does), checked against scikit-learn's
`mean_squared_error`, `mean_absolute_error`, `r2_score` and `max_error` (tests/evaluate/test_regression_metrics.py).
"""

from typing import Any

import numpy as np


def regression_metrics(target: Any, prediction: Any) -> dict[str, float]:
    """MSE, RMSE, MAE, the median absolute error, the largest absolute error and R² (coefficient of determination).

    R² follows scikit-learn: 1 - SS_res / SS_tot per output; a constant target gives 1.0 when predicted exactly and
    0.0 otherwise (SS_tot = 0 has no finite ratio). Inputs are [N] or [N, outputs]; the shapes must be equal.
    """
    y = np.asarray(target, np.float64)
    p = np.asarray(prediction, np.float64)
    if y.shape != p.shape:
        raise ValueError(f"targets {y.shape} and predictions {p.shape} differ in shape")
    if y.ndim == 1:
        y, p = y[:, None], p[:, None]
    error = p - y
    ss_res = (error**2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
    mse = float((error**2).mean(0).mean())
    return {
        "mse": mse,
        "rmse": float(np.sqrt((error**2).mean(0)).mean()),
        "mae": float(np.abs(error).mean(0).mean()),
        "median_absolute_error": float(np.median(np.abs(error), axis=0).mean()),
        "max_error": float(np.abs(error).max()) if error.size else float("nan"),
        "r2": float(r2.mean()),
        "num_examples": int(y.shape[0]),
    }
