"""Classification metrics as pure, jit-compiled functions of labels, predictions and probabilities.

Everything derives from the confusion matrix (rows = true class, columns = predicted class), so one pass over
the split gives every figure. Conventions follow scikit-learn with `zero_division=0`: a precision, recall or F1
whose denominator is 0 (a class never predicted, or absent from the split) is 0. Macro averages run over the
classes that occur in the labels or the predictions (sklearn's default `labels=None`): a class absent from
both says nothing about the model and would otherwise pull the average towards 0.

Every function takes an optional `weights` mask [N] (1 = real, 0 = padding), so padded batches can be scored
without first cutting the padding off (the big_vision way).
"""

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _mask(labels: jax.Array, weights: jax.Array | None) -> jax.Array:
    if weights is None:
        return jnp.ones(labels.shape, jnp.int32)
    return (jnp.asarray(weights) > 0).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames="num_classes")
def confusion_matrix(
    labels: jax.Array, predictions: jax.Array, num_classes: int, weights: jax.Array | None = None
) -> jax.Array:
    """int32 [C, C] counts: entry (i, j) is the number of examples of true class i predicted as class j."""
    counts = jnp.zeros((num_classes, num_classes), jnp.int32)
    return counts.at[labels, predictions].add(_mask(labels, weights))


def _divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """numerator / denominator, and 0 where the denominator is 0 (sklearn's zero_division=0)."""
    safe = jnp.where(denominator > 0, denominator, 1.0)
    return jnp.where(denominator > 0, numerator / safe, 0.0)


@jax.jit
def scores_from_confusion(confusion: jax.Array) -> dict[str, jax.Array]:
    """Per-class precision, recall, F1 and support, their macro and weighted means, and accuracy.

    F1 is 2 tp / (2 tp + fp + fn), sklearn's formula, rather than the harmonic mean of two rounded ratios.
    """
    counts = confusion.astype(jnp.float32)
    true_positives = jnp.diagonal(counts)
    support = counts.sum(axis=1)
    predicted = counts.sum(axis=0)
    per_class = {
        "precision": _divide(true_positives, predicted),
        "recall": _divide(true_positives, support),
        "f1": _divide(2.0 * true_positives, support + predicted),
    }
    present = ((support + predicted) > 0).astype(jnp.float32)
    total = support.sum()
    result = {f"{name}_per_class": value for name, value in per_class.items()}
    for name, value in per_class.items():
        result[f"{name}_macro"] = _divide(jnp.sum(value * present), present.sum())
        result[f"{name}_weighted"] = _divide(jnp.sum(value * support), total)
    result["support"] = support
    result["accuracy"] = _divide(true_positives.sum(), total)
    return result


@functools.partial(jax.jit, static_argnames="k")
def top_k_accuracy(probabilities: jax.Array, labels: jax.Array, k: int, weights: jax.Array | None = None) -> jax.Array:
    """Share of examples whose true class is among the k highest scores.

    The rank of the true class is the number of classes scored strictly higher, so ties count in its favour
    (sklearn breaks ties by sort order instead; the two agree whenever scores are distinct).
    """
    mask = _mask(labels, weights).astype(jnp.float32)
    label_score = jnp.take_along_axis(probabilities, labels[:, None], axis=1)
    rank = jnp.sum(probabilities > label_score, axis=1)
    return _divide(jnp.sum((rank < k) * mask), mask.sum())


@jax.jit
def binary_roc_auc(scores: jax.Array, labels: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Area under the ROC curve for labels in {0, 1} and scores of class 1; NaN when a class is missing.

    Mann-Whitney form: the chance that a random positive scores above a random negative, ties counting one
    half, found by binary search in the sorted negative scores (O(N log N) and no N x N matrix). Scores must
    be finite (probabilities are): excluded and positive entries are parked at +inf in the sorted array.
    """
    mask = _mask(labels, weights).astype(bool)
    positive = mask & (labels == 1)
    negative = mask & (labels == 0)
    sorted_negatives = jnp.sort(jnp.where(negative, scores, jnp.inf))
    below = jnp.searchsorted(sorted_negatives, scores, side="left")
    below_or_tied = jnp.searchsorted(sorted_negatives, scores, side="right")
    num_negatives = negative.sum()
    wins = (below + below_or_tied).astype(jnp.float32) / (2.0 * jnp.maximum(num_negatives, 1))
    num_positives = positive.sum()
    auc = jnp.sum(jnp.where(positive, wins, 0.0)) / jnp.maximum(num_positives, 1)
    return jnp.where((num_positives > 0) & (num_negatives > 0), auc, jnp.nan)


@functools.partial(jax.jit, static_argnames="num_classes")
def _all_metrics(labels, predictions, probabilities, losses, num_classes):
    confusion = confusion_matrix(labels, predictions, num_classes)
    result = dict(scores_from_confusion(confusion), confusion_matrix=confusion, loss=jnp.mean(losses))
    if num_classes > 5:
        result["top5_accuracy"] = top_k_accuracy(probabilities, labels, 5)
    if num_classes == 2:
        result["roc_auc"] = binary_roc_auc(probabilities[:, 1], labels)
    return result


def classification_metrics(
    labels: np.ndarray, predictions: np.ndarray, probabilities: np.ndarray, losses: np.ndarray
) -> dict[str, Any]:
    """Every report figure for N real examples (no padding): floats, per-class arrays and the confusion matrix.

    top5_accuracy only with more than 5 classes (otherwise it is trivially 1); roc_auc only for 2 classes (None
    when the split lacks one of them, where sklearn raises).
    """
    if len(labels) == 0:
        raise ValueError("classification_metrics needs at least one example")
    num_classes = int(np.shape(probabilities)[1])
    raw = jax.device_get(_all_metrics(labels, predictions, probabilities, losses, num_classes))
    result: dict[str, Any] = {}
    for key, value in raw.items():
        value = np.asarray(value)
        result[key] = value if value.ndim else float(value)
    if "roc_auc" in result and math.isnan(result["roc_auc"]):
        result["roc_auc"] = None
    return result
