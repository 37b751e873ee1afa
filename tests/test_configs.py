"""Every experiment config loads, derives from default.py, and names things the registries know."""

import importlib
import pathlib

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
