"""The evaluation report as files: report.json (for programs), report.md (for people), predictions.csv (for
digging into single examples). Building the report is a pure function; writing it is the only side effect.
"""

import csv
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from dl4cv_jax.evaluate.plots import normalize_rows
from dl4cv_jax.train.run_files import write_json

_SUMMARY = (
    "accuracy",
    "top5_accuracy",
    "roc_auc",
    "loss",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
)
_MATRIX_IN_MARKDOWN_UP_TO = 20  # classes; a larger matrix is unreadable as text (see the PNGs / report.json)


def build_report(
    metrics: Mapping[str, Any],
    class_names: Sequence[str],
    *,
    split: str,
    checkpoint: str,
    checkpoint_step: int,
    speed: Mapping[str, Any],
    tta: Sequence[str] = (),
) -> dict[str, Any]:
    """report.json's content from `metrics.classification_metrics` output, the checkpoint, the test-time
    augmentation views averaged (`tta`, config.eval_tta) and the speed.

    `speed` is `speed.measure_speed`'s result, or {} when it was not measured (its fields are then None).
    """
    confusion = np.asarray(metrics["confusion_matrix"])
    report: dict[str, Any] = {key: metrics[key] for key in _SUMMARY if key in metrics}
    report["per_class"] = {
        name: {
            "precision": float(metrics["precision_per_class"][k]),
            "recall": float(metrics["recall_per_class"][k]),
            "f1": float(metrics["f1_per_class"][k]),
            "support": int(confusion[k].sum()),
        }
        for k, name in enumerate(class_names)
    }
    report.update(
        confusion_matrix=confusion.astype(int).tolist(),
        class_names=list(class_names),
        num_examples=int(confusion.sum()),
        split=split,
        checkpoint=checkpoint,
        checkpoint_step=int(checkpoint_step),
        tta=list(tta),
        images_per_second=speed.get("images_per_second"),
        speed_batch_size=speed.get("batch_size"),
        latency_ms_batch1=speed.get("latency_ms_batch1"),
        device_count=speed.get("device_count", jax.device_count()),
        device_kind=speed.get("device_kind", jax.devices()[0].device_kind),
    )
    return report


def most_confused_pairs(confusion: np.ndarray, count: int = 10) -> list[tuple[int, int, int]]:
    """The `count` largest off-diagonal cells as (true class, predicted class, examples), largest first.

    Ties go to the lower (true, predicted) index pair, so the list is the same on every run; empty cells are left out.
    """
    confusion = np.asarray(confusion)
    off_diagonal = [
        (int(confusion[i, j]), i, j) for i, j in np.ndindex(confusion.shape) if i != j and confusion[i, j] > 0
    ]
    off_diagonal.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    return [(i, j, n) for n, i, j in off_diagonal[:count]]


def _cell(value: Any) -> str:
    if value is None:
        return "n/a (one class missing)"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]


def _speed_line(report: Mapping[str, Any]) -> str:
    devices = f"{report['device_count']} x {report['device_kind']}"
    if report.get("images_per_second") is None:
        return f"Inference speed: not measured ({devices})."
    return (
        f"Inference: {report['images_per_second']:,.0f} images/second at batch {report['speed_batch_size']}; "
        f"{report['latency_ms_batch1']:.2f} ms for a single image (after warm-up; {devices})."
    )


def markdown_report(report: Mapping[str, Any], title: str) -> str:
    """report.md: summary, speed, per-class table, the most confused pairs and (when small) the matrix."""
    names = report["class_names"]
    confusion = np.asarray(report["confusion_matrix"])
    lines = [
        f"# {title}",
        "",
        f"Split `{report['split']}`, {report['num_examples']:,} examples; checkpoint `{report['checkpoint']}` "
        f"(step {report['checkpoint_step']}); test-time augmentation: {', '.join(report.get('tta', [])) or 'none'}.",
        "",
    ]
    lines += _table(["metric", "value"], [(key, report[key]) for key in _SUMMARY if key in report])
    lines += ["", _speed_line(report), "", "## Per class", ""]
    per_class = report["per_class"]
    rows = [
        (n, per_class[n]["precision"], per_class[n]["recall"], per_class[n]["f1"], per_class[n]["support"])
        for n in names
    ]
    lines += _table(["class", "precision", "recall", "f1", "support"], rows)
    lines += ["", "## Most confused pairs", ""]
    pairs = most_confused_pairs(confusion)
    if pairs:
        support = confusion.sum(axis=1)
        rows = [(names[i], names[j], n, f"{n / support[i]:.1%}") for i, j, n in pairs]
        lines += _table(["true class", "predicted as", "examples", "share of the true class"], rows)
    else:
        lines.append("No example was misclassified.")
    lines += ["", "## Confusion matrix", ""]
    if len(names) <= _MATRIX_IN_MARKDOWN_UP_TO:
        lines.append("Rows: true class; columns: predicted class. Counts, then row fractions.")
        lines.append("")
        lines += _table(["true \\ predicted", *names], [(n, *confusion[k].tolist()) for k, n in enumerate(names)])
        lines.append("")
        fractions = normalize_rows(confusion)
        rows = [(n, *(f"{v:.2f}" for v in fractions[k])) for k, n in enumerate(names)]
        lines += _table(["true \\ predicted", *names], rows)
    else:
        lines.append(f"{len(names)} classes: see confusion_matrix.png and `confusion_matrix` in report.json.")
    return "\n".join(lines) + "\n"


def write_predictions_csv(
    path: pathlib.Path,
    ids: Sequence[str],
    labels: np.ndarray,
    predictions: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
) -> None:
    """predictions.csv: index, path_or_id, label, prediction (class names), confidence (of the prediction)."""
    confidence = np.take_along_axis(probabilities, np.asarray(predictions)[:, None], axis=1)[:, 0]
    with pathlib.Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "path_or_id", "label", "prediction", "confidence"])
        for index, (id_, label, prediction, p) in enumerate(zip(ids, labels, predictions, confidence, strict=True)):
            writer.writerow([index, id_, class_names[label], class_names[prediction], f"{p:.6f}"])


def write_report(directory: pathlib.Path, report: Mapping[str, Any], title: str) -> None:
    """report.json and report.md in `directory`."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "report.json", dict(report))
    (directory / "report.md").write_text(markdown_report(report, title))
