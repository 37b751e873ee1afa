"""Aggregation on hand-made trial directories: per-setting statistics, the markdown table, unfinished trials."""

import datetime
import json
import os

import numpy as np
import pytest

from dl4cv_jax.sweep.aggregate import aggregate, write_trial_file
from dl4cv_jax.train.callbacks import HISTORY_FIELDS


def _trial(root, setting, seed, accuracy=None, status=None, val=(0.5, 0.6)):
    name = f"model.norm={setting},seed={seed}"
    path = root / name
    path.mkdir()
    write_trial_file(path, name, f"model.norm={setting}", seed, {"model.norm": setting})
    rows = [",".join(HISTORY_FIELDS)]
    rows += [f"{e + 1},{e + 1},1.0,0.5,{1 - v},{v},0.1,2.0,100" for e, v in enumerate(val)]
    (path / "history.csv").write_text("\n".join(rows) + "\n")
    if accuracy is not None:
        (path / "test_metrics.json").write_text(json.dumps({"accuracy": accuracy, "loss": 1 - accuracy}))
    (path / "trial_status.json").write_text(json.dumps(status or {"status": "done", "wall_seconds": 10.0 + seed}))
    return path


def test_statistics_table_and_unfinished_trials(tmp_path):
    for seed, accuracy in enumerate([0.5, 0.6, 0.7]):
        _trial(tmp_path, "batch", seed, accuracy)
    _trial(tmp_path, "none", 0, 0.4)
    _trial(tmp_path, "none", 1, status={"status": "failed", "error": "error: boom", "wall_seconds": 1.0})
    summary = {entry["setting"]: entry for entry in aggregate(tmp_path)}

    batch = summary["model.norm=batch"]
    assert batch["seeds_done"] == 3
    assert batch["test_accuracy_mean"] == pytest.approx(0.6)
    assert batch["test_accuracy_std"] == pytest.approx(np.std([0.5, 0.6, 0.7], ddof=1))
    assert batch["best_val_accuracy_mean"] == pytest.approx(0.6) and batch["wall_seconds_mean"] == pytest.approx(11)
    table = (tmp_path / "results.md").read_text()
    assert "| batch | 3/3 | 60.00 ± 10.00 | 0.4000 ± 0.1000 |" in table
    assert "| none | 1/2 | 40.00 | 0.6000 |" in table  # one finished seed: no spread shown
    assert "- `model.norm=none,seed=1`: failed — error: boom" in table
    csv_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("trial,setting,model.norm,seed,status,test_accuracy") and len(csv_lines) == 6


def test_a_trial_that_finished_after_its_sweep_was_killed(tmp_path):
    # Its status still says "running"; its last attempt ran from `started` until test_metrics.json was written.
    started = datetime.datetime(2026, 11, 22, 10, 0, tzinfo=datetime.timezone.utc)
    status = {"status": "running", "wall_seconds": 5.0, "started": started.isoformat()}
    path = _trial(tmp_path, "batch", 0, 0.5, status=status)
    finished = started.timestamp() + 30
    os.utime(path / "test_metrics.json", (finished, finished))
    (entry,) = aggregate(tmp_path)
    assert entry["seeds_done"] == 1 and entry["wall_seconds_mean"] == pytest.approx(35.0)
