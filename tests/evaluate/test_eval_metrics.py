"""The jit-compiled metrics against scikit-learn, on random predictions and on the edge cases that break
hand-written metrics: a class never predicted, a class absent from the split, padding, ties, one-class splits."""

import numpy as np
import pytest
from sklearn import metrics as sk

from dl4cv_jax.evaluate import metrics


def _probabilities(rng, n, num_classes):
    logits = rng.normal(size=(n, num_classes))
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def _case(name, rng):
    """(labels, predictions, num_classes) for each edge case."""
    n, c = 300, 7
    labels = rng.integers(0, c, n)
    predictions = rng.integers(0, c, n)
    if name == "never_predicted":
        predictions[predictions == 3] = 4
    elif name == "absent_from_split":  # class 5 neither in labels nor predictions
        labels[labels == 5] = 0
        predictions[predictions == 5] = 1
    elif name == "absent_but_predicted":  # class 6 predicted, never a label
        labels[labels == 6] = 2
    elif name == "perfect":
        predictions = labels.copy()
    elif name == "one_label":
        labels[:] = 2
    return labels.astype(np.int32), predictions.astype(np.int32), c


CASES = ["random", "never_predicted", "absent_from_split", "absent_but_predicted", "perfect", "one_label"]


@pytest.mark.parametrize("case", CASES)
def test_scores_match_sklearn(case):
    labels, predictions, c = _case(case, np.random.default_rng(CASES.index(case)))
    confusion = np.asarray(metrics.confusion_matrix(labels, predictions, c))
    np.testing.assert_array_equal(confusion, sk.confusion_matrix(labels, predictions, labels=range(c)))
    scores = {k: np.asarray(v) for k, v in metrics.scores_from_confusion(confusion).items()}

    p, r, f, s = sk.precision_recall_fscore_support(labels, predictions, labels=range(c), zero_division=0)
    np.testing.assert_allclose(scores["precision_per_class"], p, atol=1e-6)
    np.testing.assert_allclose(scores["recall_per_class"], r, atol=1e-6)
    np.testing.assert_allclose(scores["f1_per_class"], f, atol=1e-6)
    np.testing.assert_array_equal(scores["support"], s)
    for average in ("macro", "weighted"):
        p, r, f, _ = sk.precision_recall_fscore_support(labels, predictions, average=average, zero_division=0)
        np.testing.assert_allclose(scores[f"precision_{average}"], p, atol=1e-6, err_msg=average)
        np.testing.assert_allclose(scores[f"recall_{average}"], r, atol=1e-6, err_msg=average)
        np.testing.assert_allclose(scores[f"f1_{average}"], f, atol=1e-6, err_msg=average)
    np.testing.assert_allclose(scores["accuracy"], sk.accuracy_score(labels, predictions), atol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_matches_sklearn(k):
    rng = np.random.default_rng(k)
    labels = rng.integers(0, 10, 400).astype(np.int32)
    labels[labels == 7] = 0  # a class absent from the split
    probabilities = _probabilities(rng, 400, 10)
    expected = sk.top_k_accuracy_score(labels, probabilities, k=k, labels=range(10))
    np.testing.assert_allclose(metrics.top_k_accuracy(probabilities, labels, k), expected, atol=1e-6)


def test_padding_rows_do_not_count():
    rng = np.random.default_rng(3)
    labels, predictions, c = _case("random", rng)
    probabilities = _probabilities(rng, len(labels), c)
    pad = 13
    padded_labels = np.concatenate([labels, np.zeros(pad, np.int32)])
    padded_predictions = np.concatenate([predictions, np.zeros(pad, np.int32)])
    padded_probabilities = np.concatenate([probabilities, np.eye(c, dtype=np.float32)[np.zeros(pad, int)]])
    weights = np.concatenate([np.ones(len(labels)), np.zeros(pad)]).astype(np.float32)
    np.testing.assert_array_equal(
        metrics.confusion_matrix(padded_labels, padded_predictions, c, weights),
        metrics.confusion_matrix(labels, predictions, c),
    )
    np.testing.assert_allclose(
        metrics.top_k_accuracy(padded_probabilities, padded_labels, 3, weights),
        metrics.top_k_accuracy(probabilities, labels, 3),
    )
    binary = (labels % 2).astype(np.int32)
    padded_binary = np.concatenate([binary, np.ones(pad, np.int32)])
    scores = np.concatenate([probabilities[:, 0], np.full(pad, 0.5, np.float32)])
    np.testing.assert_allclose(
        metrics.binary_roc_auc(scores, padded_binary, weights),
        sk.roc_auc_score(binary, probabilities[:, 0]),
        atol=1e-6,
    )


@pytest.mark.parametrize("n, decimals", [(101, None), (500, 1), (20_000, None)])
def test_roc_auc_matches_sklearn(n, decimals):
    rng = np.random.default_rng(n)
    labels = rng.integers(0, 2, n).astype(np.int32)
    scores = np.clip(0.3 * labels + rng.normal(0.35, 0.25, n), 0, 1).astype(np.float32)
    if decimals is not None:  # many ties, which count one half
        scores = np.round(scores, decimals).astype(np.float32)
    np.testing.assert_allclose(metrics.binary_roc_auc(scores, labels), sk.roc_auc_score(labels, scores), atol=1e-5)


def test_classification_metrics_keys_and_missing_class():
    rng = np.random.default_rng(0)
    labels = np.zeros(20, np.int32)  # a 2-class split with no positive: AUC undefined (sklearn raises)
    probabilities = _probabilities(rng, 20, 2)
    predictions = probabilities.argmax(axis=1).astype(np.int32)
    result = metrics.classification_metrics(labels, predictions, probabilities, np.ones(20, np.float32))
    assert result["roc_auc"] is None and "top5_accuracy" not in result
    assert result["loss"] == 1.0 and result["confusion_matrix"].sum() == 20

    labels = rng.integers(0, 8, 50).astype(np.int32)
    probabilities = _probabilities(rng, 50, 8)
    predictions = probabilities.argmax(axis=1).astype(np.int32)
    result = metrics.classification_metrics(labels, predictions, probabilities, np.zeros(50, np.float32))
    assert "roc_auc" not in result
    expected = sk.top_k_accuracy_score(labels, probabilities, k=5, labels=range(8))
    assert result["top5_accuracy"] == pytest.approx(expected, abs=1e-6)
    assert result["accuracy"] == pytest.approx(sk.accuracy_score(labels, predictions), abs=1e-6)
