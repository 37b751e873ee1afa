"""Bad input fails at once with one line naming the config key, the value and what is accepted."""

import os
import subprocess
import sys

import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.train.loop import train_and_evaluate
from tests.conftest import REPO, tiny_digits_config

CASES = [
    ("model__name", "resnet19", ["config.model.name='resnet19'", "resnet18", "cnn", "vgg16_bn"]),
    ("optimizer__name", "adamm", ["config.optimizer.name='adamm'", "adam", "nesterov", "lion"]),
    ("schedule__name", "cosinus", ["config.schedule.name='cosinus'", "cosine", "one_cycle"]),
    ("loss", "crossentropy", ["config.loss='crossentropy'", "softmax_cross_entropy", "mse"]),
    ("data__source", "csv", ["config.data.source='csv'", "digits", "folder", "synthetic", "tfds"]),
    ("checkpoint__monitor", "loss", ["config.checkpoint.monitor='loss'", "val_accuracy", "val_loss"]),
    ("optimizer__learning_rate", -0.1, ["config.optimizer.learning_rate=-0.1", "> 0"]),
]


@pytest.mark.parametrize(("key", "value", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_value_names_key_and_choices(tmp_path, key, value, expected):
    with pytest.raises(ConfigError) as error:
        train_and_evaluate(tiny_digits_config(**{key: value}), tmp_path, show_progress=False)
    message = str(error.value)
    assert "\n" not in message
    for part in expected:
        assert part in message
    assert not (tmp_path / "config.json").exists(), "nothing is written for a config that cannot run"


def test_missing_data_dir(tmp_path):
    config = tiny_digits_config(data__source="folder", data__dir=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"config\.data\.dir=.*nowhere"):
        train_and_evaluate(config, tmp_path / "run", show_progress=False)


def test_main_prints_one_line_error_and_fails(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--config=configs/digits_cnn.py",
            "--config.optimizer.name=adamm",
            f"--workdir={tmp_path}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: config.optimizer.name='adamm' is not supported; choose one of:")
    assert "Traceback" not in result.stderr
