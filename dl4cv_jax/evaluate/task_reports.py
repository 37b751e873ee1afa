"""Evaluation from files, one function per `main.py --mode=eval_<task>`: read the ground truth and the predictions
(task_files.py, which rejects bad input in one line), score them (detection.py, segmentation.py, tracking.py,
regression.py), and write `report.md` (for people), `metrics.json` (for programs, NaN as null) and the task's
pictures into the output folder. Each returns metrics.json's content."""

import math
import pathlib
from typing import Any

import numpy as np
from absl import logging

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.evaluate import detection, regression, segmentation, task_files, task_plots, tracking
from dl4cv_jax.train.run_files import write_json


def _plain(value: Any) -> Any:
    """JSON-ready: numpy to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return (
            [_plain(v) for v in np.asarray(value).tolist()]
            if isinstance(value, np.ndarray)
            else [_plain(v) for v in value]
        )
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _write(out: pathlib.Path, payload: dict[str, Any], lines: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", _plain(payload))
    (out / "report.md").write_text("\n".join(lines) + "\n")
    logging.info("wrote %s (report.md, metrics.json and pictures)", out)


def run_eval_detection(gt: str, pred: str, out: pathlib.Path) -> dict[str, Any]:
    """COCO bbox evaluation of a results JSON against an instances JSON: the 12 COCO numbers, AP per category,
    precision-recall curves per category at IoU 0.5 and 0.75 (pr_curves_iou50.png, pr_curves_iou75.png)."""
    files = task_files.read_coco(gt, pred)
    result = detection.evaluate_coco(files.gt, files.dets, files.image_ids, list(files.category_names))
    names = files.category_names
    per_ap = detection.per_category_ap(result)
    k50, k75 = (int(np.argmin(np.abs(detection.IOU_THRESHOLDS - t))) for t in (0.5, 0.75))
    per_category = {
        names[c]: {
            "category_id": c,
            "AP": per_ap[c],
            "AP50": float(np.mean(result.precision[k50, :, k, 0, -1])) if per_ap[c] > -1 else -1.0,
            "AP75": float(np.mean(result.precision[k75, :, k, 0, -1])) if per_ap[c] > -1 else -1.0,
            "AR100": float(np.mean(result.recall[:, k, 0, -1])) if per_ap[c] > -1 else -1.0,
            "num_ground_truth": int(np.sum((files.gt.category_id == c) & ~files.gt.iscrowd)),
            "num_detections": int(np.sum(files.dets.category_id == c)),
        }
        for k, c in enumerate(result.category_ids)
    }
    for iou, tag in ((0.5, "iou50"), (0.75, "iou75")):
        curves = {names[c]: v for c, v in detection.pr_curves(result, iou).items()}
        task_plots.pr_curves_png(
            curves,
            detection.RECALL_THRESHOLDS,
            out / f"pr_curves_{tag}.png",
            f"Precision-recall per class\nIoU {iou}, all areas, up to 100 detections per image",
        )
    payload = {
        "task": "detection",
        "protocol": "COCO bbox: IoU 0.50:0.05:0.95, 101 recall points, areas all/small/medium/large, 1/10/100 dets",
        "gt": str(gt),
        "pred": str(pred),
        "num_images": len(files.image_ids),
        "num_ground_truth": len(files.gt),
        "num_detections": len(files.dets),
        **result.stats,
        "per_category": per_category,
        "pr_curves_iou50": {names[c]: v for c, v in detection.pr_curves(result, 0.5).items()},
    }
    lines = [
        f"# Detection: {pathlib.Path(pred).name} against {pathlib.Path(gt).name}",
        "",
        f"{len(files.image_ids):,} images, {len(files.gt):,} ground-truth boxes, {len(files.dets):,} detections; "
        "COCO protocol (equal to pycocotools' COCOeval, bbox). -1 = no ground truth in that range.",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {name} | {_fmt(value, 4)} |" for name, value in result.stats.items()]
    lines += ["", "| category | AP | AP50 | AP75 | AR100 | objects | detections |", "|---|---|---|---|---|---|---|"]
    for name, row in per_category.items():
        lines.append(
            f"| {name} | {_fmt(row['AP'])} | {_fmt(row['AP50'])} | {_fmt(row['AP75'])} | "
            f"{_fmt(row['AR100'])} | {row['num_ground_truth']} | {row['num_detections']} |"
        )
    lines += ["", "![PR curves at IoU 0.5](pr_curves_iou50.png)", "", "![PR curves at IoU 0.75](pr_curves_iou75.png)"]
    _write(out, payload, lines)
    logging.info(
        "detection: AP %.4f, AP50 %.4f, AR100 %.4f", result.stats["AP"], result.stats["AP50"], result.stats["AR100"]
    )
    return payload


def run_eval_segmentation(
    gt: str, pred: str, out: pathlib.Path, num_classes: int = 0, ignore_index: int = segmentation.IGNORE_INDEX
) -> dict[str, Any]:
    """Pixel metrics of two folders of PNG masks (same relative names): accuracy, per-class precision / recall /
    F1 / IoU and their means, a per-class IoU bar chart and the confusion matrix. `num_classes` 0 = the largest
    class index seen in either folder (other than `ignore_index`) + 1."""
    width = 256  # 8-bit masks: every value fits; trimmed to the classes once all files are read
    total = np.zeros((width, width + 1), np.int64)
    num_files = 0
    for _, truth, prediction in task_files.mask_pairs(gt, pred):
        total += segmentation.confusion_matrix_np(truth, prediction, width, ignore_index)
        num_files += 1
    true_classes = np.flatnonzero(total.sum(1))  # the ignored value never reaches the matrix
    seen = np.union1d(true_classes, np.flatnonzero(total[:, :width].sum(0)))
    seen = seen[seen != ignore_index]
    classes = num_classes or (int(seen.max()) + 1 if seen.size else 1)
    if num_classes and true_classes.size and true_classes.max() >= num_classes:
        raise ConfigError(
            f"--num_classes={num_classes}, but the ground truth in {gt} holds class {int(true_classes.max())}"
        )
    confusion = np.concatenate([total[:classes, :classes], total[:classes, classes:].sum(1, keepdims=True)], axis=1)
    scores = segmentation.segmentation_metrics(confusion)
    names = [f"class {k}" for k in range(classes)]
    per_class = {
        names[k]: {key: scores[key][k] for key in ("iou", "precision", "recall", "f1", "support")}
        for k in range(classes)
    }
    summary = {
        key: scores[key]
        for key in (
            "pixel_accuracy",
            "mean_iou",
            "frequency_weighted_iou",
            "mean_precision",
            "mean_recall",
            "mean_f1",
            "num_pixels",
        )
    }
    task_plots.iou_bars_png(scores["iou"], names, out / "iou_per_class.png", f"IoU per class ({num_files} masks)")
    task_plots.confusion_png(
        confusion[:, :classes],
        names,
        out / "confusion_matrix.png",
        f"Pixel confusion matrix, rows normalised ({num_files} masks)",
    )
    payload = {
        "task": "segmentation",
        "gt": str(gt),
        "pred": str(pred),
        "num_masks": num_files,
        "num_classes": classes,
        "ignore_index": ignore_index,
        **summary,
        "per_class": per_class,
        "confusion_matrix": confusion[:, :classes],
        "predicted_outside_classes": confusion[:, classes],
    }
    lines = [
        f"# Segmentation: {pred} against {gt}",
        "",
        f"{num_files} masks, {summary['num_pixels']:,} scored pixels (ground truth {ignore_index} ignored), "
        f"{classes} classes. Means skip classes absent from both (n/a).",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in summary.items()]
    lines += ["", "| class | IoU | precision | recall | F1 | pixels |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {n} | {_fmt(r['iou'])} | {_fmt(r['precision'])} | {_fmt(r['recall'])} | {_fmt(r['f1'])} | {r['support']} |"
        for n, r in per_class.items()
    ]
    lines += ["", "![IoU per class](iou_per_class.png)", "", "![Confusion matrix](confusion_matrix.png)"]
    _write(out, payload, lines)
    logging.info("segmentation: mean IoU %.4f, pixel accuracy %.4f", summary["mean_iou"], summary["pixel_accuracy"])
    return payload


_TRACK_COLUMNS = ("HOTA", "DetA", "AssA", "LocA", "MOTA", "MOTP", "IDF1", "IDSW", "MT", "PT", "ML", "Frag")


def run_eval_tracking(gt: str, pred: str, out: pathlib.Path) -> dict[str, Any]:
    """HOTA, CLEAR MOT and identity metrics of MOTChallenge tracker files against ground truth, per sequence and
    combined, with the per-sequence table in report.md and as bars (sequences.png)."""
    sequences = task_files.read_mot(gt, pred)
    table = tracking.evaluate_sequences(sequences)
    task_plots.sequence_bars_png(table, out / "sequences.png", "HOTA, MOTA and IDF1 per sequence")
    payload = {"task": "tracking", "gt": str(gt), "pred": str(pred), **table["COMBINED"], "per_sequence": table}
    lines = [
        f"# Tracking: {pred} against {gt}",
        "",
        f"{len(sequences)} sequences; TrackEval's definitions (HOTA family: mean over alpha 0.05..0.95; CLEAR and "
        "identity at IoU 0.5).",
        "",
        "| sequence | " + " | ".join(_TRACK_COLUMNS) + " |",
        "|---" * (len(_TRACK_COLUMNS) + 1) + "|",
    ]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row[c], 3) for c in _TRACK_COLUMNS) + " |")
    lines += ["", "![Per sequence](sequences.png)"]
    _write(out, payload, lines)
    combined = table["COMBINED"]
    logging.info("tracking: HOTA %.4f, MOTA %.4f, IDF1 %.4f", combined["HOTA"], combined["MOTA"], combined["IDF1"])
    return payload


def run_eval_regression(gt: str | None, pred: str, out: pathlib.Path) -> dict[str, Any]:
    """MSE, RMSE, MAE, median and max absolute error and R² of a CSV of predictions, with a predicted-vs-target
    scatter plot (scatter.png)."""
    target, prediction = task_files.read_regression(gt, pred)
    if len(target) == 0:
        raise ConfigError(f"{pred}: no rows")
    scores = regression.regression_metrics(target, prediction)
    figure = task_plots.new_figure(4.5, 4.5)
    axes = figure.add_subplot()
    axes.scatter(target, prediction, s=6, alpha=0.6)
    low, high = float(min(target.min(), prediction.min())), float(max(target.max(), prediction.max()))
    axes.plot([low, high], [low, high], color="tab:red", linewidth=1, label="prediction = target")
    axes.set_xlabel("target")
    axes.set_ylabel("prediction")
    axes.legend(fontsize=8)
    axes.set_title(f"R² {scores['r2']:.3f}, RMSE {scores['rmse']:.4g}")
    task_plots.save_figure(figure, out / "scatter.png")
    payload = {"task": "regression", "gt": str(gt) if gt else None, "pred": str(pred), **scores}
    lines = [f"# Regression: {pred}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v, 6)} |" for k, v in scores.items()]
    lines += ["", "![Predictions against targets](scatter.png)"]
    _write(out, payload, lines)
    logging.info("regression: MSE %.6g, MAE %.6g, R2 %.4f", scores["mse"], scores["mae"], scores["r2"])
    return payload
