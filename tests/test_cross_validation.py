"""k-fold cross-validation: one run per fold in workdir/fold_K, and a summary with mean ± std."""

import json

import numpy as np
import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.cross_validation import METRICS, results_table, run_cross_validation, summarize
from tests.conftest import tiny_digits_config


def test_two_folds_train_and_summarise(tmp_path):
    config = tiny_digits_config(num_epochs=1, cv__folds=2)
    payload = run_cross_validation(config, tmp_path, show_progress=False)
    assert [fold["fold"] for fold in payload["folds"]] == [0, 1]
    for k in range(2):
        run = tmp_path / f"fold_{k}"
        assert (run / "test_metrics.json").exists() and (run / "history.csv").exists()
        assert json.loads((run / "config.json").read_text())["cv"]["fold"] == k
    saved = json.loads((tmp_path / "cv_results.json").read_text())
    assert saved == json.loads(json.dumps(payload)) and saved["monitor"] == "val_accuracy"
    accuracies = [fold["val_accuracy"] for fold in payload["folds"]]
    assert payload["mean"]["val_accuracy"] == pytest.approx(np.mean(accuracies))
    assert payload["std"]["val_accuracy"] == pytest.approx(np.std(accuracies, ddof=1))
    for fold in payload["folds"]:
        test = json.loads((tmp_path / f"fold_{fold['fold']}" / "test_metrics.json").read_text())
        assert fold["test_accuracy"] == test["accuracy"] and fold["best_epoch"] == 1
    table = (tmp_path / "cv_results.md").read_text()
    assert "| mean ± std |" in table and table.count("\n| ") == 1 + 2 + 1  # header, folds, summary


def test_summary_and_table_on_known_numbers():
    folds = [
        {"fold": k, "best_epoch": e, "val_loss": v, "val_accuracy": 1 - v, "test_loss": v, "test_accuracy": 1 - v}
        for k, (e, v) in enumerate([(3, 0.2), (5, 0.4)])
    ]
    summary = summarize(folds)
    assert summary["mean"]["val_loss"] == pytest.approx(0.3)
    assert summary["std"]["val_loss"] == pytest.approx(np.sqrt(0.02))  # ddof=1
    assert summary["mean"]["best_epoch"] == 4
    table = results_table(folds, summary)
    assert table.splitlines()[0] == "| fold | " + " | ".join(METRICS) + " |"
    assert "| 1 | 5 | 0.4000 | 0.6000 |" in table and "0.3000 ± 0.1414" in table


def test_needs_at_least_two_folds(tmp_path):
    with pytest.raises(ConfigError, match=r"config\.cv\.folds=1 must be >= 2"):
        run_cross_validation(tiny_digits_config(cv__folds=1), tmp_path, show_progress=False)
