"""`python main.py` as a user runs it: config file, --config overrides, default workdir."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`main.py` with a config file and --config overrides: (its workdir, the finished process). One training run
    for the tests below (each ~15 CPU seconds, most of it start-up and compilation)."""
    workdir = tmp_path_factory.mktemp("main") / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    args = [
        sys.executable,
        "main.py",
        "--config=configs/digits_cnn.py",
        f"--workdir={workdir}",
        "--config.num_epochs=2",
        "--config.model.width=8",
        "--config.optimizer.learning_rate=0.1",
    ]
    return workdir, subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_main_trains_with_overrides(trained):
    workdir, result = trained
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((workdir / "config.json").read_text())
    assert (config["num_epochs"], config["model"]["width"]) == (2, 8)
    assert config["optimizer"]["learning_rate"] == 0.1
    metrics = json.loads((workdir / "test_metrics.json").read_text())
    assert metrics["accuracy"] > 0.5
    assert "epoch 2/2" in result.stderr and "test (best checkpoint" in result.stderr


def test_default_workdir_is_named_after_the_config():
    from dl4cv_jax.modes import default_workdir

    assert str(default_workdir("configs/resnet_cifar.py")) == "runs/resnet_cifar"


def test_predict_takes_space_separated_images(trained, tmp_path):
    """`--images a.png b.png`: absl gives the flag its first value only; main.py takes the rest as images too."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    assert trained[1].returncode == 0, trained[1].stderr[-2000:]
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)  # a copy: what predict and eval write (or must not) is this test's alone
    digits = load_digits()
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8), "L").save(paths[-1])
    predict = [sys.executable, "main.py", "--mode=predict", f"--workdir={run}", "--images", *map(str, paths)]
    result = subprocess.run(predict, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads(next((run / "predictions").glob("*.json")).read_text())
    assert [item["path"] for item in saved["images"]] == [str(p) for p in paths]
    unexpected = [sys.executable, "main.py", "--mode=eval", f"--workdir={run}", "extra_argument"]
    result = subprocess.run(unexpected, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "unexpected arguments: extra_argument" in result.stderr
    misplaced = [sys.executable, "main.py", "--mode=eval", f"--workdir={run}", "--top_k=3"]
    result = subprocess.run(misplaced, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "--top_k applies to --mode=predict, not --mode=eval" in result.stderr
    assert not (run / "eval").exists()  # refused before anything ran


def test_mode_flags_refuse_other_modes():
    from absl import app

    sys.path.insert(0, str(REPO))
    import main

    main.check_mode_flags("predict", {"tta", "checkpoint", "images", "top_k"})
    for mode, flag, expected in [
        ("train", "tta", "--tta applies to --mode=eval|predict, not --mode=train (training's views are config"),
        ("sweep", "split", "--split applies to --mode=eval, not --mode=sweep"),
        ("eval", "workers", "--workers applies to --mode=sweep, not --mode=eval"),
    ]:
        with pytest.raises(app.UsageError, match=re.escape(expected)):
            main.check_mode_flags(mode, {flag})


def test_an_unknown_onednn_kernel_switch_stops_main_in_one_line_before_any_run(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", DL4CV_ONEDNN_KERNELS="fastest")
    workdir = tmp_path / "run"
    args = [sys.executable, "main.py", f"--workdir={workdir}", "--config.num_epochs=2"]
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == "error: DL4CV_ONEDNN_KERNELS='fastest' is not supported; choose one of: default, first"
    assert not workdir.exists()


def test_only_callbacks_into_a_closed_event_loop_are_kept_from_stderr():
    """After a failed checkpoint write, tensorstore's callbacks into orbax's closed loop reach sys.unraisablehook
    one per write in flight (tests/train/test_faults.py sees them now and then); anything else must still print."""
    import types

    import main

    passed_on = []
    hook = main.ignoring_closed_loop_callbacks(passed_on.append)
    closed = types.SimpleNamespace(exc_value=RuntimeError("Event loop is closed"))
    others = [
        types.SimpleNamespace(exc_value=RuntimeError("cannot schedule new futures after shutdown")),
        types.SimpleNamespace(exc_value=ValueError("Event loop is closed")),
    ]
    for unraisable in (closed, *others):
        hook(unraisable)
    assert passed_on == others
