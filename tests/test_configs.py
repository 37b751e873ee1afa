"""Every experiment config loads, derives from default.py, and names things the registries know."""

import importlib
import pathlib

import numpy as np
import pytest

from configs import default
from dl4cv_jax import losses, optim, schedules
from dl4cv_jax.models import MODELS

CONFIG_NAMES = sorted(
    p.stem
    for p in (pathlib.Path(__file__).resolve().parents[1] / "configs").glob("*.py")
    if p.stem not in ("__init__", "default", "cifar_common")
)
REQUIRED = [
    "model.name",
    "data.source",
    "data.name",
    "data.dir",
    "data.image_size",
    "data.max_train_examples",
    "batch_size",
    "num_epochs",
    "optimizer.name",
    "optimizer.learning_rate",
    "schedule.name",
    "loss",
    "seed",
    "checkpoint.monitor",
    "early_stopping.patience",
]


def _get(config, dotted):
    for name in dotted.split("."):
        config = config[name]
    return config


def test_the_issue_configs_exist():
    assert set(CONFIG_NAMES) >= {
        "digits_cnn",
        "lenet_mnist",
        "mlp_fashion_mnist",
        "cnn_cifar",
        "vgg_cifar",
        "resnet_cifar",
        "resnet20_cifar",
        "resnet50_imagenet",
    }


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_is_complete_and_valid(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    for key in REQUIRED:
        _get(config, key)
    # No field that default.py does not define (a typo would otherwise be silently ignored).
    assert set(config.to_dict().keys()) == set(default.get_config().to_dict().keys())
    assert config.model.name in MODELS
    assert config.optimizer.name in optim.OPTIMIZERS
    assert config.schedule.name in schedules.SCHEDULES
    assert config.loss in losses.LOSSES
    assert config.data.source in ("tfds", "folder", "digits", "synthetic")


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_trains_on_a_small_synthetic_stand_in(name, tmp_path):
    """Each config's own model, optimizer, schedule, precision, EMA, TTA and pipeline run end to end for a few
    steps, on 32x32 (or smaller) synthetic images: a combination that crashes (as EMA with the donated train
    state once did for fast_cifar) fails here, not in a user's first hour."""
    from dl4cv_jax.train.loop import train_and_evaluate

    config = importlib.import_module(f"configs.{name}").get_config()
    size = min(config.data.image_size or 32, 32)
    config.data.source = "synthetic"
    config.data.synthetic_shape = (size, size, config.data.channels or 3)
    config.data.image_size = 0
    config.data.synthetic_examples = 16
    config.data.synthetic_classes = 4
    config.batch_size = 8
    config.num_epochs = 2  # two steps per epoch
    config.schedule.warmup_epochs = min(config.schedule.warmup_epochs, 1.0)
    test = train_and_evaluate(config, tmp_path, show_progress=False)
    assert test["num_examples"] == 4 and 0 <= test["accuracy"] <= 1 and np.isfinite(test["loss"])
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert len(history) == 1 + config.num_epochs
