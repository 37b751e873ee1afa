"""The side-by-side table of `--mode=compare_models` (compare_models.py): comparison.json for programs,
comparison.md for people and comparison.png (accuracy and images/second as bars) for a glance.

Building the rows and the table are pure functions of the models' eval reports; writing them is the only side effect.
"""

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from matplotlib.figure import Figure

from dl4cv_jax.evaluate import plots
from dl4cv_jax.train.run_files import write_json

_FROM_REPORT = (
    "accuracy",
    "top5_accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "loss",
    "num_examples",
    "images_per_second",
    "speed_batch_size",
    "latency_ms_batch1",
)


def summary_row(
    label: str, architecture: str, source: str, image_shape: Sequence[int], report: Mapping[str, Any]
) -> dict[str, Any]:
    """One model's row from its eval report (report.build_report); the caller adds `parameters`."""
    row: dict[str, Any] = {
        "model": label,
        "architecture": architecture,
        "source": source,
        "input": "x".join(str(d) for d in image_shape),
        "classes": len(report["class_names"]),
    }
    row.update({key: report.get(key) for key in _FROM_REPORT})
    row["report"] = f"{label}/report.md"
    return row


def comparison(
    rows: Sequence[Mapping[str, Any]], folder: pathlib.Path, classes: Sequence[str], batch_size: int
) -> dict[str, Any]:
    """comparison.json's content: what was read, on what machine, and a row per model in the order given."""
    return {
        "data_dir": str(folder),
        "folder_classes": list(classes),
        "num_images": rows[0]["num_examples"] if rows else 0,
        "batch_size": batch_size,
        "device_count": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
        "models": [dict(row) for row in rows],
    }


def _figure(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}" if digits else f"{value:,.0f}"


def markdown_table(result: Mapping[str, Any]) -> str:
    """comparison.md: one line on the data and the timing, the table, and where each model came from."""
    batch = result["batch_size"]
    lines = [
        f"# Model comparison on `{result['data_dir']}`",
        "",
        f"{result['num_images']:,} images of {len(result['folder_classes'])} classes, the same for every model, each "
        "scored by `--mode=eval`'s code (its report: the link in the last column). Precision, recall and F1 are "
        "macro averages over the classes found in the labels or the predictions (scikit-learn's rule); top-5 "
        "only for models with more than 5 classes. Speed: the median timed call after warm-up, of the model alone "
        f"(no decoding), at batch {batch} and for a single image, on {result['device_count']} x "
        f"{result['device_kind']}.",
        "",
        f"| model | architecture | input | classes | accuracy | top-5 | precision | recall | F1 | parameters | "
        f"images/s (batch {batch}) | latency, batch 1 (ms) | report |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["models"]:
        cells = [
            row["model"],
            row["architecture"],
            row["input"],
            _figure(row["classes"]),
            *(_figure(row[key]) for key in ("accuracy", "top5_accuracy", "precision_macro", "recall_macro")),
            _figure(row["f1_macro"]),
            _figure(row["parameters"]),
            _figure(row["images_per_second"], 0),
            _figure(row["latency_ms_batch1"], 2),
            f"[report]({row['report']})",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Models:", ""] + [f"- `{row['model']}`: {row['source']}" for row in result["models"]]
    return "\n".join(lines) + "\n"


def comparison_figure(result: Mapping[str, Any]) -> Figure:
    """Accuracy (top-5 as a pale bar behind, where there is one) and images/second per model, as bars."""
    rows = result["models"]
    names = [row["model"] for row in rows][::-1]  # first model on top
    ys = np.arange(len(rows))
    figure = plots.new_figure(11.0, 1.9 + 0.45 * len(rows))
    accuracy_axes, speed_axes = figure.subplots(1, 2, sharey=True)
    top5 = [row["top5_accuracy"] or 0.0 for row in rows][::-1]
    accuracy = [row["accuracy"] for row in rows][::-1]
    accuracy_axes.barh(ys, top5, color="#c6dbef", label="top-5")
    accuracy_axes.barh(ys, accuracy, color="#2171b5", height=0.6, label="accuracy")
    for y, value in zip(ys, accuracy, strict=True):
        accuracy_axes.text(value, y, f" {value:.4f}", va="center", fontsize=8)
    accuracy_axes.set(xlim=(0, 1.15), yticks=ys, yticklabels=names, xlabel="accuracy")
    if any(top5):
        accuracy_axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, fontsize=8, frameon=False)
    speed = [row["images_per_second"] or 0.0 for row in rows][::-1]
    speed_axes.barh(ys, speed, color="#41ab5d")
    for y, value in zip(ys, speed, strict=True):
        speed_axes.text(value, y, f" {value:,.0f}" if value else " not timed", va="center", fontsize=8)
    speed_axes.set(xlim=(0, 1.25 * max(max(speed), 1.0)), xlabel=f"images/second at batch {result['batch_size']}")
    figure.suptitle(f"{result['num_images']:,} images from {result['data_dir']}", fontsize=10)
    return figure


def write_comparison(out: pathlib.Path, result: Mapping[str, Any]) -> None:
    """comparison.json, comparison.md and comparison.png in `out`."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "comparison.json", dict(result))
    (out / "comparison.md").write_text(markdown_table(result))
    plots.save_figure(comparison_figure(result), out / "comparison.png")
