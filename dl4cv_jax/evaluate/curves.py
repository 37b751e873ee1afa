"""Pictures of training: curves.png (loss and accuracy per epoch, best epoch marked) and the overlay of several
runs' validation curves (`--mode=compare`).

Both read `history.csv`, the file training appends one row to per epoch, so they work on any workdir, finished
or running, and `CurvesPlot` simply redraws curves.png after each row.
"""

import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging
from matplotlib.ticker import MaxNLocator

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.evaluate.plots import new_figure, save_figure
from dl4cv_jax.train.callbacks import Callback, read_history
from dl4cv_jax.train.run_files import read_json

History = dict[str, np.ndarray]
_COLUMNS = ("epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy")


def _two_panel_figure():
    """Fixed margins instead of a layout engine: curves.png is redrawn every epoch, so drawing time counts."""
    figure = new_figure(11.0, 4.5, layout=None)
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.11, top=0.9, wspace=0.18)
    return figure


def _label_axes(axes, ylabel: str) -> None:
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    axes.grid(alpha=0.3)


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def load_history(path: pathlib.Path) -> History:
    """The columns of a history.csv that the pictures use, as float arrays (missing or blank values → NaN)."""
    rows = read_history(path)
    return {column: np.array([_number(row.get(column)) for row in rows], np.float64) for column in _COLUMNS}


def monitor_of(workdir: pathlib.Path) -> str:
    """The run's checkpoint.monitor (which epoch counts as best), from config.json; val_accuracy if unknown."""
    path = pathlib.Path(workdir) / "config.json"
    if path.is_file():
        return read_json(path).get("checkpoint", {}).get("monitor", "val_accuracy")
    return "val_accuracy"


def best_epoch(history: History, monitor: str) -> int | None:
    """The epoch the best checkpoint comes from: the first maximum of val_accuracy or minimum of val_loss.

    The first one, because training keeps a checkpoint only on a strict improvement. None when every value is
    missing.
    """
    values = history.get(monitor)
    if values is None or not np.isfinite(values).any():
        return None
    finite = np.where(np.isfinite(values), values, -np.inf if monitor.endswith("accuracy") else np.inf)
    index = int(np.argmax(finite) if monitor.endswith("accuracy") else np.argmin(finite))
    return int(history["epoch"][index])


def curves_figure(history: History, monitor: str, title: str):
    """Two panels, loss and accuracy per epoch, train and validation, with the best epoch marked in both."""
    figure = _two_panel_figure()
    best = best_epoch(history, monitor)
    epochs = history["epoch"]
    for axes, metric in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        axes.plot(epochs, history[f"train_{metric}"], "o-", markersize=3, label=f"train {metric}")
        axes.plot(epochs, history[f"val_{metric}"], "o-", markersize=3, label=f"validation {metric}")
        if best is not None:
            row = int(np.flatnonzero(epochs == best)[0])
            axes.axvline(best, color="grey", linestyle="--", linewidth=1)
            label = f"best epoch {best} ({monitor} {history[monitor][row]:.4g})"
            axes.plot([best], [history[f"val_{metric}"][row]], "*", color="red", markersize=12, label=label)
        _label_axes(axes, metric)
        axes.legend()
    figure.suptitle(title)
    return figure


def write_curves(workdir: pathlib.Path) -> pathlib.Path:
    """Draws `workdir/curves.png` from `workdir/history.csv`; returns its path."""
    workdir = pathlib.Path(workdir)
    history = load_history(workdir / "history.csv")
    monitor = monitor_of(workdir)
    path = workdir / "curves.png"
    save_figure(curves_figure(history, monitor, f"{workdir.name}: training curves"), path)
    return path


class CurvesPlot(Callback):
    """Redraws `workdir/curves.png` at the end of every epoch (after HistoryCSV has written the row).

    A picture that cannot be drawn is logged and skipped: it must never end a training run.
    """

    def __init__(self, workdir: pathlib.Path):
        self.workdir = pathlib.Path(workdir)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        try:
            write_curves(self.workdir)
        except Exception as error:  # a plot is never worth a training run
            logging.warning("could not draw %s: %s", self.workdir / "curves.png", error)


def run_labels(workdirs: Sequence[pathlib.Path]) -> list[str]:
    """Short legend labels: each workdir's folder name, or its whole path where two names collide."""
    names = [pathlib.Path(w).name or str(w) for w in workdirs]
    return [name if names.count(name) == 1 else str(w) for name, w in zip(names, workdirs, strict=True)]


def compare_figure(histories: Mapping[str, History]):
    """Validation loss and accuracy per epoch, one line per run, on shared axes."""
    figure = _two_panel_figure()
    for axes, metric in zip(figure.subplots(1, 2), ("val_loss", "val_accuracy"), strict=True):
        for label, history in histories.items():
            axes.plot(history["epoch"], history[metric], "o-", markersize=3, label=label)
        _label_axes(axes, metric.replace("val_", "validation "))
        axes.legend(fontsize=8)
    figure.suptitle("Validation curves")
    return figure


def write_compare(workdirs: Sequence[str | pathlib.Path], output: str | pathlib.Path) -> pathlib.Path:
    """Overlays the validation curves of `workdirs` in the PNG `output`; ConfigError for a non-run folder."""
    if not workdirs:
        raise ConfigError("--mode=compare needs training workdirs as arguments: main.py --mode=compare W1 W2 ...")
    paths = [pathlib.Path(w) for w in workdirs]
    for workdir in paths:
        if not (workdir / "history.csv").is_file():
            raise ConfigError(f"--mode=compare: {workdir} has no history.csv; pass workdirs of training runs")
    histories = {label: load_history(w / "history.csv") for label, w in zip(run_labels(paths), paths, strict=True)}
    output = pathlib.Path(output)
    save_figure(compare_figure(histories), output)
    return output
