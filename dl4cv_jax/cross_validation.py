"""k-fold cross-validation: one `train_and_evaluate` per fold into workdir/fold_K, then a summary.

`--config.cv.folds=K` (K >= 2) runs K trainings; run K uses fold K of the pooled train + val examples as its
validation split (`data.sources.select_fold`) and the same test split as a plain run. Each fold is an ordinary
run in its own workdir (checkpoints, history.csv, resume), so an interrupted cross-validation resumes fold by fold.
The summary, `cv_results.json` and `cv_results.md`, gives per fold the monitored metric at the best epoch and the
test metrics of that best checkpoint, then mean and sample standard deviation (ddof=1) over the folds.
"""

import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from dl4cv_jax import monitor
from dl4cv_jax.choices import require
from dl4cv_jax.train import callbacks as callbacks_lib
from dl4cv_jax.train import run_files
from dl4cv_jax.train.loop import train_and_evaluate

METRICS = ("best_epoch", "val_loss", "val_accuracy", "test_loss", "test_accuracy")


def fold_config(config: ml_collections.ConfigDict, fold: int) -> ml_collections.ConfigDict:
    """A copy of `config` whose validation split is fold `fold`."""
    config = ml_collections.ConfigDict(config.to_dict())
    config.cv.fold = fold
    return config


def fold_metrics(workdir: pathlib.Path, test: dict[str, Any], monitor_name: str) -> dict[str, float]:
    """The validation metrics of a finished fold's best epoch (from history.csv) and its test metrics."""
    higher = monitor.monitor_mode(monitor_name)
    rows = callbacks_lib.read_history(workdir / "history.csv")
    values = [float(row[monitor_name]) for row in rows]
    best = int(np.argmax(values) if higher else np.argmin(values))  # first best, as the checkpoint tracker keeps
    return {
        "best_epoch": int(rows[best]["epoch"]),
        "val_loss": float(rows[best]["val_loss"]),
        "val_accuracy": float(rows[best]["val_accuracy"]),
        "test_loss": float(test["loss"]),
        "test_accuracy": float(test["accuracy"]),
    }


def summarize(folds: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (ddof=1; 0 for one fold) of each metric over the folds."""
    summary = {"mean": {}, "std": {}}
    for key in METRICS:
        values = np.array([fold[key] for fold in folds], dtype=np.float64)
        summary["mean"][key] = float(values.mean())
        summary["std"][key] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return summary


def results_table(folds: Sequence[dict[str, float]], summary: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per fold, then mean ± std."""
    header = "| fold | " + " | ".join(METRICS) + " |"
    lines = [header, "|" + "---|" * (len(METRICS) + 1)]
    for fold in folds:
        cells = [str(fold["best_epoch"])] + [f"{fold[key]:.4f}" for key in METRICS[1:]]
        lines.append(f"| {fold['fold']} | " + " | ".join(cells) + " |")
    mean, std = summary["mean"], summary["std"]
    cells = [f"{mean[key]:.4f} ± {std[key]:.4f}" if key != "best_epoch" else f"{mean[key]:.1f}" for key in METRICS]
    lines.append("| mean ± std | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_cross_validation(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    callbacks: Sequence[callbacks_lib.Callback] = (),
    show_progress: bool = True,
) -> dict[str, Any]:
    """Trains one model per fold (config.cv.fold = -1: every fold; k: only fold k) and writes the summary.

    Returns the contents of cv_results.json: {'folds': [...], 'mean': {...}, 'std': {...}, 'monitor': ...}.
    """
    folds = config.cv.folds
    require(folds >= 2, "cv.folds", folds, "must be >= 2 for cross-validation")
    require(-1 <= config.cv.fold < folds, "cv.fold", config.cv.fold, f"must be in 0..{folds - 1}, or -1 for all")
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run_files.check_or_write_config(workdir, config, write=jax.process_index() == 0)  # one writer per job
    selected = range(folds) if config.cv.fold < 0 else [config.cv.fold]
    results = []
    for fold in selected:
        logging.info("cross-validation: fold %d of %d", fold + 1, folds)
        fold_dir = workdir / f"fold_{fold}"
        test = train_and_evaluate(fold_config(config, fold), fold_dir, callbacks, show_progress)
        results.append({"fold": fold, **fold_metrics(fold_dir, test, config.checkpoint.monitor)})
    summary = summarize(results)
    payload = {"monitor": config.checkpoint.monitor, "folds": results, **summary}
    table = results_table(results, summary)
    if jax.process_index() == 0:
        run_files.write_json(workdir / "cv_results.json", payload)
        (workdir / "cv_results.md").write_text(f"{len(results)}-fold cross-validation ({workdir})\n\n{table}")
    logging.info("cross-validation over %d folds:\n%s", len(results), table)
    return payload
