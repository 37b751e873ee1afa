"""eval and predict on a tiny trained digits run: every figure against sklearn and against what training
measured, every example counted once (also on 8 devices), the files and pictures, and the errors."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from sklearn import metrics as sk

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import load_data
from dl4cv_jax.evaluate import restore
from dl4cv_jax.evaluate.cli import run_eval, run_predict
from dl4cv_jax.train import tta
from dl4cv_jax.train.callbacks import read_history
from dl4cv_jax.train.loop import train_and_evaluate
from tests.conftest import REPO, tiny_digits_config
from tests.evaluate.eval_checks import assert_picture

TEST_SIZE = 359  # 20% of the 1,797 digits: prime, so it divides by neither the batch (64) nor 8 devices


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-epoch digits run; its best checkpoint is epoch 1 or 2, its latest epoch 2."""
    workdir = tmp_path_factory.mktemp("digits_run")
    train_and_evaluate(tiny_digits_config(num_epochs=2), workdir, show_progress=False)
    return workdir


@pytest.fixture(scope="module")
def test_report(run):
    return run_eval(run, "test", speed_seconds=0.05)


def _predictions(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_report_matches_sklearn_and_training(run, test_report):
    report, out = test_report, run / "eval" / "test"
    trained = json.loads((run / "test_metrics.json").read_text())
    assert report["num_examples"] == trained["num_examples"] == TEST_SIZE
    assert report["checkpoint_step"] == trained["checkpoint_step"] and report["checkpoint"] == "best"
    assert report["accuracy"] == pytest.approx(trained["accuracy"], abs=1e-6)  # float32 vs float64
    assert report["loss"] == pytest.approx(trained["loss"], rel=1e-5)
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))

    rows = _predictions(out / "predictions.csv")
    names = json.loads((run / "class_names.json").read_text())
    assert [int(r["index"]) for r in rows] == list(range(TEST_SIZE))
    assert rows[0]["path_or_id"] == "test:0"
    labels = np.array([names.index(r["label"]) for r in rows])
    predictions = np.array([names.index(r["prediction"]) for r in rows])
    np.testing.assert_array_equal(labels, load_data(tiny_digits_config()).split("test").labels)
    np.testing.assert_array_equal(report["confusion_matrix"], sk.confusion_matrix(labels, predictions))
    assert report["accuracy"] == pytest.approx(sk.accuracy_score(labels, predictions), abs=1e-6)
    for average in ("macro", "weighted"):
        p, r, f, _ = sk.precision_recall_fscore_support(labels, predictions, average=average, zero_division=0)
        assert (report[f"precision_{average}"], report[f"recall_{average}"], report[f"f1_{average}"]) == (
            pytest.approx(p, abs=1e-6),
            pytest.approx(r, abs=1e-6),
            pytest.approx(f, abs=1e-6),
        )
    p, r, f, s = sk.precision_recall_fscore_support(labels, predictions, labels=range(10), zero_division=0)
    assert list(report["per_class"]) == names
    for k, name in enumerate(names):
        got = report["per_class"][name]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == (
            pytest.approx(p[k], abs=1e-6),
            pytest.approx(r[k], abs=1e-6),
            pytest.approx(f[k], abs=1e-6),
            s[k],
        )
    assert 0 < report["top5_accuracy"] <= 1 and "roc_auc" not in report
    assert report["images_per_second"] > 0 and report["latency_ms_batch1"] > 0

    markdown = (out / "report.md").read_text()
    assert "## Most confused pairs" in markdown and "| accuracy |" in markdown
    for name in ("confusion_matrix", "confusion_matrix_normalized"):
        assert_picture(out / f"{name}.png")
    assert_picture(run / "curves.png")  # drawn by the training loop's CurvesPlot callback
    tags = {
        value.tag
        for path in run.glob("events.out.tfevents.*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    }
    assert {"eval_test/confusion_matrix", "eval_test/confusion_matrix_normalized"} <= tags


def test_eval_uses_the_weights_and_views_training_tested(tmp_path):
    """With an EMA of the weights and test-time augmentation, eval reports what test_metrics.json says."""
    workdir = tmp_path / "ema_tta"
    config = tiny_digits_config(num_epochs=2, ema_decay=0.9, eval_tta=("flip",))
    train_and_evaluate(config, workdir, show_progress=False)
    report = run_eval(workdir, "test", speed_seconds=0.05)
    trained = json.loads((workdir / "test_metrics.json").read_text())
    assert report["num_examples"] == trained["num_examples"] == TEST_SIZE
    assert report["accuracy"] == pytest.approx(trained["accuracy"], abs=1e-6)
    assert report["loss"] == pytest.approx(trained["loss"], rel=1e-5)
    assert report["tta"] == ["flip"]
    assert "test-time augmentation: flip." in (workdir / "eval" / "test" / "report.md").read_text()

    # --tta=none: the same weights without the flip, in a folder of its own. Reference: a copy of the workdir
    # whose config.json says eval_tta=[], evaluated as it is.
    plain = run_eval(workdir, "test", speed_seconds=0, tta=())
    assert plain["tta"] == [] and (workdir / "eval" / "test_tta=none" / "report.json").is_file()
    assert json.loads((workdir / "eval" / "test" / "report.json").read_text())["tta"] == ["flip"]  # kept
    assert plain["loss"] != pytest.approx(report["loss"], rel=1e-4)
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    saved = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**saved, "eval_tta": []}))
    reference = run_eval(copy, "test", speed_seconds=0)
    assert (reference["accuracy"], reference["loss"]) == (plain["accuracy"], pytest.approx(plain["loss"], rel=1e-6))
    assert (reference["tta"], sorted(os.listdir(copy / "eval"))) == ([], ["test", "test_tta=none"])
    again = run_eval(workdir, "test", speed_seconds=0, tta=("flip",))  # the run's own views: its own folder
    assert again["loss"] == pytest.approx(report["loss"], rel=1e-6) and sorted(os.listdir(workdir / "eval")) == [
        "test",
        "test_tta=none",
    ]


