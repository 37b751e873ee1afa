"""A sweep's results: results.csv (one row per trial), results.md (one row per setting, mean ± std over seeds)
and results.png (validation curves per setting), read from the trial directories alone.

Run it on any sweep directory, finished or not: `python -m dl4cv_jax.sweep.aggregate runs/optimizers`.
Only finished trials (with test_metrics.json) enter the means; the others are listed under the table with their
status and error line. The spread is the sample standard deviation over seeds (ddof=1); with one seed only the
mean is shown.
"""

import csv
import datetime
import io
import json
import math
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from dl4cv_jax.train.callbacks import read_history
from dl4cv_jax.train.run_files import read_json

TRIAL_FILE = "trial.json"
STATUS_FILE = "trial_status.json"
# (column, markdown header, scale, decimals): accuracies are shown in percent.
METRICS = (
    ("test_accuracy", "test acc (%)", 100.0, 2),
    ("test_loss", "test loss", 1.0, 4),
    ("best_val_accuracy", "best val acc (%)", 100.0, 2),
    ("best_val_loss", "best val loss", 1.0, 4),
    ("epochs", "epochs", 1.0, 1),
    ("wall_seconds", "wall time (s)", 1.0, 1),
)


def write_text_atomic(path: pathlib.Path, text: str) -> None:
    """Temp file + rename, with the process id in the temp name: the tasks of a SLURM job array share the
    sweep directory and may write the same file at the same moment."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_trial_file(trial_dir: pathlib.Path, name: str, setting: str, seed: int, overrides: dict) -> None:
    """trial.json: what the trial is (setting, seed, overrides as shown in names), so the directory explains itself."""
    info = {"name": name, "setting": setting, "seed": seed, "overrides": overrides}
    write_text_atomic(trial_dir / TRIAL_FILE, json.dumps(info, indent=2) + "\n")


def trial_dirs(sweep_dir: pathlib.Path) -> list[pathlib.Path]:
    """The trial directories, in the sweep's order (sweep.json) when known, else by name."""
    found = {p.parent.name: p.parent for p in pathlib.Path(sweep_dir).glob(f"*/{TRIAL_FILE}")}
    order = read_json(sweep_dir / "sweep.json").get("trials", []) if (sweep_dir / "sweep.json").exists() else []
    ordered = [found.pop(name) for name in order if name in found]
    return ordered + [found[name] for name in sorted(found)]


def _history_metrics(trial_dir: pathlib.Path) -> dict[str, float]:
    path = trial_dir / "history.csv"
    rows = read_history(path) if path.exists() else []
    if not rows:
        return {"epochs": 0}
    return {
        "epochs": len(rows),
        "best_val_accuracy": max(float(r["val_accuracy"]) for r in rows),
        "best_val_loss": min(float(r["val_loss"]) for r in rows),
        "train_seconds": math.fsum(float(r["epoch_seconds"]) for r in rows),
    }


def trial_row(trial_dir: pathlib.Path) -> dict[str, Any]:
    """One trial's row of results.csv: what it is, its status, and its metrics when it has any."""
    info = read_json(trial_dir / TRIAL_FILE)
    status = read_json(trial_dir / STATUS_FILE) if (trial_dir / STATUS_FILE).exists() else {}
    row: dict[str, Any] = {"trial": info["name"], "setting": info["setting"], "seed": info["seed"]}
    row.update(info["overrides"])
    done = (trial_dir / "test_metrics.json").exists()
    row["status"] = "done" if done else status.get("status", "pending")  # "running" may be a killed sweep's
    row.update(_history_metrics(trial_dir))
    if done:
        test = read_json(trial_dir / "test_metrics.json")
        row["test_accuracy"], row["test_loss"] = test["accuracy"], test["loss"]
    row["wall_seconds"] = _wall_seconds(trial_dir, status, done, row.pop("train_seconds", None))
    row["error"] = "" if done else status.get("error", "")
    return row


def _wall_seconds(trial_dir: pathlib.Path, status: dict[str, Any], done: bool, train_seconds: float | None) -> Any:
    """The trial's wall time over its attempts. A trial that finished after its sweep was killed still says
    "running": its last attempt lasted from `started` to when test_metrics.json was written. Without a status
    file (a run made outside a sweep), the sum of its epochs' training time is the best there is."""
    if not status:
        return train_seconds
    seconds = status.get("wall_seconds", 0.0)
    if done and status.get("status") == "running" and "started" in status:
        started = datetime.datetime.fromisoformat(status["started"]).timestamp()
        seconds += max(0.0, (trial_dir / "test_metrics.json").stat().st_mtime - started)
    return seconds


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per setting (in order of appearance): its overrides, seeds done/total, and per metric the
    mean and sample std (ddof=1) over its finished trials."""
    settings: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        settings.setdefault(row["setting"], []).append(row)
    summary = []
    for setting, members in settings.items():
        done = [r for r in members if r["status"] == "done"]
        entry: dict[str, Any] = {"setting": setting, "seeds_done": len(done), "seeds_total": len(members)}
        for column, *_ in METRICS:
            values = np.asarray([r[column] for r in done if r.get(column) is not None], dtype=np.float64)
            entry[f"{column}_mean"] = float(values.mean()) if values.size else math.nan
            entry[f"{column}_std"] = float(values.std(ddof=1)) if values.size > 1 else math.nan
        summary.append(entry)
    return summary


def override_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The override keys that appear in any trial, in order of first appearance."""
    fixed = {"trial", "setting", "seed", "status", "error", "epochs", "wall_seconds"}
    fixed |= {m[0] for m in METRICS}
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in fixed and key not in columns]
    return columns


