"""Semantic-segmentation metrics from a confusion matrix, which accumulates over batches (on the device, inside a
jitted step, or in numpy over files): pixel accuracy, per-class precision, recall, F-score and IoU (Jaccard), and
their means. Checked against scikit-learn's `precision_recall_fscore_support` and `jaccard_score` on the flattened
masks (tests/evaluate/test_segmentation_metrics.py).

Conventions:
- Labels are class indices 0..C-1 per pixel; pixels whose *ground truth* is `ignore_index` (255 by default, as in
  Pascal VOC and Cityscapes) count nowhere. A prediction outside 0..C-1 on a counted pixel is a miss for the true
  class and a false positive for no class (the confusion matrix has no column for it).
- A class absent from the ground truth *and* never predicted has undefined precision, recall, F-score and IoU:
  NaN per class, and left out of the means (as mIoU is reported on benchmarks). A class predicted but absent
  from the ground truth has recall NaN (no positives) but IoU 0 and precision 0, and counts in those means.
"""

from typing import Any

import jax.numpy as jnp
import numpy as np

IGNORE_INDEX = 255


def confusion_matrix(truth: Any, prediction: Any, num_classes: int, ignore_index: int = IGNORE_INDEX) -> jnp.ndarray:
    """[C, C+1] counts of masks of any equal shape: rows = true class, columns = predicted class, and a last
    column for predictions outside 0..C-1 (they miss their true class but are no class's false positive).

    Pure and shape-static (`num_classes` is a Python int), so it jits and sums across batches and devices:
    `total = total + confusion_matrix(labels, logits.argmax(-1), C)`. Counts are int32 under jax's default
    precision: past ~2 billion pixels, move each batch's matrix to the host and add in int64 instead.
    """
    truth = jnp.asarray(truth).reshape(-1).astype(jnp.int32)
    prediction = jnp.asarray(prediction).reshape(-1).astype(jnp.int32)
    counted = (truth != ignore_index) & (truth >= 0) & (truth < num_classes)
    column = jnp.where((prediction >= 0) & (prediction < num_classes), prediction, num_classes)
    size = num_classes * (num_classes + 1)
    cell = jnp.where(counted, truth * (num_classes + 1) + column, size)  # uncounted pixels land past the end
    return jnp.bincount(cell, length=size + 1)[:-1].reshape(num_classes, num_classes + 1)


def confusion_matrix_np(
    truth: np.ndarray, prediction: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """`confusion_matrix` in numpy (int64), for host-side accumulation over files without jax dispatch."""
    truth = np.asarray(truth).reshape(-1).astype(np.int64)
    prediction = np.asarray(prediction).reshape(-1).astype(np.int64)
    counted = (truth != ignore_index) & (truth >= 0) & (truth < num_classes)
    column = np.where((prediction >= 0) & (prediction < num_classes), prediction, num_classes)
    cells = np.bincount(truth[counted] * (num_classes + 1) + column[counted], minlength=num_classes * (num_classes + 1))
    return cells.reshape(num_classes, num_classes + 1)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def segmentation_metrics(confusion: Any) -> dict[str, Any]:
    """Per-class and mean metrics of a `confusion_matrix` ([C, C+1]: the last column counts predictions outside
    0..C-1; a plain [C, C] matrix works too). Means skip NaN entries (see the module's conventions)."""
    matrix = np.asarray(confusion, dtype=np.float64)
    square = matrix[:, : matrix.shape[0]]
    tp = np.diag(square)
    truth_total = matrix.sum(1)  # every counted pixel of the class, predicted as anything
    predicted_total = square.sum(0)
    precision = _ratio(tp, predicted_total)
    recall = _ratio(tp, truth_total)
    f1 = _ratio(2 * tp, truth_total + predicted_total)
    iou = _ratio(tp, truth_total + predicted_total - tp)
    present = (truth_total + predicted_total) > 0
    precision = np.where(present & np.isnan(precision), 0.0, precision)  # predicted never, but present in truth
    pixels = matrix.sum()

    def mean(values: np.ndarray) -> float:
        kept = values[~np.isnan(values)]
        return float(kept.mean()) if kept.size else float("nan")

    weights = truth_total / pixels if pixels else np.zeros_like(truth_total)
    return {
        "pixel_accuracy": float(tp.sum() / pixels) if pixels else float("nan"),
        "mean_iou": mean(iou),
        "frequency_weighted_iou": float(np.nansum(weights * iou)),
        "mean_precision": mean(precision),
        "mean_recall": mean(recall),
        "mean_f1": mean(f1),
        "mean_accuracy": mean(recall),  # per-class pixel accuracy is the class's recall
        "iou": iou,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": truth_total.astype(np.int64),
        "num_pixels": int(pixels),
    }