def test_tta_flag_parsing():
    assert tta.parse_tta_flag(None) is None
    assert tta.parse_tta_flag("none") == tta.parse_tta_flag("") == ()
    assert tta.parse_tta_flag("flip, translate") == ("flip", "translate")
    with pytest.raises(ConfigError, match=r"--tta='flip,rotate' has unknown view\(s\) \['rotate'\]; choose none or"):
        tta.parse_tta_flag("flip,rotate")


def test_latest_on_val_reproduces_the_history(run):
    last = read_history(run / "history.csv")[-1]
    step = int(last["step"])
    assert restore.resolve_checkpoint(run, "latest") == ("latest", step)
    assert restore.resolve_checkpoint(run, str(step))[1] == step  # under best/ too when the last epoch was best
    report = run_eval(run, "val", "latest", speed_seconds=0)
    assert report["checkpoint"] == "latest" and report["checkpoint_step"] == step
    assert report["accuracy"] == pytest.approx(float(last["val_accuracy"]), abs=1e-6)  # float32 vs float64
    assert report["loss"] == pytest.approx(float(last["val_loss"]), rel=1e-5)
    assert report["images_per_second"] is None and "not measured" in (run / "eval" / "val" / "report.md").read_text()


def test_bad_workdir_checkpoint_and_split(run, tmp_path):
    steps = restore.available_steps(run)
    with pytest.raises(ConfigError, match=r"--checkpoint=12345: no checkpoint .*best: \d+; latest: \d+"):
        run_eval(run, "test", "12345")
    with pytest.raises(ConfigError, match="choose best, latest or a step number") as error:
        run_eval(run, "test", "newest")
    assert str(steps["latest"][0]) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="has no config.json"):
        run_eval(tmp_path, "test")
    with pytest.raises(ConfigError, match="--split='dev'"):
        run_eval(run, "dev")
    shutil.copy(run / "config.json", tmp_path / "config.json")
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        run_predict(tmp_path, [str(run / "curves.png")])


