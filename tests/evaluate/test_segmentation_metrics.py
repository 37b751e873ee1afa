"""Segmentation metrics (dl4cv_jax/evaluate/segmentation.py) against scikit-learn on flattened masks, and the
confusion matrix's accumulation over batches under jit."""

import jax
import numpy as np
import pytest
from sklearn.metrics import jaccard_score, precision_recall_fscore_support

from dl4cv_jax.evaluate.segmentation import confusion_matrix, confusion_matrix_np, segmentation_metrics
from tests.evaluate.task_file_fixtures import random_masks

CLASSES = 5


def _flat_reference(pairs):
    truth = np.concatenate([t.reshape(-1) for t, _ in pairs])
    prediction = np.concatenate([p.reshape(-1) for _, p in pairs])
    counted = truth != 255
    return truth[counted], prediction[counted]


def test_equal_to_scikit_learn_on_flattened_masks():
    pairs = random_masks(0, count=4)
    total = sum(confusion_matrix_np(t, p, CLASSES) for t, p in pairs)
    scores = segmentation_metrics(total)
    truth, prediction = _flat_reference(pairs)
    labels = list(range(CLASSES))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, prediction, labels=labels, zero_division=np.nan
    )
    iou = jaccard_score(truth, prediction, labels=labels, average=None, zero_division=0)  # nan is not accepted
    iou[3] = np.nan  # class 3: in neither mask, 0/0
    for ours, theirs in ((scores["precision"], precision), (scores["recall"], recall), (scores["iou"], iou)):
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
        defined = ~np.isnan(theirs)
        np.testing.assert_allclose(ours[defined], theirs[defined], atol=1e-12)
    np.testing.assert_allclose(scores["f1"][[0, 1, 2, 4]], np.nan_to_num(f1)[[0, 1, 2, 4]], atol=1e-12)
    np.testing.assert_array_equal(scores["support"], support)
    assert scores["pixel_accuracy"] == pytest.approx(np.mean(truth == prediction), abs=1e-12)
    # Class 3 is in neither: undefined and out of the mean; class 4 only predicted: IoU 0, counted in the mean.
    assert np.isnan(scores["iou"][3]) and scores["iou"][4] == 0.0
    assert scores["mean_iou"] == pytest.approx(np.mean(iou[[0, 1, 2, 4]]), abs=1e-12)
    assert scores["mean_iou"] == pytest.approx(
        jaccard_score(truth, prediction, labels=[0, 1, 2, 4], average="macro"), abs=1e-12
    )


def test_jitted_batches_accumulate_to_the_whole():
    pairs = random_masks(1, count=3)
    step = jax.jit(lambda total, t, p: total + confusion_matrix(t, p, CLASSES))
    total = np.zeros((CLASSES, CLASSES + 1), np.int32)
    for truth, prediction in pairs:
        total = step(total, truth, prediction)
    whole = confusion_matrix_np(np.stack([t for t, _ in pairs]), np.stack([p for _, p in pairs]), CLASSES)
    np.testing.assert_array_equal(np.asarray(total), whole)
    assert whole.sum() == sum(int(np.sum(t != 255)) for t, _ in pairs)  # ignored pixels count nowhere


def test_prediction_outside_the_classes_is_a_miss_not_a_false_positive():
    truth = np.array([0, 0, 1, 1])
    prediction = np.array([0, 9, 1, 1])
    scores = segmentation_metrics(confusion_matrix_np(truth, prediction, 2))
    assert scores["recall"][0] == 0.5 and scores["precision"][0] == 1.0
    assert scores["pixel_accuracy"] == 0.75
