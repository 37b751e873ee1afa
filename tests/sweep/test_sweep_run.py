"""A whole sweep through `python main.py --mode=sweep`: 2 settings x 2 seeds of tiny digits plus a setting that
fails; then a re-run that skips finished trials, resumes an interrupted one and retries the failed ones."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dl4cv_jax.sweep.aggregate import aggregate
from tests.conftest import REPO

SWEEP = """
from dl4cv_jax.sweep import Sweep, zipped

def get_sweep():
    good = zipped({"optimizer.name": ["nesterov", "adam"], "optimizer.learning_rate": [0.05, 3e-3]})
    bad = [{"optimizer.name": "adam", "optimizer.learning_rate": "fast"}]  # not a float: fails at once
    return Sweep(
        config="configs/digits_cnn.py",
        settings=good + bad,
        seeds=(0, 1),
        fixed={"num_epochs": 1, "model.width": 8, "batch_size": 64, "schedule.warmup_epochs": 0.0},
    )
"""
GOOD = ["optimizer.name=nesterov,optimizer.learning_rate=0.05", "optimizer.name=adam,optimizer.learning_rate=0.003"]
BAD = "optimizer.name=adam,optimizer.learning_rate=fast"


def _run_sweep(sweep_file, sweep_dir):
    args = [sys.executable, "main.py", "--mode=sweep", f"--sweep={sweep_file}", f"--workdir={sweep_dir}", "--workers=2"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    sweep_file = root / "tiny_sweep.py"
    sweep_file.write_text(SWEEP)
    result = _run_sweep(sweep_file, root / "out")
    return sweep_file, root / "out", result


def _status(trial_dir):
    return json.loads((trial_dir / "trial_status.json").read_text())


def test_every_trial_runs_in_its_own_workdir_and_a_failure_is_recorded(sweep_run):
    _, out, result = sweep_run
    assert result.returncode == 1, result.stderr[-3000:]  # some trials failed: the sweep says so
    assert "2 of 6 trials did not finish" in result.stderr
    for setting in GOOD:
        for seed in (0, 1):
            trial = out / f"{setting},seed={seed}"
            assert (trial / "test_metrics.json").exists(), (trial / "train.log").read_text()[-2000:]
            config = json.loads((trial / "config.json").read_text())
            assert (config["seed"], config["num_epochs"], config["model"]["width"]) == (seed, 1, 8)
            assert _status(trial)["status"] == "done"
    failed = _status(out / f"{BAD},seed=0")
    assert failed["status"] == "failed" and failed["returncode"] != 0
    assert failed["error"].startswith("error: --config.optimizer.learning_rate=fast: could not convert")
    assert json.loads((out / "sweep.json").read_text())["trials"][0] == f"{GOOD[0]},seed=0"


def test_aggregation_matches_numpy_over_the_trials_test_metrics(sweep_run):
    _, out, _ = sweep_run
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 6
    assert {r["status"] for r in rows if r["setting"] == BAD} == {"failed"}
    summary = {entry["setting"]: entry for entry in aggregate(out)}
    table = (out / "results.md").read_text()
    for setting in GOOD:
        tests = [json.loads((out / f"{setting},seed={s}" / "test_metrics.json").read_text()) for s in (0, 1)]
        accuracy = np.asarray([t["accuracy"] for t in tests])
        loss = np.asarray([t["loss"] for t in tests])
        entry = summary[setting]
        assert entry["seeds_done"] == 2
        assert entry["test_accuracy_mean"] == pytest.approx(accuracy.mean(), abs=1e-12)
        assert entry["test_accuracy_std"] == pytest.approx(accuracy.std(ddof=1), abs=1e-12)
        assert entry["test_loss_mean"] == pytest.approx(loss.mean(), abs=1e-12)
        assert f"{accuracy.mean() * 100:.2f} ± {accuracy.std(ddof=1) * 100:.2f}" in table
    assert summary[BAD]["seeds_done"] == 0 and "learning_rate=fast: could not convert" in table
    assert (out / "results.png").stat().st_size > 10_000


def test_rerun_skips_finished_resumes_interrupted_and_retries_failed(sweep_run):
    sweep_file, out, _ = sweep_run
    finished = [out / f"{GOOD[0]},seed={s}" for s in (0, 1)] + [out / f"{GOOD[1]},seed=0"]
    mtimes = {d: (d / "test_metrics.json").stat().st_mtime_ns for d in finished}
    # Simulate a sweep killed while this trial was being tested: status left "running", no test metrics yet.
    interrupted = out / f"{GOOD[1]},seed=1"
    (interrupted / "test_metrics.json").unlink()
    status = _status(interrupted)
    (interrupted / "trial_status.json").write_text(json.dumps({**status, "status": "running"}))
    rows_before = (interrupted / "history.csv").read_text()

    result = _run_sweep(sweep_file, out)
    assert result.returncode == 1, result.stderr[-3000:]
    assert {d: (d / "test_metrics.json").stat().st_mtime_ns for d in finished} == mtimes
    assert all(_status(d)["attempts"] == 1 for d in finished)
    assert _status(interrupted)["status"] == "done" and _status(interrupted)["attempts"] == 2
    assert (interrupted / "history.csv").read_text() == rows_before  # resumed after its last epoch, not retrained
    assert "resuming from" in (interrupted / "train.log").read_text()
    assert _status(out / f"{BAD},seed=1")["attempts"] == 2