def _write_images(folder, images):
    """The digits as files of other sizes and modes: 8x8 gray PNG, 40x24 RGBA PNG, 32x32 RGB JPEG, palette PNG."""
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image[..., 0], "L").save(folder / f"digit{i}.png")
    rgba = np.dstack([np.repeat(np.repeat(images[0], 5, 0), 3, 1)] * 3 + [np.full((40, 24, 1), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "big_rgba.png")
    Image.fromarray(np.repeat(np.repeat(images[1], 4, 0), 4, 1)[..., 0], "L").convert("RGB").save(folder / "rgb.jpg")
    Image.fromarray(np.repeat(images[2], 3, axis=2)).convert("P").save(folder / "palette.png")
    (folder / "notes.txt").write_text("not an image; ignored in a folder")


def test_predict_without_the_training_data(run, test_report, tmp_path):
    data = load_data(tiny_digits_config())
    digits = data.split("test").images[:4]
    _write_images(tmp_path / "images", digits)
    # predict must not read the data: point the copied run's data at a folder that does not exist
    workdir = tmp_path / "run"
    shutil.copytree(run, workdir, ignore=shutil.ignore_patterns("eval", "events.*"))
    config = json.loads((workdir / "config.json").read_text())
    config["data"].update(source="folder", dir=str(tmp_path / "missing"))
    (workdir / "config.json").write_text(json.dumps(config))

    result = run_predict(workdir, [str(tmp_path / "images")], "best", top_k=3)
    assert result["tta"] == []
    saved = json.loads((workdir / "predictions" / "images.json").read_text())
    assert saved == json.loads(json.dumps(result))
    names = [str(d) for d in range(10)]
    paths = [item["path"] for item in saved["images"]]
    assert [p.rsplit("/", 1)[1] for p in paths] == [
        "big_rgba.png",
        *(f"digit{i}.png" for i in range(4)),
        "palette.png",
        "rgb.jpg",
    ]
    for item in saved["images"]:
        probabilities = [entry["probability"] for entry in item["top_k"]]
        assert len(item["top_k"]) == 3 and {e["class"] for e in item["top_k"]} <= set(names)
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6

    # same preprocessing as evaluation: the native-size files give the outputs evaluation gave these images
    evaluated = _predictions(run / "eval" / "test" / "predictions.csv")[:4]
    for item, row in zip(saved["images"][1:5], evaluated, strict=True):
        top = item["top_k"][0]
        assert top["class"] == row["prediction"]
        assert top["probability"] == pytest.approx(float(row["confidence"]), abs=1e-5)


def test_predict_errors(run, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match="cannot decode .*broken.png"):
        run_predict(run, [str(tmp_path / "broken.png")])
    with pytest.raises(ConfigError, match="no such file or folder"):
        run_predict(run, [str(tmp_path / "nothing.png")])
    with pytest.raises(ConfigError, match="--top_k=0"):
        run_predict(run, [str(tmp_path / "broken.png")], top_k=0)


def test_main_eval_on_eight_devices_counts_every_example_once(run, test_report, tmp_path):
    """`main.py --mode=eval` as a user types it, on 8 simulated devices: the prime-size test split (359 = 5 x 64
    + 39, so the last batch leaves 3 of the 8 devices with padding only) gives the 1-device result."""
    workdir = tmp_path / "run"
    shutil.copytree(run, workdir, ignore=shutil.ignore_patterns("eval"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", XLA_FLAGS="--xla_force_host_platform_device_count=8")
    command = [sys.executable, "main.py", "--mode=eval", f"--workdir={workdir}", "--split=test"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    eight = json.loads((workdir / "eval" / "test" / "report.json").read_text())
    assert eight["device_count"] == 8 and test_report["device_count"] == 1
    assert eight["num_examples"] == TEST_SIZE
    assert eight["confusion_matrix"] == test_report["confusion_matrix"]
    assert eight["accuracy"] == test_report["accuracy"]
    one = _predictions(run / "eval" / "test" / "predictions.csv")
    many = _predictions(workdir / "eval" / "test" / "predictions.csv")
    assert [r["prediction"] for r in one] == [r["prediction"] for r in many]
    np.testing.assert_allclose([float(r["confidence"]) for r in one], [float(r["confidence"]) for r in many], atol=1e-5)
