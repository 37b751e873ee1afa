"""Reports and pictures without a model: confused pairs, markdown, confusion PNGs, curves.png, compare."""

import csv

import matplotlib.image
import numpy as np
import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.evaluate import curves, plots, report
from dl4cv_jax.train.callbacks import HISTORY_FIELDS
from tests.evaluate.eval_checks import assert_picture


def _history(path, val_accuracy, val_loss=None):
    val_loss = val_loss or [1.0 / (1 + e) for e in range(len(val_accuracy))]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        for e, (acc, loss) in enumerate(zip(val_accuracy, val_loss, strict=True)):
            row = dict.fromkeys(HISTORY_FIELDS, 0.0)
            row.update(epoch=e + 1, step=10 * (e + 1), train_loss=loss * 0.9, train_accuracy=acc + 0.02)
            row.update(val_loss=loss, val_accuracy=acc)
            writer.writerow(row)


def test_most_confused_pairs_and_normalisation():
    confusion = np.array([[5, 3, 0], [1, 7, 3], [0, 0, 0]])
    assert report.most_confused_pairs(confusion) == [(0, 1, 3), (1, 2, 3), (1, 0, 1)]
    assert report.most_confused_pairs(confusion, 1) == [(0, 1, 3)]
    fractions = plots.normalize_rows(confusion)
    np.testing.assert_allclose(fractions[0], [5 / 8, 3 / 8, 0])
    np.testing.assert_array_equal(fractions[2], [0, 0, 0])  # class absent from the split: zeros, not NaN


def test_markdown_report_lists_everything():
    confusion = np.array([[8, 2], [1, 9]])
    scores = {
        "accuracy": 0.85,
        "loss": 0.4,
        "roc_auc": None,
        "confusion_matrix": confusion,
        **{f"{m}_per_class": np.array([0.8, 0.9]) for m in ("precision", "recall", "f1")},
        **{f"{m}_{a}": 0.85 for m in ("precision", "recall", "f1") for a in ("macro", "weighted")},
    }
    speed = {"images_per_second": 1234.5, "batch_size": 64, "latency_ms_batch1": 1.5}
    built = report.build_report(scores, ["cat", "dog"], split="test", checkpoint="best", checkpoint_step=7, speed=speed)
    assert built["per_class"]["dog"] == {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 10}
    assert built["num_examples"] == 20 and built["confusion_matrix"] == [[8, 2], [1, 9]]
    text = report.markdown_report(built, "Evaluation of run")
    assert "| accuracy | 0.8500 |" in text and "n/a" in text and "1,234 images/second" in text
    assert "| cat | dog | 2 | 20.0% |" in text  # the most confused pair
    assert "| dog | 1 | 9 |" in text  # the confusion matrix row


@pytest.mark.parametrize("num_classes", [3, 40])  # 40: names on the axes, no numbers in the cells
def test_confusion_pngs(tmp_path, num_classes):
    rng = np.random.default_rng(num_classes)
    confusion = rng.integers(0, 50, (num_classes, num_classes)) + np.diag(rng.integers(100, 200, num_classes))
    names = [f"class_{k}" for k in range(num_classes)]
    pictures = plots.write_confusion_pngs(confusion, names, tmp_path, "subtitle")
    for name in ("confusion_matrix", "confusion_matrix_normalized"):
        pixels = assert_picture(tmp_path / f"{name}.png")
        assert pictures[name].dtype == np.uint8 and pictures[name].shape == (*pixels.shape[:2], 3)


def test_curves_plot_redraws_each_epoch_and_marks_the_best(tmp_path):
    _history(tmp_path / "history.csv", [0.5, 0.7])
    callback = curves.CurvesPlot(tmp_path)
    callback.on_epoch_end(2, {})
    first = assert_picture(tmp_path / "curves.png")
    _history(tmp_path / "history.csv", [0.5, 0.7, 0.9, 0.9])
    callback.on_epoch_end(4, {})
    assert not np.array_equal(first, matplotlib.image.imread(tmp_path / "curves.png"))

    history = curves.load_history(tmp_path / "history.csv")
    assert curves.best_epoch(history, "val_accuracy") == 3  # the first of the two maxima
    assert curves.best_epoch(history, "val_loss") == 4
    (tmp_path / "history.csv").write_text("not,a,history\n")
    callback.on_epoch_end(5, {})  # a broken file is logged, never raised into the training loop


def test_compare_overlays_runs(tmp_path):
    for name, accuracy in (("a", [0.3, 0.6]), ("b", [0.4, 0.5, 0.8])):
        (tmp_path / name).mkdir()
        _history(tmp_path / name / "history.csv", accuracy)
    output = curves.write_compare([tmp_path / "a", tmp_path / "b"], tmp_path / "out" / "compare.png")
    assert_picture(output)
    assert curves.run_labels([tmp_path / "a", tmp_path / "x" / "a"])[0] == str(tmp_path / "a")
    with pytest.raises(ConfigError, match="has no history.csv"):
        curves.write_compare([tmp_path / "a", tmp_path], tmp_path / "c.png")
    with pytest.raises(ConfigError, match="needs training workdirs"):
        curves.write_compare([], tmp_path / "c.png")
