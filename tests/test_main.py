"""`python main.py` as a user runs it: config file, --config overrides, default workdir."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_main_trains_with_overrides(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    args = [
        sys.executable,
        "main.py",
        "--config=configs/digits_cnn.py",
        f"--workdir={tmp_path}",
        "--config.num_epochs=2",
        "--config.model.width=8",
        "--config.optimizer.learning_rate=0.1",
    ]
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["num_epochs"], config["model"]["width"]) == (2, 8)
    assert config["optimizer"]["learning_rate"] == 0.1
    metrics = json.loads((tmp_path / "test_metrics.json").read_text())
    assert metrics["accuracy"] > 0.5
    assert "epoch 2/2" in result.stderr and "test (best checkpoint" in result.stderr


def test_default_workdir_is_named_after_the_config():
    sys.path.insert(0, str(REPO))
    import main

    assert str(main.default_workdir("configs/resnet_cifar.py")) == "runs/resnet_cifar"
