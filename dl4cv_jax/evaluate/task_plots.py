"""Pictures of the task evaluations from files: precision-recall curves per class (detection), per-class IoU bars
(segmentation) and a per-sequence bar chart (tracking). Matplotlib's object API on Agg, as in plots.py."""

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from dl4cv_jax.evaluate.plots import confusion_figure, new_figure, save_figure

_CURVES_PER_PANEL = 10  # more lines than this in one panel cannot be told apart


def pr_curves_png(
    curves: Mapping[str, np.ndarray], recall_points: np.ndarray, path: pathlib.Path, title: str
) -> pathlib.Path:
    """Interpolated precision against recall, one line per class (legend: class and its AP at this IoU), in
    panels of up to 10 classes."""
    names = list(curves)
    panels = max(1, -(-len(names) // _CURVES_PER_PANEL))
    columns = min(panels, 3)
    rows = -(-panels // columns)
    figure = new_figure(5.0 * columns, 4.2 * rows)
    for p in range(panels):
        axes = figure.add_subplot(rows, columns, p + 1)
        for name in names[p * _CURVES_PER_PANEL : (p + 1) * _CURVES_PER_PANEL]:
            axes.plot(recall_points, curves[name], label=f"{name} (AP {np.mean(curves[name]):.3f})")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.set_xlabel("recall")
        axes.set_ylabel("precision (interpolated)")
        axes.grid(alpha=0.3)
        if names:
            axes.legend(fontsize=7, loc="lower left")
    figure.suptitle(title)
    save_figure(figure, path)
    return path


def iou_bars_png(iou: np.ndarray, names: Sequence[str], path: pathlib.Path, title: str) -> pathlib.Path:
    """Horizontal bars of each class's IoU (absent classes marked n/a), the mean IoU as a dashed line."""
    figure = new_figure(7.0, 1.5 + 0.28 * len(names))
    axes = figure.add_subplot()
    values = np.nan_to_num(np.asarray(iou, float), nan=0.0)
    positions = np.arange(len(names))
    axes.barh(positions, values, color="tab:blue")
    for k, value in enumerate(iou):
        axes.text(min(values[k], 0.9) + 0.01, k, "n/a" if np.isnan(value) else f"{value:.3f}", va="center", fontsize=8)
    mean = float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else 0.0
    axes.axvline(mean, color="tab:red", linestyle="--", label=f"mean IoU {mean:.3f}")
    axes.set_yticks(positions, labels=list(names))
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("IoU (Jaccard)")
    axes.legend(loc="lower right", fontsize=8)
    axes.set_title(title)
    save_figure(figure, path)
    return path


def confusion_png(confusion: np.ndarray, names: Sequence[str], path: pathlib.Path, title: str) -> pathlib.Path:
    """Row-normalised pixel confusion matrix (true class down, predicted across)."""
    save_figure(confusion_figure(confusion, names, True, title), path)
    return path


def sequence_bars_png(table: Mapping[str, Mapping[str, float]], path: pathlib.Path, title: str) -> pathlib.Path:
    """HOTA, MOTA and IDF1 of each sequence and of all combined, as grouped bars."""
    names = list(table)
    metrics = ("HOTA", "MOTA", "IDF1")
    figure = new_figure(max(6.0, 1.2 * len(names) + 2), 4.0)
    axes = figure.add_subplot()
    width = 0.8 / len(metrics)
    for m, metric in enumerate(metrics):
        axes.bar(np.arange(len(names)) + (m - 1) * width, [table[n][metric] for n in names], width, label=metric)
    axes.set_xticks(np.arange(len(names)), labels=names, rotation=30, ha="right", rotation_mode="anchor")
    axes.axhline(0, color="black", linewidth=0.5)
    axes.set_ylim(min(0.0, min(table[n]["MOTA"] for n in names) - 0.05), 1.0)
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    axes.set_title(title)
    save_figure(figure, path)
    return path