def write_csv(rows: Sequence[dict[str, Any]], path: pathlib.Path) -> None:
    """results.csv: one row per trial, override values as columns; written atomically."""
    keys = ["trial", "setting", *override_columns(rows), "seed", "status", *(m[0] for m in METRICS), "error"]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, text.getvalue())


def _mean_std(entry: dict[str, Any], column: str, scale: float, decimals: int) -> str:
    mean, std = entry[f"{column}_mean"], entry[f"{column}_std"]
    if math.isnan(mean):
        return "–"
    text = f"{mean * scale:.{decimals}f}"
    return text if math.isnan(std) else f"{text} ± {std * scale:.{decimals}f}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """results.md: one row per setting (mean ± std over seeds), then the trials that did not finish."""
    columns = override_columns(rows)
    values = {row["setting"]: row for row in rows}
    header = [*columns, "seeds", *(m[1] for m in METRICS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in summarize(rows):
        first = values[entry["setting"]]
        cells = [str(first.get(c, "")) for c in columns]
        cells.append(f"{entry['seeds_done']}/{entry['seeds_total']}")
        cells += [_mean_std(entry, column, scale, decimals) for column, _, scale, decimals in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    unfinished = [r for r in rows if r["status"] != "done"]
    if unfinished:
        lines += ["", "Not finished:", ""]
        lines += [f"- `{r['trial']}`: {r['status']}" + (f" — {r['error']}" if r["error"] else "") for r in unfinished]
    return "\n".join(lines) + "\n"


def plot_curves(sweep_dir: pathlib.Path, rows: Sequence[dict[str, Any]], path: pathlib.Path) -> None:
    """results.png: validation accuracy and loss per epoch, one line per setting (mean over its seeds, band =
    min..max), so differences larger than the seed-to-seed spread stand out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    columns = override_columns(rows)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for setting in dict.fromkeys(r["setting"] for r in rows):
        members = [r for r in rows if r["setting"] == setting]
        curves = [_curves(sweep_dir / r["trial"]) for r in members if r["epochs"]]
        if not curves:
            continue
        length = min(len(c["val_accuracy"]) for c in curves)
        epochs = np.arange(1, length + 1)
        label = " · ".join(str(members[0].get(c, "")) for c in columns) or setting
        for ax, key in zip(axes, ("val_accuracy", "val_loss"), strict=True):
            stack = np.stack([c[key][:length] for c in curves])
            (line,) = ax.plot(epochs, stack.mean(0), marker="o", markersize=3, label=f"{label} (n={len(curves)})")
            ax.fill_between(epochs, stack.min(0), stack.max(0), color=line.get_color(), alpha=0.15)
    for ax, title in zip(axes, ("validation accuracy", "validation loss"), strict=True):
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=min(3, max(1, len(labels))),
        fontsize=8,
        title=" · ".join(columns) or None,
        title_fontsize=8,
    )
    fig.suptitle(f"{sweep_dir.name}: mean over seeds, band = min..max")
    fig.tight_layout(rect=(0, 0.08 + 0.045 * ((len(labels) + 2) // 3), 1, 1))
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    plt.close(fig)


def _curves(trial_dir: pathlib.Path) -> dict[str, np.ndarray]:
    rows = read_history(trial_dir / "history.csv")
    return {key: np.asarray([float(r[key]) for r in rows]) for key in ("val_accuracy", "val_loss")}


def aggregate(sweep_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    """Writes results.csv, results.md and results.png into `sweep_dir`; returns the per-setting summary."""
    sweep_dir = pathlib.Path(sweep_dir)
    rows = [trial_row(d) for d in trial_dirs(sweep_dir)]
    if not rows:
        raise FileNotFoundError(f"no trials (*/{TRIAL_FILE}) in {sweep_dir}")
    write_csv(rows, sweep_dir / "results.csv")
    write_text_atomic(sweep_dir / "results.md", markdown_table(rows))
    plot_curves(sweep_dir, rows, sweep_dir / "results.png")
    return summarize(rows)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m dl4cv_jax.sweep.aggregate SWEEP_DIR")
    aggregate(sys.argv[1])
    print((pathlib.Path(sys.argv[1]) / "results.md").read_text(), end="")
